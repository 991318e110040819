"""Where runs live, and finding them again: ``$ATHANOR_HOME/runs/<run id>/``.

A run's status is read from its event log. The last of these events decides it:

- ``run_started`` / ``run_resumed``: running (or ``stopped`` when no process holds the log open any
  more: the run was interrupted without a record and can be resumed);
- ``run_finished``: finished; ``run_failed``: failed; ``run_stopped``: stopped.

Its hash chain is checked too (:func:`runs.eventlog.verify_log`): a run whose log was altered is
listed as such whatever its status. ``observations.csv`` is not part of the chain; compare it with
the log's ``observation`` events with :func:`check_observations` (:mod:`runs.audit` checks the rest
of the folder, and the chain's end).
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from athanor.errors import AthanorError
from athanor.models import Observation
from athanor.settings import athanor_home
from athanor.spec import CampaignSpec
from runs.context import EVENTS_FILE
from runs.eventlog import CorruptLogError, is_being_written, read_events, verify_log
from runs.manifest import MANIFEST_FILE, read_manifest
from runs.observations import OBSERVATION, observation_columns, observation_row, read_observations

__all__ = [
    "OBSERVATION",
    "OBSERVATIONS_FILE",
    "STATUS_BY_KIND",
    "ObservationsCheck",
    "RunSummary",
    "athanor_home",
    "check_observations",
    "create_run_dir",
    "list_runs",
    "resolve_run",
    "runs_root",
    "summarise_run",
]

#: Name of the observations table inside a run folder.
OBSERVATIONS_FILE = "observations.csv"
#: Event kinds that set a run's status, and the status each one sets.
STATUS_BY_KIND = {
    "run_started": "running",
    "run_resumed": "running",
    "run_finished": "finished",
    "run_failed": "failed",
    "run_stopped": "stopped",
}

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MAX_SUGGESTIONS = 5


@dataclass(frozen=True)
class RunSummary:
    """One line of ``athanor runs``.

    Attributes:
        run_id: The run id (the folder's name).
        path: The run folder.
        created: When the run was created (UTC); None if unknown.
        title: Campaign title ("" if unknown).
        status: ``running``, ``finished``, ``failed`` or ``stopped``.
        experiments_done: Finished experiments, failed ones included.
        best_value: Best successful value of the primary objective; None before any.
        objective: Name of the primary objective; None if unknown.
        unit: Unit of the objective ("" if none).
        problem: Why part of the run could not be read ("" when all was readable).
        verified: Whether the event log's hash chain is intact; None when the run has no log. The
            last line of a log being written may be incomplete without counting as broken.
        chain_problem: Where and why the chain is broken ("" when ``verified`` is not False).
        events: Events in the log (0 without one, or when it cannot be read).
    """

    run_id: str
    path: Path
    created: dt.datetime | None
    title: str
    status: str
    experiments_done: int
    best_value: float | None
    objective: str | None
    unit: str = ""
    problem: str = ""
    verified: bool | None = None
    chain_problem: str = ""
    events: int = 0

    def to_json(self) -> dict[str, Any]:
        """The summary as ``athanor runs --json`` prints it (the README documents the shape)."""
        return {
            "run_id": self.run_id,
            "path": str(self.path),
            "created": self.created.isoformat() if self.created else None,
            "title": self.title,
            "status": self.status,
            "verified": self.verified,
            "chain_problem": self.chain_problem,
            "events": self.events,
            "experiments_done": self.experiments_done,
            "objective": self.objective,
            "best_value": self.best_value,
            "unit": self.unit,
            "problem": self.problem,
        }

    @property
    def shown_status(self) -> str:
        """The status as listed: ``status``, with ``(chain broken)`` when the log was altered."""
        return f"{self.status} (chain broken)" if self.verified is False else self.status


def runs_root() -> Path:
    """The folder holding one folder per run."""
    return athanor_home() / "runs"


def create_run_dir(run_id: str) -> Path:
    """Create the folder of a new run.

    Raises:
        AthanorError: ``run_id`` is not a plain folder name, or a run with that id exists.
    """
    if not _RUN_ID.match(run_id):
        raise AthanorError(
            f"run id {run_id!r} is not usable as a folder name; use letters, digits, '.', '_' and '-'"
            " (new_run_id makes one)"
        )
    path = runs_root() / run_id
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()
    except FileExistsError:
        raise AthanorError(f"a run called {run_id} already exists at {path}; choose a new run id") from None
    return path


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and ((path / MANIFEST_FILE).exists() or (path / EVENTS_FILE).exists())


def _run_ids() -> list[str]:
    root = runs_root()
    if not root.is_dir():
        return []
    return sorted(entry.name for entry in root.iterdir() if _is_run_dir(entry))


def _parse_time(text: Any) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _status(events: list[dict[str, Any]], events_path: Path) -> str:
    status = "running"
    for event in events:
        status = STATUS_BY_KIND.get(event["kind"], status)
    if status == "running" and events_path.exists() and is_being_written(events_path) is False:
        return "stopped"
    return status


def _observations(
    run_dir: Path, spec: CampaignSpec | None, events: list[dict[str, Any]]
) -> list[Observation]:
    csv_path = run_dir / OBSERVATIONS_FILE
    if spec is not None and csv_path.exists():
        return read_observations(csv_path, spec)
    found = []
    for event in events:
        if event["kind"] == OBSERVATION:
            try:
                found.append(Observation.model_validate(event["payload"]))
            except ValidationError:
                continue
    return found


def _best(observations: list[Observation], name: str, direction: str) -> float | None:
    values = [
        o.values[name]
        for o in observations
        if o.status == "ok" and name in o.values and math.isfinite(o.values[name])
    ]
    if not values:
        return None
    return max(values) if direction == "maximise" else min(values)


def _chain(events_path: Path) -> tuple[bool | None, str]:
    """Whether a run's log verifies, and where it breaks; a log being written may end mid-line."""
    if not events_path.exists():
        return None, ""
    check = verify_log(events_path)
    if check.ok:
        return True, ""
    # the last line of a log being written is incomplete until its newline is written
    data = events_path.read_bytes()
    last_line_torn = not data.endswith(b"\n") and check.line == data.count(b"\n") + 1
    if last_line_torn and is_being_written(events_path):
        return True, ""
    return False, f"seq {check.first_bad_seq} (line {check.line}): {check.reason}"


def summarise_run(run_dir: Path) -> RunSummary:
    """The summary of one run folder; parts that cannot be read are named in ``problem``."""
    run_dir = Path(run_dir)
    problems: list[str] = []
    manifest: dict[str, Any] = {}
    spec: CampaignSpec | None = None
    if (run_dir / MANIFEST_FILE).exists():
        try:
            manifest = read_manifest(run_dir)
            spec = CampaignSpec.model_validate(manifest.get("spec"))
        except (AthanorError, ValidationError) as exc:
            problems.append(f"manifest: {exc}")
    events_path = run_dir / EVENTS_FILE
    events: list[dict[str, Any]] = []
    if events_path.exists():
        try:
            events = read_events(events_path)
        except CorruptLogError as exc:
            problems.append(str(exc))
    try:
        observations = _observations(run_dir, spec, events)
    except AthanorError as exc:
        problems.append(str(exc))
        observations = []
    created = _parse_time(manifest.get("created")) or (_parse_time(events[0]["time"]) if events else None)
    objective = spec.primary_objective if spec is not None else None
    verified, chain_problem = _chain(events_path)
    return RunSummary(
        run_id=run_dir.name,
        path=run_dir,
        created=created,
        title=spec.title if spec is not None else "",
        status=_status(events, events_path),
        experiments_done=len(observations),
        best_value=_best(observations, objective.name, objective.direction) if objective else None,
        objective=objective.name if objective else None,
        unit=objective.unit if objective else "",
        problem="; ".join(problems),
        verified=verified,
        chain_problem=chain_problem,
        events=len(events),
    )


@dataclass(frozen=True)
class ObservationsCheck:
    """How a run's ``observations.csv`` compares with the ``observation`` events of its log.

    Attributes:
        rows: Rows of ``observations.csv``.
        logged: ``observation`` events in the event log.
        differences: One line per difference, in row order, e.g. ``E0002 conductivity: 52.0 in
            observations.csv, 42.0 in the event log``; empty when the two agree.
    """

    rows: int
    logged: int
    differences: list[str]

    @property
    def ok(self) -> bool:
        """Whether every row is as the event log recorded it, and no logged observation is missing."""
        return not self.differences


def check_observations(run_dir: Path, spec: CampaignSpec) -> ObservationsCheck:
    """Compare ``observations.csv`` with the event log's ``observation`` events, cell by cell.

    The table is not in the hash chain: an edited cell is found here, not by
    :func:`runs.eventlog.verify_log`. Cells are compared as :class:`runs.observations.ObservationsCSV`
    writes them, so a number written differently (``42`` for ``42.0``) is not a difference.

    Raises:
        AthanorError: Either file cannot be read (see :func:`runs.observations.read_observations`).
    """
    columns = observation_columns(spec)
    table = [observation_row(spec, o) for o in read_observations(run_dir / OBSERVATIONS_FILE, spec)]
    logged = {}
    differences = []
    for event in read_events(run_dir / EVENTS_FILE, OBSERVATION):
        try:
            observation = Observation.model_validate(event["payload"])
        except ValidationError:
            differences.append(f"event seq {event.get('seq')}: an observation the log cannot give back")
            continue
        logged[observation.experiment_id] = observation_row(spec, observation)
    seen: set[str] = set()
    for row in table:
        experiment = row[0]
        if experiment in seen:
            differences.append(f"{experiment}: more than one row in {OBSERVATIONS_FILE}")
            continue
        seen.add(experiment)
        recorded = logged.get(experiment)
        if recorded is None:
            differences.append(f"{experiment}: in {OBSERVATIONS_FILE} but not in the event log")
            continue
        for column, cell, expected in zip(columns, row, recorded, strict=True):
            if cell != expected:
                differences.append(
                    f"{experiment} {column}: {cell or 'empty'} in {OBSERVATIONS_FILE},"
                    f" {expected or 'empty'} in the event log"
                )
    differences += [
        f"{experiment}: in the event log but not in {OBSERVATIONS_FILE}"
        for experiment in logged
        if experiment not in seen
    ]
    return ObservationsCheck(len(table), len(logged), differences)


def list_runs() -> list[RunSummary]:
    """Every run under :func:`runs_root`, newest first."""
    summaries = [summarise_run(runs_root() / run_id) for run_id in _run_ids()]
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(summaries, key=lambda s: (s.created or oldest, s.run_id), reverse=True)


def _suggestions(ref: str, ids: list[str]) -> list[str]:
    close = [run_id for run_id in ids if ref.lower() in run_id.lower()]
    close += difflib.get_close_matches(ref, ids, n=_MAX_SUGGESTIONS, cutoff=0.5)
    return list(dict.fromkeys(close))[:_MAX_SUGGESTIONS]


def resolve_run(ref: str) -> Path:
    """The folder of the run ``ref`` names.

    Args:
        ref: A run id, a unique prefix of one, or a path to a run folder.

    Raises:
        AthanorError: No run or several runs match; the message lists close matches and how to
            list runs.
    """
    ref = ref.strip()
    if not ref:
        raise AthanorError(
            "no run given; pass a run id (or a unique prefix of one); list runs with `athanor runs`"
        )
    candidate = Path(ref).expanduser()
    if _is_run_dir(candidate):
        return candidate.absolute()
    looks_like_path = "/" in ref or os.sep in ref or ref.startswith(("~", "."))
    if looks_like_path:
        raise AthanorError(
            f"{ref} is not a run folder (a run folder holds {MANIFEST_FILE} or {EVENTS_FILE});"
            " pass a run folder or a run id; list runs with `athanor runs`"
        )
    root = runs_root()
    ids = _run_ids()
    if ref in ids:
        return root / ref
    matches = [run_id for run_id in ids if run_id.startswith(ref)]
    if len(matches) == 1:
        return root / matches[0]
    if matches:
        shown = ", ".join(matches[:_MAX_SUGGESTIONS]) + (", ..." if len(matches) > _MAX_SUGGESTIONS else "")
        raise AthanorError(
            f"{ref!r} matches {len(matches)} runs ({shown}); give more of the run id."
            " List runs with `athanor runs`"
        )
    if not ids:
        raise AthanorError(
            f"no run {ref!r}: there are no runs in {root} yet (set ATHANOR_HOME if they live"
            " elsewhere). List runs with `athanor runs`"
        )
    close = _suggestions(ref, ids)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise AthanorError(f"no run {ref!r} in {root}.{hint} List runs with `athanor runs`")
