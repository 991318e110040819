"""Which words of a request became which field: what ``athanor plan --explain`` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.llm.reader.assemble import assemble
from agents.llm.reader.found import Reading
from agents.llm.reader.refusal import unread_problem
from agents.llm.reader.scanner import Scanner
from agents.llm.reader.words import PROPERTY_UNITS, clean

__all__ = ["Explanation", "explain"]


@dataclass
class Explanation:
    """How the reader read one request.

    Attributes:
        request: The request.
        rows: In the order of the request: the words, what they became and what they say. Words no
            phrase read have the field ``"not read"``.
        defaults: What the request does not state and the spec takes by default, as (field, value).
        problems: Why the request is refused; empty when it is read.
        spec: The spec fields read (see :func:`agents.llm.reader.read_request`), or None if refused.
    """

    request: str
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    defaults: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    spec: dict[str, Any] | None = None


def explain(text: str) -> Explanation:
    """Read ``text`` and say which words became which field, refused or not."""
    scanner = Scanner(text)
    scanner.run()
    data = assemble(scanner)
    spans = scanner.unread_spans()
    readings = list(scanner.found.readings)
    readings += [Reading(begin, finish, "not read", "no phrase reads these words") for begin, finish in spans]
    ordered = sorted(readings, key=lambda r: (r.start, r.end))
    rows = [(clean(text[r.start : r.end]), r.field, r.value) for r in ordered]
    problems = [unread_problem(text[b:f].strip()) for b, f in spans] + scanner.problems
    spec = data if not problems else None
    return Explanation(text, rows, _defaults(scanner, spec) if spec else [], problems, spec)


def _defaults(scanner: Scanner, spec: dict[str, Any]) -> list[tuple[str, str]]:
    """What the spec takes without the request saying it."""
    found = scanner.found
    out = []
    if not found.batches:
        out.append(("batch size", "1: one experiment at a time (not stated)"))
    if not found.sum_rules and spec.get("sum_rule"):
        total = spec["sum_rule"]["total"]
        why = "implied by the percent amounts" if total == 100 else "not stated"
        out.append(("sum rule", f"the amounts add up to {total:g} ({why})"))
    if "basis" not in spec:
        out.append(("basis", "volume fractions (not stated)"))
    for objective in spec["objectives"]:
        stated = any(o.name == objective["name"] and o.unit for o in found.objectives)
        if not stated and objective["name"] in PROPERTY_UNITS:
            out.append(("unit", f"{objective['unit']} for {objective['name']} (not stated)"))
    bounded = {b.name for b in found.bounds}
    if "*" not in bounded:
        free = [c["name"] for c in spec["components"] if c["name"] not in bounded]
        if free:
            top = spec["components"][0]["upper"] if spec["sum_rule"] is None else spec["sum_rule"]["total"]
            out.append(("bounds", f"{', '.join(free)}: 0 to {top:g} (not bounded)"))
    if not found.seeds:
        out.append(("seed", "0 (not stated; --seed sets it)"))
    return out
