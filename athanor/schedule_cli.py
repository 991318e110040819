"""The ``athanor schedule`` commands: queue campaigns now, run them unattended later.

``athanor schedule add`` reads and checks a campaign at once (a bad request, spec or lab is refused
then, not at 2 a.m.) and queues a snapshot of it; ``athanor schedule work`` takes the worker lock,
resumes campaigns a crash or power cut interrupted, then runs due campaigns one after another. Each
job start and end (and each decision of the PI) is printed as one line and appended to
``$ATHANOR_HOME/schedule.log``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.table import Table

from athanor.commandline import CommandLine, TimeScaleOption
from athanor.errors import AthanorError, SpecError, format_validation_error
from athanor.spec import CampaignSpec
from athanor.stopping import StopControl
from athanor.terminal import make_console
from runs.scheduler import HEARTBEAT_S, PRIOR_FILE, Job, Schedule, Worker, WorkerLock, materialise
from runs.store import athanor_home, runs_root, summarise_run

if TYPE_CHECKING:
    from athanor.app import CampaignResult, TimeScale

__all__ = ["PAST_GRACE", "parse_when", "schedule_app", "start_time"]

schedule_app = CommandLine(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Queue campaigns to run unattended (overnight), and work the queue.",
)

#: Name of the worker's log inside ``$ATHANOR_HOME``.
LOG_FILE = "schedule.log"
_WHEN_FORMS = (
    "HH:MM (the next such local time, e.g. 22:30), an ISO date-time (2026-11-28T02:00, local time"
    " unless it names a zone), or a delay such as +2h, +30m or +1h30m"
)
#: How long ago an ``--at`` time may be and still mean now.
PAST_GRACE = dt.timedelta(minutes=1)
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
_DELAY = re.compile(r"^\+\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m(?:in)?)?$")
_STYLE = {
    "queued": "",
    "running": "cyan",
    "finished": "green",
    "failed": "bold red",
    "stopped": "yellow",
    "cancelled": "dim",
}
#: Seconds between checks for a stop request while the worker waits for a due job.
_TICK_S = 0.2


def parse_when(text: str, *, now: dt.datetime | None = None, option: str = "--at") -> dt.datetime:
    """The moment a ``--at`` (or ``--until``) value names, in UTC.

    Args:
        text: ``HH:MM`` (the next such wall-clock time: later today, else tomorrow), an ISO date-time
            (naive ones are local time), ``now``, or ``+2h`` / ``+30m`` / ``+1h30m``.
        now: The current time, with a zone (default: now, in the machine's local zone); ``HH:MM``
            and naive ISO times are read in its zone.
        option: The option's name, for the message.

    Raises:
        AthanorError: The text is none of the accepted forms (the message lists them).
    """
    local = now is None
    now = now or dt.datetime.now().astimezone()
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    value = text.strip()

    def attach(naive: dt.datetime) -> dt.datetime:
        # the machine's rules (daylight saving included) when reading the real local time
        return naive.astimezone() if local else naive.replace(tzinfo=now.tzinfo)

    if value.lower() == "now":
        return now.astimezone(dt.UTC)
    clock = _CLOCK.match(value)
    if clock:
        hour, minute = int(clock.group(1)), int(clock.group(2))
        if hour > 23 or minute > 59:
            raise AthanorError(
                f"{option} {text!r}: {hour:02d}:{minute:02d} is not a time of day; use 00:00–23:59"
            )
        wall = now.replace(tzinfo=None)
        moment = wall.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if moment <= wall:
            moment += dt.timedelta(days=1)
        return attach(moment).astimezone(dt.UTC)
    delay = _DELAY.match(value)
    if delay and (delay.group(1) or delay.group(2)):
        hours, minutes = int(delay.group(1) or 0), int(delay.group(2) or 0)
        return (now + dt.timedelta(hours=hours, minutes=minutes)).astimezone(dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise AthanorError(f"{option} {text!r} is not a time I can read; use {_WHEN_FORMS}") from None
    return (moment if moment.tzinfo else attach(moment)).astimezone(dt.UTC)


def start_time(text: str | None, *, now: dt.datetime | None = None) -> dt.datetime:
    """When a job added with ``--at text`` may start, in UTC; now when ``text`` is None.

    A time up to :data:`PAST_GRACE` ago counts as now (the minute typed as it turns).

    Args:
        text: The ``--at`` value (see :func:`parse_when`), or None.
        now: The current time, with a zone (default: now, in the machine's local zone).

    Raises:
        AthanorError: The text cannot be read, or names a time in the past; the message gives the
            current time and says to use ``--at now`` to start at once.
    """
    current = now or dt.datetime.now().astimezone()
    if text is None:
        return current.astimezone(dt.UTC)
    moment = parse_when(text, now=now, option="--at")
    if moment < current - PAST_GRACE:
        raise AthanorError(
            f"--at {text!r} is {_duration(current - moment)} in the past ({_local(moment)}; it is now"
            f" {_local(current)}); give a later time, or --at now to start as soon as a worker is free"
        )
    return moment


def _duration(span: dt.timedelta) -> str:
    """A span of time as ``45 min``, ``2 h 05 min`` or ``3 days 4 h``."""
    minutes = max(round(span.total_seconds() / 60), 1)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} day{'s' if days > 1 else ''}" + (f" {hours} h" if hours else "")
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _local(moment: dt.datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _fail(ctx: typer.Context, error: BaseException) -> NoReturn:
    err_console = make_console(stderr=True)
    if ctx.find_root().params.get("debug"):
        err_console.print_exception()
    first, *rest = (str(error) or type(error).__name__).splitlines()
    err_console.print(f"[bold red]error:[/] {first}", highlight=False)
    for line in rest:
        err_console.print(f"  {line}", highlight=False)
    raise typer.Exit(2)


def _snapshot(spec: CampaignSpec) -> CampaignSpec:
    """The spec as the worker will read it back; refuses one that would not read back."""
    try:
        return CampaignSpec.from_yaml(spec.to_yaml())
    except ValidationError as error:
        raise SpecError(format_validation_error(error, prefix="spec.")) from None


@schedule_app.command("add")
def add(
    ctx: typer.Context,
    request: Annotated[
        str,
        typer.Argument(metavar="REQUEST_OR_FILE", help="A plain-language request, or a campaign YAML file."),
    ],
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="WHEN",
            help=f"When to start: {_WHEN_FORMS}, or now (the default). A time in the past is refused.",
        ),
    ] = None,
    lab: Annotated[
        Path | None,
        typer.Option(
            metavar="LAB.yaml", help="A lab description (its content is kept); default: virtual lab."
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(metavar="N", help="Seed every random stream (reproducible run).")
    ] = None,
    llm: Annotated[
        str | None,
        typer.Option("--llm", metavar="BACKEND", help="LLM back end: offline (default), openai or mock."),
    ] = None,
    time_scale: TimeScaleOption = None,
    literature: Annotated[bool, typer.Option(help="Ground the campaign in the literature store.")] = True,
    prior: Annotated[
        Path | None,
        typer.Option(
            "--prior", metavar="FILE.csv", help="A CSV of earlier experiments (its content is kept)."
        ),
    ] = None,
) -> None:
    """Check a campaign now and queue a snapshot of it to run unattended."""
    from athanor.app import RunOptions, check_against_lab, llm_from, read_prior, read_spec, resolve_lab

    options = RunOptions(llm=llm, seed=seed, lab_file=lab, time_scale=time_scale, literature=literature)
    try:
        not_before = start_time(at)
        llm_port = llm_from(options)
        spec, prior_data = read_prior(read_spec(request, llm_port, seed), request, prior)
        # the worker reads the CSV as it is now, from a copy beside the campaign's snapshot
        if prior_data is not None:
            spec = spec.model_copy(update={"prior_data": PRIOR_FILE})
        spec = _snapshot(spec)
        described, scale = resolve_lab(spec, options)
        check_against_lab(spec, described)
        lab_text = None if lab is None else _read_lab(lab)
        job = Schedule().add(
            spec,
            request=request,
            not_before=not_before,
            lab_yaml=lab_text,
            lab_source=str(lab.absolute()) if lab is not None else None,
            prior_csv=None if prior_data is None else prior_data.content,
            seed=seed,
            llm=llm_port.name,
            time_scale=described.time_scale,  # the time scale the run will use, resolved now
            literature=literature,
        )
    except AthanorError as error:
        _fail(ctx, error)
    _describe(job, spec, scale)


def _read_lab(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError(f"lab file {path}: cannot be read ({error.strerror}); check the path") from None


def _describe(job: Job, spec: CampaignSpec, scale: TimeScale) -> None:
    """Print what a new job will run, and when, and at which time scale."""
    print(f"scheduled {job.id}: {spec.title}")
    now = dt.datetime.now(dt.UTC)
    if job.not_before <= now:
        start = "now (as soon as a worker is free)"
    else:
        start = f"{_local(job.not_before)} (in {_duration(job.not_before - now)})"
    print(f"  starts:  {start}")
    objectives = "; ".join(o.describe() for o in spec.objectives)
    budget = spec.budget
    print(f"  runs:    {', '.join(spec.component_names)}; {objectives}")
    print(f"           {budget.experiments} experiments, batches of {budget.batch_size}; seed {spec.seed}")
    print(f"  lab:     {f'{job.lab_source} (its content as of now)' if job.lab_source else 'virtual lab'}")
    print(f"           {scale.message}")
    print(f"  llm:     {job.llm}; literature {'on' if job.literature else 'off'}")
    holder = WorkerLock().holder()
    if holder:
        print(f"  worker:  {holder} will run it")
    else:
        print("  worker:  none running; start one with `athanor schedule work` (it runs due jobs in order)")


@schedule_app.command("list")
def list_jobs(ctx: typer.Context) -> None:
    """List scheduled campaigns, in the order they were added."""
    try:
        schedule = Schedule()
        jobs = schedule.list()
        gone = {job.id for job in schedule.interrupted()}
    except AthanorError as error:
        _fail(ctx, error)
    console = make_console()
    if not jobs:
        console.print("no scheduled campaigns: add one with `athanor schedule add REQUEST_OR_FILE --at WHEN`")
        return
    table = Table(title="schedule", title_justify="left")
    for column in ("id", "status", "not before"):
        table.add_column(column, no_wrap=True)
    for column in ("title", "run", "message"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        status = f"[{_STYLE[job.status]}]{job.status}[/]" if _STYLE[job.status] else job.status
        if job.id in gone:
            status = "[yellow]interrupted[/]"
        table.add_row(job.id, status, _local(job.not_before), job.title, job.run_id or "", job.message)
    console.print(table)


@schedule_app.command("cancel")
def cancel(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id, e.g. S0003.")],
) -> None:
    """Cancel a queued campaign (a running one is stopped by stopping the worker)."""
    try:
        job = Schedule().cancel(job_id)
    except AthanorError as error:
        _fail(ctx, error)
    print(f"cancelled {job.id}: {job.title}")


@schedule_app.command("work")
def work(
    ctx: typer.Context,
    until: Annotated[
        str | None,
        typer.Option("--until", metavar="WHEN", help=f"Take no new job after this time: {_WHEN_FORMS}."),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Exit when no job is due (for cron).")] = False,
    poll: Annotated[
        float,
        typer.Option(
            "--poll", metavar="SECONDS", min=0.1, help="Seconds between looks at the queue while none is due."
        ),
    ] = 30.0,
    on_stop: Annotated[
        str,
        typer.Option(
            "--on-stop",
            metavar="finish|abort",
            help="On SIGTERM or Ctrl-C mid-campaign: let the running instrument commands finish, or"
            " abort them at once.",
        ),
    ] = "finish",
    stop_grace: Annotated[
        float,
        typer.Option("--stop-grace", metavar="SECONDS", help="Longest wait for running commands on a stop."),
    ] = 60.0,
) -> None:
    """Work the queue: resume interrupted and stopped campaigns, then run due ones in order, unattended.

    Only one worker runs at a time. SIGTERM or Ctrl-C stops the current campaign with the instruments
    in their safe state and exits; the next worker resumes it (`athanor schedule cancel ID` to keep it
    stopped).
    """
    lock = WorkerLock()
    try:
        until_at = parse_when(until, option="--until") if until is not None else None
        stop = StopControl(on_stop, stop_grace, raising=False)  # type: ignore[arg-type]  # checked there
    except ValueError as error:
        _fail(ctx, AthanorError(f"--on-stop / --stop-grace: {error}"))
    except AthanorError as error:
        _fail(ctx, error)
    try:
        lock.acquire()
    except AthanorError as error:
        _fail(ctx, error)
    try:
        worker = _Worker(Schedule(), athanor_home() / LOG_FILE, until_at, stop)
        with worker.stop.installed():
            worker.loop(once=once, poll_s=poll)
    except AthanorError as error:
        _fail(ctx, error)
    finally:
        lock.release()
    if worker.stop_signal == "SIGINT":
        raise typer.Exit(130)


class _Heartbeat:
    """Stamps a running job's heartbeat (and its latest message) from a thread."""

    def __init__(self, schedule: Schedule, job_id: str, worker: Worker, interval_s: float) -> None:
        self.schedule, self.job_id, self.worker, self.interval_s = schedule, job_id, worker, interval_s
        self.message: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(AthanorError, sqlite3.Error):  # a missed beat is retried at the next
                self.schedule.heartbeat(self.job_id, self.worker, self.message)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class _Worker:
    """Works the queue: one campaign at a time, each start and end logged as one line."""

    def __init__(
        self, schedule: Schedule, log_path: Path, until: dt.datetime | None, stop: StopControl
    ) -> None:
        self.schedule = schedule
        self.me = Worker.current()
        self.log_path = log_path
        self.until = until
        # SIGTERM and SIGINT: mid-campaign they stop it as `athanor run` stops (see athanor.stopping);
        # between campaigns the worker takes no new job
        self.stop = stop
        self.stop.on_notice = self.log
        self._log_lock = threading.Lock()

    @property
    def stop_signal(self) -> str | None:
        """The signal that asked the worker to stop; None while none has."""
        return self.stop.signal_name

    @property
    def in_campaign(self) -> bool:
        """Whether a campaign is running (a signal then stops it where it is)."""
        return self.stop.raising

    @in_campaign.setter
    def in_campaign(self, running: bool) -> None:
        self.stop.raising = running

    def log(self, text: str) -> None:
        """Print one line and append it, time-stamped, to the schedule log."""
        line = f"{dt.datetime.now().astimezone():%Y-%m-%d %H:%M:%S} {text}"
        with self._log_lock:
            print(line, flush=True)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    def loop(self, *, once: bool, poll_s: float) -> None:
        """Resume interrupted and stopped jobs, then run due ones; until stopped, or ``once`` and none due."""
        limit = f", taking no new job after {_local(self.until)}" if self.until else ""
        self.log(f"worker {self.me.describe()} started{limit}")
        while self.stop_signal is None:
            for job in self.schedule.interrupted(self.me):
                if self.stop_signal is not None:
                    break
                self._take_over(job)
            if self.stop_signal is not None:
                break
            stopped = self.schedule.reclaim(self.me)
            if stopped is not None:
                self._continue(stopped, f"{stopped.id} was stopped ({stopped.message or 'by a signal'})")
                continue
            if self.until is not None and dt.datetime.now(dt.UTC) >= self.until:
                self.log(f"past {_local(self.until)} (--until): taking no new job")
                break
            job = self.schedule.claim(self.me)
            if job is not None:
                self._run(job, resume=False)
                continue
            upcoming = self.schedule.next_due()
            if once:
                after = f"; next: {upcoming.id} at {_local(upcoming.not_before)}" if upcoming else ""
                self.log(f"nothing due{after}; worker exits (--once)")
                break
            self._wait(poll_s, upcoming)
        if self.stop_signal is not None:
            self.log(f"worker stopped by {self.stop_signal}")

    def _wait(self, poll_s: float, upcoming: Job | None) -> None:
        """Sleep until the next look at the queue: ``poll_s`` later, or when the next job is due."""
        deadline = time.monotonic() + poll_s
        if upcoming is not None:
            due_in = (upcoming.not_before - dt.datetime.now(dt.UTC)).total_seconds()
            deadline = min(deadline, time.monotonic() + max(due_in, 0.0))
        while self.stop_signal is None and time.monotonic() < deadline:
            time.sleep(min(_TICK_S, max(deadline - time.monotonic(), 0.0)))

    def _take_over(self, job: Job) -> None:
        """Resume a job whose worker is gone (a crash, a power cut)."""
        previous = job.worker.describe() if job.worker else "an unknown worker"
        adopted = self.schedule.adopt(job, self.me)
        if adopted is None:
            return
        self._continue(adopted, f"{job.id} was interrupted ({previous} gone)")

    def _continue(self, job: Job, why: str) -> None:
        """Resume a job this worker now holds, from its run's last checkpoint (or start it)."""
        if job.run_id is None:
            self.log(f"{why} before its run began: starting it again")
            self._run(job, resume=False)
            return
        run_dir = runs_root() / job.run_id
        if not run_dir.is_dir():
            self._end(job, "failed", f"its run folder {run_dir} is gone; nothing to resume")
            return
        if summarise_run(run_dir).status == "finished":
            self._end(job, "finished", f"run {job.run_id} had already finished")
            return
        self.log(f"{why}: resuming run {job.run_id}")
        self._run(job, resume=True)

    def _end(self, job: Job, status: str, message: str) -> None:
        self.schedule.record_outcome(job.id, self.me, status, message)
        self.log(f"{job.id} {status}: {message}")

    def _run(self, job: Job, *, resume: bool) -> None:
        """Run (or resume) one job's campaign and record how it ended."""
        import athanor.app as app_module

        heartbeat = _Heartbeat(self.schedule, job.id, self.me, HEARTBEAT_S)
        state: dict[str, Any] = {"run_id": job.run_id, "done": 0}
        total = job.spec.budget.experiments

        def on_start(run_dir: Path, spec: CampaignSpec) -> None:
            state["run_id"] = run_dir.name
            if not resume:
                self.schedule.started(job.id, self.me, run_dir.name)
            verb = "resumed" if resume else "started"
            self.log(f"{job.id} {verb}: run {run_dir.name} — {spec.title}, {total} experiments")

        def on_event(event: dict[str, Any]) -> None:
            kind, payload = event["kind"], event["payload"]
            if kind == "observation":
                state["done"] += 1
                heartbeat.message = f"running: {state['done']} experiments done this attempt, of {total}"
            elif kind == "decision":
                step = f"iteration {payload['iteration']}: {payload['action']} — {payload['reason']}"
                self.log(f"{job.id} {step}")
            elif kind == "instrument_fault":
                self.log(f"{job.id} instrument fault: {payload.get('instrument')}: {payload.get('reason')}")

        self.in_campaign = True
        try:
            if self.stop_signal is not None:  # asked to stop just before the campaign began
                raise KeyboardInterrupt
            campaign, lab_file = materialise(job)
            options = app_module.RunOptions(
                llm=job.llm,
                lab_file=lab_file,
                time_scale=job.time_scale,
                literature=job.literature,
                stop=self.stop,
                wait_for_lab=True,  # an interactive campaign on the same lab goes first
                on_wait=lambda line: self.log(f"{job.id} {line}"),
            )
            with heartbeat:
                if resume:
                    result = app_module.resume(str(job.run_id), options, on_event=on_event, on_start=on_start)
                else:
                    result = app_module.run(str(campaign), options, on_event=on_event, on_start=on_start)
                self.in_campaign = False
        except KeyboardInterrupt:
            self.in_campaign = False
            self.stop.signal_name = self.stop.signal_name or "SIGINT"
            self._stopped(job, state["run_id"])
            return
        except Exception as error:  # a failing campaign must not stop the queue
            self.in_campaign = False
            self._failed(job, state["run_id"], error)
            return
        finally:
            self.in_campaign = False
        self._finished(job, result)

    def _stopped(self, job: Job, run_id: str | None) -> None:
        by = self.stop_signal
        if run_id is None:
            self._end(job, "queued", f"stopped by {by} before its run began; the next worker runs it")
            return
        self._end(
            job,
            "stopped",
            f"stopped by {by}: instruments in their safe state; the next worker resumes run {run_id}"
            f" (`athanor schedule cancel {job.id}` keeps it stopped)",
        )

    def _failed(self, job: Job, run_id: str | None, error: Exception) -> None:
        text = str(error).strip().splitlines()
        reason = text[0] if text else type(error).__name__
        if not isinstance(error, AthanorError):
            reason = f"{type(error).__name__}: {reason}"
        where = f" (run {run_id}; see `athanor show {run_id}`)" if run_id else ""
        self._end(job, "failed", reason + where)

    def _finished(self, job: Job, result: CampaignResult) -> None:
        summary = result.summary
        unit = result.spec.primary_objective.unit
        best = summary.get("best_value")
        best_text = "no successful experiment" if best is None else f"best {best:.4g} {unit}".rstrip()
        if best is not None and summary.get("best_experiment"):
            best_text += f" ({summary['best_experiment']})"
        message = f"{summary.get('experiments')} experiments, {summary.get('failed')} failed, {best_text}"
        self.schedule.record_outcome(job.id, self.me, "finished", message)
        self.log(f"{job.id} finished: run {result.run_dir.name}: {message}; report {result.report}")
