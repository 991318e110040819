"""The campaign specification: what the PI understood from a request.

A :class:`CampaignSpec` is the single source of truth for a campaign: the design space (components,
bounds, sum rule, linear constraints), what to optimise, the budget, the instruments and the seed.
Every check that can be made before anything runs is made here, and each failure names the field
and the fix.

Compositions are given in the spec's own unit: fractions (``sum_rule.total == 1``) or percent
(``sum_rule.total == 100``). :meth:`CampaignSpec.to_unit_fractions` maps a composition to fractions
of one for the optimiser. :attr:`CampaignSpec.basis` says what they are fractions of: volume (vol.%),
amount of substance (mol.%, at.% for elements) or mass (wt.%).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from athanor.numbers import Integer, Number, refuse_non_numbers

__all__ = [
    "DESCRIPTOR_NAMES",
    "MAX_OBJECTIVES",
    "RESERVED_COLUMNS",
    "Budget",
    "CampaignSpec",
    "CategoricalVariable",
    "Component",
    "DescriptorName",
    "Fidelity",
    "LinearConstraint",
    "Objective",
    "OutcomeConstraint",
    "SumRule",
    "formula_elements",
]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
#: A component name may also join parts with ':' as material names do (``PEDOT:PSS``, ``ZnO:Al``).
_COMPONENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*(?::[A-Za-z0-9_\-]+)*$")
#: Slack allowed when comparing sums of bounds (in units of the sum-rule total).
_TOL = 1e-9
#: Columns of ``observations.csv`` that are not components, choices or objectives.
RESERVED_COLUMNS = ("experiment_id", "iteration", "status", "note")
#: Grid steps, as fractions of the total, suggested when a resolution does not divide the total.
_NICE_STEPS = (1e-3, 2e-3, 2.5e-3, 5e-3, 1e-2, 2e-2, 2.5e-2, 5e-2, 0.1, 0.125, 0.2, 0.25, 0.5)
#: Most objectives a campaign may have: the hypervolume acquisition's cost grows exponentially with
#: their number, and with more nearly every composition is Pareto-optimal.
MAX_OBJECTIVES = 4
#: Physics descriptors of a composition that may join the model's inputs (see :mod:`tools.descriptors`).
DescriptorName = Literal[
    "radius_mean",
    "radius_mismatch",
    "electronegativity_mean",
    "electronegativity_spread",
    "valence_electrons_mean",
    "mixing_entropy",
]
DESCRIPTOR_NAMES: tuple[str, ...] = get_args(DescriptorName)
# Hydrogen isotopes pymatgen would read into names such as D1 or P3HT.
_ISOTOPES = {"D", "T"}


def formula_elements(name: str) -> dict[str, float] | None:
    """Atoms of each element in one formula unit of a component named by an element or a formula.

    Parsed with pymatgen's ``Composition``: ``"TiO2"`` gives ``{"Ti": 1.0, "O": 2.0}``. A name that also
    reads as a formula is taken as one (``PS``); names holding ``D`` or ``T`` (``P3HT``) are not.

    Returns:
        Element symbol to atoms per formula unit, or None when ``name`` is not an element or a formula.
    """
    symbols = re.findall(r"[A-Z][a-z]?", name)
    if not symbols or _ISOTOPES & set(symbols):
        return None
    from pymatgen.core import Composition, Element

    if not all(Element.is_valid_symbol(s) for s in symbols):
        return None
    try:
        atoms = Composition(name).get_el_amt_dict()
    except (ValueError, KeyError, AttributeError, TypeError):
        return None
    return atoms if atoms and all(v > 0 for v in atoms.values()) else None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Component(_Strict):
    """One ingredient of the mixture.

    Attributes:
        name: Identifier used in constraints, columns and reports (letters, digits, ``_``, ``-``, and
            ``:`` between two of them, as in ``PEDOT:PSS``).
        lower: Smallest amount allowed, in the spec's composition unit.
        upper: Largest amount allowed, in the spec's composition unit.
        unit: ``"fraction"`` (of one) or ``"percent"``; ``None`` takes the sum rule's unit.
    """

    name: str
    lower: Number = 0.0
    upper: Number = 1.0
    unit: Literal["fraction", "percent"] | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _COMPONENT_NAME.match(value):
            raise ValueError(
                f"component name {value!r} must start with a letter and hold only letters, digits,"
                " '_', '-', and ':' between two of them (e.g. 'P3HT', 'D1', 'PEDOT:PSS')"
            )
        return value

    @model_validator(mode="after")
    def _ordered_bounds(self) -> Component:
        if not (math.isfinite(self.lower) and math.isfinite(self.upper)):
            raise ValueError(f"bounds of {self.name} must be finite numbers")
        if self.lower < 0:
            raise ValueError(f"lower bound of {self.name} is {self.lower}; amounts cannot be negative")
        if self.lower > self.upper:
            raise ValueError(
                f"lower bound of {self.name} ({self.lower}) is above its upper bound ({self.upper});"
                " swap them"
            )
        return self


class SumRule(_Strict):
    """The amounts of all components add up to ``total``.

    Attributes:
        total: 1 for fractions, 100 for percent.
    """

    total: Annotated[Literal[1.0, 100.0], BeforeValidator(refuse_non_numbers)] = 1.0

    @property
    def unit(self) -> Literal["fraction", "percent"]:
        """The composition unit this rule implies."""
        return "fraction" if self.total == 1.0 else "percent"


class LinearConstraint(_Strict):
    """``sum(coefficients[c] * amount[c]) <op> rhs``, amounts in the spec's unit.

    Attributes:
        coefficients: Component name to coefficient, e.g. ``{"Ni": 1, "Co": 1}``.
        operator: ``"<="`` or ``">="``.
        rhs: Right-hand side, in the spec's composition unit.
    """

    coefficients: dict[str, Number] = Field(min_length=1)
    operator: Literal["<=", ">="] = "<="
    rhs: Number

    def describe(self) -> str:
        """A human-readable form, e.g. ``D1 + D2 <= 0.3``."""
        terms = []
        for name, coef in self.coefficients.items():
            terms.append(name if coef == 1 else f"{coef:g}*{name}")
        return f"{' + '.join(terms)} {self.operator} {self.rhs:g}"

    def satisfied_by(self, composition: dict[str, float], tol: float = 1e-6) -> bool:
        """Whether a composition (spec unit) meets this constraint within ``tol``."""
        lhs = sum(coef * composition.get(name, 0.0) for name, coef in self.coefficients.items())
        return lhs <= self.rhs + tol if self.operator == "<=" else lhs >= self.rhs - tol


class CategoricalVariable(_Strict):
    """A process choice made once per experiment, e.g. the annealing route.

    Attributes:
        name: Identifier used in proposals, observations and the CSV column (letters, digits, ``_``,
            ``-``), e.g. ``annealing``.
        choices: The options, at least two, each named once, e.g. ``["none", "150C", "200C"]``.
    """

    name: str
    choices: list[str]

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"categorical variable name {value!r} must start with a letter and hold only letters,"
                " digits, '_' or '-' (e.g. 'annealing')"
            )
        return value

    @model_validator(mode="after")
    def _valid_choices(self) -> CategoricalVariable:
        if len(self.choices) < 2:
            raise ValueError(
                f"categorical variable {self.name} has {len(self.choices)} choice(s); give at least two"
                " (a single choice is a fixed setting, not a variable)"
            )
        for choice in self.choices:
            if not choice.strip() or choice != choice.strip():
                raise ValueError(
                    f"categorical variable {self.name}: choice {choice!r} must be non-empty text without"
                    " leading or trailing spaces"
                )
        dupes = sorted({c for c in self.choices if self.choices.count(c) > 1})
        if dupes:
            raise ValueError(
                f"categorical variable {self.name}: choice(s) {', '.join(dupes)} listed more than once;"
                " name each once"
            )
        return self


class Objective(_Strict):
    """A measured property to optimise.

    Attributes:
        name: Property name as measured, e.g. ``conductivity``.
        direction: ``"maximise"`` or ``"minimise"``.
        unit: Unit of the reading, e.g. ``S/cm``.
        target: Optional value that, once reached, may stop the campaign. With several objectives the
            campaign may stop once one experiment reaches every target that is set.
        threshold: With several objectives, the worst acceptable value, in ``unit``: the coordinate of
            the hypervolume reference point (below the target when maximising, above it when
            minimising). None lets the optimiser infer it from the measured Pareto front. Left out
            of the serialised spec when None.
    """

    name: str
    direction: Literal["maximise", "minimise"] = "maximise"
    unit: str = ""
    target: Number | None = None
    threshold: Number | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"objective name {value!r} must start with a letter and hold only letters, digits,"
                " '_' or '-' (e.g. 'conductivity')"
            )
        return value

    def describe(self) -> str:
        """A human-readable form, e.g. ``maximise conductivity (S/cm)`` or ``minimise cost``."""
        return f"{self.direction} {self.name}" + (f" ({self.unit})" if self.unit else "")

    def reached(self, value: float) -> bool:
        """Whether ``value`` meets the target (False when no target is set)."""
        if self.target is None:
            return False
        return value >= self.target if self.direction == "maximise" else value <= self.target

    @model_validator(mode="after")
    def _threshold_below_target(self) -> Objective:
        if self.threshold is None:
            return self
        if not math.isfinite(self.threshold):
            raise ValueError(f"objective {self.name}: threshold must be finite, not {self.threshold}")
        if self.target is not None:
            maximise = self.direction == "maximise"
            if (self.threshold >= self.target) if maximise else (self.threshold <= self.target):
                side = "below" if self.direction == "maximise" else "above"
                raise ValueError(
                    f"objective {self.name}: threshold {self.threshold:g} is not {side} the target"
                    f" {self.target:g}; when you {self.direction} {self.name} the threshold is the worst"
                    f" acceptable value, so put it {side} the target (or swap the two)"
                )
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if self.threshold is None:
            data.pop("threshold", None)  # single-objective specs serialise as they always did
        return data


class OutcomeConstraint(_Strict):
    """A measured quantity every acceptable composition must satisfy, e.g. ``conductivity >= 500``.

    The optimiser weights its acquisition by the modelled probability that a composition meets every
    outcome constraint; infeasible experiments never join the Pareto front or count as best.

    Attributes:
        name: An objective's name or a quantity an instrument measures (e.g. ``transmittance``).
        operator: ``">="`` or ``"<="``.
        value: The bound, in ``unit``.
        unit: Unit of the quantity, e.g. ``S/cm`` (for reports only).
    """

    name: str
    operator: Literal[">=", "<="] = ">="
    value: Number
    unit: str = ""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"outcome constraint name {value!r} must start with a letter and hold only letters,"
                " digits, '_' or '-' (e.g. 'conductivity')"
            )
        return value

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"outcome constraint value must be a finite number, got {value}")
        return value

    def describe(self) -> str:
        """A human-readable form, e.g. ``conductivity >= 500 S/cm``."""
        return f"{self.name} {self.operator} {self.value:g} {self.unit}".rstrip()

    def satisfied_by(self, value: float | None) -> bool:
        """Whether a measured ``value`` meets the constraint (a missing or non-finite value does not)."""
        if value is None or not math.isfinite(value):
            return False
        return value >= self.value if self.operator == ">=" else value <= self.value


class Fidelity(_Strict):
    """A source of the objective's value and what one evaluation costs.

    The most expensive source is the target: the lab's experiment, measured by its instruments, with
    ``cost`` 1. A cheap source (a simulation, a quick screen) is a Python function given as an entry
    point; one evaluation spends ``cost`` of one experiment of the budget.

    Attributes:
        name: Identifier used in proposals, observations and reports, e.g. ``experiment``, ``screen``.
        cost: Cost of one evaluation, as a fraction of one experiment (0 < cost <= 1; the target is 1).
        simulator: For a cheap source, ``"package.module:function"``: a function that takes a
            composition (component name to amount, in the spec's unit) and returns the objective's
            value (it also gets ``seed=`` the campaign's seed when it takes a ``seed`` keyword). None for
            the target. Left out of the serialised spec when None.
    """

    name: str
    cost: Number = Field(gt=0.0, le=1.0)
    simulator: str | None = Field(default=None, exclude_if=lambda value: value is None)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"fidelity name {value!r} must start with a letter and hold only letters, digits, '_' or"
                " '-' (e.g. 'experiment', 'screen')"
            )
        return value


class Budget(_Strict):
    """How many experiments the campaign may run, and how many at a time.

    Attributes:
        experiments: Total number of experiments, the initial design included.
        batch_size: Experiments proposed and run together.
        initial_experiments: Size of the space-filling initial design; defaults to one batch.
        mode: ``"batch"``: propose ``batch_size`` experiments, run them, wait for all, refit.
            ``"async"``: keep ``batch_size`` experiments in flight; as each finishes, refit and propose
            its replacement with the running ones as pending points, so instruments never wait for
            the slowest member of a batch.
    """

    experiments: Integer = Field(ge=1, le=100_000)
    batch_size: Integer = Field(default=1, ge=1)
    initial_experiments: Integer | None = Field(default=None, ge=1)
    mode: Literal["batch", "async"] = "batch"

    @model_validator(mode="after")
    def _batch_fits(self) -> Budget:
        if self.batch_size > self.experiments:
            raise ValueError(
                f"batch_size ({self.batch_size}) is larger than the budget of {self.experiments}"
                f" experiments; lower the batch size or raise the budget"
            )
        if self.initial_experiments is not None and self.initial_experiments > self.experiments:
            raise ValueError(
                f"initial_experiments ({self.initial_experiments}) exceeds the budget of"
                f" {self.experiments} experiments"
            )
        return self

    @property
    def n_initial(self) -> int:
        """Size of the initial design (one batch unless set)."""
        return self.initial_experiments or self.batch_size


class CampaignSpec(_Strict):
    """Everything a campaign needs to run, checked before anything runs.

    Attributes:
        title: Short name for reports.
        request: The natural-language request this spec was read from, if any.
        components: The mixture's ingredients, at least two.
        sum_rule: Amounts add up to this total (1 or 100); ``None`` for independent amounts.
        constraints: Extra linear constraints on the amounts.
        objectives: What to optimise; the walking skeleton optimises the first.
        budget: Experiments and batch size.
        instruments: Instrument names from the lab description that the campaign uses.
        seed: Seed of every random stream in the run.
        basis: What the composition is a fraction of: ``"volume"`` (vol.%: shares of the mixed stock
            volumes; the default, and the only basis that needs no concentrations), ``"mole"`` (mol.%,
            at.% when the components are elements) or ``"mass"`` (wt.%). Mole and mass bases need each
            stock's concentration; the coder turns a composition into volumes with
            :func:`tools.mixing.mixing_plan`.
        max_active_components: At most this many components may be non-zero in one composition
            ("choose at most 3 of these 5 elements"); None lets every component be present. A
            component with a positive lower bound is always present and counts towards it.
        resolution: Grid step of every amount, in the spec's unit (0.01 for fractions, 1 for at.%):
            each amount is a whole multiple of it. With a sum rule it must divide the total. None
            leaves amounts continuous.
        categories: Process choices made per experiment (e.g. the annealing route), each a
            :class:`CategoricalVariable`; proposals and observations carry the chosen option.
        outcome_constraints: Measured quantities every acceptable composition must satisfy (e.g.
            ``conductivity >= 500``), each on an objective or on a quantity an instrument measures.
            With several objectives (at most :data:`MAX_OBJECTIVES`) or outcome constraints the
            designer uses :func:`tools.optimiser.propose_pareto`.
        descriptors: Physics descriptors of the composition (:data:`DESCRIPTOR_NAMES`, e.g.
            ``electronegativity_spread``) the model takes as extra inputs beside the amounts; every
            component must then be an element or a chemical formula. See :mod:`tools.descriptors`.
        prior_data: A CSV of earlier experiments the optimiser learns from before the first proposal
            (see :mod:`runs.prior`); a relative path is relative to the campaign file, or to the working
            directory for a spec read from a request. Prior rows never count toward the budget. Left out
            of the serialised spec when None.
        surrogate: The optimiser's model: ``"gp"`` (a Gaussian process, the default) or
            ``"random_forest"`` (:mod:`tools.optimiser.forest`: scores a large seeded sample of feasible
            compositions by a confidence bound from the spread across trees). The forest handles one
            objective over continuous amounts only: no outcome constraints, categories,
            ``max_active_components``, ``resolution`` or descriptors. Left out of the serialised spec
            when ``"gp"``.
        fidelities: Sources of the objective's value with their costs (:class:`Fidelity`): the target
            (the lab's experiment, cost 1) and one cheap simulator. Empty for a single source. With a
            cheap source the budget counts experiments: a cheap evaluation spends its cost of one, and
            the designer never spends past the budget. See :mod:`tools.budget`. Left out of the
            serialised spec when empty.
    """

    title: str = "campaign"
    request: str | None = None
    components: list[Component] = Field(min_length=2)
    sum_rule: SumRule | None = Field(default_factory=SumRule)
    constraints: list[LinearConstraint] = Field(default_factory=list)
    objectives: list[Objective] = Field(min_length=1)
    budget: Budget
    instruments: list[str] = Field(
        default_factory=lambda: ["liquid_handler", "conductivity_meter"], min_length=1
    )
    seed: Integer = Field(default=0, ge=0, le=2**32 - 1)
    basis: Literal["volume", "mole", "mass"] = "volume"
    max_active_components: Integer | None = None
    resolution: Number | None = None
    categories: list[CategoricalVariable] = Field(default_factory=list)
    outcome_constraints: list[OutcomeConstraint] = Field(default_factory=list)
    descriptors: list[DescriptorName] = Field(default_factory=list)
    prior_data: str | None = Field(default=None, exclude_if=lambda value: value is None)
    surrogate: Literal["gp", "random_forest"] = Field(default="gp", exclude_if=lambda value: value == "gp")
    fidelities: list[Fidelity] = Field(default_factory=list, exclude_if=lambda value: not value)

    @field_validator("descriptors", mode="before")
    @classmethod
    def _known_descriptors(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            unknown = [repr(v) for v in value if v not in DESCRIPTOR_NAMES]
            if unknown:
                raise ValueError(
                    f"unknown descriptor(s) {', '.join(unknown)}; choose from {', '.join(DESCRIPTOR_NAMES)}"
                )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CampaignSpec:
        names = [c.name for c in self.components]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"components: {', '.join(dupes)} listed more than once; name each once")
        obj_names = [o.name for o in self.objectives]
        if len(set(obj_names)) != len(obj_names):
            raise ValueError("objectives: each objective name must appear once")
        self._check_outcomes()
        if self.sum_rule is not None:
            self._check_sum_rule(self.sum_rule)
        for i, constraint in enumerate(self.constraints):
            unknown = sorted(set(constraint.coefficients) - set(names))
            if unknown:
                raise ValueError(
                    f"constraints[{i}] ({constraint.describe()}) names unknown component(s)"
                    f" {', '.join(unknown)}; known components are {', '.join(names)}"
                )
        if self.constraints:
            self._check_feasible()
        self._check_categories()
        if self.fidelities:
            self._check_fidelities()
        if self.descriptors:
            self._check_descriptors()
        if self.max_active_components is not None:
            self._check_cardinality(self.max_active_components)
        if self.resolution is not None:
            self._check_resolution(self.resolution)
        if self.max_active_components is not None or self.resolution is not None:
            self._check_feasible_discrete()
        if self.surrogate == "random_forest":
            self._check_forest()
        return self

    def _check_forest(self) -> None:
        """The random-forest surrogate handles one objective over continuous amounts; refuse the rest."""
        unsupported = [
            (len(self.objectives) > 1, "objectives", "several objectives"),
            (bool(self.outcome_constraints), "outcome_constraints", "outcome constraints"),
            (bool(self.categories), "categories", "categorical variables"),
            (self.max_active_components is not None, "max_active_components", "a limit on components"),
            (self.resolution is not None, "resolution", "a grid of amounts"),
            (bool(self.descriptors), "descriptors", "descriptor inputs"),
        ]
        for present, field, what in unsupported:
            if present:
                raise ValueError(
                    f"surrogate: 'random_forest' does not handle {what} ({field}); use surrogate: gp"
                    f" or drop {field}"
                )

    def _check_outcomes(self) -> None:
        """Several objectives, thresholds and outcome constraints: what the Pareto optimiser can use."""
        from athanor.lab import MEASURES, match_quantity

        count = len(self.objectives)
        if count > MAX_OBJECTIVES:
            raise ValueError(
                f"objectives: {count} objectives given, at most {MAX_OBJECTIVES} are supported: the"
                " hypervolume acquisition's cost grows exponentially with the number of objectives, and"
                " with more almost every composition is Pareto-optimal, so the campaign learns little;"
                " combine objectives or turn some into outcome_constraints"
            )
        if count == 1 and self.objectives[0].threshold is not None:
            raise ValueError(
                f"objectives[0].threshold: a threshold is the reference point of a campaign with several"
                f" objectives; with one objective use target (to stop once it is reached) or an outcome"
                f" constraint ({self.objectives[0].name} >= ...) to require a value"
            )
        objectives = {o.name: o for o in self.objectives}
        quantities = sorted({q for measured in MEASURES.values() for q in measured})
        taken = set(self.component_names) | {v.name for v in self.categories} | set(RESERVED_COLUMNS)
        for i, constraint in enumerate(self.outcome_constraints):
            where = f"outcome_constraints[{i}] ({constraint.describe()})"
            if constraint.name not in objectives and match_quantity(constraint.name, quantities) is None:
                raise ValueError(
                    f"{where}: {constraint.name!r} is neither an objective ({', '.join(objectives)}) nor a"
                    f" quantity an instrument measures ({', '.join(quantities)}); constrain one of those"
                )
            if constraint.name not in objectives and constraint.name in taken:
                raise ValueError(
                    f"{where}: {constraint.name!r} is already a component, categorical variable or"
                    " observations column; rename the quantity"
                )
        for name in dict.fromkeys(c.name for c in self.outcome_constraints):
            bounds = [c for c in self.outcome_constraints if c.name == name]
            low = max((c.value for c in bounds if c.operator == ">="), default=-math.inf)
            high = min((c.value for c in bounds if c.operator == "<="), default=math.inf)
            if low > high:
                raise ValueError(
                    f"outcome_constraints: no value of {name} is both >= {low:g} and <= {high:g};"
                    " relax one of them"
                )

    def _check_fidelities(self) -> None:
        """One target of cost 1 measured by the instruments, and one cheap simulator beside it."""
        names = [f.name for f in self.fidelities]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"fidelities: {', '.join(dupes)} listed more than once; name each once")
        targets = [f for f in self.fidelities if f.cost == 1.0]
        cheap = [f for f in self.fidelities if f.cost < 1.0]
        if len(targets) != 1:
            found = ", ".join(f.name for f in targets) or "none"
            raise ValueError(
                f"fidelities: exactly one source must cost 1 (the target, the lab's experiment); found"
                f" {found}. Give the experiment cost 1 and each cheap source a fraction of it"
            )
        if targets[0].simulator is not None:
            raise ValueError(
                f"fidelities: the target {targets[0].name} is measured by the lab's instruments; drop its"
                " simulator, or give the simulated source a cost below 1"
            )
        if not cheap:
            raise ValueError(
                "fidelities: only the target is listed; add a cheap source (name, cost < 1, simulator) or"
                " leave fidelities out"
            )
        if len(cheap) > 1:
            raise ValueError(
                f"fidelities: {len(cheap)} cheap sources ({', '.join(f.name for f in cheap)}); one cheap"
                " source beside the target is supported for now, keep the best-correlated one"
            )
        source = cheap[0]
        if source.simulator is None:
            raise ValueError(
                f"fidelities: {source.name} has no simulator; a cheap source is a Python function given as"
                " simulator: 'package.module:function' (an instrument screen mode is not supported yet)"
            )
        if not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", source.simulator):
            raise ValueError(
                f"fidelities: simulator {source.simulator!r} of {source.name} is not an entry point; write"
                " it as 'package.module:function' (e.g. 'instruments.virtual_world:screen')"
            )
        unsupported = [
            field
            for field, used in (
                ("several objectives", len(self.objectives) > 1),
                ("outcome_constraints", bool(self.outcome_constraints)),
                ("max_active_components", self.max_active_components is not None),
                ("resolution", self.resolution is not None),
                ("categories", bool(self.categories)),
                ("descriptors", bool(self.descriptors)),
                ("surrogate: random_forest", self.surrogate != "gp"),
            )
            if used
        ]
        if unsupported:
            raise ValueError(
                f"fidelities cannot be combined with {', '.join(unsupported)} yet: the multi-fidelity"
                " optimiser works on one objective over continuous compositions with the GP; drop"
                f" {' and '.join(unsupported)} or the cheap source"
            )

    @property
    def target_fidelity(self) -> str | None:
        """Name of the target source (the lab's experiment), or None without fidelities."""
        return next((f.name for f in self.fidelities if f.cost == 1.0), None)

    @property
    def measured_names(self) -> list[str]:
        """Every value an observation holds: the objectives, then other outcome-constrained quantities."""
        names = [o.name for o in self.objectives]
        return names + list(dict.fromkeys(c.name for c in self.outcome_constraints if c.name not in names))

    def _check_descriptors(self) -> None:
        """Descriptors need named, distinct descriptors, formula components and pymatgen's element data."""
        import warnings

        from pymatgen.core import Element

        dupes = sorted({d for d in self.descriptors if self.descriptors.count(d) > 1})
        if dupes:
            raise ValueError(f"descriptors: {', '.join(dupes)} listed more than once; name each once")
        if self.categories:
            raise ValueError(
                "descriptors cannot be combined with categories yet: the model of categorical choices has"
                " no room for extra inputs; drop descriptors or categories"
            )
        atoms = {c: formula_elements(c) for c in self.component_names}
        bad = [c for c, parsed in atoms.items() if parsed is None]
        if bad:
            raise ValueError(
                f"descriptors: component(s) {', '.join(bad)} are not elements or chemical formulas, and"
                " descriptors need chemical formulas (Cu, TiO2) to look up element data; rename the"
                " components to their formulas or drop descriptors"
            )
        needs = {
            "radius": ("atomic_radius", "atomic radius"),
            "electronegativity": ("X", "Pauling electronegativity"),
        }
        for prefix, (attribute, what) in needs.items():
            used = [d for d in self.descriptors if d.startswith(prefix)]
            if not used:
                continue
            for component, elements in atoms.items():
                for symbol in elements or {}:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # pymatgen warns before answering NaN
                        value = getattr(Element(symbol), attribute)
                    if value is None or not math.isfinite(float(value)):
                        raise ValueError(
                            f"descriptors: pymatgen has no {what} for {symbol} (in component"
                            f" {component}), so {', '.join(used)} cannot be computed; drop them"
                        )

    def _check_categories(self) -> None:
        names = [v.name for v in self.categories]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"categories: {', '.join(dupes)} listed more than once; name each once")
        taken = set(self.component_names) | {o.name for o in self.objectives} | set(RESERVED_COLUMNS)
        clash = [n for n in names if n in taken]
        if clash:
            raise ValueError(
                f"categories: {', '.join(clash)} is already the name of a component, an objective or an"
                " observations column; rename the categorical variable"
            )

    def _check_cardinality(self, k: int) -> None:
        n = len(self.components)
        if k < 1:
            raise ValueError(
                f"max_active_components is {k}; it must be at least 1 (how many components may be"
                " non-zero at once), or left out to allow every component"
            )
        if k > n:
            raise ValueError(
                f"max_active_components ({k}) exceeds the number of components ({n}); lower it to at"
                f" most {n}, or leave it out to allow every component"
            )
        present = [c.name for c in self.components if c.lower > 0]
        if k < len(present):
            raise ValueError(
                f"max_active_components is {k} but {', '.join(present)} have positive lower bounds and are"
                f" always present; raise it to at least {len(present)} or lower those bounds to 0"
            )

    def _check_resolution(self, step: float) -> None:
        if not math.isfinite(step) or step <= 0:
            raise ValueError(
                f"resolution is {step}; give a positive grid step in the spec's unit (e.g. 0.01 for"
                " fractions, 1 for at.%), or leave it out for continuous amounts"
            )
        if self.sum_rule is None:
            return
        total = self.sum_rule.total
        steps = total / step
        if abs(steps - round(steps)) > 1e-9 * max(1.0, steps) or round(steps) < 1:
            nice = sorted(total * f for f in _NICE_STEPS)
            below = [v for v in nice if v < step]
            above = [v for v in nice if v > step]
            hint = " or ".join(f"{v:g}" for v in (below[-1:] + above[:1]))
            raise ValueError(
                f"resolution {step:g} does not divide the sum-rule total {total:g} ({total:g}/{step:g} ="
                f" {steps:.4g} steps), so no composition on the grid adds up to the total; use a step"
                f" that does, e.g. {hint}"
            )

    def _check_feasible_discrete(self) -> None:
        """Refuse a grid or a cardinality limit that no composition can meet (a small MILP)."""
        k, step = self.max_active_components, self.resolution
        if step is not None:
            for c in self.components:
                if math.floor(c.upper / step + 1e-9) < math.ceil(c.lower / step - 1e-9):
                    raise ValueError(
                        f"resolution: the bounds of {c.name} [{c.lower:g}, {c.upper:g}] hold no multiple"
                        f" of the step {step:g}; widen them to include one or use a finer step"
                    )
        if self._discrete_feasible(k, step):
            return
        parts = ["the bounds"] + ["the sum rule"] * (self.sum_rule is not None)
        parts += ["the constraints"] * bool(self.constraints)
        rules = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
        if k is not None and step is not None and self._discrete_feasible(k, None):
            field, fix = "resolution", "use a finer step or move the bounds onto the grid"
            what = f"on the grid of {step:g}"
        elif k is not None and step is not None and self._discrete_feasible(None, step):
            field, fix = "max_active_components", "raise it"
            what = f"with at most {k} non-zero components"
        elif k is not None:
            field, fix = "max_active_components", "raise it, or relax the bounds or constraints"
            what = f"with at most {k} non-zero components" + (f" on the grid of {step:g}" if step else "")
        else:
            field, fix = "resolution", "use a finer step or move the bounds onto the grid"
            what = f"on the grid of {step:g}"
        raise ValueError(f"{field}: no composition {what} meets {rules}; {fix}")

    def _discrete_feasible(self, k: int | None, step: float | None) -> bool:
        """Whether some composition meets bounds, sum rule and constraints, on the grid and with <= k."""
        import numpy as np
        from scipy.optimize import Bounds, LinearConstraint, milp

        n = len(self.components)
        scale = step if step is not None else 1.0  # variables are grid steps, or amounts without a grid
        lower = np.array([c.lower for c in self.components]) / scale
        upper = np.array([c.upper for c in self.components]) / scale
        if step is not None:
            lower, upper = np.ceil(lower - 1e-9), np.floor(upper + 1e-9)
        rows, lo, hi = [], [], []
        names = self.component_names
        for c in self.constraints:
            row = [c.coefficients.get(name, 0.0) * scale for name in names]
            slack = 1e-9 * self.unit_scale * max(1.0, sum(abs(v) for v in c.coefficients.values()))
            rows.append(row + [0.0] * n)
            lo.append(c.rhs - slack if c.operator == ">=" else -np.inf)
            hi.append(c.rhs + slack if c.operator == "<=" else np.inf)
        if self.sum_rule is not None:
            total = self.sum_rule.total / scale
            rows.append([1.0] * n + [0.0] * n)
            slack = 0.0 if step is not None else 1e-9 * total
            lo.append(total - slack)
            hi.append(total + slack)
        # z_i = 1 when component i may be non-zero: x_i <= upper_i * z_i, sum(z) <= k
        for i in range(n):
            row = np.zeros(2 * n)
            row[i], row[n + i] = 1.0, -upper[i]
            rows.append(list(row))
            lo.append(-np.inf)
            hi.append(0.0)
        rows.append([0.0] * n + [1.0] * n)
        lo.append(0.0)
        hi.append(float(k) if k is not None else float(n))
        result = milp(
            c=np.zeros(2 * n),
            integrality=np.r_[np.full(n, 1 if step is not None else 0), np.ones(n)],
            bounds=Bounds(np.r_[lower, np.zeros(n)], np.r_[upper, np.ones(n)]),
            constraints=LinearConstraint(np.array(rows), np.array(lo), np.array(hi)),
        )
        return bool(result.status == 0)

    def _check_sum_rule(self, rule: SumRule) -> None:
        total = rule.total
        for c in self.components:
            if c.unit is not None and c.unit != rule.unit:
                raise ValueError(
                    f"component {c.name} is in {c.unit} but the sum rule is in {rule.unit};"
                    f" give every amount in {rule.unit}"
                )
            if c.upper > total + _TOL:
                raise ValueError(
                    f"upper bound of {c.name} ({c.upper:g}) exceeds the sum-rule total ({total:g});"
                    f" lower it to at most {total:g}"
                )
        low = sum(c.lower for c in self.components)
        high = sum(c.upper for c in self.components)
        if low > total + _TOL * total:
            raise ValueError(
                f"sum_rule: the lower bounds add up to {low:g}, more than the total {total:g};"
                f" lower some lower bounds by {low - total:g} in all"
            )
        if high < total - _TOL * total:
            raise ValueError(
                f"sum_rule: the upper bounds add up to {high:g}, less than the total {total:g};"
                f" raise some upper bounds by {total - high:g} in all"
            )

    def _check_feasible(self) -> None:
        """Refuse constraints that no composition within the bounds can meet (a small LP)."""
        from scipy.optimize import linprog

        names = self.component_names
        a_ub, b_ub = [], []
        for c in self.constraints:
            sign = 1.0 if c.operator == "<=" else -1.0
            a_ub.append([sign * c.coefficients.get(n, 0.0) for n in names])
            b_ub.append(sign * c.rhs)
        a_eq = [[1.0] * len(names)] if self.sum_rule is not None else None
        b_eq = [self.sum_rule.total] if self.sum_rule is not None else None
        result = linprog(
            c=[0.0] * len(names),
            A_ub=a_ub,
            b_ub=b_ub,
            A_eq=a_eq,
            b_eq=b_eq,
            bounds=[(c.lower, c.upper) for c in self.components],
            method="highs",
        )
        if result.status != 0:
            described = "; ".join(c.describe() for c in self.constraints)
            raise ValueError(
                f"constraints: no composition within the bounds{' and the sum rule' if a_eq else ''}"
                f" satisfies all of: {described}; relax a constraint or widen the bounds"
            )

    @property
    def component_names(self) -> list[str]:
        """Component names in spec order."""
        return [c.name for c in self.components]

    @property
    def unit_scale(self) -> float:
        """Divide an amount by this to get a fraction of one (1 or 100)."""
        if self.sum_rule is not None:
            return self.sum_rule.total
        return 100.0 if self.components[0].unit == "percent" else 1.0

    @property
    def primary_objective(self) -> Objective:
        """The objective a single-objective optimiser maximises or minimises."""
        return self.objectives[0]

    def to_unit_fractions(self, composition: dict[str, float]) -> dict[str, float]:
        """Map a composition in the spec's unit to fractions of one."""
        return {k: v / self.unit_scale for k, v in composition.items()}

    def from_unit_fractions(self, fractions: dict[str, float]) -> dict[str, float]:
        """Map fractions of one to amounts in the spec's unit."""
        return {k: v * self.unit_scale for k, v in fractions.items()}

    def violations(
        self, composition: dict[str, float], tol: float = 1e-6, choices: dict[str, str] | None = None
    ) -> list[str]:
        """Every way ``composition`` (spec unit) breaks the spec; empty when it is feasible.

        Args:
            composition: Component name to amount in the spec's unit.
            tol: Absolute slack, in fractions of the total. An amount above it counts as non-zero for
                :attr:`max_active_components`, and an amount within it of a grid multiple is on the grid.
            choices: Categorical variable name to the chosen option; None skips the check of choices.
        """
        problems = []
        slack = tol * self.unit_scale
        missing = [n for n in self.component_names if n not in composition]
        if missing:
            problems.append(f"missing component(s) {', '.join(missing)}")
        for c in self.components:
            value = composition.get(c.name, 0.0)
            if value < c.lower - slack or value > c.upper + slack:
                problems.append(f"{c.name}={value:g} outside [{c.lower:g}, {c.upper:g}]")
        if self.sum_rule is not None:
            total = sum(composition.get(n, 0.0) for n in self.component_names)
            if abs(total - self.sum_rule.total) > slack:
                problems.append(f"amounts sum to {total:g}, not {self.sum_rule.total:g}")
        for constraint in self.constraints:
            if not constraint.satisfied_by(composition, slack):
                problems.append(f"breaks {constraint.describe()}")
        if self.max_active_components is not None:
            present = [n for n in self.component_names if composition.get(n, 0.0) > slack]
            if len(present) > self.max_active_components:
                problems.append(
                    f"{len(present)} components are non-zero ({', '.join(present)}); at most"
                    f" {self.max_active_components} may be"
                )
        if self.resolution is not None:
            step = self.resolution
            for name in self.component_names:
                value = composition.get(name, 0.0)
                if abs(value - step * round(value / step)) > slack:
                    problems.append(f"{name}={value:g} is not a multiple of the resolution {step:g}")
        if choices is not None:
            problems += self.choice_problems(choices)
        return problems

    def choice_problems(self, choices: dict[str, str]) -> list[str]:
        """Every way ``choices`` (categorical variable name to option) breaks the spec; empty when valid."""
        problems = []
        known = {v.name: v for v in self.categories}
        for name in sorted(set(choices) - set(known)):
            listed = ", ".join(known) or "none"
            problems.append(f"unknown categorical variable {name!r}; the spec's are: {listed}")
        for variable in self.categories:
            chosen = choices.get(variable.name)
            if chosen is None:
                problems.append(f"no choice for {variable.name}; choose one of {', '.join(variable.choices)}")
            elif chosen not in variable.choices:
                problems.append(
                    f"{variable.name}={chosen!r} is not a choice; choose one of {', '.join(variable.choices)}"
                )
        return problems

    def to_yaml(self) -> str:
        """The spec as YAML, readable by :meth:`from_yaml`."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_yaml(cls, text: str) -> CampaignSpec:
        """Read a spec from YAML text; raises ``pydantic.ValidationError`` on a bad spec."""
        data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ValueError("a campaign file must be a YAML mapping with components, objectives, budget")
        return cls.model_validate(data)

    @classmethod
    def from_file(cls, path: Path) -> CampaignSpec:
        """Read a spec from a YAML (or JSON) file."""
        return cls.from_yaml(Path(path).read_text(encoding="utf-8"))
