"""Comparing a replayed run with its record: attempts, payload differences and the audit report.

A run's log holds one attempt per start or resume (:func:`split_attempts`). The decision-bearing
events (:data:`COMPARED_KINDS`) of the recorded and the replayed log are compared kind by kind, in
order (:func:`compare_events`): the n-th recorded ``decision`` against the n-th replayed one, and so
on. Comparing per kind keeps an asynchronous run's background readings, which interleave with the
roles' events differently from run to run, from showing up as differences.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runs.context import EXPERIMENT_ID

__all__ = [
    "ATTEMPT_END_KINDS",
    "COMPARED_KINDS",
    "LIMITED_KINDS",
    "Attempt",
    "Divergence",
    "KindTally",
    "ReplayReport",
    "compare_events",
    "earliest",
    "payload_diff",
    "split_attempts",
]

#: The decision-bearing event kinds a replay must reproduce, in the order a report lists them.
COMPARED_KINDS = ("optimiser_call", "protocol", "protocol_rejected", "observation", "decision", "stock_low")
#: Event kinds that end an attempt, and the outcome each one stands for.
ATTEMPT_END_KINDS = {"run_finished": "finished", "run_failed": "failed", "run_stopped": "stopped"}
#: Event kinds a replay of an unfinished attempt may record no more of than the attempt did.
LIMITED_KINDS = ("node", EXPERIMENT_ID, *COMPARED_KINDS)
#: Relative and absolute tolerance when comparing recorded and replayed numbers.
_REL_TOL = 1e-9
_ABS_TOL = 1e-12
_SHOWN_CHARS = 80


@dataclass
class Attempt:
    """The events of one start or resume of a run.

    Attributes:
        events: The attempt's events, in log order.
        outcome: ``finished``, ``failed``, ``stopped``, or ``cut off`` (no end was recorded).
        error: The recorded error of a failed or stopped attempt without its type, e.g.
            ``endpoint down``; "" otherwise.
        end_seq: ``seq`` of the attempt's last event.
    """

    events: list[dict[str, Any]]
    outcome: str
    error: str = ""
    end_seq: int = -1

    @property
    def finished(self) -> bool:
        """Whether the attempt ran the campaign to its end."""
        return self.outcome == "finished"

    @property
    def start_seq(self) -> int:
        """``seq`` of the attempt's first event."""
        return self.events[0]["seq"] if self.events else -1

    def limits(self) -> dict[str, int]:
        """How many events of each of :data:`LIMITED_KINDS` the attempt recorded."""
        counts = Counter(e["kind"] for e in self.events)
        return {kind: counts[kind] for kind in LIMITED_KINDS}


def split_attempts(events: Sequence[dict[str, Any]]) -> list[Attempt]:
    """Cut a run's events into attempts: one from the start, one more at each ``run_resumed``.

    Args:
        events: Every event of the run, in log order.

    Returns:
        The attempts in order; the first holds the run's set-up events (spec, lab, ...).
    """
    parts: list[list[dict[str, Any]]] = [[]]
    for event in events:
        if event["kind"] == "run_resumed" and parts[-1]:
            parts.append([])
        parts[-1].append(event)
    attempts = []
    for part in parts:
        outcome, error = "cut off", ""
        for event in part:
            if event["kind"] in ATTEMPT_END_KINDS:
                outcome = ATTEMPT_END_KINDS[event["kind"]]
                error = str(event["payload"].get("error") or "").split(": ", 1)[-1]
        attempts.append(Attempt(part, outcome, error, part[-1]["seq"] if part else -1))
    return attempts


def shorten(value: Any, chars: int = _SHOWN_CHARS) -> str:
    """``value`` as text (``repr`` unless it is a string), cut to ``chars`` characters."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= chars else text[: chars - 3] + "..."


def payload_diff(recorded: Any, replayed: Any, path: str = "payload", limit: int = 5) -> list[str]:
    """Where two JSON values differ, one line per difference, at most ``limit`` lines.

    Numbers compare to a tight tolerance (relative 1e-9), everything else exactly.

    Returns:
        Lines like ``payload.proposals[0].composition.A: recorded 0.2717, replayed 0.3017``; an empty
        list when the values match.
    """
    lines: list[str] = []
    _walk(recorded, replayed, path, lines, limit)
    return lines[:limit]


def _walk(recorded: Any, replayed: Any, path: str, lines: list[str], limit: int) -> None:
    if len(lines) >= limit:
        return
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        for key in [*recorded, *(k for k in replayed if k not in recorded)]:
            if key not in replayed:
                lines.append(f"{path}.{key}: recorded {shorten(recorded[key])}, missing in the replay")
            elif key not in recorded:
                lines.append(f"{path}.{key}: not recorded, replayed {shorten(replayed[key])}")
            else:
                _walk(recorded[key], replayed[key], f"{path}.{key}", lines, limit)
        return
    if isinstance(recorded, list) and isinstance(replayed, list):
        if len(recorded) != len(replayed):
            lines.append(f"{path}: recorded {len(recorded)} items, replayed {len(replayed)}")
        for index, (left, right) in enumerate(zip(recorded, replayed, strict=False)):
            _walk(left, right, f"{path}[{index}]", lines, limit)
        return
    if not _same_scalar(recorded, replayed):
        lines.append(f"{path}: recorded {shorten(recorded)}, replayed {shorten(replayed)}")


def _same_scalar(left: Any, right: Any) -> bool:
    numbers = (int, float)
    if isinstance(left, bool) or isinstance(right, bool) or not isinstance(left, numbers):
        return type(left) is type(right) and left == right
    if not isinstance(right, numbers):
        return False
    return math.isclose(left, right, rel_tol=_REL_TOL, abs_tol=_ABS_TOL)


@dataclass(frozen=True)
class KindTally:
    """How one event kind fared in a replay.

    Attributes:
        kind: The event kind.
        recorded: Events of that kind in the recorded log (within what was replayed).
        replayed: Events of that kind the replay recorded.
        matched: Pairs (n-th recorded, n-th replayed) whose payloads match.
    """

    kind: str
    recorded: int
    replayed: int
    matched: int


@dataclass(frozen=True)
class Divergence:
    """The first place a replay differs from its record.

    Attributes:
        seq: ``seq`` of the recorded event (None when the replay did something never recorded).
        kind: The event kind, e.g. ``optimiser_call``, ``llm_request``, ``protocol_submitted``.
        message: One line saying what differs.
        diff: Where the payloads differ (see :func:`payload_diff`); may be empty.
    """

    seq: int | None
    kind: str
    message: str
    diff: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """``seq N (kind): message``, then one indented line per difference."""
        where = f"seq {self.seq}" if self.seq is not None else "no recorded event"
        return "\n".join([f"{where} ({self.kind}): {self.message}", *(f"  {line}" for line in self.diff)])


def earliest(divergences: Iterable[Divergence | None]) -> Divergence | None:
    """The divergence at the lowest recorded ``seq``; those without a seq come last, in given order."""
    found = [d for d in divergences if d is not None]
    if not found:
        return None
    return min(found, key=lambda d: (d.seq is None, d.seq if d.seq is not None else 0))


def compare_events(
    recorded: Sequence[dict[str, Any]],
    replayed: Sequence[dict[str, Any]],
    *,
    missing_after: int | None = None,
    kinds: Sequence[str] = COMPARED_KINDS,
) -> tuple[list[KindTally], Divergence | None]:
    """Compare the decision-bearing events of a record and its replay, kind by kind, in order.

    Args:
        recorded: The recorded run's events.
        replayed: The replay's events.
        missing_after: The replay stopped at a divergence at this recorded ``seq``: recorded events
            after it that the replay never made are expected, not divergences. None: every recorded
            event must have been replayed.
        kinds: The kinds to compare.

    Returns:
        A tally per kind, and the first divergence by recorded ``seq`` (None when all match).
    """
    tallies, found = [], []
    for kind in kinds:
        mine = [e for e in recorded if e["kind"] == kind]
        theirs = [e for e in replayed if e["kind"] == kind]
        matched, first = 0, None
        for index, event in enumerate(mine):
            number = f"{kind} #{index + 1}"
            if index >= len(theirs):
                if first is None and (missing_after is None or event["seq"] <= missing_after):
                    first = Divergence(event["seq"], kind, f"the replay never made the recorded {number}")
                continue
            diff = payload_diff(event["payload"], theirs[index]["payload"])
            if not diff:
                matched += 1
            elif first is None:
                first = Divergence(event["seq"], kind, f"the replayed {number} differs from the record", diff)
        if first is None and len(theirs) > len(mine):
            extra = theirs[len(mine)]["payload"]
            first = Divergence(
                None,
                kind,
                f"the replay made {kind} #{len(mine) + 1}, which the recorded run never made:"
                f" {shorten(extra)}",
            )
        tallies.append(KindTally(kind, len(mine), len(theirs), matched))
        found.append(first)
    return tallies, earliest(found)


@dataclass
class ReplayReport:
    """The outcome of re-running a recorded run's decisions with the current code.

    Attributes:
        run_id: The recorded run's id.
        run_dir: The recorded run's folder.
        scope: What was replayed and compared, in words.
        tallies: Recorded, replayed and matched events per compared kind.
        divergence: The first divergence; None when every decision matched.
        notes: How each attempt ended in the record and in the replay.
        report_path: The ``replay-<time>.json`` written next to the run's log, if one was.
    """

    run_id: str
    run_dir: Path
    scope: str
    tallies: list[KindTally]
    divergence: Divergence | None
    notes: list[str] = field(default_factory=list)
    report_path: Path | None = None

    @property
    def ok(self) -> bool:
        """True when every compared decision matched and no port saw a different request."""
        return self.divergence is None

    @property
    def matched(self) -> int:
        """Compared events that matched, over all kinds."""
        return sum(t.matched for t in self.tallies)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "run_id": self.run_id,
            "run_dir": str(self.run_dir),
            "ok": self.ok,
            "matched": self.matched,
            "scope": self.scope,
            "tallies": [asdict(t) for t in self.tallies],
            "divergence": asdict(self.divergence) if self.divergence else None,
            "notes": list(self.notes),
        }
