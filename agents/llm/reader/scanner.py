"""The scanner: runs each phrase pattern over a request and keeps what every match says.

Each match marks the characters it used; :meth:`Scanner.unread` returns what no pattern used and is
not filler. Turning what was found into spec fields is :mod:`agents.llm.reader.assemble`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from agents.llm.reader.found import (
    Amount,
    BoundPhrase,
    ConstraintPhrase,
    Found,
    ObjectivePhrase,
    QuantityBound,
    SumRulePhrase,
    TargetPhrase,
)
from agents.llm.reader.patterns import (
    BATCH_PATTERNS,
    BOUND,
    BOUND_REVERSED,
    BUDGET_PATTERNS,
    CARDINALITY_PATTERNS,
    CATEGORY_PATTERNS,
    DOWN_RELATIONS,
    EACH,
    GROUP_BOUND,
    INITIAL_PATTERNS,
    LIST,
    NUM,
    OBJECTIVE,
    OBJECTIVE_MORE,
    PLUS_CONSTRAINT,
    QUANTITY_BOUND,
    RANGE_PATTERNS,
    RESOLUTION_PATTERNS,
    SEED,
    SPLIT_CHOICES,
    SPLIT_LIST,
    SUM_OF_CONSTRAINT,
    SUM_PATTERNS,
    SUPERLATIVE_UP,
    SYSTEM,
    TARGET_PATTERNS,
    UNIT_RE,
    UP_RE,
    UP_RELATIONS,
    UP_VERBS,
    WORD,
)
from agents.llm.reader.text import USED, WorkingText
from agents.llm.reader.words import (
    FILLER,
    QUANTITIES,
    clean,
    is_modifier,
    pct_kind,
    property_name,
    to_int,
    to_number,
    unit_text,
)

__all__ = ["Scanner", "names_of"]


def names_of(text: str) -> list[str]:
    """The names of a list such as ``"A, B and C"``."""
    return [n for n in SPLIT_LIST.split(text.strip()) if n]


class Scanner:
    """Reads one request; ``problems`` collects everything that stops it being a spec.

    Attributes:
        text: The request.
        working: Its working text, with the characters phrases used marked.
        found: What the phrases said.
        problems: Everything found that stops the request being a spec.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.working = WorkingText(text)
        self.found = Found()
        self.problems: list[str] = []
        self._objective_ends: dict[int, ObjectivePhrase] = {}

    # -- scanning -------------------------------------------------------------------------------------
    def scan(self, pattern: re.Pattern[str], handler: Callable[[re.Match[str]], bool]) -> None:
        """Run ``handler`` on each match of ``pattern``; mark the match used unless it returns False."""
        for match in list(pattern.finditer(self.working.text)):
            if handler(match):
                self.working.mark_used(*match.span())

    def phrase(self, match: re.Match[str]) -> str:
        """The request's own words for a match, as messages quote them."""
        return clean(self.working.source(*match.span()))

    def run(self) -> None:
        """Run every phrase pattern, in an order where the more specific phrases come first."""
        # before budgets and bounds: "choose at most 3 of Cu, ..." is neither a bound nor a budget
        for pattern in CARDINALITY_PATTERNS:
            self.scan(pattern, self._cardinality)
        for pattern in BATCH_PATTERNS:
            self.scan(pattern, self._batch)
        for pattern in INITIAL_PATTERNS:
            self.scan(pattern, lambda m: self._count(m, self.found.initials))
        for pattern in BUDGET_PATTERNS:
            self.scan(pattern, lambda m: self._count(m, self.found.budgets))
        self.scan(SEED, lambda m: self._count(m, self.found.seeds))
        for pattern in RESOLUTION_PATTERNS:
            self.scan(pattern, self._resolution)
        for pattern in CATEGORY_PATTERNS:
            self.scan(pattern, self._category)
        for pattern in SUM_PATTERNS:
            self.scan(pattern, self._sum_rule)
        for pattern in TARGET_PATTERNS:
            self.scan(pattern, self._target)
        self.scan(OBJECTIVE, self._objective)
        found = -1
        while len(self.found.objectives) > found:  # "maximise A, B and C": each "and" may add one
            found = len(self.found.objectives)
            self.scan(OBJECTIVE_MORE, self._objective_more)
        self.scan(QUANTITY_BOUND, self._quantity_bound)
        self.scan(PLUS_CONSTRAINT, self._plus_constraint)
        self.scan(SUM_OF_CONSTRAINT, self._sum_of_constraint)
        # the component list before group bounds: in "of A, B and C, A and B each ..." it ends at C
        self.scan(LIST, self._list)
        self.scan(GROUP_BOUND, self._group_bound)
        for pattern in RANGE_PATTERNS:
            self.scan(pattern, self._range)
        self.scan(BOUND, self._bound)
        self.scan(BOUND_REVERSED, self._bound)
        self.scan(SYSTEM, self._system)

    # -- handlers -------------------------------------------------------------------------------------
    def _batch(self, m: re.Match[str]) -> bool:
        n = to_int(m.group("n")) if m.groupdict().get("n") else 1
        self.found.batches.append((n, self.phrase(m)))
        return True

    def _count(self, m: re.Match[str], sink: list[tuple[int, str]]) -> bool:
        sink.append((to_int(m.group("n")), self.phrase(m)))
        return True

    def _cardinality(self, m: re.Match[str]) -> bool:
        self.found.cardinalities.append((to_int(m.group("n")), self.phrase(m)))
        if m.groupdict().get("list"):
            self.found.lists.append((names_of(m.group("list")), self.phrase(m)))
        return True

    def _resolution(self, m: re.Match[str]) -> bool:
        self.found.resolutions.append((self._amount(m, "v", "pct"), self.phrase(m)))
        return True

    def _category(self, m: re.Match[str]) -> bool:
        choices = [c for c in SPLIT_CHOICES.split(m.group("choices").strip()) if c]
        self.found.categories.append((m.start(), m.group("var"), choices, self.phrase(m)))
        return True

    def _sum_rule(self, m: re.Match[str]) -> bool:
        text = m.group(0).lower()
        groups = m.groupdict()
        pct = pct_kind(groups.get("pct"))
        if groups.get("total"):
            total: float | None = to_number(groups["total"])
        elif "independent" in text or "no sum rule" in text or "need not" in text:
            total = None
        elif "fraction" in text:
            total = 1.0
        else:
            total = 100.0
            pct = pct or "%"
        self.found.sum_rules.append(SumRulePhrase(total=total, pct=pct, phrase=self.phrase(m)))
        return True

    def _target(self, m: re.Match[str]) -> bool:
        groups = m.groupdict()
        relation = (groups.get("rel") or "").lower()
        direction = None
        if relation and re.fullmatch(UP_RELATIONS, relation, re.I):
            direction = "maximise"
        elif relation and re.fullmatch(DOWN_RELATIONS, relation, re.I):
            direction = "minimise"
        self.found.targets.append(
            TargetPhrase(
                value=float(groups["v"]),
                unit=unit_text(groups.get("u")),
                prop=groups.get("prop"),
                direction=direction,
                phrase=self.phrase(m),
            )
        )
        return True

    def _objective(self, m: re.Match[str]) -> bool:
        verb = m.group("verb").lower()
        up = re.match(UP_VERBS, verb, re.I) or re.search(rf"(?:{SUPERLATIVE_UP})$", verb, re.I)
        words = re.sub(r"\s+", " ", m.group("prop")).lower()
        objective = ObjectivePhrase(
            name=property_name(words),
            words=words,
            direction="maximise" if up else "minimise",
            unit=unit_text(m.group("u1") or m.group("u2")),
            phrase=self.phrase(m),
        )
        self.found.objectives.append(objective)
        self._objective_ends[m.end()] = objective
        return True

    def _objective_more(self, m: re.Match[str]) -> bool:
        before = self._objective_ends.get(m.start())
        prop = m.group("prop")
        # right after an objective; without "the" a capitalised word is more likely a component name
        if before is None or not (m.group("the") or prop[0].islower()):
            return False
        words = re.sub(r"\s+", " ", prop).lower()
        objective = ObjectivePhrase(
            name=property_name(words),
            words=words,
            direction=before.direction,
            unit=unit_text(m.group("u1") or m.group("u2")),
            phrase=re.sub(r"^(?:and|&)\s+", "", self.phrase(m).lstrip(", "), flags=re.I),
        )
        self.found.objectives.append(objective)
        self._objective_ends[m.end()] = objective
        return True

    def _quantity_bound(self, m: re.Match[str]) -> bool:
        words = re.sub(r"\s+", " ", m.group("prop")).lower()
        name = property_name(words)
        if name not in QUANTITIES and all(o.name != name for o in self.found.objectives):
            return False  # "P3HT at least 0.3" bounds a component
        operator = "<=" if UP_RE.fullmatch(m.group("cmp").strip()) else ">="
        self.found.quantity_bounds.append(
            QuantityBound(name, words, operator, float(m.group("v")), unit_text(m.group("u")), self.phrase(m))
        )
        return True

    def _amount(self, m: re.Match[str], number: str, pct: str) -> Amount:
        return Amount(float(m.group(number)), pct_kind(m.groupdict().get(pct)))

    def _plus_constraint(self, m: re.Match[str]) -> bool:
        coefficients: dict[str, float] = {}
        for term in re.split(r"\s*\+\s*", m.group("lhs").strip()):
            coef = re.match(rf"({NUM})\s*\*?\s*(.+)$", term, re.I)
            name, value = (coef.group(2), float(coef.group(1))) if coef else (term, 1.0)
            name = name.strip()
            coefficients[name] = coefficients.get(name, 0.0) + value
        self._add_constraint(m, coefficients)
        return True

    def _sum_of_constraint(self, m: re.Match[str]) -> bool:
        self._add_constraint(m, dict.fromkeys(names_of(m.group("names")), 1.0))
        return True

    def _add_constraint(self, m: re.Match[str], coefficients: dict[str, float]) -> None:
        operator = "<=" if UP_RE.fullmatch(m.group("cmp").strip()) else ">="
        self.found.constraints.append(
            ConstraintPhrase(coefficients, operator, self._amount(m, "v", "pct"), self.phrase(m))
        )

    def _group_bound(self, m: re.Match[str]) -> bool:
        mode = " ".join((m.group("mode") or m.group("mode2") or "").split()).lower()
        names = names_of(m.group("names"))
        if mode in ("together", "combined", "jointly", "in total"):
            self._add_constraint(m, dict.fromkeys(names, 1.0))
        elif mode:
            for name in names:
                self._add_bound(name, m.group("cmp"), self._amount(m, "v", "pct"), self.phrase(m))
        else:
            phrase = self.phrase(m)
            self.problems.append(
                f'"{phrase}" is ambiguous: write "{names[0]} and {names[1]} each ..." to bound each one,'
                f' or "{names[0]} and {names[1]} together ..." to bound their sum'
            )
        return True

    def _add_bound(self, name: str, cmp: str, amount: Amount, phrase: str) -> None:
        upper = bool(UP_RE.fullmatch(cmp.strip()))
        lower = None if upper else amount
        self.found.bounds.append(BoundPhrase(name, lower, amount if upper else None, phrase))

    def _subject(self, m: re.Match[str]) -> str:
        name = m.group("name")
        return "*" if re.fullmatch(EACH, name, re.I) else name

    def _range(self, m: re.Match[str]) -> bool:
        low, high = self._amount(m, "a", "pa"), self._amount(m, "b", "pb")
        if low.pct is None:
            low.pct = high.pct  # "between 0 and 30 %": the marker applies to both numbers
        self.found.bounds.append(BoundPhrase(self._subject(m), low, high, self.phrase(m)))
        return True

    def _bound(self, m: re.Match[str]) -> bool:
        self._add_bound(self._subject(m), m.group("cmp"), self._amount(m, "v", "pct"), self.phrase(m))
        return True

    def _system(self, m: re.Match[str]) -> bool:
        raw = m.group("names")
        if not m.group("noun") and ("-" in raw or not m.group("prefix").strip() or UNIT_RE.fullmatch(raw)):
            return False  # "Cu-Ag" alone may be one hyphenated name, "mg/mL" a unit; a noun settles it
        names = re.split(r"\s*[-/]\s*", raw)
        label = re.sub(r"\s*([-/])\s*", r"\1", raw)
        if m.group("noun"):
            label += " " + " ".join(m.group("noun").lower().split())
        modifiers = [n for n in names if is_modifier(n)]
        if modifiers:  # "a Fe-based alloy" says what the alloy is like, not what is in it
            self.found.descriptions.append((label, modifiers[0]))
        else:
            self.found.systems.append((names, label))
        return True

    def _list(self, m: re.Match[str]) -> bool:
        names = names_of(m.group("list"))
        if len(names) < 2:
            return False
        self.found.lists.append((names, self.phrase(m)))
        return True

    # -- leftovers --------------------------------------------------------------------------------------
    def unread(self) -> list[str]:
        """Quoted stretches of the request that no rule used and that are not filler."""
        fragments = []
        work = self.working.text
        for segment in re.finditer(rf"[^{USED}]+", work):
            bad = [w for w in WORD.finditer(segment.group(0)) if w.group(0).lower() not in FILLER]
            if bad:
                start = segment.start() + bad[0].start()
                end = segment.start() + bad[-1].end()
                while start > 0 and work[start - 1] in "+-":
                    start -= 1
                fragments.append(self.working.source(start, end).strip())
        return fragments


