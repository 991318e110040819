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
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Budget",
    "CampaignSpec",
    "Component",
    "LinearConstraint",
    "Objective",
    "SumRule",
]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
#: Slack allowed when comparing sums of bounds (in units of the sum-rule total).
_TOL = 1e-9


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Component(_Strict):
    """One ingredient of the mixture.

    Attributes:
        name: Identifier used in constraints, columns and reports (letters, digits, ``_``, ``-``).
        lower: Smallest amount allowed, in the spec's composition unit.
        upper: Largest amount allowed, in the spec's composition unit.
        unit: ``"fraction"`` (of one) or ``"percent"``; ``None`` takes the sum rule's unit.
    """

    name: str
    lower: float = 0.0
    upper: float = 1.0
    unit: Literal["fraction", "percent"] | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"component name {value!r} must start with a letter and hold only letters, digits,"
                " '_' or '-' (e.g. 'P3HT', 'D1')"
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

    total: Literal[1.0, 100.0] = 1.0

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

    coefficients: dict[str, float] = Field(min_length=1)
    operator: Literal["<=", ">="] = "<="
    rhs: float

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


class Objective(_Strict):
    """A measured property to optimise.

    Attributes:
        name: Property name as measured, e.g. ``conductivity``.
        direction: ``"maximise"`` or ``"minimise"``.
        unit: Unit of the reading, e.g. ``S/cm``.
        target: Optional value that, once reached, may stop the campaign.
    """

    name: str
    direction: Literal["maximise", "minimise"] = "maximise"
    unit: str = ""
    target: float | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"objective name {value!r} must start with a letter and hold only letters, digits,"
                " '_' or '-' (e.g. 'conductivity')"
            )
        return value

    def reached(self, value: float) -> bool:
        """Whether ``value`` meets the target (False when no target is set)."""
        if self.target is None:
            return False
        return value >= self.target if self.direction == "maximise" else value <= self.target


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

    experiments: int = Field(ge=1, le=100_000)
    batch_size: int = Field(default=1, ge=1)
    initial_experiments: int | None = Field(default=None, ge=1)
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
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    basis: Literal["volume", "mole", "mass"] = "volume"

    @model_validator(mode="after")
    def _consistent(self) -> CampaignSpec:
        names = [c.name for c in self.components]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"components: {', '.join(dupes)} listed more than once; name each once")
        obj_names = [o.name for o in self.objectives]
        if len(set(obj_names)) != len(obj_names):
            raise ValueError("objectives: each objective name must appear once")
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
        return self

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

    def violations(self, composition: dict[str, float], tol: float = 1e-6) -> list[str]:
        """Every way ``composition`` (spec unit) breaks the spec; empty when it is feasible.

        Args:
            composition: Component name to amount in the spec's unit.
            tol: Absolute slack, in fractions of the total.
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
