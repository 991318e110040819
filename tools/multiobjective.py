"""Several objectives and outcome constraints: Pareto-front Bayesian optimisation.

:func:`propose_pareto` fits one Gaussian process per measured quantity (the objectives, then any other
quantity an outcome constraint names) with the model, transforms and log-scale rule of
:mod:`tools.optimise`, gathers them in a ``ModelListGP`` and maximises
``qLogNoisyExpectedHypervolumeImprovement`` (qLogNEHVI) over the design space with the sum rule and
the linear constraints. Minimised objectives are negated. Outcome constraints enter the acquisition as
``constraints=`` callables, which weight each Monte-Carlo sample by a smoothed feasibility
indicator. With one objective and outcome constraints the acquisition is the same model's
feasibility-weighted ``qLogNoisyExpectedImprovement``.

The hypervolume reference point is each objective's ``threshold`` when the spec gives one and is
otherwise inferred from the measured values (the worst minus 10 % of their range, on the model
scale; see :func:`_reference_point` for why not the nadir of the front); each suggestion's rationale
says which. A quantity is modelled on a log
scale only when its thresholds and constraint bounds have the sign of its values.

Speed: a batch is chosen greedily, one point at a time, each optimised with the earlier picks as
pending points. On two objectives, 50 observations and 5 components summing to one, greedy picks
of q = 4 reached a higher joint hypervolume improvement than a joint q = 4 optimisation and took
about half as long (one inclusion-exclusion term per evaluation instead of fifteen). Two restarts
of the optimiser from 64 scored raw points per pick found the same batches as four restarts.
BoTorch can JIT-compile a fused C++ kernel for qLogNEHVI the first time one is built (about 35 s
here, once per machine, cached under ``TORCH_EXTENSIONS_DIR``, and only with a C++ compiler); it
made these greedy picks about 25 % faster. That build is not triggered by default (a campaign never
stalls on it and needs no compiler): pass ``fused_kernel=True`` to allow it, and a kernel that is
already loaded is used either way.

Like :func:`tools.optimise.propose`, this never stops a campaign: with too few or degenerate data,
or when a fit or the acquisition fails numerically, it returns space-filling points and says why.

A spec with ``max_active_components``, ``resolution`` or ``categories`` is handed to
:func:`tools.mixed_multiobjective.propose_pareto_mixed`: the same models and acquisition, searched cell
by cell on the mixed space.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import botorch.acquisition.multi_objective.logei as _logei
import torch
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
from botorch.acquisition.objective import GenericMCObjective
from botorch.models import ModelListGP
from botorch.optim import optimize_acqf
from botorch.optim.initializers import initialize_q_batch
from botorch.sampling import SobolQMCNormalSampler
from botorch.utils.multi_objective.hypervolume import infer_reference_point
from botorch.utils.sampling import manual_seed
from torch import Tensor

from athanor.models import Observation
from athanor.pareto import pareto_front
from athanor.spec import CampaignSpec, Objective, OutcomeConstraint
from tools.descriptors import descriptor_inputs
from tools.design_space import DTYPE, DesignSpace, design_space
from tools.mixed_space import needs_mixed_space
from tools.optimise import (
    _NUMERICAL_ERRORS,
    Suggestion,
    _fallback,
    _fit_gp,
    _Fitted,
    _one_thread,
    _suggestion,
    _too_close,
    _unfit_reason,
)

__all__ = ["needs_pareto", "pareto_front", "propose_pareto"]

_log = logging.getLogger(__name__)

#: Random feasible points scored to replace a near-duplicate pick.
_REPLACEMENT_POOL = 512


def needs_pareto(spec: CampaignSpec) -> bool:
    """Whether ``spec`` needs :func:`propose_pareto`: several objectives or outcome constraints."""
    return len(spec.objectives) > 1 or bool(spec.outcome_constraints)


@dataclass
class _Output:
    """One modelled quantity: its name, unit and fitted model (model target grows with ``direction * y``)."""

    name: str
    unit: str
    fitted: _Fitted

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


@contextmanager
def _kernel_build(allowed: bool) -> Iterator[None]:
    """Keep BoTorch from JIT-compiling its fused qLogNEHVI kernel inside the block unless ``allowed``."""
    untried = getattr(_logei, "_C", None) is None and getattr(_logei, "_load_attempted", True) is False
    if allowed or not untried:
        yield
        return
    _logei._load_attempted = True
    try:
        yield
    finally:
        _logei._load_attempted = False


def _usable(
    space: DesignSpace, observations: Sequence[Observation], names: list[str]
) -> tuple[Tensor, Tensor]:
    """Inputs (``n x d`` unit fractions) and values (``n x k``, one column per name) a model may use.

    An observation is used when its status is ``ok``, every named value is finite and every free
    component has a finite amount; infeasible ones are used too (they tell where the bounds lie).
    """
    rows, values = [], []
    for obs in observations:
        measured = [obs.values.get(name) for name in names]
        if obs.status != "ok" or any(v is None or not math.isfinite(v) for v in measured):
            continue
        amounts = [obs.composition.get(n) for n in space.names]
        if any(a is None or not math.isfinite(a) for a in amounts):
            continue
        rows.append(dict(zip(space.names, amounts, strict=True)))
        values.append(measured)
    x = space.to_tensor(rows) if rows else torch.zeros(0, space.dim, dtype=DTYPE)
    return x, torch.tensor(values, dtype=DTYPE).reshape(len(values), len(names))


def _bound_values(spec: CampaignSpec, name: str) -> list[float]:
    """Thresholds and outcome-constraint bounds on quantity ``name``, in its unit."""
    values = [c.value for c in spec.outcome_constraints if c.name == name]
    return values + [o.threshold for o in spec.objectives if o.name == name and o.threshold is not None]


def _fit_outputs(
    spec: CampaignSpec,
    y: Tensor,
    names: list[str],
    log_transform: bool | None,
    fit: Callable[[Tensor, float, bool | None], _Fitted],
) -> list[_Output]:
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
        sign = 1.0 if bool((column > 0).all()) else -1.0 if bool((column < 0).all()) else 0.0
        if log is not False and sign and any(v * sign <= 0 for v in _bound_values(spec, name)):
            log = False
        objective = objectives.get(name)
        direction = -1.0 if objective is not None and objective.direction == "minimise" else 1.0
        outputs.append(_Output(name, units.get(name, ""), fit(column, direction, log)))
    return outputs


def _why_unfit(x: Tensor, y: Tensor, names: list[str]) -> str | None:
    """Why no model can be fitted to these data (one column of ``y`` per name), or None."""
    reason = _unfit_reason(x, torch.arange(x.shape[0], dtype=DTYPE))  # distinct values: checks the inputs
    if reason is not None:
        return reason
    for j, name in enumerate(names):
        column = y[:, j]
        if float(column.max() - column.min()) <= 1e-12 * max(1.0, float(column.abs().max())):
            return f"all usable observations have the same {name}, no trend to model"
    return None


@dataclass
class _Bound:
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


def _bounds(spec: CampaignSpec, outputs: list[_Output]) -> list[_Bound]:
    """Each outcome constraint on the model scale (which grows with ``direction * y``)."""
    index = {o.name: j for j, o in enumerate(outputs)}
    out = []
    for constraint in spec.outcome_constraints:
        j = index[constraint.name]
        at_least = (constraint.operator == ">=") == (outputs[j].fitted.direction > 0)
        out.append(_Bound(constraint, j, outputs[j].to_model(constraint.value), at_least))
    return out


def _reference_point(
    objectives: list[Objective], outputs: list[_Output], y: Tensor, bounds: list[_Bound]
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


def _acquisition_factory(
    spec: CampaignSpec, outputs: list[_Output], x: Tensor, y: Tensor, seed: int, mc_samples: int
) -> tuple[Callable[[Tensor], object], list[_Bound], str]:
    """A builder of the acquisition for given pending points, the model-scale bounds and a note."""
    model = ModelListGP(*[o.fitted.model for o in outputs])
    bounds = _bounds(spec, outputs)
    constraints = [b.violation for b in bounds] or None
    m = len(spec.objectives)

    def sampler() -> SobolQMCNormalSampler:
        return SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed)

    if m == 1:
        primary = GenericMCObjective(lambda samples, X=None: samples[..., 0])

        def single(pending: Tensor) -> object:
            return qLogNoisyExpectedImprovement(
                model,
                X_baseline=x,
                sampler=sampler(),
                objective=primary,
                constraints=constraints,
                X_pending=pending if pending.shape[0] else None,
                prune_baseline=True,
            )

        return single, bounds, ""

    reference, note = _reference_point(list(spec.objectives), outputs, y, bounds)
    objective = IdentityMCMultiOutputObjective(outcomes=list(range(m))) if len(outputs) > m else None

    def several(pending: Tensor) -> object:
        return qLogNoisyExpectedHypervolumeImprovement(
            model,
            ref_point=reference,
            X_baseline=x,
            sampler=sampler(),
            objective=objective,
            constraints=constraints,
            X_pending=pending if pending.shape[0] else None,
            prune_baseline=True,
        )

    return several, bounds, note


def _greedy_picks(
    space: DesignSpace,
    build: Callable[[Tensor], object],
    x: Tensor,
    pending_x: Tensor,
    n: int,
    seed: int,
    num_restarts: int,
    raw_samples: int,
) -> tuple[Tensor, list[float], list[Tensor | None]]:
    """``n`` points, each maximising the acquisition given the pending points and the earlier picks.

    Returns:
        The picks (``n x d``), each one's acquisition value when it was picked, and the optimiser's
        own output (``d``, before projection) each came from, None where a pick replaced a
        near-duplicate of a measured, pending or earlier point.
    """
    raw_all = space.sample(raw_samples * n, seed)
    picks = torch.zeros(0, space.dim, dtype=DTYPE)
    values: list[float] = []
    optimised: list[Tensor | None] = []
    pool = None
    for i in range(n):
        pending = torch.cat([pending_x, picks])
        acqf = build(pending)
        raw = raw_all[i * raw_samples : (i + 1) * raw_samples].unsqueeze(-2)
        with torch.no_grad():
            raw_values = acqf(raw)
        starts, _ = initialize_q_batch(raw, raw_values, min(num_restarts, raw_samples))
        candidate, _ = optimize_acqf(
            acqf,
            bounds=space.bounds,
            q=1,
            num_restarts=starts.shape[0],
            batch_initial_conditions=starts,
            equality_constraints=space.equality_constraints or None,
            inequality_constraints=space.inequality_constraints or None,
            options={"maxiter": 200},
            retry_on_optimization_warning=False,
        )
        raw = candidate.detach().reshape(space.dim)
        candidate = space.project(raw)
        if not bool(torch.isfinite(candidate).all()):
            raise ValueError("the acquisition optimiser returned a non-finite candidate")
        taken = torch.cat([x, pending])
        swapped = False
        if bool(_too_close(candidate, taken, space)):
            if pool is None:
                pool = space.sample(_REPLACEMENT_POOL, seed + 1)
            free = pool[~_too_close(pool, taken, space)]
            if free.shape[0]:  # else the space is too small to keep away from every earlier point
                with torch.no_grad():
                    scores = acqf(free.unsqueeze(-2))
                candidate, swapped = free[int(scores.argmax())].reshape(1, space.dim), True
        with torch.no_grad():
            values.append(float(acqf(candidate.unsqueeze(0))))
        picks = torch.cat([picks, candidate])
        optimised.append(None if swapped else raw)
    return picks, values, optimised


def _describe_picks(
    space: DesignSpace,
    outputs: list[_Output],
    bounds: list[_Bound],
    picks: Tensor,
    values: list[float],
    optimised: list[Tensor | None],
    note: str,
) -> list[Suggestion]:
    """Suggestions with predictions of every quantity, the feasibility probability and why."""
    n = picks.shape[0]
    what = _acquisition_phrase(space.spec)
    whys = []
    for i in range(n):
        if optimised[i] is None:
            whys.append(f"replaces a near-duplicate: best {what} among points away from the others")
        elif n == 1:
            whys.append(f"highest {what}")
        else:
            lead = f"#{i + 1} of {n}, picked greedily by {what}"
            whys.append(f"{lead} given the pending points and earlier picks")
    inputs = outputs[0].fitted.input_names(space.names)
    return [
        _suggestion(
            space,
            picks[i],
            text,
            source="model",
            predicted=predicted,
            acquisition_value=values[i],
            model_inputs=inputs,
            raw_candidate=optimised[i],
        )
        for i, (text, predicted) in enumerate(_explain(outputs, bounds, picks, whys, note))
    ]


def _acquisition_phrase(spec: CampaignSpec) -> str:
    """What the acquisition of ``spec`` scores, for rationales."""
    several = len(spec.objectives) > 1
    return "expected hypervolume improvement" if several else "feasibility-weighted expected improvement"


def _explain(
    outputs: list[_Output], bounds: list[_Bound], picks: Tensor, whys: list[str], note: str
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


def propose_pareto(
    spec: CampaignSpec,
    observations: Sequence[Observation],
    n: int,
    seed: int,
    pending: Sequence[dict[str, float]] = (),
    *,
    pending_choices: Sequence[dict[str, str]] = (),
    log_transform: bool | None = None,
    num_restarts: int = 2,
    raw_samples: int = 64,
    mc_samples: int = 128,
    fused_kernel: bool = False,
) -> list[Suggestion]:
    """Propose ``n`` compositions that best extend the feasible Pareto front, best first.

    A spec with ``max_active_components``, ``resolution`` or ``categories`` is handed to
    :func:`tools.mixed_multiobjective.propose_pareto_mixed` (which also fills ``active_components``
    and ``choices``).

    Args:
        spec: The campaign spec: its objectives (each in its direction, at most four), thresholds
            and outcome constraints.
        observations: Every observation so far. Those with status ``"ok"``, a finite value of every
            objective and constrained quantity and every free component are used.
        n: Batch size; points are picked greedily, each given the pending points and earlier picks.
        seed: Seed of every random stream here; the same inputs and seed give the same proposals.
        pending: Compositions (spec unit) proposed but not measured yet; proposals avoid them.
        pending_choices: The categorical choices of each pending composition, in the same order
            (required when the spec has categories; ignored otherwise).
        log_transform: Force (True) or forbid (False) modelling the log of each quantity; None
            applies the rule of :func:`tools.optimise.propose` per quantity. A quantity whose
            threshold or constraint bound has the other sign than its values is never logged.
        num_restarts: Starting points of the acquisition optimiser per pick.
        raw_samples: Random feasible points scored per pick to choose the starting points.
        mc_samples: Quasi-Monte-Carlo samples of the acquisition function.
        fused_kernel: Let BoTorch JIT-compile its fused qLogNEHVI kernel if it has not been loaded
            (about 35 s once per machine; needs a C++ compiler). See the module docstring.

    Returns:
        ``n`` suggestions, each feasible (``spec.violations(s.composition) == []``) and none a
        near-duplicate of an observation, a pending composition or another suggestion when the
        space leaves room. ``predicted_mean`` and ``predicted_std`` are those of the primary
        objective; the rationale gives every quantity's prediction, the probability of meeting the
        outcome constraints and the reference point with where it came from.

    Raises:
        SpecError: A pending composition lacks a component of the spec, or its choices are missing.
    """
    if n <= 0:
        return []
    if needs_mixed_space(spec):
        from tools.mixed_multiobjective import propose_pareto_mixed  # imports this module

        return propose_pareto_mixed(
            spec,
            observations,
            n,
            seed,
            pending,
            pending_choices=pending_choices,
            log_transform=log_transform,
            num_restarts=num_restarts,
            raw_samples=raw_samples,
            mc_samples=mc_samples,
            fused_kernel=fused_kernel,
        )
    space = design_space(spec)
    names = spec.measured_names
    with manual_seed(seed), _one_thread(), _kernel_build(fused_kernel):
        x, y = _usable(space, observations, names)
        pending_x = space.to_tensor(list(pending)) if pending else torch.zeros(0, space.dim, dtype=DTYPE)
        if space.dim == 0:
            return _fallback(space, x, pending_x, n, seed, "the spec allows a single composition")
        reason = _why_unfit(x, y, names)
        if reason is None:
            try:

                def fit(t: Tensor, d: float, log: bool | None) -> _Fitted:
                    inputs = descriptor_inputs(space, x) if spec.descriptors else None  # one per model
                    return _fit_gp(x, t, space.bounds, d, log, input_transform=inputs)

                outputs = _fit_outputs(spec, y, names, log_transform, fit)
                build, bounds, note = _acquisition_factory(spec, outputs, x, y, seed, mc_samples)
                picks, values, optimised = _greedy_picks(
                    space, build, x, pending_x, n, seed, num_restarts, raw_samples
                )
                return _describe_picks(space, outputs, bounds, picks, values, optimised, note)
            except _NUMERICAL_ERRORS as exc:
                _log.warning("model-based Pareto proposal failed, using space-filling points: %s", exc)
                reason = f"the model failed ({type(exc).__name__})"
        return _fallback(space, x, pending_x, n, seed, reason)
