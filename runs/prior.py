"""Prior data: earlier experiments from a CSV that the optimiser learns from before the campaign runs.

The CSV has one column per component (in the spec's unit), one per categorical variable and one per
objective or other measured quantity, named as in the spec; a previous run's ``observations.csv``
for the same design space is valid as is. Besides those, only the ``observations.csv`` bookkeeping
columns (``experiment_id``, ``iteration``, ``status``, ``note``, and ``fidelity`` in a campaign with
several sources: empty means the target) may appear; any other column is refused, so that a misspelt
component is never dropped silently.

Every row (but a repeat) becomes an :class:`~athanor.models.Observation` with id ``P0001``,
``P0002``, ... (in file order) and iteration :data:`PRIOR_ITERATION`; they never take a campaign id
or count toward the budget. A row with status ``failed`` or ``outlier``, or without a finite value of
every measured quantity (an empty cell, ``inf`` or ``NaN``), is kept out of the model but counted, and
:attr:`PriorData.kept_out` says why. A row that repeats an earlier one (same composition, choices,
source, status and values, or the same ``experiment_id``) counts once: it becomes no observation and
is listed in :attr:`PriorData.repeated`; two rows with one ``experiment_id`` but different data are
refused. A composition outside the current bounds, constraints or grid is kept (it still informs the
model) and listed in :attr:`PriorData.outside`.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import math
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict

from athanor.errors import SpecError
from athanor.models import Observation
from athanor.pareto import counts
from athanor.spec import RESERVED_COLUMNS, CampaignSpec
from runs.observations import FIDELITY_COLUMN

__all__ = ["PRIOR_ITERATION", "SUM_TOLERANCE", "PriorData", "is_usable", "load_prior_data"]

#: Iteration of every prior observation: before the campaign's first design iteration (0).
PRIOR_ITERATION = -1
#: Largest distance of a row's sum from the sum-rule total, as a fraction of the total (rounded
#: notebook values such as 0.33 + 0.33 + 0.33 pass; a row in the wrong unit does not).
SUM_TOLERANCE = 0.01
#: Most problems listed in one error.
_MAX_PROBLEMS = 12
_STATUSES = ("ok", "failed", "outlier")


class PriorData(BaseModel):
    """Earlier experiments read from a CSV, with what the run records about them.

    Attributes:
        path: The file that was read (as resolved when it was read).
        sha256: SHA-256 of the file's bytes, hex.
        content: The file's text, so that a resumed or replayed run never reads the file again.
        observations: Every data row but the repeats, in file order, as ``P0001``... observations of
            iteration :data:`PRIOR_ITERATION`.
        used: Ids of the rows the model learns from (status ok, every measured value finite).
        kept_out: One line per row the model does not use, with why.
        outside: One line per row whose composition is outside the current design space, with how.
        repeated: One line per row left out because it repeats an earlier row, naming that row.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    sha256: str
    content: str
    observations: list[Observation]
    used: list[str]
    kept_out: list[str]
    outside: list[str]
    repeated: list[str] = []

    @property
    def usable(self) -> list[Observation]:
        """The observations the model learns from, in file order."""
        chosen = set(self.used)
        return [o for o in self.observations if o.experiment_id in chosen]

    def best(self, spec: CampaignSpec) -> Observation | None:
        """The used row with the best value of the primary objective, or None.

        With outcome constraints only the rows that meet them count.
        """
        objective = spec.primary_objective
        pick = max if objective.direction == "maximise" else min
        rows = [o for o in self.usable if not spec.outcome_constraints or counts(spec, o)]
        return pick(rows, key=lambda o: o.values[objective.name], default=None)

    def describe(self) -> str:
        """One line: rows read, used, kept out, repeated and outside the design space."""
        name = Path(self.path).name
        rows = len(self.observations) + len(self.repeated)
        text = f"{rows} rows from {name}: {len(self.used)} used by the model"
        if self.kept_out:
            text += f", {len(self.kept_out)} kept out (failed, outlier or no finite value)"
        if self.repeated:
            text += f", {len(self.repeated)} repeating an earlier row (counted once)"
        if self.outside:
            text += f", {len(self.outside)} outside the current design space (kept)"
        return text


def is_usable(spec: CampaignSpec, observation: Observation) -> bool:
    """Whether a model may learn from ``observation``: status ok and every measured value finite."""
    if observation.status != "ok":
        return False
    values = [observation.values.get(name) for name in spec.measured_names]
    return all(v is not None and math.isfinite(v) for v in values)


def load_prior_data(path: Path, spec: CampaignSpec) -> PriorData:
    """Read and check a CSV of earlier experiments against ``spec``.

    Args:
        path: The CSV file (comma-separated, UTF-8, header on the first line).
        spec: The campaign whose components, categories and measured quantities name the columns.

    Returns:
        The rows as prior observations, with the file's text and SHA-256.

    Raises:
        athanor.errors.SpecError: The file is missing, empty or unreadable, a column is missing or
            unknown, a cell is not a number or not an option, a composition breaks the sum rule by
            more than :data:`SUM_TOLERANCE`, two rows share an ``experiment_id`` but not their data,
            or no row can inform the model. One line per problem,
            as ``file:line: column ...: problem; fix``.
    """
    path = Path(path)
    _check_is_file(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not UTF-8 text; save the table as a UTF-8 CSV") from None
    rows = _rows(path, text)
    columns = _check_header(path, rows[0][1], spec)
    observations, problems, repeated = [], [], []
    kept: dict[str, _KeptRow] = {}
    for line, cells in rows[1:]:
        if len(cells) != len(columns):
            problems.append(
                f"{path}:{line}: the row has {len(cells)} cells but the header has {len(columns)} columns;"
                " give every row one cell per column (leave a cell empty, not out)"
            )
            continue
        row = dict(zip(columns, cells, strict=True))
        observation = _observation(path, line, row, spec, len(observations) + 1, problems)
        if observation is None:
            continue
        this = _KeptRow(line, row, _row_data(spec, observation, row))
        if (clash := _id_clash(path, this, kept)) is not None:
            problems.append(clash)
            continue
        if (repeat := _repeat_of(this, kept)) is not None:
            repeated.append(repeat)
            continue
        observations.append(observation)
        kept[observation.experiment_id] = this
    _raise(problems)
    if not observations:
        raise SpecError(f"{path}: no data rows under the header; add one row per earlier experiment")
    used = [o.experiment_id for o in observations if is_usable(spec, o)]
    if not used:
        names = ", ".join(spec.measured_names)
        raise SpecError(
            f"{path}: none of its {len(observations)} rows can inform the model: each is failed, an"
            f" outlier, or lacks a finite value of {names}; give at least one row with status ok and a"
            f" number in every one of those columns"
        )
    return PriorData(
        path=str(path),
        sha256=hashlib.sha256(raw).hexdigest(),
        content=text,
        observations=observations,
        used=used,
        kept_out=[
            f"{o.experiment_id} (line {kept[o.experiment_id].line}):"
            f" {_why_kept_out(spec, o, kept[o.experiment_id].cells)}"
            for o in observations
            if o.experiment_id not in set(used)
        ],
        outside=[
            f"{o.experiment_id} (line {kept[o.experiment_id].line}): {'; '.join(problems)}"
            for o in observations
            if (problems := _outside(spec, o))
        ],
        repeated=repeated,
    )


def _check_is_file(path: Path) -> None:
    """Refuse a prior-data path that is a folder or names nothing, with the fix."""
    if path.is_dir():
        table = path / "observations.csv"
        hint = f" (a run folder's table of experiments is {table})" if table.is_file() else ""
        raise SpecError(
            f"prior data {path} is a folder, not a file; give the path of a CSV file of earlier"
            f" experiments{hint}"
        )
    if not path.is_file():
        raise SpecError(
            f"prior data file {path} does not exist; check the path (a relative prior_data in a campaign"
            " file is read relative to that file)"
        )


class _KeptRow(NamedTuple):
    """A row that became a prior observation: its line, its cells by column, and its data (see _row_data)."""

    line: int
    cells: dict[str, str]
    data: tuple[Any, ...]


def _first_with_id(row: _KeptRow, kept: dict[str, _KeptRow]) -> str | None:
    """The prior id of the first kept row with the same ``experiment_id`` as ``row`` (None: none)."""
    original = row.cells.get("experiment_id", "")
    return next((i for i, r in kept.items() if original and r.cells.get("experiment_id") == original), None)


def _id_clash(path: Path, row: _KeptRow, kept: dict[str, _KeptRow]) -> str | None:
    """The problem if ``row`` has the ``experiment_id`` of a kept row but other data (None: it has not)."""
    first = _first_with_id(row, kept)
    if first is None or kept[first].data == row.data:
        return None
    return (
        f"{path}:{row.line}: column 'experiment_id': {row.cells['experiment_id']!r} is also the id of line"
        f" {kept[first].line}, whose data differ; an id names one experiment: keep the right row, or"
        " give each its own id"
    )


def _repeat_of(row: _KeptRow, kept: dict[str, _KeptRow]) -> str | None:
    """The line for :attr:`PriorData.repeated` if ``row`` repeats a kept row (None: it is new)."""
    first = _first_with_id(row, kept) or next((i for i, r in kept.items() if r.data == row.data), None)
    if first is None:
        return None
    original = row.cells.get("experiment_id", "")
    shown = f"line {row.line}" + (f" ({original})" if original else "")
    return f"{shown}: the same row as {first} (line {kept[first].line}); used once"


def _row_data(spec: CampaignSpec, observation: Observation, cells: dict[str, str]) -> tuple[Any, ...]:
    """What makes two rows the same experiment: composition, choices, source, status and values.

    A measured value that is not a finite number is compared as written (``inf`` and an empty cell
    differ).
    """
    values = tuple(observation.values.get(name, cells[name]) for name in spec.measured_names)
    return (
        tuple(observation.composition.items()),
        tuple(observation.choices.items()),
        observation.fidelity,
        observation.status,
        values,
    )


def _rows(path: Path, text: str) -> list[tuple[int, list[str]]]:
    """Non-blank CSV rows with the line each starts on; the header first."""
    if not text.strip():
        raise SpecError(
            f"{path} is empty; give a header (one column per component, categorical variable and"
            " objective) and one row per earlier experiment"
        )
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise SpecError(f"{path}:{start}: not valid CSV ({error}); check the quoting") from None
        if any(cell.strip() for cell in cells):
            rows.append((start, [cell.strip() for cell in cells]))
    return rows


def _check_header(path: Path, header: list[str], spec: CampaignSpec) -> list[str]:
    """The header's columns, after refusing unknown, repeated or missing ones."""
    categories = [v.name for v in spec.categories]
    needed = [*spec.component_names, *categories, *spec.measured_names]
    known = [*needed, *RESERVED_COLUMNS, *([FIDELITY_COLUMN] if spec.fidelities else [])]
    problems = []
    if len(header) == 1 and ";" in header[0]:
        raise SpecError(
            f"{path}:1: the header is one column {header[0]!r}; separate the columns with commas, not"
            " semicolons (export the table as comma-separated CSV)"
        )
    for name in sorted({n for n in header if header.count(n) > 1}):
        problems.append(f"{path}:1: column {name!r} appears more than once; keep one of them")
    for name in header:
        if name not in known:
            problems.append(
                f"{path}:1: column {name!r} is not a component, categorical variable or measured quantity"
                f" of this campaign{_hint(name, known)}; rename it to one of {', '.join(needed)}, or delete"
                f" the column (the only extra columns allowed are {', '.join(RESERVED_COLUMNS)})"
            )
    groups = (
        ("component", spec.component_names, "its amount in the spec's unit"),
        ("categorical variable", categories, "the option used"),
        ("objective or measured quantity", spec.measured_names, "the measured value (empty if none)"),
    )
    for what, names, content in groups:
        for name in names:
            if name not in header:
                problems.append(
                    f"{path}:1: no column {name!r} ({what}); add a column {name!r} holding {content}"
                )
    _raise(problems)
    return header


def _hint(name: str, known: list[str]) -> str:
    lowered = {k.lower(): k for k in known}
    close = lowered.get(name.lower()) or next(iter(difflib.get_close_matches(name, known, n=1)), None)
    return f" (did you mean {close!r}? names are case-sensitive)" if close else ""


def _observation(
    path: Path, line: int, cells: dict[str, str], spec: CampaignSpec, number: int, problems: list[str]
) -> Observation | None:
    """One row as a prior observation; appends each problem to ``problems`` and returns None if any."""
    before = len(problems)
    unit = "percent" if spec.unit_scale == 100.0 else "fractions of one"
    composition: dict[str, float] = {}
    for name in spec.component_names:
        value = _number(cells[name])
        if value is None or not math.isfinite(value) or value < 0:
            shown = f"{cells[name]!r} is not a non-negative number" if cells[name] else "the cell is empty"
            problems.append(
                f"{path}:{line}: column {name!r}: {shown}; write the amount of {name} in {unit} (0 if absent)"
            )
        else:
            composition[name] = value
    if spec.sum_rule is not None and len(composition) == len(spec.component_names):
        total, found = spec.sum_rule.total, sum(composition.values())
        if abs(found - total) > SUM_TOLERANCE * total:
            hint = ""
            if total == 1.0 and 90 < found < 110:
                hint = " (the amounts look like percent: divide them by 100)"
            elif total == 100.0 and 0.9 < found < 1.1:
                hint = " (the amounts look like fractions: multiply them by 100)"
            problems.append(
                f"{path}:{line}: columns {', '.join(spec.component_names)}: the amounts sum to {found:g}, not"
                f" the sum-rule total {total:g} (more than {SUM_TOLERANCE:.0%} off){hint}; correct the row"
                f" so that the amounts add up to {total:g}"
            )
    choices = {}
    for variable in spec.categories:
        option = cells[variable.name]
        if option not in variable.choices:
            shown = f"{option!r} is not an option" if option else "the cell is empty"
            problems.append(
                f"{path}:{line}: column {variable.name!r}: {shown}; use one of {', '.join(variable.choices)}"
            )
        choices[variable.name] = option
    values, missing = {}, []
    for name in spec.measured_names:
        cell = cells[name]
        value = _number(cell) if cell else None
        if cell and value is None:
            problems.append(
                f"{path}:{line}: column {name!r}: {cell!r} is not a number; write the measured value, or"
                " leave the cell empty if there is none (the row is then kept out of the model)"
            )
        elif value is not None and math.isfinite(value):
            values[name] = value
        else:
            missing.append(name)
    sources = [f.name for f in spec.fidelities]
    fidelity = cells.get(FIDELITY_COLUMN, "") or spec.target_fidelity
    if fidelity not in (*sources, None):
        problems.append(
            f"{path}:{line}: column {FIDELITY_COLUMN!r}: {fidelity!r} is not a source of this campaign;"
            f" use one of {', '.join(sources)} (an empty cell means {spec.target_fidelity})"
        )
    status = cells.get("status", "") or "ok"
    if status not in _STATUSES:
        problems.append(
            f"{path}:{line}: column 'status': {status!r} is not a status; use ok, failed or outlier"
            " (an empty cell means ok)"
        )
    if len(problems) > before:
        return None
    original = cells.get("experiment_id", "")
    note = f"line {line}" + (f" ({original})" if original else "")
    if cells.get("note"):
        note += f": {cells['note']}"
    return Observation(
        experiment_id=f"P{number:04d}",
        iteration=PRIOR_ITERATION,
        composition=composition,
        values=values,
        status=status,
        note=note,
        choices=choices,
        fidelity=None if fidelity == spec.target_fidelity else fidelity,
    )


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _why_kept_out(spec: CampaignSpec, observation: Observation, cells: dict[str, str]) -> str:
    """Why the model does not use a row: its status, or each measured value it lacks (empty or not finite)."""
    if observation.status != "ok":
        return f"status {observation.status}"
    missing = [n for n in spec.measured_names if n not in observation.values]
    empty = [n for n in missing if not cells[n]]
    reasons = [f"no value of {', '.join(empty)}"] if empty else []
    reasons += [f"{n} is {cells[n]!r}, not a finite number" for n in missing if cells[n]]
    return "; ".join(reasons)


def _outside(spec: CampaignSpec, observation: Observation) -> list[str]:
    """How a prior composition leaves the current design space, the sum rule aside (empty: it does not)."""
    # the sum was checked against SUM_TOLERANCE already; violations() checks it far more tightly
    problems = spec.violations(observation.composition, choices=None)
    return [p for p in problems if not p.startswith("amounts sum to")]


def _raise(problems: list[str]) -> None:
    if not problems:
        return
    shown = problems[:_MAX_PROBLEMS]
    if len(problems) > _MAX_PROBLEMS:
        shown.append(f"... and {len(problems) - _MAX_PROBLEMS} more problem(s)")
    raise SpecError("\n".join(shown))
