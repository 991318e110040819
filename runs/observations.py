"""``observations.csv``: one row per finished experiment, written as each one finishes.

Columns: ``experiment_id, iteration``, one per component (named as in the spec, in the spec's unit),
one per categorical variable when the spec has any (the option used), one per objective (named as in
the spec; empty when not measured) and one per other quantity an outcome constraint names,
``status, note``. Each row is
flushed and fsynced as it is written. Line breaks in a note are written as spaces so that every row
is one line; the full note stays in the event log.
"""

from __future__ import annotations

import csv
import io
import math
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from athanor.errors import AthanorError, format_validation_error
from athanor.models import Observation
from athanor.spec import CampaignSpec

__all__ = [
    "FIDELITY_COLUMN",
    "OBSERVATION",
    "ObservationsCSV",
    "logged_observations",
    "observation_columns",
    "observation_row",
    "observations_text",
    "read_observations",
    "write_observations",
]

#: Kind of the event whose payload is an ``Observation``; the log's are the truth the table copies.
OBSERVATION = "observation"

#: Column naming the source of each row (``CampaignSpec.fidelities``); the target's name for experiments.
FIDELITY_COLUMN = "fidelity"


def observation_columns(spec: CampaignSpec) -> list[str]:
    """The CSV header for ``spec``; a campaign with several sources gets a ``fidelity`` column."""
    return [
        "experiment_id",
        "iteration",
        *spec.component_names,
        *(v.name for v in spec.categories),
        *spec.measured_names,
        *([FIDELITY_COLUMN] if spec.fidelities else []),
        "status",
        "note",
    ]


def _number(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else str(float(value))


def observation_row(spec: CampaignSpec, observation: Observation) -> list[str]:
    """The cells of an observation's row, in the order of :func:`observation_columns`.

    Raises:
        ValueError: The observation names a component or value the spec does not have (it would
            have no column).
    """
    objectives = spec.measured_names
    categories = [v.name for v in spec.categories]
    unknown = sorted(set(observation.composition) - set(spec.component_names))
    unknown += sorted(set(observation.choices) - set(categories))
    unknown += sorted(set(observation.values) - set(objectives))
    if unknown:
        raise ValueError(
            f"observation {observation.experiment_id} names {', '.join(unknown)}, which the spec"
            f" has no column for (components: {', '.join(spec.component_names)};"
            f" categories: {', '.join(categories) or 'none'}; objectives: {', '.join(objectives)})"
        )
    row = [observation.experiment_id, str(observation.iteration)]
    for name in spec.component_names:
        amount = observation.composition.get(name)
        row.append("" if amount is None else _number(amount))
    for name in categories:
        row.append(observation.choices.get(name, ""))
    for name in objectives:
        value = observation.values.get(name)
        row.append("" if value is None else _number(value))
    if spec.fidelities:
        row.append(observation.fidelity or str(spec.target_fidelity))
    row += [observation.status, " ".join(observation.note.splitlines())]
    return row


def _csv_line(row: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    return buffer.getvalue()


def observations_text(spec: CampaignSpec, observations: Iterable[Observation]) -> str:
    """The text :class:`ObservationsCSV` writes for these observations, in this order, header first."""
    rows = [observation_columns(spec), *(observation_row(spec, o) for o in observations)]
    return "".join(_csv_line(row) for row in rows)


def write_observations(path: Path, spec: CampaignSpec, observations: Iterable[Observation]) -> None:
    """Write ``observations.csv`` anew from ``observations`` (atomically: the old file or the new)."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8", newline="") as handle:
        handle.write(observations_text(spec, observations))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def logged_observations(events: Iterable[Mapping[str, Any]]) -> list[Observation]:
    """The observations of a run's ``observation`` events, in log order, each experiment once.

    Raises:
        pydantic.ValidationError: An observation event's payload is not an observation.
    """
    found: dict[str, Observation] = {}
    for event in events:
        if event["kind"] == OBSERVATION:
            observation = Observation.model_validate(event["payload"])
            found.setdefault(observation.experiment_id, observation)
    return list(found.values())


def _check_header(path: Path, found: list[str], expected: list[str]) -> None:
    if found != expected:
        raise AthanorError(
            f"{path}: columns are {', '.join(found)} but this campaign's spec gives"
            f" {', '.join(expected)}; the file belongs to a different spec. Use the spec saved in the"
            " run's manifest.json, or write to a new file"
        )


class ObservationsCSV:
    """Appends observations to ``observations.csv``, one fsynced row each; safe across threads.

    Reopening an existing file appends after its rows (a torn last row from a crash is cut off).

    Args:
        path: The CSV file; created with its header if missing or empty.
        spec: The campaign spec that names the columns.

    Raises:
        AthanorError: The existing file's header does not match ``spec``.
    """

    def __init__(self, path: Path, spec: CampaignSpec) -> None:
        self.path = Path(path)
        self.spec = spec
        self.columns = observation_columns(spec)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._cut_torn_row()
        has_rows = self.path.exists() and self.path.stat().st_size > 0
        if has_rows:
            with open(self.path, encoding="utf-8", newline="") as handle:
                header = next(csv.reader(handle), [])
            _check_header(self.path, header, self.columns)
        self._file = open(self.path, "a", encoding="utf-8", newline="")
        if not has_rows:
            self._write_row(self.columns)

    def _cut_torn_row(self) -> None:
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        with open(self.path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)

    def _write_row(self, row: list[str]) -> None:
        self._file.write(_csv_line(row))
        self._file.flush()
        os.fsync(self._file.fileno())

    def append(self, observation: Observation) -> None:
        """Write one observation as a row, flushed and fsynced.

        Raises:
            ValueError: The observation names a component or value the spec does not have (it
                would have no column).
        """
        row = observation_row(self.spec, observation)
        with self._lock:
            self._write_row(row)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()

    def __enter__(self) -> ObservationsCSV:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fidelity(spec: CampaignSpec, cell: str) -> str | None:
    """The observation's ``fidelity``: None for the target source (and in files without the column)."""
    return None if cell in ("", spec.target_fidelity) else cell


def read_observations(path: Path, spec: CampaignSpec) -> list[Observation]:
    """Read every complete row of an ``observations.csv`` back into observations.

    A last row without a newline (being written, or torn by a crash) is skipped.

    Args:
        path: The CSV file.
        spec: The spec it was written with.

    Raises:
        AthanorError: The file is missing, its header does not match ``spec``, or a cell is not a
            number where one is expected; the message names the row and column.
    """
    path = Path(path)
    if not path.exists():
        raise AthanorError(f"{path} does not exist; observations are written there as experiments finish")
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        return []
    columns = observation_columns(spec)
    _check_header(path, rows[0], columns)
    objectives = spec.measured_names
    observations = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(columns):
            raise AthanorError(f"{path}: row {number} has {len(row)} cells, expected {len(columns)}")
        cells = dict(zip(columns, row, strict=True))
        try:
            observations.append(
                Observation(
                    experiment_id=cells["experiment_id"],
                    iteration=int(cells["iteration"]),
                    composition={n: float(cells[n]) for n in spec.component_names if cells[n] != ""},
                    values={n: float(cells[n]) for n in objectives if cells[n] != ""},
                    status=cells["status"],
                    note=cells["note"],
                    choices={v.name: cells[v.name] for v in spec.categories if cells[v.name] != ""},
                    fidelity=_fidelity(spec, cells.get(FIDELITY_COLUMN, "")),
                )
            )
        except ValidationError as exc:
            problems = format_validation_error(exc).replace("\n", "; ")
            raise AthanorError(f"{path}: row {number} cannot be read: {problems}") from exc
        except ValueError as exc:
            raise AthanorError(f"{path}: row {number} cannot be read: {exc}") from exc
    return observations
