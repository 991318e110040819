"""The queue of campaigns scheduled to run unattended: ``$ATHANOR_HOME/schedule.db``.

A job is a snapshot taken when the campaign was scheduled: the validated spec as YAML, the lab
file's text (if one was given) and the run options. Editing or deleting the files afterwards does
not change what runs. A job's life::

    queued --claim--> running --record_outcome--> finished | failed | stopped
    queued --cancel--> cancelled
    running (worker gone) --adopt--> running (resumed by another worker)

The queue is an SQLite database in WAL mode; every state change is one ``BEGIN IMMEDIATE``
transaction, so two workers (or threads) never claim the same job. One worker at a time drives the
instruments: :class:`WorkerLock` is an exclusive ``flock`` on ``schedule.lock`` next to the database.

A worker beats its job's heartbeat while the campaign runs. A job still ``running`` whose worker
process is gone from this host, or whose heartbeat is older than a limit, was interrupted (power
cut, crash, reboot): the next worker resumes its run from the last checkpoint instead of starting
it again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from athanor.errors import AthanorError, SpecError, format_validation_error
from athanor.lab import LabDescription
from athanor.spec import CampaignSpec
from runs.locks import FileLock, LockHeld
from runs.store import athanor_home

__all__ = [
    "HEARTBEAT_S",
    "PRIOR_FILE",
    "STALE_AFTER_S",
    "STATUSES",
    "Job",
    "JobStatus",
    "Schedule",
    "Worker",
    "WorkerLock",
    "materialise",
    "schedule_db",
    "schedule_folder",
]

JobStatus = Literal["queued", "running", "finished", "failed", "stopped", "cancelled"]
#: Every job status, in the order of a job's life.
STATUSES: tuple[str, ...] = ("queued", "running", "finished", "failed", "stopped", "cancelled")
#: Seconds between heartbeats of a running job.
HEARTBEAT_S = 30.0
#: A running job whose heartbeat is older than this many seconds was interrupted.
STALE_AFTER_S = 600.0

_SCHEMA_VERSION = 1
#: Name of a job's prior-data copy, beside its campaign file (see :func:`materialise`).
PRIOR_FILE = "prior.csv"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    request TEXT NOT NULL,
    spec_yaml TEXT NOT NULL,
    lab_yaml TEXT,
    lab_source TEXT,
    prior_csv TEXT,
    seed INTEGER,
    llm TEXT,
    time_scale REAL NOT NULL,
    literature INTEGER NOT NULL,
    not_before TEXT NOT NULL,
    status TEXT NOT NULL,
    run_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker_host TEXT,
    worker_pid INTEGER,
    worker_token TEXT,
    heartbeat TEXT,
    message TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (status, not_before, seq);
"""
_OUTCOMES = {"finished", "failed", "stopped", "queued"}


def schedule_db() -> Path:
    """The queue's database: ``$ATHANOR_HOME/schedule.db``."""
    return athanor_home() / "schedule.db"


def schedule_folder() -> Path:
    """Where jobs' snapshots are written out to run: ``$ATHANOR_HOME/schedule/``."""
    return athanor_home() / "schedule"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    """A UTC time as fixed-width ISO text, so that text order is time order."""
    if moment.tzinfo is None:
        raise ValueError(f"a scheduler time must carry a time zone, got {moment!r}")
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _time(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class Worker(BaseModel):
    """The process working the queue.

    Attributes:
        host: Host name.
        pid: Process id on that host.
        token: Random per worker process, so that a pid reused after a reboot is not mistaken for
            the worker that claimed a job.
    """

    model_config = ConfigDict(frozen=True)

    host: str
    pid: int
    token: str

    @classmethod
    def current(cls) -> Worker:
        """This process as a worker, with a fresh token."""
        return cls(host=socket.gethostname(), pid=os.getpid(), token=uuid.uuid4().hex[:12])

    def describe(self) -> str:
        """E.g. ``pid 4242 on labpc``."""
        return f"pid {self.pid} on {self.host}"


class Job(BaseModel):
    """One scheduled campaign.

    Attributes:
        id: ``S0001``, ``S0002``, ... in the order jobs were added.
        title: The campaign's title.
        request: What was scheduled: the plain-language request, or the campaign file's path.
        spec_yaml: The validated spec (seed included) as YAML, as it was when scheduled.
        lab_yaml: The lab file's text when scheduled; None runs the virtual lab.
        lab_source: Path of the lab file it was read from (for messages only).
        prior_csv: The prior data's text when scheduled (the spec's ``prior_data`` then names the
            copy written beside the campaign file); None without prior data.
        seed: The seed given when scheduling (the spec holds the seed that runs); None if not given.
        llm: LLM back end name.
        time_scale: Multiplier on simulated instrument durations the run uses, resolved when
            scheduled (``--time-scale``, else the lab file's ``time_scale``, else the virtual lab's).
        literature: Ground the campaign in the literature store.
        not_before: Earliest start (UTC).
        status: queued, running, finished, failed, stopped or cancelled.
        run_id: The run, once started.
        attempts: How many times a worker took the job (a resume after an interruption counts).
        worker: The worker that runs (or last ran) the job.
        heartbeat: The worker's last sign of life while running (UTC).
        message: The last thing that happened, in one line.
        created: When it was scheduled (UTC).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    request: str
    spec_yaml: str
    lab_yaml: str | None = None
    lab_source: str | None = None
    prior_csv: str | None = None
    seed: int | None = None
    llm: str | None = None
    time_scale: float = 0.01
    literature: bool = True
    not_before: dt.datetime
    status: JobStatus
    run_id: str | None = None
    attempts: int = 0
    worker: Worker | None = None
    heartbeat: dt.datetime | None = None
    message: str = ""
    created: dt.datetime

    @property
    def spec(self) -> CampaignSpec:
        """The campaign spec as scheduled."""
        return CampaignSpec.from_yaml(self.spec_yaml)

    @property
    def seq(self) -> int:
        """The job's number (``S0007`` is 7)."""
        return int(self.id[1:])


def _job_id(seq: int) -> str:
    return f"S{seq:04d}"


def _seq_of(job_id: str) -> int:
    """The number in ``S0007``, ``s7`` or ``7``.

    Raises:
        AthanorError: Not a job id.
    """
    text = job_id.strip().upper().removeprefix("S")
    if not text.isdigit():
        raise AthanorError(
            f"{job_id!r} is not a job id; job ids look like S0001 (list them with `athanor schedule list`)"
        )
    return int(text)


def _job(row: sqlite3.Row) -> Job:
    worker = (
        Worker(host=row["worker_host"], pid=row["worker_pid"], token=row["worker_token"] or "")
        if row["worker_host"] is not None
        else None
    )
    return Job(
        id=_job_id(row["seq"]),
        title=row["title"],
        request=row["request"],
        spec_yaml=row["spec_yaml"],
        lab_yaml=row["lab_yaml"],
        lab_source=row["lab_source"],
        prior_csv=row["prior_csv"],
        seed=row["seed"],
        llm=row["llm"],
        time_scale=row["time_scale"],
        literature=bool(row["literature"]),
        not_before=dt.datetime.fromisoformat(row["not_before"]),
        status=row["status"],
        run_id=row["run_id"],
        attempts=row["attempts"],
        worker=worker,
        heartbeat=_time(row["heartbeat"]),
        message=row["message"],
        created=dt.datetime.fromisoformat(row["created"]),
    )


class Schedule:
    """The persistent queue of scheduled campaigns.

    Every method opens its own connection, so one ``Schedule`` may be used from several threads
    (a worker's heartbeat thread, say) and several processes may share the database.

    Args:
        path: The database; default :func:`schedule_db`. Created on first use.
        timeout_s: Seconds to wait for another process's transaction to finish.

    Raises:
        AthanorError: The database was written by a newer athanor, or cannot be opened.
    """

    def __init__(self, path: Path | None = None, timeout_s: float = 30.0) -> None:
        self.path = Path(path) if path is not None else schedule_db()
        self.timeout_s = timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as connection:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise AthanorError(
                    f"{self.path} was written by a newer athanor (schedule version {version}); upgrade"
                    " athanor, or set ATHANOR_HOME to another folder"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        except sqlite3.Error as error:
            raise AthanorError(f"cannot open the schedule {self.path}: {error}; check ATHANOR_HOME") from None
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        return connection

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with ``BEGIN IMMEDIATE``; rolled back on any error."""
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()

    def _row(self, connection: sqlite3.Connection, job_id: str) -> sqlite3.Row:
        row = connection.execute("SELECT * FROM jobs WHERE seq = ?", (_seq_of(job_id),)).fetchone()
        if row is None:
            raise AthanorError(f"no scheduled job {job_id!r}; list jobs with `athanor schedule list`")
        return row

    # Adding, listing, cancelling.

    def add(
        self,
        spec: CampaignSpec,
        *,
        request: str,
        not_before: dt.datetime,
        lab_yaml: str | None = None,
        lab_source: str | None = None,
        prior_csv: str | None = None,
        seed: int | None = None,
        llm: str | None = None,
        time_scale: float = 0.01,
        literature: bool = True,
        now: dt.datetime | None = None,
    ) -> Job:
        """Queue a campaign; the spec and the lab text are stored as they are now.

        Args:
            spec: The validated spec (checked against the lab by the caller).
            request: What the user scheduled (request text or campaign file path).
            not_before: Earliest start; must carry a time zone.
            lab_yaml: The lab file's text; None for the virtual lab.
            lab_source: The lab file's path, for messages.
            prior_csv: The prior data's text (the spec's ``prior_data`` must then be
                :data:`PRIOR_FILE`, the name of the copy :func:`materialise` writes).
            seed: The seed given on the command line, if any.
            llm: LLM back end name.
            time_scale: Multiplier on simulated durations.
            literature: Ground the campaign in the literature store.
            now: The time to record as created (default: now).

        Raises:
            AthanorError: ``lab_yaml`` is not a valid lab description.
        """
        if lab_yaml is not None:
            _check_lab_text(lab_yaml, lab_source)
        if (prior_csv is not None) != (spec.prior_data == PRIOR_FILE):
            raise AthanorError(
                f"a job with prior data needs both its text and spec.prior_data = {PRIOR_FILE!r}"
            )
        with self._transaction() as connection:
            cursor = connection.execute(
                "INSERT INTO jobs (title, request, spec_yaml, lab_yaml, lab_source, prior_csv, seed, llm,"
                " time_scale, literature, not_before, status, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                (
                    spec.title,
                    request,
                    spec.to_yaml(),
                    lab_yaml,
                    lab_source,
                    prior_csv,
                    seed,
                    llm,
                    float(time_scale),
                    int(literature),
                    _iso(not_before),
                    _iso(now or _now()),
                ),
            )
            return _job(self._row(connection, _job_id(int(cursor.lastrowid or 0))))

    def list(self) -> list[Job]:
        """Every job, in the order they were added."""
        with contextlib.closing(self._connect()) as connection:
            return [_job(row) for row in connection.execute("SELECT * FROM jobs ORDER BY seq")]

    def get(self, job_id: str) -> Job:
        """The job ``job_id`` (``S0003``, ``s3`` or ``3``).

        Raises:
            AthanorError: No such job.
        """
        with contextlib.closing(self._connect()) as connection:
            return _job(self._row(connection, job_id))

    def cancel(self, job_id: str, now: dt.datetime | None = None) -> Job:
        """Cancel a queued or stopped job; it will not run (or be resumed by a worker).

        Raises:
            AthanorError: No such job, or it is neither queued nor stopped (a running one says how to
                stop it).
        """
        with self._transaction() as connection:
            job = _job(self._row(connection, job_id))
            if job.status == "running":
                worker = job.worker.describe() if job.worker else "a worker"
                pid = job.worker.pid if job.worker else "PID"
                run = job.run_id or "RUN"
                raise AthanorError(
                    f"job {job.id} is running (run {run}, worker {worker}); only a queued or stopped"
                    f" job can be cancelled. Stop the worker first (Ctrl-C, or `kill -TERM {pid}` on its"
                    f" host): the instruments go to their safe state and the job is stopped"
                )
            if job.status not in ("queued", "stopped"):
                raise AthanorError(
                    f"job {job.id} is {job.status}; only a queued or stopped job can be cancelled"
                    " (see `athanor schedule list`)"
                )
            stamp = (now or _now()).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
            connection.execute(
                "UPDATE jobs SET status = 'cancelled', message = ? WHERE seq = ?",
                (f"cancelled {stamp}", job.seq),
            )
            return _job(self._row(connection, job.id))

    # Working the queue.

    def next_due(self) -> Job | None:
        """The queued job that runs next (it may not be due yet), or None when none is queued."""
        with contextlib.closing(self._connect()) as connection:
            row = connection.execute(
                "SELECT * FROM jobs WHERE status = 'queued' ORDER BY not_before, seq LIMIT 1"
            ).fetchone()
        return None if row is None else _job(row)

    def claim(self, worker: Worker, now: dt.datetime | None = None) -> Job | None:
        """Take the next due job (earliest ``not_before``, then lowest id) and mark it running.

        Returns:
            The claimed job, or None when no queued job is due.
        """
        stamp = _iso(now or _now())
        with self._transaction() as connection:
            row = connection.execute(
                "SELECT seq FROM jobs WHERE status = 'queued' AND not_before <= ?"
                " ORDER BY not_before, seq LIMIT 1",
                (stamp,),
            ).fetchone()
            if row is None:
                return None
            connection.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, worker_host = ?,"
                " worker_pid = ?, worker_token = ?, heartbeat = ?, message = ? WHERE seq = ?",
                (worker.host, worker.pid, worker.token, stamp, f"taken by {worker.describe()}", row[0]),
            )
            return _job(self._row(connection, _job_id(row[0])))

    def started(self, job_id: str, worker: Worker, run_id: str) -> bool:
        """Record the run a running job started.

        Returns:
            False if the job is no longer this worker's (another worker adopted it).
        """
        return self._update_own(job_id, worker, "run_id = ?", (run_id,))

    def heartbeat(
        self, job_id: str, worker: Worker, message: str | None = None, now: dt.datetime | None = None
    ) -> bool:
        """The worker is alive: stamp the job's heartbeat (and its message, if given).

        Returns:
            False if the job is no longer this worker's.
        """
        stamp = _iso(now or _now())
        if message is None:
            return self._update_own(job_id, worker, "heartbeat = ?", (stamp,))
        return self._update_own(job_id, worker, "heartbeat = ?, message = ?", (stamp, message))

    def record_outcome(
        self, job_id: str, worker: Worker, status: str, message: str, now: dt.datetime | None = None
    ) -> bool:
        """How a running job ended: ``finished``, ``failed``, ``stopped``, or ``queued`` again.

        ``queued`` puts back a job that was stopped before its run began (nothing ran).

        Returns:
            False if the job is no longer this worker's (nothing was recorded).

        Raises:
            ValueError: ``status`` is not an outcome.
        """
        if status not in _OUTCOMES:
            raise ValueError(f"status must be one of {', '.join(sorted(_OUTCOMES))}, got {status!r}")
        stamp = _iso(now or _now())
        return self._update_own(
            job_id, worker, "status = ?, message = ?, heartbeat = ?", (status, message, stamp)
        )

    def _update_own(self, job_id: str, worker: Worker, assignments: str, values: tuple[object, ...]) -> bool:
        with self._transaction() as connection:
            cursor = connection.execute(
                f"UPDATE jobs SET {assignments} WHERE seq = ? AND status = 'running' AND worker_token = ?",
                (*values, _seq_of(job_id), worker.token),
            )
            return cursor.rowcount == 1

    def interrupted(
        self,
        worker: Worker | None = None,
        *,
        stale_after_s: float = STALE_AFTER_S,
        now: dt.datetime | None = None,
    ) -> list[Job]:
        """Running jobs whose worker is gone, in the order they would run.

        A job was interrupted when its worker process no longer exists on this host, or its
        heartbeat is older than ``stale_after_s``. A ``worker`` that holds the :class:`WorkerLock`
        passes itself: then every job running on this host under another worker was interrupted
        (no other worker can be alive here; this also catches a pid reused after a reboot).

        Args:
            worker: The calling worker, if it holds the worker lock.
            stale_after_s: Heartbeat age, s, after which a job's worker counts as gone.
            now: The time to judge heartbeats by (default: now).
        """
        moment = now or _now()
        host = socket.gethostname()
        with contextlib.closing(self._connect()) as connection:
            rows = connection.execute(
                "SELECT * FROM jobs WHERE status = 'running' ORDER BY not_before, seq"
            ).fetchall()
        found = []
        for job in map(_job, rows):
            owner = job.worker
            if worker is not None and owner is not None and owner.token == worker.token:
                continue
            stale = job.heartbeat is None or (moment - job.heartbeat).total_seconds() > stale_after_s
            here = owner is not None and owner.host == host
            gone = owner is None or (here and (worker is not None or not _pid_alive(owner.pid)))
            if gone or stale:
                found.append(job)
        return found

    def reclaim(self, worker: Worker, now: dt.datetime | None = None) -> Job | None:
        """Take the oldest stopped job (SIGTERM, Ctrl-C, a shutdown) to resume it, and mark it running.

        Returns:
            The job, now this worker's; None when no job is stopped.
        """
        stamp = _iso(now or _now())
        with self._transaction() as connection:
            row = connection.execute(
                "SELECT * FROM jobs WHERE status = 'stopped' ORDER BY not_before, seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            connection.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, worker_host = ?,"
                " worker_pid = ?, worker_token = ?, heartbeat = ?, message = ? WHERE seq = ?",
                (worker.host, worker.pid, worker.token, stamp, f"resumed by {worker.describe()}", row["seq"]),
            )
            return _job(self._row(connection, _job_id(row["seq"])))

    def adopt(self, job: Job, worker: Worker, now: dt.datetime | None = None) -> Job | None:
        """Take over an interrupted job (as :meth:`interrupted` found it) to resume it.

        Returns:
            The job, now this worker's; None if it changed since it was found (another worker
            took it, or it ended).
        """
        stamp = _iso(now or _now())
        previous = job.worker.describe() if job.worker else "an unknown worker"
        with self._transaction() as connection:
            row = self._row(connection, job.id)
            expected = job.worker.token if job.worker else None
            if row["status"] != "running" or row["worker_token"] != expected:
                return None
            connection.execute(
                "UPDATE jobs SET attempts = attempts + 1, worker_host = ?, worker_pid = ?, worker_token = ?,"
                " heartbeat = ?, message = ? WHERE seq = ?",
                (
                    worker.host,
                    worker.pid,
                    worker.token,
                    stamp,
                    f"interrupted ({previous} gone); taken over by {worker.describe()}",
                    job.seq,
                ),
            )
            return _job(self._row(connection, job.id))


def _check_lab_text(text: str, source: str | None) -> None:
    where = source or "lab file"
    try:
        LabDescription.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as error:
        detail = format_validation_error(error) if isinstance(error, ValidationError) else str(error)
        raise SpecError(f"{where}: not a valid lab description:\n{detail}") from None


def materialise(job: Job, folder: Path | None = None) -> tuple[Path, Path | None]:
    """Write a job's snapshot out as files a run can read.

    Args:
        job: The job.
        folder: Where to write; default ``$ATHANOR_HOME/schedule/<job id>/``.

    Returns:
        The campaign file, and the lab file (None for the virtual lab).
    """
    folder = Path(folder) if folder is not None else schedule_folder() / job.id
    folder.mkdir(parents=True, exist_ok=True)
    campaign = folder / "campaign.yaml"
    campaign.write_text(job.spec_yaml, encoding="utf-8")
    if job.prior_csv is not None:
        (folder / PRIOR_FILE).write_text(job.prior_csv, encoding="utf-8")
    if job.lab_yaml is None:
        return campaign, None
    lab = folder / "lab.yaml"
    lab.write_text(job.lab_yaml, encoding="utf-8")
    return campaign, lab


class WorkerLock:
    """The one-worker-at-a-time lock: an exclusive ``flock`` on ``schedule.lock`` beside the queue.

    The lock goes with the process (see :class:`runs.locks.FileLock`): a worker that dies (power cut,
    ``kill -9``) releases it, so the next worker can start. The file holds the holder's pid and host
    for the message a refused worker prints.

    Args:
        path: The lock file; default ``$ATHANOR_HOME/schedule.lock``.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else athanor_home() / "schedule.lock"
        self._lock = FileLock(self.path)

    def acquire(self) -> None:
        """Take the lock, or refuse at once.

        Raises:
            AthanorError: Another worker holds it (the message names its pid and host).
        """
        try:
            self._lock.acquire()
        except LockHeld as held:
            holder = _pid_and_host(held.holder) or "another process"
            raise AthanorError(
                f"another schedule worker ({holder}) is already working the queue in {self.path.parent};"
                " only one worker may drive the instruments. Let it be, or stop it first (Ctrl-C, or"
                " `kill -TERM PID`)"
            ) from None

    def release(self) -> None:
        """Give the lock up (and clear the holder's name)."""
        self._lock.release()

    def holder(self) -> str | None:
        """Who holds the lock (``pid 4242 on labpc``), while some process does."""
        holder = self._lock.holder()
        return None if holder is None else _pid_and_host(holder)

    def __enter__(self) -> WorkerLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _pid_and_host(holder: dict[str, Any]) -> str | None:
    return f"pid {holder['pid']} on {holder.get('host', '?')}" if "pid" in holder else None
