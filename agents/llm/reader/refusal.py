"""What a refusal says: the problems, what was read, and the nearest phrasing of this request that works.

The suggestion is built from the request itself: the phrases that were read, in the user's words and
order, with the ones that caused a problem changed (a name that is not a component becomes the
component it is closest to, a reversed range is put in order) or left out, and stand-ins such as
``<how many> experiments`` for what is missing. It is shown only once it reads: with its stand-ins
filled in, the reader reads it and the spec accepts it. Otherwise a shorter one is tried, and at
last :data:`EXAMPLE_REQUEST`.
"""

from __future__ import annotations

import re

from pydantic import ValidationError

from agents.llm.reader.assemble import assemble
from agents.llm.reader.found import Found
from agents.llm.reader.scanner import Scanner, and_names
from agents.llm.reader.words import ANOTHER, HOW_MANY, PROPERTY, STANDINS, SUM_TOTAL, clean, fmt
from athanor.spec import CampaignSpec, formula_elements

__all__ = ["DOCS", "EXAMPLE_REQUEST", "filled", "message", "reads", "suggestion", "summary", "unread_problem"]

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


_NEGATIVE = re.compile(r"(?<![\w.])-\s*(?:\d+(?:\.\d+)?|\.\d+)")
_DECIMAL_NAME = re.compile(r"[A-Za-z]\d*\.\d+[A-Za-z]")


def unread_problem(words: str) -> str:
    """The problem of words no phrase read, saying why when the reason is plain from the words.

    A negative number is never an amount, a count or a step; a formula with decimal subscripts
    (``LiNi0.8Co0.1Mn0.1O2``) cannot be a component name, which holds no ``.``.
    """
    negative = _NEGATIVE.search(words)
    if negative:
        return f'could not read "{words}" ({negative.group(0)} is negative: no amount, count or step can be)'
    if _DECIMAL_NAME.search(words):
        return (
            f'could not read "{words}" (a component name cannot hold ".": give the component a name'
            " without one, such as NMC811)"
        )
    return f'could not read "{words}"'





def message(problems: list[str], read: str, works: str = EXAMPLE_REQUEST) -> str:
    """The refusal: each problem, what was read and a phrasing that works (``works``)."""
    # words of a long request are quoted in problems and in what was read: cut so the refusal stays readable
    lines = ["The request could not be read:"]
    lines += [f"  - {_shorten(p)}" for p in problems]
    lines.append(f"Read so far: {_shorten(read)}.")
    lines.append(f"A phrasing that works: {_shorten(works)}")
    lines.append(f"The grammar is described in {DOCS}.")
    return "\n".join(lines)


def suggestion(scanner: Scanner) -> str:
    """The nearest phrasing of the scanned request that reads, stand-ins included (see the module)."""
    for text in (_nearest(scanner), _minimal(scanner)):
        if text and reads(filled(text)):
            return text
    return EXAMPLE_REQUEST


def reads(text: str) -> bool:
    """Whether the reader reads ``text`` whole and the spec it describes is valid."""
    scanner = Scanner(text)
    scanner.run()
    data = assemble(scanner)
    if scanner.problems or scanner.unread():
        return False
    try:
        CampaignSpec.model_validate(data)
    except ValidationError:
        return False
    return True


def filled(text: str) -> str:
    """``text`` with each stand-in replaced by words that read."""
    return re.sub("|".join(map(re.escape, STANDINS)), lambda m: STANDINS[m.group(0)], text)


def _nearest(scanner: Scanner) -> str:
    """The request's read phrases in its order, fixed where they caused a problem, plus what it lacks."""
    found = scanner.found
    pieces: list[str] = []
    for reading in sorted(found.readings, key=lambda r: r.start):
        words = clean(scanner.text[reading.start : reading.end])
        words = found.fixes.get(words, words)
        if words and words not in pieces:
            pieces.append(words)
    if not found.objectives and not any(PROPERTY in (fix or "") for fix in found.fixes.values()):
        pieces.insert(0, f"Maximise the {PROPERTY}")
    if not found.lists and not found.systems and not found.designations:
        _add_components(found, pieces, after=1)
    if not found.budgets:
        pieces.append(f"{HOW_MANY} experiments")
    if any(q.field == "sum_rule.total" for q in scanner.questions):
        pieces.append(SUM_TOTAL)
    text = pieces[0] if pieces else ""
    for piece in pieces[1:]:
        text += (" " if _CONTINUES.match(piece) else ", ") + piece
    return text[:1].upper() + text[1:]


# A phrase that continues the one before it rather than starting a new one.
_CONTINUES = re.compile(r"(?:of|for|from|with|using|by|and|among|mixing|containing|doped)\s", re.IGNORECASE)


def _add_components(found: Found, pieces: list[str], after: int) -> None:
    """Stand-in components: after a description (a Ni-rich alloy of Ni and ...), or at ``after``."""
    for label, _ in found.descriptions:
        named = [p for p in re.split(r"[-/\s]", label) if formula_elements(p)]
        listed = f"of {and_names([*named, ANOTHER])}" if named else "of <A>, <B> and <C>"
        for index, piece in enumerate(pieces):
            if label.split()[0] in piece:
                pieces[index] = f"{piece} {listed}"
                return
    names = list(dict.fromkeys(found.lone_names))
    listed = f"of {and_names([*names, ANOTHER])}" if names else "of <A>, <B> and <C>"
    pieces.insert(after, listed)


def _minimal(scanner: Scanner) -> str:
    """Only what every request needs: the objective, the components and the budget (and batch size)."""
    found = scanner.found
    objective = next(iter(found.objectives), None)
    aim = f"Maximise the {PROPERTY}"
    if objective is not None:
        aim = f"{objective.direction.capitalize()} the {objective.words}"
    names = next((names for names, _ in found.lists + found.systems), None)
    parts = [f"{aim} of {and_names(names) if names and len(names) > 1 else '<A>, <B> and <C>'}"]
    budget = next((n for n, _ in found.budgets if n > 0), None)
    parts.append(f"{budget if budget else HOW_MANY} experiments")
    batch = next((n for n, _ in found.batches if n > 0 and (budget is None or n <= budget)), None)
    if batch:
        parts.append(f"in batches of {batch}")
    return ", ".join(parts)
