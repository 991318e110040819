"""The scanner: runs each phrase pattern over a request and keeps what every match says.

Each match marks the characters it used; :meth:`Scanner.unread` returns what no pattern used and is
not filler. Turning what was found into spec fields is :mod:`agents.llm.reader.assemble`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from agents.llm.reader.chinese import CHINESE_REWRITES, CJK_WORD, HAS_CJK
from agents.llm.reader.found import (
    Amount,
    BoundPhrase,
    ConstraintPhrase,
    Found,
    ObjectivePhrase,
    QuantityBound,
    Reading,
    SumRulePhrase,
    TargetPhrase,
)
from agents.llm.reader.patterns import (
    AS_MUCH_AS_POSSIBLE,
    AS_POSSIBLE_OBJECTIVE,
    BALANCE_PATTERNS,
    BASIS,
    BATCH_PATTERNS,
    BETTER_VERBS,
    BOUND,
    BOUND_REVERSED,
    BUDGET_PATTERNS,
    CARDINALITY_PATTERNS,
    CATEGORY_PATTERNS,
    DESIGNATION,
    DOPED,
    DOWN_RELATIONS,
    EACH,
    GROUP_BOUND,
    INITIAL_PATTERNS,
    LIST,
    NUM,
    OBJECTIVE_MORE,
    OBJECTIVE_PATTERNS,
    PLUS_CONSTRAINT,
    QUANTITY_BOUND,
    RANGE_PATTERNS,
    RESOLUTION_PATTERNS,
    SEED,
    SPLIT_CHOICES,
    SPLIT_LIST,
    SUM_OF_CONSTRAINT,
    SUM_PATTERNS,
    SUPERLATIVE_OBJECTIVE,
    SYSTEM,
    TARGET_PATTERNS,
    UNIT_RE,
    UNKNOWN_PROPERTY,
    UP_RE,
    UP_RELATIONS,
    UP_VERBS,
    WORD,
)
from agents.llm.reader.text import USED, WorkingText
from agents.llm.reader.words import (
    FILLER,
    HIGHEST_OR_LOWEST,
    MAXIMISE_OR_MINIMISE,
    PROPERTY,
    QUANTITIES,
    basis_of_words,
    best_direction,
    clean,
    element_string,
    fmt,
    is_modifier,
    pct_kind,
    property_name,
    to_int,
    to_number,
    unit_text,
)
from athanor.asking import Question
from athanor.spec import formula_elements

__all__ = ["Scanner", "and_names", "names_of"]

# Superlatives that are read as an objective only after "the" or "for" ("at most 0.3" is a bound).
_NEEDS_THE = frozenset({"most", "least", "max", "min", "maximum", "minimum", "maximal", "minimal"})
_UP_WORDS = frozenset(
    "highest largest greatest biggest fastest most maximum max maximal high large big great fast much".split()
)
_ELEMENT = re.compile(r"[A-Z][a-z]?")
#: Endings of words that describe rather than name a property ("the most stable").
ADJECTIVE = re.compile(r"(?:able|ible|ive|ous|ful|ic|al)$")


def _direction(groups: dict[str, str | None], words: str) -> str | None:
    """The direction an objective phrase asks for; None for "best" of a property of unknown sense."""
    verb = (groups.get("verb") or "").lower()
    if re.fullmatch(BETTER_VERBS, verb, re.I):
        return best_direction(words)
    if verb:
        return "maximise" if re.fullmatch(UP_VERBS, verb, re.I) else "minimise"
    way = (groups.get("sup") or groups.get("way") or "").lower()
    if way == "best":
        return best_direction(words)
    return "maximise" if way in _UP_WORDS else "minimise"


def _amount_text(amount: Amount) -> str:
    return fmt(amount.value) + (f" {amount.pct}" if amount.pct else "")


_DESCRIBED = re.compile(r"(?:the\s+)?(?:most|least)\s+\w+", re.IGNORECASE)
_BEST = re.compile(r"(?<![A-Za-z])best(?![A-Za-z])|最好|最佳|最优", re.IGNORECASE)


def and_names(names: list[str]) -> str:
    """``A``, ``A and B``, ``A, B and C``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


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
        self.working = WorkingText(text, CHINESE_REWRITES if HAS_CJK.search(text) else ())
        self.found = Found()
        self.problems: list[str] = []
        self.questions: list[Question] = []
        self._objective_ends: dict[int, ObjectivePhrase] = {}

    def ask(self, question: Question, problem: str) -> None:
        """A problem that ``question`` settles: the request lacks something a user can be asked."""
        self.problems.append(problem)
        self.questions.append(question)

    @property
    def only_questions(self) -> bool:
        """Whether every problem is one a question settles (nothing else stops the request)."""
        return bool(self.questions) and len(self.questions) == len(self.problems) and not self.unread()

    # -- scanning -------------------------------------------------------------------------------------
    def scan(self, pattern: re.Pattern[str], handler: Callable[[re.Match[str]], bool]) -> None:
        """Run ``handler`` on each match of ``pattern``; mark the match used unless it returns False."""
        for match in list(pattern.finditer(self.working.text)):
            if handler(match):
                self.working.mark_used(*match.span())

    def phrase(self, match: re.Match[str]) -> str:
        """The request's own words for a match, as messages quote them."""
        return clean(self.working.source(*match.span()))

    def note(self, match: re.Match[str], field: str, value: str) -> None:
        """Record that the words of ``match`` became ``field`` with ``value`` (for ``--explain``)."""
        start, end = self.working.source_span(*match.span())
        self.found.readings.append(Reading(start, end, field, value))

    def run(self) -> None:
        """Run every phrase pattern, in an order where the more specific phrases come first."""
        # before budgets and bounds: "choose at most 3 of Cu, ..." is neither a bound nor a budget
        for pattern in CARDINALITY_PATTERNS:
            self.scan(pattern, self._cardinality)
        for pattern in BATCH_PATTERNS:
            self.scan(pattern, self._batch)
        for pattern in INITIAL_PATTERNS:
            self.scan(pattern, lambda m: self._count(m, self.found.initials, "initial design"))
        for pattern in BUDGET_PATTERNS:
            self.scan(pattern, lambda m: self._count(m, self.found.budgets, "budget"))
        self.scan(SEED, lambda m: self._count(m, self.found.seeds, "seed"))
        for pattern in RESOLUTION_PATTERNS:
            self.scan(pattern, self._resolution)
        for pattern in SUM_PATTERNS:
            self.scan(pattern, self._sum_rule)
        for pattern in TARGET_PATTERNS:
            self.scan(pattern, self._target)
        # before choices: in "the Seebeck coefficient from A, B and C" "coefficient" is no variable
        self._objectives()
        self.scan(UNKNOWN_PROPERTY, self._unknown_property)
        self.scan(DESIGNATION, self._designation)
        for pattern in CATEGORY_PATTERNS:
            self.scan(pattern, self._category)
        self.scan(QUANTITY_BOUND, self._quantity_bound)
        self.scan(PLUS_CONSTRAINT, self._plus_constraint)
        self.scan(SUM_OF_CONSTRAINT, self._sum_of_constraint)
        for pattern in BALANCE_PATTERNS:
            self.scan(pattern, self._balance)
        self.scan(DOPED, self._doped)
        # ranges before the list: in "of NiMnGa, Ni from 0.45 to 0.55" Ni is bounded, not listed
        for pattern in RANGE_PATTERNS:
            self.scan(pattern, self._range)
        # the component list before group bounds: in "of A, B and C, A and B each ..." it ends at C
        self.scan(LIST, self._list)
        self.scan(GROUP_BOUND, self._group_bound)
        self.scan(BOUND, self._bound)
        self.scan(BOUND_REVERSED, self._bound)
        self.scan(BASIS, self._basis)
        self.scan(SYSTEM, self._system)

    def _objectives(self) -> None:
        for pattern in OBJECTIVE_PATTERNS:
            self.scan(pattern, self._objective)
        found = -1
        while len(self.found.objectives) > found:  # "maximise A, B and C": each "and" may add one
            found = len(self.found.objectives)
            self.scan(OBJECTIVE_MORE, self._objective_more)
        self.scan(AS_MUCH_AS_POSSIBLE, lambda m: bool(self.found.objectives))
        for pattern in AS_POSSIBLE_OBJECTIVE:
            self.scan(pattern, self._objective)
        self.scan(SUPERLATIVE_OBJECTIVE, self._objective)

    # -- handlers -------------------------------------------------------------------------------------
    def _batch(self, m: re.Match[str]) -> bool:
        n = to_int(m.group("n")) if m.groupdict().get("n") else 1
        self.found.batches.append((n, self.phrase(m)))
        self.note(m, "batch size", f"{n} at a time")
        return True

    def _count(self, m: re.Match[str], sink: list[tuple[int, str]], field: str) -> bool:
        n = to_int(m.group("n"))
        sink.append((n, self.phrase(m)))
        self.note(m, field, f"{n} experiments" if field != "seed" else str(n))
        return True

    def _cardinality(self, m: re.Match[str]) -> bool:
        n = to_int(m.group("n"))
        self.found.cardinalities.append((n, self.phrase(m)))
        value = f"at most {n} components present"
        if m.groupdict().get("list"):
            names = names_of(m.group("list"))
            self.found.lists.append((names, self.phrase(m)))
            value += "; components " + ", ".join(names)
        self.note(m, "components present", value)
        return True

    def _resolution(self, m: re.Match[str]) -> bool:
        amount = self._amount(m, "v", "pct")
        self.found.resolutions.append((amount, self.phrase(m)))
        self.note(m, "grid step", _amount_text(amount))
        return True

    def _category(self, m: re.Match[str]) -> bool:
        choices = [c for c in SPLIT_CHOICES.split(m.group("choices").strip()) if c]
        self.found.categories.append((m.start(), m.group("var"), choices, self.phrase(m)))
        self.note(m, "choice", f"{m.group('var')}: one of {', '.join(choices)}")
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
        basis = basis_of_words(text)
        if basis is not None:
            self.found.bases.append((basis, self.phrase(m)))
        rule = "none: the amounts are independent" if total is None else f"the amounts add up to {fmt(total)}"
        self.note(m, "sum rule", rule)
        return True

    def _target(self, m: re.Match[str]) -> bool:
        groups = m.groupdict()
        relation = (groups.get("rel") or "").lower()
        direction = None
        if relation and re.fullmatch(UP_RELATIONS, relation, re.I):
            direction = "maximise"
        elif relation and re.fullmatch(DOWN_RELATIONS, relation, re.I):
            direction = "minimise"
        target = TargetPhrase(
            value=float(groups["v"]),
            unit=unit_text(groups.get("u")),
            prop=groups.get("prop"),
            direction=direction,
            phrase=self.phrase(m),
        )
        self.found.targets.append(target)
        self.note(m, "target", f"stop at {fmt(target.value)}" + (f" {target.unit}" if target.unit else ""))
        return True

    def _objective(self, m: re.Match[str]) -> bool:
        """Any objective phrase: with a verb, a superlative, a question or "as high as possible"."""
        groups = m.groupdict()
        words = re.sub(r"\s+", " ", m.group("prop")).lower()
        phrase = self.phrase(m)
        sup = (groups.get("sup") or "").lower()
        said_the = groups.get("the") or groups.get("for") or groups.get("sought") or groups.get("find")
        if sup in _NEEDS_THE and not said_the:
            return False  # "at most 0.3", "max 5": a bound, not an objective
        if any(_ELEMENT.fullmatch(word) and formula_elements(word) for word in m.group("prop").split()):
            return False  # "Zr hardness": an element symbol is a component, not part of a property
        lists, systems = len(self.found.lists), len(self.found.systems)
        if groups.get("system") and self._system_words(groups["system"], groups.get("sought")) is None:
            return False
        if groups.get("names") and not self._owner(groups["names"], groups.get("noun"), phrase):
            return False
        if groups.get("list"):
            self.found.lists.append((names_of(groups["list"]), phrase))
        direction = _direction(groups, words)
        purpose = (groups.get("for") or "").strip().lower() == "for"
        if purpose and any(o.name != property_name(words) for o in self.found.objectives):
            first = self.found.objectives[0].phrase
            self.problems.append(
                f'"{phrase}" after "{first}": is {words} a second objective? Write "and {direction} the'
                f' {words}" to optimise both, or leave it out'
            )
            self.found.fixes[phrase] = None
            self.note(m, "not read", "a second objective, or why?")
            return True
        if direction is None or (sup in ("most", "least") and ADJECTIVE.search(words.split()[0])):
            self._unsure(phrase, words, by_verb=bool(groups.get("verb")), sure=direction is not None)
        direction = direction or "maximise"  # refused above; a direction for what was read
        objective = ObjectivePhrase(
            name=property_name(words),
            words=words,
            direction=direction,
            unit=unit_text(groups.get("u1") or groups.get("u2")),
            phrase=phrase,
        )
        self.found.objectives.append(objective)
        self._objective_ends[m.end()] = objective
        unit = f" in {objective.unit}" if objective.unit else ""
        named = self.found.lists[lists:] + self.found.systems[systems:]
        components = "".join(f"; components {', '.join(names)}" for names, _ in named)
        self.note(m, "objective", f"{direction} {objective.name}{unit}{components}")
        return True

    def _unsure(self, phrase: str, words: str, *, by_verb: bool, sure: bool) -> None:
        """A problem for an objective the reader is unsure of, and how the suggestion asks instead.

        Args:
            phrase: The objective's words in the request.
            words: Its property.
            by_verb: The direction came from "optimise" or "improve" (else from "best" or "most").
            sure: The direction is known, but "most" is followed by a description ("most stable").
        """
        if sure:
            self.problems.append(
                f'"{phrase}": "{words.split()[0]}" describes, it does not name a property to measure;'
                ' name the property, e.g. "the highest stability" or "maximise the yield"'
            )
            self.found.fixes[phrase] = _DESCRIBED.sub(f"the highest {PROPERTY}", phrase, count=1)
        elif by_verb:
            self.problems.append(
                f'"{phrase}" does not say whether the {words} should be high or low; write "Maximise the'
                f' {words}" or "Minimise the {words}"'
            )
            self.found.fixes[phrase] = f"{MAXIMISE_OR_MINIMISE} the {words}"
        else:
            self.problems.append(
                f'"{phrase}": "best" does not say whether the {words} should be high or low; write'
                f' "the highest {words}" or "the lowest {words}"'
            )
            self.found.fixes[phrase] = _BEST.sub(HIGHEST_OR_LOWEST, phrase)

    def _unknown_property(self, m: re.Match[str]) -> bool:
        """"maximise Cu, Ag and Zr 的 <Chinese word>": the components are read, the property is not."""
        phrase = self.phrase(m)
        if not self._owner(m.group("names"), m.group("noun"), phrase):
            return False
        unknown = self.working.source(*m.span("unknown"))
        self.problems.append(
            f'"{unknown}" is not a property the reader knows in Chinese; name it in English after 的'
            f' (e.g. "{self.working.source(m.start(), m.start("unknown"))}{PROPERTY}")'
        )
        self.found.fixes[phrase] = phrase.replace(unknown, PROPERTY)
        self.found.unknown_properties.append(unknown)
        self.note(m, "not read", f'the property "{unknown}"')
        return True

    def _designation(self, m: re.Match[str]) -> bool:
        """"Ti-6Al-4V": refused, with the components it names listed for the suggestion."""
        phrase = self.phrase(m)
        names = [m.group("base"), *re.findall(r"[A-Z][a-z]?", m.group("rest"))]
        listed = and_names(names)
        self.problems.append(
            f'"{phrase}" is an alloy designation; the reader does not read amounts inside a name: list the'
            f' components ("of {listed}") and bound them ("{names[1]} at most ...")'
        )
        self.found.fixes[phrase] = f"of {listed}"
        self.found.designations.append(phrase)
        self.note(m, "not read", f"an alloy designation of {listed}")
        return True

    def _owner(self, words: str, noun: str | None, phrase: str) -> bool:
        """Record the components of "X 的 property": a list, or a system in one word; False if none."""
        names = names_of(words)
        if len(names) > 1:
            self.found.lists.append((names, phrase))
            return True
        return self._system_words(words, noun) is not None

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
        self.note(m, "objective", f"{objective.direction} {objective.name}")
        return True

    def _quantity_bound(self, m: re.Match[str]) -> bool:
        words = re.sub(r"\s+", " ", m.group("prop")).lower()
        name = property_name(words)
        if name not in QUANTITIES and all(o.name != name for o in self.found.objectives):
            return False  # "P3HT at least 0.3" bounds a component
        operator = "<=" if UP_RE.fullmatch(m.group("cmp").strip()) else ">="
        value, unit_words = float(m.group("v")), unit_text(m.group("u"))
        bound = QuantityBound(name, words, operator, value, unit_words, self.phrase(m))
        self.found.quantity_bounds.append(bound)
        unit = f" {bound.unit}" if bound.unit else ""
        self.note(m, "threshold or outcome constraint", f"{name} {operator} {fmt(bound.value)}{unit}")
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
        rhs = self._amount(m, "v", "pct")
        self.found.constraints.append(ConstraintPhrase(coefficients, operator, rhs, self.phrase(m)))
        lhs = " + ".join(name if c == 1 else f"{fmt(c)}*{name}" for name, c in coefficients.items())
        self.note(m, "constraint", f"{lhs} {operator} {_amount_text(rhs)}")

    def _group_bound(self, m: re.Match[str]) -> bool:
        mode = " ".join((m.group("mode") or m.group("mode2") or "").split()).lower()
        names = names_of(m.group("names"))
        if mode in ("together", "combined", "jointly", "in total"):
            self._add_constraint(m, dict.fromkeys(names, 1.0))
        elif mode:
            for name in names:
                self._add_bound(m, name, m.group("cmp"), self._amount(m, "v", "pct"))
        else:
            phrase = self.phrase(m)
            self.problems.append(
                f'"{phrase}" is ambiguous: write "{names[0]} and {names[1]} each ..." to bound each one,'
                f' or "{names[0]} and {names[1]} together ..." to bound their sum'
            )
            amount = _amount_text(self._amount(m, "v", "pct"))
            self.found.fixes[phrase] = f"{and_names(names)} each {' '.join(m.group('cmp').split())} {amount}"
            self.note(m, "not read", "each, or together?")
        return True

    def _subject_basis(self, m: re.Match[str]) -> None:
        """The basis a bound's subject names ("the mass fraction of Ag"), if it names one."""
        words = m.groupdict().get("bw") or m.groupdict().get("by")
        basis = basis_of_words(words) if words else None
        if basis is not None:
            self.found.bases.append((basis, self.phrase(m)))

    def _add_bound(self, m: re.Match[str], name: str, cmp: str, amount: Amount) -> None:
        self._subject_basis(m)
        upper = bool(UP_RE.fullmatch(cmp.strip()))
        lower = None if upper else amount
        self.found.bounds.append(BoundPhrase(name, lower, amount if upper else None, self.phrase(m)))
        who = "every component" if name == "*" else name
        self.note(m, "bound", f"{who} {'<=' if upper else '>='} {_amount_text(amount)}")

    def _subject(self, m: re.Match[str]) -> str:
        name = m.group("name")
        return "*" if re.fullmatch(EACH, name, re.I) else name

    def _range(self, m: re.Match[str]) -> bool:
        low, high = self._amount(m, "a", "pa"), self._amount(m, "b", "pb")
        if low.pct is None:
            low.pct = high.pct  # "between 0 and 30 %": the marker applies to both numbers
        name = self._subject(m)
        self._subject_basis(m)
        self.found.bounds.append(BoundPhrase(name, low, high, self.phrase(m)))
        who = "every component" if name == "*" else name
        self.note(m, "bound", f"{who} in [{fmt(low.value)}, {_amount_text(high)}]")
        return True

    def _bound(self, m: re.Match[str]) -> bool:
        self._add_bound(m, self._subject(m), m.group("cmp"), self._amount(m, "v", "pct"))
        return True

    def _balance(self, m: re.Match[str]) -> bool:
        name = m.group("name")
        self.found.balances.append((name, self.phrase(m)))
        self.note(m, "balance", f"{name} takes what the others leave (the amounts add up to the total)")
        return True

    def _basis(self, m: re.Match[str]) -> bool:
        basis = basis_of_words(m.group("basis"))
        assert basis is not None
        self.found.bases.append((basis, self.phrase(m)))
        self.note(m, "basis", f"fractions of {basis}")
        return True

    def _doped(self, m: re.Match[str]) -> bool:
        names = [m.group("host"), *names_of(m.group("list"))]
        self.found.lists.append((names, self.phrase(m)))
        self.note(m, "components", ", ".join(names))
        return True

    def _system_words(self, raw: str, noun: str | None, prefix: str = "of") -> str | None:
        """Record the system one word names (Cu-Ag-Zr, P3HT/CNT, CoCrFeMnNi).

        Returns:
            ``"system"``, ``"description"`` (a Fe-based alloy: no components), or None when the
            word names no system.

        A hyphen-joined word counts only with a noun after it (alloy, blend, ...) or when every part
        is an element or a formula; a slash-joined one after "of", "for" or "in", or with a noun.
        """
        label = re.sub(r"\s*([-/])\s*", r"\1", raw) + (" " + " ".join(noun.lower().split()) if noun else "")
        if ":" in raw and "-" not in raw and "/" not in raw:  # "the Cu:Ag:Au ratio"; PEDOT:PSS is one name
            parts = raw.split(":")
            if not (noun or prefix) or not all(formula_elements(p) for p in parts):
                return None
            self.found.systems.append((parts, label))
            return "system"
        if "-" not in raw and "/" not in raw:
            elements = element_string(raw)
            if elements is None or not (noun or prefix):
                return None
            self.found.systems.append((elements, label))
            return "system"
        names = re.split(r"\s*[-/]\s*", raw)
        if not noun and not prefix:
            return None
        elements_only = all(formula_elements(n) for n in names)
        if not noun and (UNIT_RE.fullmatch(raw) or ("-" in raw and not elements_only)):
            return None  # "o-IDTBR" alone may be one hyphenated name, "mg/mL" a unit; a noun settles it
        modifiers = [n for n in names if is_modifier(n)]
        if modifiers:  # "a Fe-based alloy" says what the alloy is like, not what is in it
            self.found.descriptions.append((label, modifiers[0]))
            return "description"
        self.found.systems.append((names, label))
        return "system"

    def _system(self, m: re.Match[str]) -> bool:
        kind = self._system_words(m.group("names"), m.group("noun"), m.group("prefix").strip())
        if kind == "description":
            self.note(m, "description", f"{self.found.descriptions[-1][0]} (names no components)")
        elif kind == "system":
            self.note(m, "components", ", ".join(self.found.systems[-1][0]))
        return kind is not None

    def _list(self, m: re.Match[str]) -> bool:
        names = names_of(m.group("list"))
        if len(names) < 2:
            self.found.lone_names += names
            return False
        self.found.lists.append((names, self.phrase(m)))
        self.note(m, "components", ", ".join(names))
        return True

    # -- leftovers --------------------------------------------------------------------------------------
    def unread(self) -> list[str]:
        """Quoted stretches of the request that no rule used and that are not filler."""
        return [self.text[begin:finish].strip() for begin, finish in self.unread_spans()]

    def unread_spans(self) -> list[tuple[int, int]]:
        """Where in the request the stretches no rule used and that are not filler are (characters).

        A Chinese word is quoted whole: the Chinese characters next to an unread one are quoted with
        it unless a phrase used them.
        """
        spans = []
        work = self.working.text
        for segment in re.finditer(rf"[^{USED}]+", work):
            bad = [w for w in WORD.finditer(segment.group(0)) if w.group(0).lower() not in FILLER]
            if bad:
                start = segment.start() + bad[0].start()
                end = segment.start() + bad[-1].end()
                while start > 0 and work[start - 1] in "+-":
                    start -= 1
                spans.append(self._whole_chinese_words(*self.working.source_span(start, end)))
        return spans

    def _whole_chinese_words(self, begin: int, finish: int) -> tuple[int, int]:
        """The request span ``[begin, finish)`` widened over the unused Chinese characters around it."""
        used = self._used_in_request()
        text = self.text
        while begin > 0 and CJK_WORD.match(text[begin - 1]) and not used[begin - 1]:
            begin -= 1
        while finish < len(text) and CJK_WORD.match(text[finish]) and not used[finish]:
            finish += 1
        return begin, finish

    def _used_in_request(self) -> list[bool]:
        """For each character of the request, whether a phrase used it."""
        used = [False] * len(self.text)
        for index, char in enumerate(self.working.text):
            if char == USED:
                begin, finish = self.working.source_span(index, index + 1)
                for at in range(begin, finish):
                    used[at] = True
        return used
