"""Several objectives and outcome constraints on the continuous space: Pareto-front Bayesian optimisation.

:func:`propose_pareto_continuous` fits one Gaussian process per measured quantity (the objectives,
then any other quantity an outcome constraint names; :mod:`tools.optimiser.multioutput`) with the
model, transforms and log-scale rule of the model layer, gathers them in a ``ModelListGP`` and
maximises ``qLogNoisyExpectedHypervolumeImprovement`` (qLogNEHVI) over the design space with the
sum rule and the linear constraints (:func:`tools.optimiser.acquisitions.pareto_builder`). With one
objective and outcome constraints the acquisition is the same model's feasibility-weighted
``qLogNoisyExpectedImprovement``. Each suggestion's rationale gives the reference point and where it
came from.

Speed: a batch is chosen greedily, one point at a time, each optimised with the earlier picks as
pending points. On two objectives, 50 observations and 5 components summing to one, greedy picks
of q = 4 reached a higher joint hypervolume improvement than a joint q = 4 optimisation and took
about half as long (one inclusion-exclusion term per evaluation instead of fifteen). Two restarts
of the optimiser from 64 scored raw points per pick found the same batches as four restarts.
BoTorch's fused qLogNEHVI kernel is compiled only when ``fused_kernel=True`` allows it (see
:func:`tools.optimiser.acquisitions.fused_kernel_build`).

Like every strategy, this never stops a campaign: with too few or degenerate data, or when a fit or
the acquisition fails numerically, it returns space-filling points and says why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from botorch.optim.initializers import initialize_q_batch
from botorch.utils.sampling import manual_seed
from torch import Tensor

from athanor.models import Observation
from athanor.spec import CampaignSpec
from tools.descriptors import descriptor_inputs
from tools.design_space import DTYPE, DesignSpace, design_space
from tools.optimiser.acquisitions import AcquisitionBuilder, fused_kernel_build, pareto_builder
from tools.optimiser.data import near_duplicates, pending_tensor, usable_tensors
from tools.optimiser.models import NUMERICAL_ERRORS, FittedModel, failure_reason, fit_gp, one_thread
from tools.optimiser.multioutput import (
    ModelledOutput,
    OutcomeBound,
    acquisition_phrase,
    explain,
    fit_outputs,
    why_unfit,
)
from tools.optimiser.options import OptimiserOptions
from tools.optimiser.suggestions import Suggestion, fallback, suggestion

__all__ = ["propose_pareto_continuous"]

_log = logging.getLogger(__name__)

#: Random feasible points scored to replace a near-duplicate pick.
_REPLACEMENT_POOL = 512


def propose_pareto_continuous(
    spec: CampaignSpec,
    observations: Sequence[Observation],
    n: int,
    seed: int,
    pending: Sequence[dict[str, float]] = (),
    *,
    log_transform: bool | None = None,
    num_restarts: int = 2,
    raw_samples: int = 64,
    mc_samples: int = 128,
    fused_kernel: bool = False,
    options: OptimiserOptions | None = None,
) -> list[Suggestion]:
    """Propose ``n`` compositions of the continuous space that best extend the feasible Pareto front.

    Args:
        spec: The campaign spec: its objectives (each in its direction, at most four), thresholds
            and outcome constraints.
        observations: Every observation so far. Those with status ``"ok"``, a finite value of every
            objective and constrained quantity and every free component are used.
        n: Batch size; points are picked greedily, each given the pending points and earlier picks.
        seed: Seed of every random stream here; the same inputs and seed give the same proposals.
        pending: Compositions (spec unit) proposed but not measured yet; proposals avoid them.
        log_transform: Force (True) or forbid (False) modelling the log of each quantity; None
            applies the model layer's rule per quantity. A quantity whose threshold or constraint
            bound has the other sign than its values is never logged.
        num_restarts: Starting points of the acquisition optimiser per pick.
        raw_samples: Random feasible points scored per pick to choose the starting points.
        mc_samples: Quasi-Monte-Carlo samples of the acquisition function.
        fused_kernel: Let BoTorch JIT-compile its fused qLogNEHVI kernel if it has not been loaded
            (about 35 s once per machine; needs a C++ compiler).
        options: Only the BoTorch functions it holds apply here (the fit and the maximiser); the
            model and acquisition options are refused.

    Returns:
        ``n`` suggestions, each feasible (``spec.violations(s.composition) == []``) and none a
        near-duplicate of an observation, a pending composition or another suggestion when the
        space leaves room. ``predicted_mean`` and ``predicted_std`` are those of the primary
        objective; the rationale gives every quantity's prediction, the probability of meeting the
        outcome constraints and the reference point with where it came from.

    Raises:
        SpecError: A pending composition lacks a component of the spec, or a model or acquisition
            option is given.
    """
    if n <= 0:
        return []
    options = options or OptimiserOptions()
    options.refuse_model_options("a spec with several objectives or outcome constraints")
    space = design_space(spec)
    names = spec.measured_names
    with manual_seed(seed), one_thread(), fused_kernel_build(fused_kernel):
        x, y = usable_tensors(space, observations, names)
        pending_x = pending_tensor(space, pending)
        if space.dim == 0:
            return fallback(space, x, pending_x, n, seed, "the spec allows a single composition")
        reason = why_unfit(x, y, names)
        if reason is None:
            try:

                def fit(t: Tensor, d: float, log: bool | None) -> FittedModel:
                    inputs = descriptor_inputs(space, x) if spec.descriptors else None  # one per model
                    fit_mll = options.fit_gpytorch_mll
                    return fit_gp(x, t, space.bounds, d, log, input_transform=inputs, fit_mll=fit_mll)

                outputs = fit_outputs(spec, y, names, log_transform, fit)
                build, bounds, note = pareto_builder(spec, outputs, x, y, seed, mc_samples)
                picks, values, optimised = _greedy_picks(
                    space, build, x, pending_x, n, seed, num_restarts, raw_samples, options.optimize_acqf
                )
                return _describe_picks(space, outputs, bounds, picks, values, optimised, note)
            except NUMERICAL_ERRORS as exc:
                _log.warning("model-based Pareto proposal failed, using space-filling points: %s", exc)
                reason = failure_reason(exc)
        return fallback(space, x, pending_x, n, seed, reason)


def _greedy_picks(
    space: DesignSpace,
    build: AcquisitionBuilder,
    x: Tensor,
    pending_x: Tensor,
    n: int,
    seed: int,
    num_restarts: int,
    raw_samples: int,
    optimize: Callable[..., Any],
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
        candidate, _ = optimize(
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
        if bool(near_duplicates(space, candidate, taken)):
            if pool is None:
                pool = space.sample(_REPLACEMENT_POOL, seed + 1)
            free = pool[~near_duplicates(space, pool, taken)]
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
    outputs: list[ModelledOutput],
    bounds: list[OutcomeBound],
    picks: Tensor,
    values: list[float],
    optimised: list[Tensor | None],
    note: str,
) -> list[Suggestion]:
    """Suggestions with predictions of every quantity, the feasibility probability and why."""
    n = picks.shape[0]
    what = acquisition_phrase(space.spec)
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
        suggestion(
            space,
            picks[i],
            text,
            source="model",
            predicted=predicted,
            acquisition_value=values[i],
            model_inputs=inputs,
            raw_candidate=optimised[i],
        )
        for i, (text, predicted) in enumerate(explain(outputs, bounds, picks, whys, note))
    ]
