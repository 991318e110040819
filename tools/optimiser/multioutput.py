"""Several modelled quantities: one GP per quantity, outcome constraints and the reference point.

The Pareto strategies (:mod:`tools.optimiser.pareto`, :mod:`tools.optimiser.mixed_pareto`) model each
measured quantity (the objectives, then any other quantity an outcome constraint names) with its own
GP, the direction and log-scale rule of the model layer. A quantity is modelled on a log scale only
when its thresholds and constraint bounds have the sign of its values. Minimised objectives are
negated, so every model's target grows with what is better.

The hypervolume reference point is each objective's ``threshold`` when the spec gives one and is
otherwise inferred from the measured values (the worst minus 10 % of their range, on the model
scale; see :func:`reference_point` for why not the nadir of the front).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from botorch.utils.multi_objective.hypervolume import infer_reference_point
from torch import Tensor

from athanor.spec import CampaignSpec, Objective, OutcomeConstraint
from tools.design_space import DTYPE
from tools.modelling import log_sign
from tools.optimiser.models import FittedModel, unfit_reason

__all__ = [
    "ModelledOutput",
    "OutcomeBound",
    "acquisition_phrase",
    "explain",
    "fit_outputs",
    "outcome_bounds",
    "reference_point",
    "why_unfit",
]


@dataclass
class ModelledOutput:
    """One modelled quantity: its name, unit and fitted model (model target grows with ``direction * y``)."""

    name: str
    unit: str
    fitted: FittedModel

    def to_model(self, value: float) -> float:
        """A value in the quantity's unit on the model's scale (larger is better for objectives)."""
        log_sign = self.fitted.log_sign
        t = log_sign * math.log(log_sign * value) if log_sign else value
        return self.fitted.direction * t

    def from_model(self, z: float) -> float:
        """The inverse of :meth:`to_model`."""
        t = self.fitted.direction * z
        log_sign = self.fitted.log_sign
        return log_sign * math.exp(log_sign * t) if log_sign else t


def _bound_values(spec: CampaignSpec, name: str) -> list[float]:
    """Thresholds and outcome-constraint bounds on quantity ``name``, in its unit."""
    values = [c.value for c in spec.outcome_constraints if c.name == name]
    return values + [o.threshold for o in spec.objectives if o.name == name and o.threshold is not None]


def fit_outputs(
    spec: CampaignSpec,
    y: Tensor,
    names: Sequence[str],
    log_transform: bool | None,
    fit: Callable[[Tensor, float, bool | None], FittedModel],
) -> list[ModelledOutput]:
    """One GP per quantity; a quantity whose bounds cannot sit on its log scale is modelled linearly.

    Args:
        spec: The campaign spec.
        y: Values, ``n x k``, one column per name.
        names: The quantities, objectives first (:attr:`CampaignSpec.measured_names`).
        log_transform: Force (True) or forbid (False) the log scale; None decides per quantity.
        fit: Fits one model to a column of values (``n``) given the direction (+1 when larger is
            better) and the log choice, on the caller's inputs.
    """
    objectives = {o.name: o for o in spec.objectives}
    units = {c.name: c.unit for c in spec.outcome_constraints} | {o.name: o.unit for o in spec.objectives}
    outputs = []
    for j, name in enumerate(names):
        column = y[:, j]
        log = log_transform
        sign = log_sign(column.tolist(), log_transform=True)  # the values' common sign, or 0
        if log is not False and sign and any(v * sign <= 0 for v in _bound_values(spec, name)):
            log = False
        objective = objectives.get(name)
        direction = -1.0 if objective is not None and objective.direction == "minimise" else 1.0
        outputs.append(ModelledOutput(name, units.get(name, ""), fit(column, direction, log)))
    return outputs


def why_unfit(x: Tensor, y: Tensor, names: Sequence[str]) -> str | None:
    """Why no model can be fitted to these data (one column of ``y`` per name), or None."""
    reason = unfit_reason(x, torch.arange(x.shape[0], dtype=DTYPE))  # distinct values: checks the inputs
    if reason is not None:
        return reason
    for j, name in enumerate(names):
        column = y[:, j]
        if float(column.max() - column.min()) <= 1e-12 * max(1.0, float(column.abs().max())):
            return f"all usable observations have the same {name}, no trend to model"
    return None


@dataclass
class OutcomeBound:
    """An outcome constraint on the model scale: ``samples[..., output] >= bound`` (or ``<=``)."""

    constraint: OutcomeConstraint
    output: int
    bound: float
    at_least: bool

    def violation(self, samples: Tensor) -> Tensor:
        """BoTorch's constraint convention: negative where the constraint is met."""
        gap = self.bound - samples[..., self.output]
        return gap if self.at_least else -gap

    def probability(self, mean: Tensor, std: Tensor) -> Tensor:
        """Probability that the latent value meets the bound, from its posterior ``mean`` and ``std``."""
        z = (mean - self.bound) / std.clamp_min(1e-12)
        normal = torch.distributions.Normal(0.0, 1.0)
        return normal.cdf(z if self.at_least else -z)


def outcome_bounds(spec: CampaignSpec, outputs: list[ModelledOutput]) -> list[OutcomeBound]:
    """Each outcome constraint on the model scale (which grows with ``direction * y``)."""
    index = {o.name: j for j, o in enumerate(outputs)}
    out = []
    for constraint in spec.outcome_constraints:
        j = index[constraint.name]
        at_least = (constraint.operator == ">=") == (outputs[j].fitted.direction > 0)
        out.append(OutcomeBound(constraint, j, outputs[j].to_model(constraint.value), at_least))
    return out


def reference_point(
    objectives: list[Objective], outputs: list[ModelledOutput], y: Tensor, bounds: list[OutcomeBound]
) -> tuple[Tensor, str]:
    """The hypervolume reference point on the model scale, and a phrase saying where it came from.

    Thresholds give their coordinates. The others are inferred from the measured values of the
    feasible observations (of all of them when none is feasible): the worst value minus 10 % of the
    range, on the model scale. The nadir of the measured *front* would be BoTorch's usual choice, but
    it cuts off the ends of the front: on a synthetic conductivity/transmittance problem the most
    conductive compositions were less transparent than every point of the early front, so they could
    add no hypervolume and the search never went there.
    """
    m = len(objectives)
    scaled = torch.tensor(
        [[outputs[j].to_model(float(v)) for j, v in enumerate(row[: len(outputs)])] for row in y], dtype=DTYPE
    )
    feasible = torch.ones(y.shape[0], dtype=torch.bool)
    for bound in bounds:
        feasible &= bound.violation(scaled) <= 0
    measured = scaled[feasible][:, :m] if bool(feasible.any()) else scaled[:, :m]
    # the worst point of all minus 10 % of the range (infer_reference_point's rule applied to every point)
    reference = infer_reference_point(measured).to(DTYPE)
    parts = []
    for j, objective in enumerate(objectives):
        if objective.threshold is not None:
            reference[j] = outputs[j].to_model(objective.threshold)
        how = "threshold" if objective.threshold is not None else "inferred from the measured values"
        value = outputs[j].from_model(float(reference[j]))
        parts.append(f"{objective.name} {value:.3g} {objective.unit}".rstrip() + f" ({how})")
    return reference, "reference point " + ", ".join(parts)


def acquisition_phrase(spec: CampaignSpec) -> str:
    """What the acquisition of ``spec`` scores, for rationales."""
    several = len(spec.objectives) > 1
    return "expected hypervolume improvement" if several else "feasibility-weighted expected improvement"


def explain(
    outputs: list[ModelledOutput], bounds: list[OutcomeBound], picks: Tensor, whys: list[str], note: str
) -> list[tuple[str, tuple[float, float]]]:
    """Each pick's rationale and the primary objective's predicted (mean, std), in its unit.

    Args:
        outputs: The fitted quantities, objectives first.
        bounds: The outcome constraints on the model scale.
        picks: Model inputs of the picks, ``n x input_dim``.
        whys: Why each pick was made (the rationale's lead).
        note: Appended to every rationale (e.g. the reference point); empty for none.
    """
    n = picks.shape[0]
    predictions = [o.fitted.predict(picks) for o in outputs]
    feasible = torch.ones(n, dtype=DTYPE)
    for bound in bounds:
        with torch.no_grad():
            posterior = outputs[bound.output].fitted.model.posterior(picks)
        std = posterior.variance.squeeze(-1).clamp_min(0.0).sqrt()
        feasible *= bound.probability(posterior.mean.squeeze(-1), std)
    out = []
    for i in range(n):
        predicted = ", ".join(
            f"{o.name} {float(mean[i]):.3g} ± {float(std[i]):.2g} {o.unit}".rstrip()
            for o, (mean, std) in zip(outputs, predictions, strict=True)
        )
        text = f"{whys[i]}; predicted {predicted}"
        if bounds:
            text += f"; probability of meeting {', '.join(b.constraint.describe() for b in bounds)}"
            text += f" {float(feasible[i]):.2f}"
        if note:
            text += f"; {note}"
        mean, std = predictions[0]
        out.append((text, (float(mean[i]), float(std[i]))))
    return out
