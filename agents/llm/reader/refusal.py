"""What a refusal says: the problems, what was read, and a phrasing that works."""

from __future__ import annotations

from agents.llm.reader.found import Found
from agents.llm.reader.words import fmt

__all__ = ["DOCS", "EXAMPLE_REQUEST", "message", "summary"]

#: A request the reader reads; refusals show it as a phrasing that works.
EXAMPLE_REQUEST = (
    "Maximise the conductivity of a blend of P3HT, D1 and D2 (fractions sum to 1, P3HT at least 0.5),"
    " 30 experiments in batches of 5"
)
#: Where the reader's grammar is described for users.
DOCS = "docs/request-grammar.md"


def summary(found: Found) -> str:
    """What was read, in one line: ``maximise conductivity; components A, B; 30 experiments``."""
    parts = []
    for o in found.objectives:
        parts.append(f"{o.direction} {o.words}" + (f" in {o.unit}" if o.unit else ""))
    for t in found.targets:
        parts.append(f"target {fmt(t.value)}" + (f" {t.unit}" if t.unit else ""))
    for q in found.quantity_bounds:
        parts.append(f"{q.words} {q.operator} {fmt(q.value)}" + (f" {q.unit}" if q.unit else ""))
    for names, _ in found.lists:
        parts.append("components " + ", ".join(names))
    for names, label in found.systems:
        parts.append(label if found.lists else "components " + ", ".join(names))
    for label, _ in found.descriptions:
        parts.append(label)
    for r in found.sum_rules:
        parts.append(f'sum rule "{r.phrase}"')
    for b in found.bounds:
        parts.append(f'bound "{b.phrase}"')
    for c in found.constraints:
        parts.append(f'constraint "{c.phrase}"')
    for n, _ in found.budgets:
        parts.append(f"{n} experiments")
    for n, _ in found.batches:
        parts.append(f"batches of {n}")
    for n, _ in found.initials:
        parts.append(f"initial design of {n}")
    for n, _ in found.seeds:
        parts.append(f"seed {n}")
    for n, _ in found.cardinalities:
        parts.append(f"at most {n} components present")
    for amount, _ in found.resolutions:
        parts.append(f"grid step {fmt(amount.value)}{' ' + amount.pct if amount.pct else ''}")
    for _, name, choices, _ in sorted(found.categories, key=lambda item: item[0]):
        parts.append(f"{name}: {', '.join(choices)}")
    return "; ".join(dict.fromkeys(parts)) if parts else "nothing"


#: Characters of one problem, or of what was read, that a refusal shows before cutting it.
_ECHO_CHARS = 200


def _shorten(text: str) -> str:
    """``text`` cut to its first :data:`_ECHO_CHARS` characters, with ``…`` and its full length."""
    if len(text) <= _ECHO_CHARS + 40:  # a few characters over are kept rather than cut
        return text
    return f"{text[:_ECHO_CHARS]}… ({len(text)} characters)"


def message(problems: list[str], read: str) -> str:
    """The refusal: each problem, what was read and a phrasing that works."""
    # words of a long request are quoted in problems and in what was read: cut so the refusal stays readable
    lines = ["The request could not be read:"]
    lines += [f"  - {_shorten(p)}" for p in problems]
    lines.append(f"Read so far: {_shorten(read)}.")
    lines.append(f"A phrasing that works: {EXAMPLE_REQUEST}")
    lines.append(f"The grammar is described in {DOCS}.")
    return "\n".join(lines)
