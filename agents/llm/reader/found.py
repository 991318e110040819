"""What the scanner found in a request, phrase by phrase, before it becomes spec fields."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Amount",
    "BoundPhrase",
    "ConstraintPhrase",
    "Found",
    "ObjectivePhrase",
    "QuantityBound",
    "Reading",
    "SumRulePhrase",
    "TargetPhrase",
]


@dataclass
class Amount:
    """A number in a bound, a constraint or a grid step.

    Attributes:
        value: The number as written.
        pct: None when the number carries no percent marker, else ``"%"``, ``"at.%"``, ``"wt.%"``, ...
    """

    value: float
    pct: str | None


@dataclass
class BoundPhrase:
    """A bound on one component (``name``), or on every component (``"*"``)."""

    name: str
    lower: Amount | None
    upper: Amount | None
    phrase: str


@dataclass
class ConstraintPhrase:
    """A linear constraint: the sum of ``coefficients[name] * amount[name]`` against ``rhs``."""

    coefficients: dict[str, float]
    operator: str
    rhs: Amount
    phrase: str


@dataclass
class ObjectivePhrase:
    """An objective: its identifier, the words that named it, its direction and unit."""

    name: str
    words: str
    direction: str
    unit: str | None
    phrase: str


@dataclass
class TargetPhrase:
    """A value to stop at.

    Attributes:
        direction: The way the phrase points ("exceeds": maximise), if it points one way.
    """

    value: float
    unit: str | None
    prop: str | None
    direction: str | None
    phrase: str


@dataclass
class QuantityBound:
    """A bound on a measured property: a threshold of an objective or an outcome constraint.

    Attributes:
        operator: ``">="`` or ``"<="``.
    """

    name: str
    words: str
    operator: str
    value: float
    unit: str | None
    phrase: str


@dataclass
class SumRulePhrase:
    """A stated sum rule.

    Attributes:
        total: The total; None for "no sum rule".
    """

    total: float | None
    pct: str | None
    phrase: str


@dataclass
class Reading:
    """Which words of the request became which field, for ``athanor plan --explain``.

    Attributes:
        start: Where the words start in the request (characters).
        end: Where they end.
        field: What they became, e.g. ``"budget"``, ``"bound"``, ``"objective"``.
        value: What they say, e.g. ``"30 experiments"``, ``"Al <= 15 at.%"``.
    """

    start: int
    end: int
    field: str
    value: str


@dataclass
class Found:
    """Every phrase the scanner read, by kind; counts are ``(value, phrase)``."""

    objectives: list[ObjectivePhrase] = field(default_factory=list)
    targets: list[TargetPhrase] = field(default_factory=list)
    quantity_bounds: list[QuantityBound] = field(default_factory=list)
    systems: list[tuple[list[str], str]] = field(default_factory=list)  # names, label
    descriptions: list[tuple[str, str]] = field(default_factory=list)  # label, the modifier word in it
    lists: list[tuple[list[str], str]] = field(default_factory=list)  # names, phrase
    bounds: list[BoundPhrase] = field(default_factory=list)
    constraints: list[ConstraintPhrase] = field(default_factory=list)
    sum_rules: list[SumRulePhrase] = field(default_factory=list)
    budgets: list[tuple[int, str]] = field(default_factory=list)
    batches: list[tuple[int, str]] = field(default_factory=list)
    initials: list[tuple[int, str]] = field(default_factory=list)
    seeds: list[tuple[int, str]] = field(default_factory=list)
    cardinalities: list[tuple[int, str]] = field(default_factory=list)
    resolutions: list[tuple[Amount, str]] = field(default_factory=list)
    categories: list[tuple[int, str, list[str], str]] = field(default_factory=list)  # start, name, choices
    balances: list[tuple[str, str]] = field(default_factory=list)  # the component, phrase
    bases: list[tuple[str, str]] = field(default_factory=list)  # "mass", "mole" or "volume", phrase
    readings: list[Reading] = field(default_factory=list)
    #: How a refusal's suggestion changes a phrase that caused a problem: new words, or None to drop it.
    fixes: dict[str, str | None] = field(default_factory=dict)
    #: Chinese words where a property was expected that no rewrite knows.
    unknown_properties: list[str] = field(default_factory=list)
    #: Alloy designations (Ti-6Al-4V) where components were expected.
    designations: list[str] = field(default_factory=list)
    #: Names that stood alone where a list was expected ("of P3HT"), for the suggestion.
    lone_names: list[str] = field(default_factory=list)
