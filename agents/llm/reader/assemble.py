"""From what the scanner found to the fields of a campaign spec, with every problem that stops it."""

from __future__ import annotations

import difflib
import re
from typing import Any

from agents.llm.reader.found import Amount, BoundPhrase, Found, ObjectivePhrase, QuantityBound, TargetPhrase
from agents.llm.reader.patterns import VERB_WORDS
from agents.llm.reader.scanner import Scanner, and_names
from agents.llm.reader.words import PROPERTY_UNITS, fmt, property_name
from athanor.asking import Question

#: Asked when a request states no budget; the answer joins the request as "N experiments".
BUDGET_QUESTION = Question(
    field="budget.experiments",
    text="How many experiments may the campaign run in all?",
    words="{answer} experiments",
)
#: Asked when plain amounts are too large to be fractions and no sum rule says what they are.
SUM_QUESTION = Question(
    field="sum_rule.total",
    text="Do the amounts add up to 1 (fractions) or to 100 (percent)?",
    choices=("1", "100"),
    phrases={"1": "fractions sum to 1", "100": "summing to 100 %"},
)
#: Asked on a terminal when a request states no batch size (without one, one at a time).
BATCH_QUESTION = Question(
    field="budget.batch_size",
    text="How many experiments at a time?",
    words="{answer} at a time",
    default="1",
)

__all__ = ["BATCH_QUESTION", "BUDGET_QUESTION", "SUM_QUESTION", "assemble"]


def _single(items: list[tuple[int, str]], what: str, found: Found, problems: list[str]) -> int | None:
    """The one value ``items`` give, or None with a problem when they give several."""
    values = {v for v, _ in items}
    if len(values) > 1:
        quoted = " and ".join(f'"{p}"' for _, p in items)
        problems.append(f"{what} is given more than once ({quoted}); give it once")
        for value, phrase in items:
            if value != items[0][0]:
                found.fixes[phrase] = None
        return None
    return items[0][0] if items else None


def _resolve_objectives(found: Found, scanner: Scanner) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The objectives (with targets and thresholds) and the outcome constraints; empty on a problem."""
    problems = scanner.problems
    objectives: list[ObjectivePhrase] = []
    for o in found.objectives:
        if not any(o.name == k.name and o.direction == k.direction for k in objectives):
            objectives.append(o)
    leftover = VERB_WORDS.finditer(scanner.working.text)
    leftover_verbs = {"maximise" if v.group("up") else "minimise" for v in leftover}
    if not objectives:
        if not found.unknown_properties:  # an unknown property is a problem of its own
            problems.append(
                'no objective: say what to optimise, e.g. "Maximise the conductivity" or "Minimise the band'
                ' gap"'
            )
        return [], []
    names = list(dict.fromkeys(o.name for o in objectives))
    clash = [n for n in names if len({o.direction for o in objectives if o.name == n}) > 1]
    stray = leftover_verbs and (len(names) > 1 or leftover_verbs != {objectives[0].direction})
    if clash or stray:
        phrases = " and ".join(f'"{o.phrase}"' for o in objectives)
        what = f"{clash[0].replace('_', ' ')}" if clash else "its objective"
        problems.append(
            f"conflicting directions ({phrases}{' and another verb' if leftover_verbs else ''}): a campaign"
            f" either maximises or minimises {what}; ask for one"
        )
        for o in objectives[1:]:
            if o.name in clash:
                found.fixes[o.phrase] = None
        return [], []
    targets = _targets_by_objective(found, objectives, problems)
    out: dict[str, dict[str, Any]] = {}
    for objective in objectives:
        unit = objective.unit
        target: float | None = None
        mine = targets.get(objective.name, [])
        if len(mine) > 1:
            problems.append("more than one target (" + " and ".join(f'"{t.phrase}"' for t in mine) + ")")
            for t in mine[1:]:
                found.fixes[t.phrase] = None
        elif mine:
            t = mine[0]
            target = t.value
            if t.direction and t.direction != objective.direction:
                problems.append(
                    f'the target "{t.phrase}" points the other way from "{objective.phrase}"; use "reaches"'
                )
                found.fixes[t.phrase] = None
            if t.unit and unit and t.unit.replace(" ", "") != unit.replace(" ", ""):
                problems.append(f"the target is in {t.unit} but the objective is in {unit}; use one unit")
            unit = unit or t.unit
        out[objective.name] = {"name": objective.name, "direction": objective.direction, "unit": unit}
        out[objective.name]["target"] = target
    outcomes = _resolve_quantity_bounds(found, objectives, out, problems)
    for entry in out.values():
        if entry["unit"] is None:
            entry["unit"] = PROPERTY_UNITS.get(entry["name"], "")
    return list(out.values()), outcomes


def _targets_by_objective(
    found: Found, objectives: list[ObjectivePhrase], problems: list[str]
) -> dict[str, list[TargetPhrase]]:
    """Each target under the objective it is for: the one it names, or the only one."""
    names = {o.name for o in objectives}
    out: dict[str, list[TargetPhrase]] = {}
    for t in found.targets:
        if len(names) == 1:
            objective = objectives[0]
            if t.prop and property_name(t.prop) != objective.name:
                problems.append(
                    f'the target "{t.phrase}" names {t.prop!r} but the objective is {objective.words!r};'
                    ' name the same property, or say "until it reaches ..."'
                )
                found.fixes[t.phrase] = None
            out.setdefault(objective.name, []).append(t)
        elif t.prop and property_name(t.prop) in names:
            out.setdefault(property_name(t.prop), []).append(t)
        else:
            listed = ", ".join(o.words for o in objectives)
            problems.append(
                f'the target "{t.phrase}" does not name one of the objectives ({listed}); name it, e.g.'
                f' "target {objectives[0].words} of ..." or "until {objectives[0].words} reaches ..."'
            )
            found.fixes[t.phrase] = None
    return out


def _resolve_quantity_bounds(
    found: Found, objectives: list[ObjectivePhrase], out: dict[str, dict[str, Any]], problems: list[str]
) -> list[dict[str, Any]]:
    """Bounds on measured quantities: thresholds of objectives (into ``out``) and outcome constraints.

    With one objective there is no trade-off to bound, so a bound on it is an outcome constraint too.
    """
    by_name = {o.name: o for o in objectives}
    outcomes: list[dict[str, Any]] = []
    seen: dict[str, QuantityBound] = {}
    for bound in found.quantity_bounds:
        objective = by_name.get(bound.name)
        entry = out.get(bound.name)
        if entry is not None and bound.unit and entry["unit"]:
            if bound.unit.replace(" ", "") != entry["unit"].replace(" ", ""):
                problems.append(
                    f'"{bound.phrase}" is in {bound.unit} but {bound.words} is in {entry["unit"]};'
                    " use one unit"
                )
                continue
        if objective is None or len(objectives) == 1:
            unit = bound.unit or (entry["unit"] if entry else None) or PROPERTY_UNITS.get(bound.name, "")
            outcomes.append(
                {"name": bound.name, "operator": bound.operator, "value": bound.value, "unit": unit}
            )
            continue
        worst_side = ">=" if objective.direction == "maximise" else "<="
        if bound.operator != worst_side:
            side = "at least" if worst_side == ">=" else "at most"
            problems.append(
                f'"{bound.phrase}" bounds {bound.words} in the direction it is {objective.direction}d in; a'
                f' threshold is the worst acceptable value ("{bound.words} {side} ..."), and a value to stop'
                " at is a target"
            )
            found.fixes[bound.phrase] = None
            continue
        if bound.name in seen and seen[bound.name].value != bound.value:
            problems.append(
                f'the threshold of {bound.words} is given twice ("{seen[bound.name].phrase}" and'
                f' "{bound.phrase}"); give it once'
            )
            continue
        seen[bound.name] = bound
        out[bound.name]["threshold"] = bound.value
        out[bound.name]["unit"] = out[bound.name]["unit"] or bound.unit
    return outcomes


def _resolve_components(found: Found, problems: list[str]) -> tuple[list[str], str]:
    """Component names and a label of the system for the title."""
    labels = [label for _, label in found.systems] or [label for label, _ in found.descriptions]
    label = labels[0] if len(labels) == 1 else ""
    # "of Cu, Ag and Zr, choose at most 2 of Cu, Ag and Zr" lists the same components twice: one list
    distinct = list(dict.fromkeys(tuple(names) for names, _ in found.lists))
    if len(distinct) == 1:
        found.lists = found.lists[:1]
    if len(found.lists) > 1:
        quoted = " and ".join(f'"{p}"' for _, p in found.lists)
        problems.append(f"components are listed more than once ({quoted}); list them once")
        objective_phrases = {o.phrase for o in found.objectives}
        for _, phrase in found.lists[1:]:
            if phrase not in objective_phrases:
                found.fixes[phrase] = None
        return [], label
    if found.lists:
        names = found.lists[0][0]
    elif len(found.systems) == 1:
        names = found.systems[0][0]
    elif found.systems:
        problems.append(
            "more than one system is named (" + ", ".join(s for _, s in found.systems) + "); name one"
        )
        return [], label
    elif found.descriptions:
        for described, word in found.descriptions:
            problems.append(
                f'no components: "{described}" does not say what is in it ("{word}" is not a component);'
                f' list the components, e.g. "a {described} of A, B and C"'
            )
        return [], label
    else:
        if not found.designations:  # a designation is a problem of its own
            problems.append(
                'no components: name at least two, e.g. "of a blend of P3HT, D1 and D2", "of a Cu-Ag-Zr'
                ' alloy" or "components A, B and C"'
            )
        return [], label
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"component(s) {', '.join(dupes)} listed more than once; name each once")
    if not label:
        label = ", ".join(names[:-1]) + f" and {names[-1]}"
    return list(dict.fromkeys(names)), label


def _check_names(used: list[tuple[str, str]], names: list[str], found: Found, problems: list[str]) -> bool:
    """Whether every name a bound or constraint uses is a component; each one that is not is a problem."""
    ok = True
    for name, phrase in used:
        if name == "*" or name in names:
            continue
        ok = False
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        close = close or [n for n in names if n.lower() == name.lower()]
        hint = f" (did you mean {close[0]}?)" if close else ""
        fixed = found.fixes.get(phrase, phrase)
        if close and fixed:  # the suggestion names the close component instead
            found.fixes[phrase] = re.sub(rf"(?<![\w:-]){re.escape(name)}(?![\w:-])", close[0], fixed)
        else:
            found.fixes[phrase] = None
        problems.append(
            f'"{phrase}" bounds {name}, which is not a component{hint}; the components are {", ".join(names)}'
        )
    return ok


def _resolve_unit(scanner: Scanner, amounts: list[Amount]) -> tuple[float | None, str]:
    """The sum-rule total (None: no sum rule) and the composition unit."""
    found, problems = scanner.found, scanner.problems
    rules = {(r.total, r.pct) for r in found.sum_rules}
    kinds = {a.pct for a in amounts if a.pct} | {r.pct for r in found.sum_rules if r.pct}
    specific = kinds - {"%"}
    if len(specific) > 1:
        problems.append(
            f"amounts mix {' and '.join(sorted(specific))}, which cannot be converted into each other;"
            " give every amount in one kind of percent"
        )
    if len({r.total for r in found.sum_rules}) > 1:
        quoted = " and ".join(f'"{r.phrase}"' for r in found.sum_rules)
        problems.append(f"the sum rule is given more than once and differs ({quoted}); give it once")
        for rule in found.sum_rules[1:]:
            found.fixes[rule.phrase] = None
        return 1.0, "fraction"
    if rules:
        rule = found.sum_rules[0]
        if rule.total is None:
            unit = "percent" if any(a.pct for a in amounts) else "fraction"
            return None, unit
        if rule.total not in (1.0, 100.0) or (rule.pct and rule.total != 100.0):
            problems.append(f'"{rule.phrase}": amounts must sum to 1 (fractions) or to 100 % (percent)')
            found.fixes[rule.phrase] = None
            return 1.0, "fraction"
        return rule.total, "fraction" if rule.total == 1.0 else "percent"
    if any(a.pct for a in amounts):
        if any(a.pct is None for a in amounts):
            problems.append(
                "some amounts are in percent and some have no unit; give every amount in percent, or"
                ' state the sum rule ("fractions sum to 1" or "summing to 100 %")'
            )
        return 100.0, "percent"
    _ask_total_if_unclear(scanner)
    return 1.0, "fraction"


def _ask_total_if_unclear(scanner: Scanner) -> None:
    """Ask whether the amounts add up to 1 or 100 when a plain amount is too large to be a fraction.

    With no sum rule and no percent sign, "Al at most 15" may mean 15 % or a typo; the reader does
    not pick one.
    """
    found = scanner.found
    plain = [(a, b.phrase) for b in found.bounds for a in (b.lower, b.upper) if a is not None]
    plain += [(a, phrase) for a, phrase in found.resolutions]
    plain += [(c.rhs, c.phrase) for c in found.constraints if set(c.coefficients.values()) == {1.0}]
    large = [(a, phrase) for a, phrase in plain if a.pct is None and a.value > 1.0]
    if not large:
        return
    amount, phrase = large[0]
    scanner.ask(
        SUM_QUESTION,
        f"{fmt(amount.value)} in \"{phrase}\" has no unit and is more than 1: do the amounts add up to 1"
        ' (fractions) or to 100 (percent)? Say "fractions sum to 1" or "summing to 100 %"',
    )


#: What a percent marker says the fractions are fractions of (``CampaignSpec.basis``).
_BASIS_OF_MARKER = {"at.%": "mole", "mol.%": "mole", "wt.%": "mass", "vol.%": "volume"}


def _basis_of(amounts: list[Amount], found: Found, problems: list[str]) -> str | None:
    """The composition basis the markers and words name ("10 at.%": mole, "by mass"), or None.

    Mixed markers are refused by :func:`_resolve_unit`; a basis word that contradicts a marker is
    refused here.
    """
    markers = {a.pct for a in amounts if a.pct} | {r.pct for r in found.sum_rules if r.pct}
    named = {_BASIS_OF_MARKER[m]: f"{m} amounts" for m in markers if m in _BASIS_OF_MARKER}
    for basis, phrase in found.bases:
        named.setdefault(basis, f'"{phrase}"')
    if len(named) > 1:
        said = " and ".join(f"{where} ({basis})" for basis, where in named.items())
        problems.append(f"the fractions are of one thing only, but the request names {said}; name one")
        for _, phrase in found.bases:
            found.fixes[phrase] = None
        return None
    return next(iter(named), None)


def _in_unit(amount: Amount, unit: str) -> float:
    if amount.pct and unit == "fraction":
        return amount.value / 100.0
    return amount.value


def _component_bounds(
    found: Found, names: list[str], total: float | None, unit: str, problems: list[str], *, unit_unclear: bool
) -> list[dict[str, Any]]:
    """Each component with its bounds in the spec's unit; a bound that cannot hold is a problem.

    A bound is never moved to fit: a number above the total, or a lower end above the upper end,
    is refused quoting its words. With ``unit_unclear`` (the user is asked whether the amounts add up
    to 1 or 100) a number above the total is left to the answer.
    """
    scale = 1.0 if unit == "fraction" else 100.0
    bounds: dict[str, dict[str, float]] = {n: {"lower": 0.0, "upper": scale} for n in names}
    seen: dict[tuple[str, str], tuple[float, str]] = {}
    # "each component ..." first, so that a bound on one component overrides it
    for b in sorted(found.bounds, key=lambda b: b.name != "*"):
        targets = names if b.name == "*" else [b.name] if b.name in bounds else []
        if b.lower is not None and b.upper is not None and b.lower.value > b.upper.value:
            problems.append(
                f'"{b.phrase}": the lower end ({fmt(b.lower.value)}) is above the upper end'
                f" ({fmt(b.upper.value)}); give the smaller number first"
            )
            found.fixes[b.phrase] = _swapped(b)
        for side, amount in (("lower", b.lower), ("upper", b.upper)):
            if amount is None:
                continue
            value = _in_unit(amount, unit)
            if total is not None and value > total + 1e-9 and not unit_unclear:
                problems.append(
                    f'"{b.phrase}": {fmt(value)} is more than the total of {fmt(total)} the amounts add up'
                    " to; no component can have more than all of it"
                )
                found.fixes[b.phrase] = None
            key = (b.name, side)
            if key in seen and seen[key][0] != value:
                problems.append(
                    f'the {side} bound of {b.name} is given twice ("{seen[key][1]}" and "{b.phrase}");'
                    " give it once"
                )
                found.fixes[b.phrase] = None
            seen[key] = (value, b.phrase)
            for name in targets:
                bounds[name][side] = value
    for name in names:
        low, high = bounds[name]["lower"], bounds[name]["upper"]
        said = {side: seen.get((name, side)) or seen.get(("*", side)) for side in ("lower", "upper")}
        if low > high and said["lower"] and said["upper"] and said["lower"][1] != said["upper"][1]:
            problems.append(
                f'"{said["lower"][1]}" and "{said["upper"][1]}" leave {name} no room: at least {fmt(low)}'
                f" and at most {fmt(high)}; one of them is not what you mean"
            )
            found.fixes[said["upper"][1]] = None
    components = []
    for name in names:
        entry: dict[str, Any] = {"name": name, **bounds[name]}
        if total is None:
            entry["unit"] = unit
        components.append(entry)
    return components


def _swapped(bound: BoundPhrase) -> str:
    """A range with its ends in order: "Ag between 0.5 and 0.2" becomes "Ag between 0.2 and 0.5"."""
    assert bound.lower is not None and bound.upper is not None
    low, high = bound.upper, bound.lower
    name = "each component" if bound.name == "*" else bound.name
    return f"{name} between {fmt(low.value)}{_marker(low)} and {fmt(high.value)}{_marker(high)}"


def _marker(amount: Amount) -> str:
    return f" {amount.pct}" if amount.pct else ""


def _check_balance(found: Found, names: list[str], total: float | None, problems: list[str]) -> None:
    """A balance ("Ti the balance"): one component, named in the system, in a request whose amounts add up."""
    balanced = list(dict.fromkeys(name for name, _ in found.balances))
    if len(balanced) > 1:
        quoted = " and ".join(f'"{phrase}"' for _, phrase in found.balances)
        problems.append(f"only one component can be the balance ({quoted}); name one")
        for _, phrase in found.balances[1:]:
            found.fixes[phrase] = None
    for name, phrase in found.balances:
        if names and name not in names:
            problems.append(f'"{phrase}": {name} is not a component; the components are {", ".join(names)}')
            found.fixes[phrase] = None
        if total is None:
            problems.append(
                f'"{phrase}" means the amounts add up to a total, but the request says they do not'
                ' ("no sum rule"); drop one of them'
            )
            found.fixes[phrase] = None


def assemble(scanner: Scanner) -> dict[str, Any]:
    """The spec fields of a scanned request; empty when ``scanner.problems`` holds any problem.

    Problems found on the way are added to ``scanner.problems``.
    """
    found, problems = scanner.found, scanner.problems
    objectives, outcomes = _resolve_objectives(found, scanner)
    names, label = _resolve_components(found, problems)

    amounts = [a for b in found.bounds for a in (b.lower, b.upper) if a] + [c.rhs for c in found.constraints]
    amounts += [a for a, _ in found.resolutions]
    total, unit = _resolve_unit(scanner, amounts)
    basis = _basis_of(amounts, found, problems)

    components: list[dict[str, Any]] = []
    if names:
        used = [(b.name, b.phrase) for b in found.bounds]
        used += [(n, c.phrase) for c in found.constraints for n in c.coefficients]
        _check_names(used, names, found, problems)
        unclear = SUM_QUESTION in scanner.questions
        components = _component_bounds(found, names, total, unit, problems, unit_unclear=unclear)
    _check_balance(found, names, total, problems)

    constraints = [
        {"coefficients": c.coefficients, "operator": c.operator, "rhs": _in_unit(c.rhs, unit)}
        for c in found.constraints
    ]
    experiments = _single(found.budgets, "the budget", found, problems)
    if experiments is None and not found.budgets:
        scanner.ask(
            BUDGET_QUESTION,
            'no budget: how many experiments may the campaign run in all? Say e.g. "30 experiments" or'
            ' "a budget of 20 runs"',
        )
    batch = _single(found.batches, "the batch size", found, problems)
    initial = _single(found.initials, "the initial design", found, problems)
    seed = _single(found.seeds, "the seed", found, problems)
    most_present = _single(found.cardinalities, "how many components may be present", found, problems)
    steps = {_in_unit(a, unit) for a, _ in found.resolutions}
    if len(steps) > 1:
        quoted = " and ".join(f'"{p}"' for _, p in found.resolutions)
        problems.append(f"the grid step is given more than once ({quoted}); give it once")
        for _, phrase in found.resolutions[1:]:
            found.fixes[phrase] = None
    categories = _resolve_categories(found, problems)

    if problems:
        return {}
    assert objectives and experiments is not None
    words = {o.name: o.words for o in reversed(found.objectives)}  # the first words of each
    directions = {o["direction"] for o in objectives}
    if len(directions) == 1:
        title = f"{directions.pop()} {and_names([words[o['name']] for o in objectives])} of {label}"
    else:
        title = and_names([f"{o['direction']} {words[o['name']]}" for o in objectives]) + f" of {label}"
    data: dict[str, Any] = {
        "title": title if len(title) <= 80 else title[:77] + "...",
        "request": scanner.text,
        "components": components,
        "sum_rule": None if total is None else {"total": total},
        "constraints": constraints,
        "objectives": objectives,
        "budget": {"experiments": experiments, "batch_size": 1 if batch is None else batch},
    }
    if outcomes:
        data["outcome_constraints"] = outcomes
    if basis is not None:
        data["basis"] = basis
    if initial is not None:
        data["budget"]["initial_experiments"] = initial
    if seed is not None:
        data["seed"] = seed
    if most_present is not None:
        data["max_active_components"] = most_present
    if steps:
        data["resolution"] = steps.pop()
    if categories:
        data["categories"] = categories
    return data


def _resolve_categories(found: Found, problems: list[str]) -> list[dict[str, Any]]:
    """Categorical variables in the order the request names them, each named once."""
    out: list[dict[str, Any]] = []
    for _, name, choices, phrase in sorted(found.categories, key=lambda item: item[0]):
        if any(c["name"] == name for c in out):
            problems.append(
                f'the choices of {name} are given more than once (again in "{phrase}"); give them once'
            )
            continue
        out.append({"name": name, "choices": choices})
    return out


