"""A language model's reading of a request, checked against what the request's words say.

A model may add what the request never said: a bound nobody asked for, a component not named, the
opposite direction. :func:`check_reading` compares the spec a model returned with what the
deterministic reader finds in the text, whether or not it could read the whole request:

- every number in the spec (bounds other than 0 and the total, constraints, budget, batch size,
  initial design, seed, targets, thresholds, grid step, how many components may be present) must
  appear in the request, as written or as a percentage of it (20 % is 0.2);
- every component must be named in the request (an element of ``CoCrFeMnNi`` or of ``Cu-Ag-Zr``
  counts), and every component the reader found must be in the spec;
- an objective the reader found must keep the direction the words give it.
"""

from __future__ import annotations

import math
import re

from agents.llm.reader.scanner import Scanner
from agents.llm.reader.words import WORD_INT, element_string, fmt, to_int
from athanor.spec import CampaignSpec

__all__ = ["check_reading", "describe_spec"]

_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:e[-+]?\d+)?(?![\d])", re.IGNORECASE)
_WORD_NUMBER = re.compile(rf"(?<![\w-]){WORD_INT}", re.IGNORECASE)
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:[-:/][A-Za-z0-9_]+)*")


def check_reading(request: str, spec: CampaignSpec) -> list[str]:
    """Each way ``spec`` says what ``request`` does not; empty when they agree.

    Args:
        request: The request as the user wrote it.
        spec: A model's reading of it, before any ``--seed`` is applied.

    Returns:
        One sentence per disagreement, quoting the spec's value and saying what the request has.
    """
    scanner = Scanner(request)
    numbers = _numbers(scanner.working.text)  # before the phrases mark what they use
    scanner.run()
    problems = [
        f"{what} is {fmt(value)}, a number the request does not contain (an invented value)"
        for what, value, amount in _spec_numbers(spec)
        if not any(_same(value, n, amount) for n in numbers)
    ]
    named = _names(request)
    problems += [
        f"component {name} is not named in the request"
        for name in spec.component_names
        if name not in named
    ]
    found = [n for names, _ in scanner.found.lists + scanner.found.systems for n in names]
    problems += [
        f"the request names the component {name}, which the model's reading leaves out"
        for name in dict.fromkeys(found)
        if name not in spec.component_names
    ]
    problems += _direction_problems(scanner, spec)
    return problems


def describe_spec(spec: CampaignSpec) -> str:
    """A spec in one line: objectives, components with bounds, sum rule, constraints and budget."""
    unit = "" if spec.sum_rule is None or spec.sum_rule.total == 1.0 else " %"
    parts = ["; ".join(f"{o.direction} {o.name}" for o in spec.objectives)]
    parts.append(", ".join(f"{c.name} {fmt(c.lower)}-{fmt(c.upper)}{unit}" for c in spec.components))
    parts.append("no sum rule" if spec.sum_rule is None else f"summing to {fmt(spec.sum_rule.total)}{unit}")
    parts += [c.describe() for c in spec.constraints]
    parts.append(f"{spec.budget.experiments} experiments, {spec.budget.batch_size} at a time")
    return "; ".join(parts)


def _numbers(text: str) -> list[float]:
    """Every number the working text holds, in digits or in words."""
    values = [float(m.group(0)) for m in _NUMBER.finditer(text)]
    values += [float(to_int(m.group(0))) for m in _WORD_NUMBER.finditer(text)]
    return values


def _same(value: float, number: float, amount: bool) -> bool:
    """Whether ``value`` is ``number`` as written, or (an ``amount``) the same in percent or as a fraction."""
    candidates = (number, number / 100, number * 100) if amount else (number,)
    return any(math.isclose(value, n, rel_tol=1e-9, abs_tol=1e-12) for n in candidates)


def _spec_numbers(spec: CampaignSpec) -> list[tuple[str, float, bool]]:
    """The numbers of a spec that the request must have said.

    Returns:
        (what it is, its value, whether it is an amount of a component, which the request may give in
        percent or as a fraction).
    """
    out: list[tuple[str, float, bool]] = []
    for c in spec.components:
        top = spec.sum_rule.total if spec.sum_rule is not None else (100.0 if c.unit == "percent" else 1.0)
        if c.lower != 0:
            out.append((f"the lower bound of {c.name}", c.lower, True))
        if c.upper != top:
            out.append((f"the upper bound of {c.name}", c.upper, True))
    for c in spec.constraints:
        out.append((f"the bound of the constraint {c.describe()}", c.rhs, True))
        weights = [(n, k) for n, k in c.coefficients.items() if k != 1]
        out += [(f"the coefficient of {n} in {c.describe()}", k, False) for n, k in weights]
    if spec.resolution is not None:
        out.append(("the grid step", spec.resolution, True))
    counts = [("the budget", spec.budget.experiments), ("the batch size", spec.budget.batch_size)]
    counts += [("the initial design", spec.budget.initial_experiments), ("the seed", spec.seed)]
    counts += [("how many components may be present", spec.max_active_components)]
    said = [(what, n) for what, n in counts if n is not None and (what == "the budget" or n not in (0, 1))]
    out += [(what, float(n), False) for what, n in said]
    for o in spec.objectives:
        if o.target is not None:
            out.append((f"the target of {o.name}", o.target, False))
        if o.threshold is not None:
            out.append((f"the threshold of {o.name}", o.threshold, False))
    out += [(f"the outcome constraint on {c.name}", c.value, False) for c in spec.outcome_constraints]
    return out


def _names(request: str) -> set[str]:
    """The names a request holds: its words, the parts of joined names, the elements of element strings."""
    named: set[str] = set()
    for token in _TOKEN.findall(request):
        named.add(token)
        for part in re.split(r"[-/]", token):
            named.add(part)
            named.update(element_string(part) or [])
    return named


def _direction_problems(scanner: Scanner, spec: CampaignSpec) -> list[str]:
    """An objective whose direction in the spec is the opposite of the one the words give."""
    read = {o.name: o for o in scanner.found.objectives}
    problems = []
    for objective in spec.objectives:
        said = read.get(objective.name)
        if said is None and len(read) == 1 and len(spec.objectives) == 1:
            said = next(iter(read.values()))
        if said is not None and said.direction != objective.direction:
            problems.append(
                f'the request asks to {said.direction} {said.words} ("{said.phrase}"), but the model\'s'
                f" reading would {objective.direction} {objective.name}"
            )
    return problems
