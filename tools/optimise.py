"""The designer's optimiser: a Gaussian process and batch noisy expected improvement (BoTorch).

:func:`propose` fits a ``SingleTaskGP`` (ARD RBF kernel, BoTorch's default priors; inputs normalised
over the design-space bounds, outcome standardised) to the usable observations of the primary
objective and maximises ``qLogNoisyExpectedImprovement`` over the constrained simplex with the sum
rule as an equality constraint and the linear constraints as inequality constraints.

Values are modelled on a log scale when they share a sign and their magnitudes span more than a
decade (:data:`LOG_SPAN`; negative values are modelled as ``-log(-y)``, which keeps the order).
Conductivities spread over decades; on synthetic conductivity landscapes (2 to 1200 S/cm) the log
model ranked held-out points far better (Spearman 0.99 vs 0.60 with 30 points on a sharp peak),
was better calibrated (2-sigma coverage 0.91-1.00 vs 0.75-0.83) and found the peak more reliably.
Minimisation negates the (possibly logged) values. Predictions are reported in the objective's own
unit: with the log model, mean and standard deviation are those of the implied log-normal.

Torch runs on one thread during a call (the previous setting is restored afterwards): the matrices
are small, and on a shared 2-core machine a second thread made no call faster but stalled some
calls for 5-15 s.

:func:`propose_from_pool` is the same model on a finite pool of candidates with generic columns (a
data set, a plate of pre-made samples): the acquisition is scored on every unmeasured candidate
instead of being optimised over the simplex. Its GP warps the inputs, and a single pick with nothing
pending is scored by an upper confidence bound (:func:`pool_acquisition`): on the pool benchmarks of
BENCHMARKS.md both beat the plain GP with qLogNEI, while over the simplex warping found an interior
peak less closely, so :func:`propose` does neither.

``CampaignSpec.surrogate == "random_forest"`` (and ``propose_from_pool(..., model="random_forest")``)
swaps the GP for the random forest of :mod:`tools.forest`: same targets, a confidence bound (or, in
pool mode, expected improvement) from the mean and spread across trees, scored on
:data:`FOREST_SAMPLES` seeded feasible compositions since a forest cannot be differentiated.

The optimiser never stops a campaign: with too few observations, or when the fit or the
acquisition fails numerically, it returns space-filling points far from the measured ones and says
why in the rationale.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.acquisition.monte_carlo import qUpperConfidenceBound
from botorch.exceptions.errors import BotorchError
from botorch.exceptions.warnings import InputDataWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.input import ChainedInputTransform, InputTransform, Normalize, Warp
from botorch.models.transforms.outcome import Standardize
from botorch.optim import optimize_acqf
from botorch.optim.initializers import initialize_q_batch
from botorch.sampling import SobolQMCNormalSampler
from botorch.utils.sampling import manual_seed
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import LogNormalPrior
from linear_operator.utils.warnings import NumericalWarning
from pydantic import BaseModel, ConfigDict
from torch import Tensor

from athanor.errors import SpecError
from athanor.models import Observation
from athanor.spec import CampaignSpec
from tools.descriptors import DescriptorFeatures, descriptor_inputs
from tools.design_space import DTYPE, DesignSpace, design_space
from tools.forest import FOREST_ACQUISITIONS, LIANG_BETA, fit_forest, pick_greedy
from tools.initial_design import maximin_indices, space_filling
from tools.mixed_space import needs_mixed_space

__all__ = [
    "DUPLICATE_DISTANCE",
    "FOREST_SAMPLES",
    "LOG_SPAN",
    "FitSummary",
    "PoolPick",
    "Suggestion",
    "fit_summary",
    "pool_acquisition",
    "propose",
    "propose_from_pool",
]

_log = logging.getLogger(__name__)

#: Values are modelled on a log scale when they share a sign and ``max(|y|) / min(|y|)`` exceeds this.
LOG_SPAN = 10.0
#: A proposal closer than this to a measured, pending or earlier proposal (largest per-component
#: difference, as a fraction of that component's range) is a near-duplicate and is replaced.
DUPLICATE_DISTANCE = 0.02

#: Exploration weight of the GP's upper confidence bound ``mean + sqrt(beta) * std`` in pool mode:
#: 1.41 standard deviations up. Of 2, 4 (Liang et al.'s ``lambda = 2``) and 9, chosen on seeds 0-9 of
#: the four benchmark pools and confirmed on seeds 10-19 (BENCHMARKS.md, "Paired by seed"); 9 lost
#: on P3HT/CNT and AgNP, 2 lost nowhere. The forest keeps Liang et al.'s :data:`LIANG_BETA`.
UCB_BETA = 2.0

#: Feasible compositions the random-forest surrogate scores per proposal (it cannot be differentiated).
FOREST_SAMPLES = 4096

#: Numerical failures of the fit or the acquisition that trigger the space-filling fallback.
_NUMERICAL_ERRORS = (RuntimeError, ValueError, ArithmeticError, BotorchError)


class Suggestion(BaseModel):
    """One composition the optimiser proposes, with why.

    Attributes:
        composition: Component name to amount, in the spec's unit.
        predicted_mean: Model mean of the primary objective, in its unit (None without a model).
        predicted_std: Model standard deviation of the primary objective, in its unit.
        acquisition_value: Log expected improvement of this point on its own, given the pending
            points, in log standardised units (None without a model).
        rationale: One line saying why this point was chosen.
        active_constraints: Spec bounds and constraints the point sits on, e.g. ``P3HT >= 0.3``.
        source: ``"model"`` (acquisition optimum) or ``"initial"`` (space-filling point).
        active_components: Components with a non-zero amount (set on the mixed path, see
            :mod:`tools.mixed_optimise`; empty otherwise).
        choices: Categorical variable name to the chosen option (empty when the spec has none).
        model_inputs: The input columns of the fitted model that chose the point, read from the
            model: the free components, the categorical variables, then the features its input
            transform appends (the spec's descriptors). With several objectives, those of the primary
            objective's model; empty without a model.
        raw_candidate: The acquisition optimiser's own output this point came from, in spec units,
            before any repair (projection onto the constraints, snapping to the grid); None when the
            point did not come from the gradient optimiser (a space-filling point, a random-forest
            pick, a screening sample of the mixed search, a replacement of a near-duplicate).
    """

    model_config = ConfigDict(extra="forbid")

    composition: dict[str, float]
    predicted_mean: float | None = None
    predicted_std: float | None = None
    acquisition_value: float | None = None
    rationale: str
    active_constraints: list[str] = []
    source: Literal["model", "initial"] = "model"
    active_components: list[str] = []
    choices: dict[str, str] = {}
    model_inputs: list[str] = []
    raw_candidate: dict[str, float] | None = None


class FitSummary(BaseModel):
    """Diagnostics of the model :func:`propose` would use.

    Attributes:
        n_used: Observations the model was fitted on.
        n_ignored: Observations left out (failed, outlier, missing or non-finite value, missing
            component).
        log_transform: Whether values were modelled on a log scale.
        lengthscales: Free component name to its ARD lengthscale, as a fraction of the component's
            range (short = the objective changes quickly along that component); then each of the
            spec's descriptors, as a fraction of its range on the design space.
        noise_std: Fitted noise standard deviation, as a fraction of the values' spread (on the
            model's scale).
        loo_r2: Leave-one-out R² on the model's scale (1 = perfect, <= 0 = no better than the mean).
    """

    model_config = ConfigDict(extra="forbid")

    n_used: int
    n_ignored: int
    log_transform: bool
    lengthscales: dict[str, float]
    noise_std: float
    loo_r2: float


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block, then restore the previous thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # Jitter added to a near-singular covariance is routine; it must not reach the user's terminal.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NumericalWarning)
            # prior data may lie outside today's bounds; those points still inform the model
            warnings.simplefilter("ignore", InputDataWarning)
            yield
    finally:
        torch.set_num_threads(previous)


class _Fitted:
    """A fitted model and how its targets relate to the objective's values.

    The model's target is ``direction * t`` with ``t = log_sign * log(log_sign * y)`` on the log
    scale (``log_sign`` is +1 for positive values, -1 for negative ones; ``t`` grows with ``y``
    either way) and ``t = y`` otherwise (``log_sign == 0``).
    """

    def __init__(self, model: SingleTaskGP, direction: float, log_sign: float) -> None:
        self.model = model
        self.direction = direction
        self.log_sign = log_sign

    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and standard deviation (objective unit) at ``n x d`` points, each of shape ``n``."""
        with torch.no_grad():
            posterior = self.model.posterior(x)
        mean = self.direction * posterior.mean.squeeze(-1)
        var = posterior.variance.squeeze(-1).clamp_min(0.0)
        if not self.log_sign:
            return mean, var.sqrt()
        magnitude = torch.exp(self.log_sign * mean + var / 2)
        return self.log_sign * magnitude, magnitude * torch.expm1(var).sqrt()

    def input_names(self, columns: Sequence[str]) -> list[str]:
        """The model's input columns: ``columns`` (its raw inputs), then the features it appends to them."""
        appended = [n for m in self.model.modules() if isinstance(m, DescriptorFeatures) for n in m.names]
        return [*columns, *appended]


def _usable(space: DesignSpace, observations: Sequence[Observation]) -> tuple[Tensor, Tensor]:
    """Inputs (``n x d`` unit fractions) and values (``n``) of the observations a model may use."""
    objective = space.spec.primary_objective.name
    rows = []
    values = []
    for obs in observations:
        value = obs.values.get(objective)
        if obs.status != "ok" or value is None or not math.isfinite(value):
            continue
        amounts = [obs.composition.get(n) for n in space.names]
        if any(a is None or not math.isfinite(a) for a in amounts):
            continue
        rows.append(dict(zip(space.names, amounts, strict=True)))
        values.append(value)
    x = space.to_tensor(rows) if rows else torch.zeros(0, space.dim, dtype=DTYPE)
    return x, torch.tensor(values, dtype=DTYPE)


def _direction(spec: CampaignSpec) -> float:
    """+1 when the spec's primary objective is maximised, -1 when it is minimised."""
    return 1.0 if spec.primary_objective.direction == "maximise" else -1.0


def _targets(y: Tensor, direction: float, log_transform: bool | None) -> tuple[Tensor, float, float]:
    """Model targets (``n x 1``, larger is better), the direction sign and the log sign (see `_Fitted`)."""
    log_sign = 1.0 if bool((y > 0).all()) else -1.0 if bool((y < 0).all()) else 0.0
    if log_transform is None:
        magnitude = y.abs()
        log = bool(log_sign) and float(magnitude.max() / magnitude.min()) > LOG_SPAN
    else:
        log = log_transform and bool(log_sign)
    if not log:
        log_sign = 0.0
    t = log_sign * torch.log(log_sign * y) if log else y
    return (direction * t).unsqueeze(-1), direction, log_sign


def _unfit_reason(x: Tensor, y: Tensor) -> str | None:
    """Why no model can be fitted to these data, or None when one can."""
    if x.shape[0] < 2:
        return f"only {x.shape[0]} usable observation(s), too few to fit a model"
    if torch.unique(x, dim=0).shape[0] < 2:
        return "all usable observations share one composition, nothing to model"
    if float(y.max() - y.min()) <= 1e-12 * max(1.0, float(y.abs().max())):
        return "all usable observations have the same value, no trend to model"
    return None


def _fit(space: DesignSpace, x: Tensor, y: Tensor, log_transform: bool | None) -> _Fitted:
    """Fit the GP on ``x`` (``n x d``) and values ``y`` (``n``); raises a numerical error on failure.

    With the spec's descriptors the model's inputs are the amounts and the scaled descriptors.
    """
    transform = descriptor_inputs(space, x) if space.spec.descriptors else None
    return _fit_gp(x, y, space.bounds, _direction(space.spec), log_transform, input_transform=transform)


def _fit_gp(
    x: Tensor,
    y: Tensor,
    bounds: Tensor,
    direction: float,
    log_transform: bool | None,
    *,
    input_transform: InputTransform | None = None,
    warp: bool = False,
) -> _Fitted:
    """Fit the GP on ``x`` (``n x d``, normalised over ``2 x d`` ``bounds``) and values ``y`` (``n``).

    ``direction`` is +1 to maximise, -1 to minimise. ``input_transform`` replaces the normalisation
    (e.g. :func:`tools.descriptors.descriptor_inputs`). ``warp`` adds a learnt Kumaraswamy warping
    of each normalised input (BoTorch's ``Warp``, LogNormal(0, 0.75) priors on both concentrations,
    as in BoTorch's warping tutorial): a monotone stretch for a property that changes faster over
    some range of an input than over others. Raises a numerical error on failure.
    """
    targets, direction, log_sign = _targets(y, direction, log_transform)
    transform = input_transform or Normalize(x.shape[-1], bounds=bounds)
    if warp:
        transform = ChainedInputTransform(normalize=transform, warp=_warping(x.shape[-1], x))
    model = SingleTaskGP(x, targets, input_transform=transform, outcome_transform=Standardize(m=1))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    model.eval()
    return _Fitted(model, direction, log_sign)


def _warping(d: int, like: Tensor) -> Warp:
    """A Kumaraswamy warping of ``d`` inputs already in the unit cube."""
    return Warp(
        d,
        indices=list(range(d)),
        concentration1_prior=LogNormalPrior(0.0, 0.75**0.5),
        concentration0_prior=LogNormalPrior(0.0, 0.75**0.5),
        bounds=torch.stack([torch.zeros(d), torch.ones(d)]).to(like),
    )


def fit_summary(
    spec: CampaignSpec, observations: Sequence[Observation], *, log_transform: bool | None = None
) -> FitSummary | None:
    """Fit the model :func:`propose` would use and report its diagnostics.

    Args:
        spec: The campaign spec.
        observations: Every observation so far; unusable ones are ignored.
        log_transform: Force (True) or forbid (False) the log scale; None decides from the values.

    Returns:
        The diagnostics, or None when there is no model to fit (too few or degenerate data, or a
        numerical failure).
    """
    space = design_space(spec)
    x, y = _usable(space, observations)
    if space.dim == 0 or _unfit_reason(x, y) is not None:
        return None
    try:
        with manual_seed(0), _one_thread():
            fitted = _fit(space, x, y, log_transform)
        model = fitted.model
        with torch.no_grad(), _one_thread():
            xn = model.input_transform(x)
            targets = model.train_targets
            noise = model.likelihood.noise.detach().squeeze()
            k = model.covar_module(xn).to_dense() + noise * torch.eye(len(y), dtype=DTYPE)
            k_inv = torch.cholesky_inverse(torch.linalg.cholesky(k))
            alpha = k_inv @ (targets - model.mean_module.constant)
            loo_residuals = alpha / torch.diagonal(k_inv)
            loo_r2 = 1.0 - float((loo_residuals**2).sum() / ((targets - targets.mean()) ** 2).sum())
            lengthscales = model.covar_module.lengthscale.squeeze(0).tolist()
    except _NUMERICAL_ERRORS as exc:
        _log.warning("model fit failed: %s", exc)
        return None
    return FitSummary(
        n_used=int(x.shape[0]),
        n_ignored=len(observations) - int(x.shape[0]),
        log_transform=bool(fitted.log_sign),
        lengthscales=dict(zip([*space.names, *spec.descriptors], lengthscales, strict=True)),
        noise_std=float(noise.sqrt()),
        loo_r2=loo_r2,
    )


def propose(
    spec: CampaignSpec,
    observations: Sequence[Observation],
    n: int,
    seed: int,
    pending: Sequence[dict[str, float]] = (),
    *,
    pending_choices: Sequence[dict[str, str]] = (),
    log_transform: bool | None = None,
    num_restarts: int = 4,
    raw_samples: int = 64,
    mc_samples: int = 128,
) -> list[Suggestion]:
    """Propose ``n`` compositions to measure next, best first.

    With ``spec.surrogate == "random_forest"`` the forest of :mod:`tools.forest` scores
    :data:`FOREST_SAMPLES` seeded feasible compositions by its confidence bound (Liang et al.'s
    ``lambda = 2``) and keeps the best; a batch and the pending points use the kriging believer.

    A spec with several objectives or outcome constraints is handed to
    :func:`tools.multiobjective.propose_pareto` (with its own restarts and raw samples per pick; on
    the mixed space too). Otherwise a spec with ``max_active_components``, ``resolution`` or
    ``categories`` is handed to :func:`tools.mixed_optimise.propose_mixed`. Both mixed paths also
    fill ``active_components`` and ``choices``.

    Args:
        spec: The campaign spec; its primary objective is optimised in its direction.
        observations: Every observation so far. Only those with status ``"ok"``, a finite value for
            the primary objective and every free component are used.
        n: Batch size (number of compositions, jointly optimised).
        seed: Seed of every random stream here; the same inputs and seed give the same proposals.
        pending: Compositions (spec unit) proposed but not measured yet; proposals avoid them.
        pending_choices: The categorical choices of each pending composition (specs with categories).
        log_transform: Force (True) or forbid (False) modelling the log of the values; None uses
            the log when all values share a sign and their magnitudes span more than
            :data:`LOG_SPAN`. Values of mixed sign are never logged.
        num_restarts: Starting batches for the acquisition optimiser.
        raw_samples: Random feasible batches scored to choose the starting batches.
        mc_samples: Quasi-Monte-Carlo samples of the acquisition function.

    Returns:
        ``n`` suggestions, best first, each feasible (``spec.violations(s.composition) == []``),
        none a near-duplicate of an observation, a pending composition or another suggestion when
        the space leaves room.

    Raises:
        SpecError: A pending composition lacks a component of the spec.
    """
    if n <= 0:
        return []
    if needs_mixed_space(spec) and not (len(spec.objectives) > 1 or spec.outcome_constraints):
        from tools.mixed_optimise import propose_mixed  # imports this module

        return propose_mixed(
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
        )
    if len(spec.objectives) > 1 or spec.outcome_constraints:
        from tools.multiobjective import propose_pareto  # imports this module

        return propose_pareto(
            spec,
            observations,
            n,
            seed,
            pending,
            pending_choices=pending_choices,
            log_transform=log_transform,
            mc_samples=mc_samples,
        )
    space = design_space(spec)
    with manual_seed(seed), _one_thread():
        x, y = _usable(space, observations)
        pending_x = space.to_tensor(list(pending)) if pending else torch.zeros(0, space.dim, dtype=DTYPE)
        if space.dim == 0:
            return _fallback(space, x, pending_x, n, seed, "the spec allows a single composition")
        reason = _unfit_reason(x, y)
        if reason is None:
            try:
                if spec.surrogate == "random_forest":
                    return _forest_suggestions(space, x, y, pending_x, n, seed, log_transform)
                fitted = _fit(space, x, y, log_transform)
                return _model_suggestions(
                    space, fitted, x, pending_x, n, seed, num_restarts, raw_samples, mc_samples
                )
            except _NUMERICAL_ERRORS as exc:
                _log.warning("model-based proposal failed, using space-filling points: %s", exc)
                reason = f"the model failed ({type(exc).__name__})"
        return _fallback(space, x, pending_x, n, seed, reason)


def _model_suggestions(
    space: DesignSpace,
    fitted: _Fitted,
    x: Tensor,
    pending_x: Tensor,
    n: int,
    seed: int,
    num_restarts: int,
    raw_samples: int,
    mc_samples: int,
) -> list[Suggestion]:
    """Maximise qLogNEI jointly over ``n`` points, repair, de-duplicate and describe them."""
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed)
    acqf = qLogNoisyExpectedImprovement(
        fitted.model,
        X_baseline=x,
        sampler=sampler,
        X_pending=pending_x if pending_x.shape[0] else None,
        prune_baseline=True,
    )
    raw = space.sample(raw_samples * n, seed).reshape(raw_samples, n, space.dim)
    with torch.no_grad():
        raw_values = acqf(raw)
    starts, _ = initialize_q_batch(raw, raw_values, min(num_restarts, raw_samples))
    candidates, _ = optimize_acqf(
        acqf,
        bounds=space.bounds,
        q=n,
        num_restarts=starts.shape[0],
        batch_initial_conditions=starts,
        equality_constraints=space.equality_constraints or None,
        inequality_constraints=space.inequality_constraints or None,
        options={"maxiter": 200},
        retry_on_optimization_warning=False,
    )
    raw = candidates.detach().reshape(n, space.dim)
    candidates = space.project(raw)
    if not bool(torch.isfinite(candidates).all()):
        raise ValueError("the acquisition optimiser returned non-finite candidates")

    replaced = _replace_duplicates(space, fitted, candidates, x, pending_x, seed)
    with torch.no_grad():
        acq_values = acqf(candidates.unsqueeze(-2))
    mean, std = fitted.predict(candidates)
    order = torch.argsort(acq_values, descending=True).tolist()
    unit = space.spec.primary_objective.unit
    inputs = fitted.input_names(space.names)
    suggestions = []
    for rank, i in enumerate(order):
        if i in replaced:
            why = "replaces a near-duplicate: best expected improvement among points away from the others"
        elif n == 1:
            why = "highest expected improvement"
        else:
            why = f"#{rank + 1} of {n} by expected improvement in a jointly optimised batch"
        suggestions.append(
            _suggestion(
                space,
                candidates[i],
                why + f"; predicted {float(mean[i]):.3g} ± {float(std[i]):.2g} {unit}".rstrip(),
                source="model",
                predicted=(float(mean[i]), float(std[i])),
                acquisition_value=float(acq_values[i]),
                model_inputs=inputs,
                raw_candidate=None if i in replaced else raw[i],
            )
        )
    return suggestions


def _forest_suggestions(
    space: DesignSpace,
    x: Tensor,
    y: Tensor,
    pending_x: Tensor,
    n: int,
    seed: int,
    log_transform: bool | None,
) -> list[Suggestion]:
    """Score :data:`FOREST_SAMPLES` seeded feasible points with the forest's confidence bound, keep the best.

    Points near a measured or pending one are skipped; batches and pending points use the kriging
    believer of :func:`tools.forest.pick_greedy`, and later picks keep :data:`DUPLICATE_DISTANCE` from
    earlier ones. When the space leaves too little room, space-filling points make up the batch.
    """
    targets, direction, log_sign = _targets(y, _direction(space.spec), log_transform)
    forest = fit_forest(x, targets, space.bounds, direction=direction, log_sign=log_sign, seed=seed)
    candidates = space.sample(FOREST_SAMPLES, seed)
    allowed = ~_too_close(candidates, torch.cat([x, pending_x]), space)
    picks = pick_greedy(
        forest,
        candidates,
        n,
        acquisition="ucb",
        beta=LIANG_BETA,
        pending=pending_x,
        allowed=allowed,
        exclusion=DUPLICATE_DISTANCE,
    )
    points = candidates[[p.index for p in picks]]
    mean, std = forest.predict(points)
    unit = space.spec.primary_objective.unit
    suggestions = []
    for rank, pick in enumerate(picks):
        why = f"random forest: highest confidence bound among {FOREST_SAMPLES} sampled feasible compositions"
        if rank:
            why = f"random forest: #{rank + 1} of {n}, best confidence bound with the earlier picks believed"
        suggestions.append(
            _suggestion(
                space,
                points[rank],
                why + f"; predicted {float(mean[rank]):.3g} ± {float(std[rank]):.2g} {unit}".rstrip(),
                source="model",
                predicted=(float(mean[rank]), float(std[rank])),
                acquisition_value=pick.value,
                model_inputs=space.names,
            )
        )
    if len(suggestions) < n:
        reason = "too little room left away from the measured, pending and picked compositions"
        suggestions += _fallback(space, x, torch.cat([pending_x, points]), n - len(suggestions), seed, reason)
    return suggestions


def _too_close(points: Tensor, others: Tensor, space: DesignSpace) -> Tensor:
    """Which of ``points`` (``m x d``) lie within :data:`DUPLICATE_DISTANCE` of any of ``others``."""
    if others.shape[0] == 0 or points.shape[0] == 0:
        return torch.zeros(points.shape[0], dtype=torch.bool)
    gap = torch.cdist(space.normalise(points), space.normalise(others), p=float("inf"))
    return (gap < DUPLICATE_DISTANCE).any(dim=-1)


def _replace_duplicates(
    space: DesignSpace, fitted: _Fitted, candidates: Tensor, x: Tensor, pending_x: Tensor, seed: int
) -> set[int]:
    """Swap near-duplicate candidates, in place, for the best-scoring distinct feasible points.

    Returns:
        Indices of the candidates that were replaced.
    """
    replaced: set[int] = set()
    pool = None
    for i in range(candidates.shape[0]):
        taken = torch.cat([x, pending_x, candidates[:i]])
        if not bool(_too_close(candidates[i : i + 1], taken, space)):
            continue
        if pool is None:
            pool = space.sample(512, seed + 1)
        free = pool[~_too_close(pool, taken, space)]
        if free.shape[0] == 0:
            continue  # the space is too small to avoid every earlier point
        acqf = qLogNoisyExpectedImprovement(
            fitted.model,
            X_baseline=x,
            sampler=SobolQMCNormalSampler(sample_shape=torch.Size([64]), seed=seed),
            X_pending=torch.cat([pending_x, candidates[:i], candidates[i + 1 :]]),
            prune_baseline=True,
        )
        with torch.no_grad():
            best = int(acqf(free.unsqueeze(-2)).argmax())
        candidates[i] = free[best]
        replaced.add(i)
    return replaced


def _fallback(
    space: DesignSpace, x: Tensor, pending_x: Tensor, n: int, seed: int, reason: str
) -> list[Suggestion]:
    """Space-filling points far from the observed and pending ones, with ``reason`` in the rationale."""
    points = space_filling(space, n, seed, avoid=torch.cat([x, pending_x]))
    lead = "space-filling point far from measured ones" if x.shape[0] else "space-filling initial design"
    return [_suggestion(space, p, f"{lead}: {reason}", source="initial") for p in points]


def _suggestion(
    space: DesignSpace,
    point: Tensor,
    rationale: str,
    *,
    source: Literal["model", "initial"],
    predicted: tuple[float, float] | None = None,
    acquisition_value: float | None = None,
    model_inputs: Sequence[str] = (),
    raw_candidate: Tensor | None = None,
) -> Suggestion:
    """A checked :class:`Suggestion` for one point (``d`` unit fractions).

    ``raw_candidate`` is the optimiser's output the point came from (``d`` unit fractions), kept
    unrepaired; ``model_inputs`` the model's input columns (see :class:`Suggestion`).
    """
    composition = space.to_compositions(point)[0]
    problems = space.spec.violations(composition)
    if problems:
        point = space.project(point.reshape(1, -1))[0]
        composition = space.to_compositions(point)[0]
        problems = space.spec.violations(composition)
    if problems:
        raise ValueError(f"proposal breaks the spec after projection: {'; '.join(problems)}")
    phrases = space.active_phrases(point)
    if phrases:
        rationale += "; " + ", ".join(phrases)
    return Suggestion(
        composition=composition,
        predicted_mean=predicted[0] if predicted else None,
        predicted_std=predicted[1] if predicted else None,
        acquisition_value=acquisition_value,
        rationale=rationale,
        active_constraints=space.active_constraints(point),
        source=source,
        model_inputs=list(model_inputs),
        raw_candidate=None if raw_candidate is None else space.to_compositions(raw_candidate)[0],
    )


# --------------------------------------------------------------------------------------------- pool mode
#: Inputs (unit cube over the pool) closer than this, per column, are the same point.
_SAME_POINT = 1e-9
#: Candidates scored per acquisition call (bounds memory on large pools).
_CHUNK = 256


class PoolPick(BaseModel):
    """One candidate of a pool that :func:`propose_from_pool` picks, with why.

    Attributes:
        index: Row of ``candidates`` to measure next.
        predicted_mean: Model mean of the objective at that row, in its unit (None without a model).
        predicted_std: Model standard deviation of the objective, in its unit.
        acquisition_value: Acquisition value of the row when it was picked, given the pending rows and
            the earlier picks: log expected improvement (log standardised units) or upper confidence
            bound (standardised units, on the log scale when the values are logged); None without a
            model.
        rationale: One line saying why this row was picked.
        source: ``"model"`` (best acquisition value) or ``"initial"`` (space-filling pick).
    """

    model_config = ConfigDict(extra="forbid")

    index: int
    predicted_mean: float | None = None
    predicted_std: float | None = None
    acquisition_value: float | None = None
    rationale: str
    source: Literal["model", "initial"] = "model"


def _as_rows(value: object, name: str, dim: int | None) -> Tensor:
    """``value`` (tensor, array or nested sequence) as a float64 ``k x d`` tensor; checks ``d``."""
    rows = torch.as_tensor(value, dtype=DTYPE) if not isinstance(value, Tensor) else value.to(DTYPE)
    if rows.numel() == 0:
        return torch.zeros(0, dim or 0, dtype=DTYPE)
    if rows.ndim != 2 or (dim is not None and rows.shape[1] != dim):
        want = f"k x {dim}" if dim is not None else "k x d"
        raise SpecError(f"{name} has shape {tuple(rows.shape)}; give a {want} table (one row per point)")
    return rows.detach()


def _pool_direction(spec: CampaignSpec | None, direction: Literal["max", "min"] | None) -> float:
    """+1 to maximise, -1 to minimise, from the explicit ``direction`` or else the spec (default max)."""
    from_spec = None if spec is None else ("max" if _direction(spec) > 0 else "min")
    if direction is not None and from_spec is not None and direction != from_spec:
        raise SpecError(
            f"direction={direction!r} contradicts the spec, which {spec.primary_objective.direction}s"
            f" {spec.primary_objective.name}; drop the direction argument or fix the spec"
        )
    chosen = direction or from_spec or "max"
    if chosen not in ("max", "min"):
        raise SpecError(f"direction={chosen!r} is not understood; use 'max' or 'min'")
    return 1.0 if chosen == "max" else -1.0


def propose_from_pool(
    spec: CampaignSpec | None,
    observations_x: Tensor | Sequence[Sequence[float]],
    observations_y: Tensor | Sequence[float],
    candidates: Tensor | Sequence[Sequence[float]],
    n: int,
    seed: int,
    pending: Tensor | Sequence[Sequence[float]] = (),
    *,
    direction: Literal["max", "min"] | None = None,
    model: Literal["gp", "random_forest"] = "gp",
    acquisition: Literal["qlognei", "ucb", "ei"] | None = None,
    beta: float | None = None,
    log_transform: bool | None = None,
    mc_samples: int = 128,
    warp: bool | None = None,
) -> list[PoolPick]:
    """Pick ``n`` rows of a finite pool of candidates to measure next, best first.

    The inputs are generic columns (not necessarily a mixture). They are normalised to the unit cube
    over the per-column min and max of the pool, the measured and the pending rows together; the
    model is the one :func:`propose` fits (ARD GP, standardised outcome, the same log-scale rule)
    with warped inputs. The acquisition (:func:`pool_acquisition`, or the one given) is evaluated on
    every candidate not yet measured or pending; for ``n > 1`` rows are picked greedily, each earlier
    pick joining the pending points the acquisition conditions on.

    Args:
        spec: Optional campaign spec. When given, the candidates' columns are its components in
            spec order and its primary objective's direction applies.
        observations_x: ``k x d`` measured inputs (any number type; rows need not be in the pool).
        observations_y: ``k`` measured values; rows with a non-finite input or value are ignored.
        candidates: ``m x d`` pool to pick from.
        n: Number of rows to pick (fewer when fewer unmeasured candidates remain).
        seed: Seed of the Monte-Carlo samples; the same inputs and seed give the same picks.
        pending: ``p x d`` inputs proposed but not measured yet; picks avoid and condition on them.
        direction: ``"max"`` or ``"min"``; None takes the spec's direction, or ``"max"`` without one.
        model: Surrogate model: ``"gp"`` (the optimiser's Gaussian process) or ``"random_forest"``
            (:mod:`tools.forest`: mean and spread across trees, the same targets; pending points and
            earlier picks are believed at the forest's predicted mean).
        acquisition: For the GP ``"qlognei"`` (noisy expected improvement) or ``"ucb"``
            (``mean + sqrt(beta) * std`` on the model's standardised scale; with pending points its
            Monte-Carlo form). For the forest ``"ucb"`` (the same bound, Liang et al.'s LCB) or
            ``"ei"`` (expected improvement). None takes the model's default: for the GP
            :func:`pool_acquisition` (``"ucb"`` for one pick with nothing pending, ``"qlognei"``
            otherwise), ``"ucb"`` for the forest.
        beta: Exploration weight of ``"ucb"`` (4 puts the bound two standard deviations up); None
            takes :data:`UCB_BETA` for the GP and Liang et al.'s :data:`tools.forest.LIANG_BETA` for
            the forest.
        log_transform: Force (True) or forbid (False) modelling the log of the values; None applies
            the rule of :func:`propose` (same sign, magnitudes spanning more than :data:`LOG_SPAN`).
        mc_samples: Quasi-Monte-Carlo samples of the acquisition function.
        warp: Warp the GP's inputs (a learnt monotone stretch of each column; see ``_fit_gp``).
            None (the default) warps them; ``warp=False, acquisition="qlognei"`` is the model and
            acquisition of :func:`propose` (bench method ``athanor-qlognei``).

    Returns:
        Up to ``n`` picks with distinct indices into ``candidates``, best first, none of them a
        candidate equal to an observation or a pending point. Without a usable model (fewer than
        two distinct observations, equal values, or a numerical failure) the picks are space-filling:
        far from each other and from the measured and pending points.

    Raises:
        SpecError: Shapes disagree, the spec's components do not match the columns, the direction
            contradicts the spec, or the model or acquisition is unknown.
    """
    acquisition = _pool_acquisition_name(model, acquisition, n, len(pending))
    if warp and model != "gp":
        raise SpecError(f"warp=True warps the GP's inputs; model={model!r} has none to warp: use model='gp'")
    if beta is None:
        beta = UCB_BETA if model == "gp" else LIANG_BETA
    if not (math.isfinite(beta) and beta >= 0):
        raise SpecError(f"beta={beta} must be a finite number >= 0 (e.g. 4 for two standard deviations)")
    sign = _pool_direction(spec, direction)
    cand = _as_rows(candidates, "candidates", None)
    dim = cand.shape[1]
    if spec is not None and dim != len(spec.component_names):
        raise SpecError(
            f"candidates have {dim} columns but the spec has {len(spec.component_names)} components"
            f" ({', '.join(spec.component_names)}); give one column per component, in spec order"
        )
    x = _as_rows(observations_x, "observations_x", dim)
    y = torch.as_tensor(observations_y, dtype=DTYPE).detach().reshape(-1)
    if y.shape[0] != x.shape[0]:
        raise SpecError(
            f"observations_x has {x.shape[0]} rows but observations_y has {y.shape[0]} values;"
            " give one value per measured row"
        )
    pending_x = _as_rows(pending, "pending", dim)
    for name, rows in (("candidates", cand), ("pending", pending_x)):
        if not bool(torch.isfinite(rows).all()):
            raise SpecError(f"{name} hold non-finite numbers; drop or fix those rows")
    if n <= 0 or cand.shape[0] == 0:
        return []
    usable = torch.isfinite(y) & torch.isfinite(x).all(dim=-1)
    x, y = x[usable], y[usable]

    taken = torch.cat([x, pending_x])
    everything = torch.cat([cand, taken])
    lower, upper = everything.min(dim=0).values, everything.max(dim=0).values
    upper = torch.where(upper > lower, upper, lower + 1.0)  # a constant column carries no information
    bounds = torch.stack([lower, upper])
    unit = (cand - lower) / (upper - lower)
    free = torch.ones(cand.shape[0], dtype=torch.bool)
    if taken.shape[0]:
        gap = torch.cdist(unit, (taken - lower) / (upper - lower), p=float("inf"))
        free = ~(gap < _SAME_POINT).any(dim=-1)
    if not bool(free.any()):
        return []

    with manual_seed(seed), _one_thread():
        reason = _unfit_reason(x, y)
        if reason is None:
            try:
                if model == "random_forest":
                    return _pool_forest_picks(
                        x, y, bounds, sign, log_transform, seed, pending_x, cand, free, n, acquisition, beta
                    )
                fitted = _fit_gp(x, y, bounds, sign, log_transform, warp=warp is not False)
                acquire = _pool_acquisition(fitted, x, acquisition, beta, seed, mc_samples)
                return _pool_model_picks(fitted, acquire, pending_x, cand, free, n, acquisition)
            except _NUMERICAL_ERRORS as exc:
                _log.warning("model-based pool pick failed, using space-filling picks: %s", exc)
                reason = f"the model failed ({type(exc).__name__})"
        avoid = (taken - lower) / (upper - lower)
        free_idx = torch.nonzero(free).flatten()
        order = maximin_indices(unit[free_idx], n, avoid if avoid.shape[0] else None)
        lead = "space-filling pick far from measured ones" if x.shape[0] else "space-filling initial pick"
        return [
            PoolPick(index=int(free_idx[i]), rationale=f"{lead}: {reason}", source="initial") for i in order
        ]


def pool_acquisition(n: int, n_pending: int) -> Literal["ucb", "qlognei"]:
    """The GP's default acquisition in pool mode for ``n`` picks with ``n_pending`` rows pending.

    One pick with nothing pending (a campaign that measures one sample at a time) is scored by the
    upper confidence bound with :data:`UCB_BETA`; a batch, or a pick made while others are still
    being measured, by qLogNEI, which spreads a greedy batch better. BENCHMARKS.md ("Choosing the
    default") gives the measurements behind both choices.
    """
    return "ucb" if n == 1 and n_pending == 0 else "qlognei"


def _pool_acquisition_name(model: str, acquisition: str | None, n: int, n_pending: int) -> str:
    """The acquisition to use for ``model``: the one given, or the model's default; refuses mismatches."""
    allowed = {"gp": ("qlognei", "ucb"), "random_forest": FOREST_ACQUISITIONS}
    if model not in allowed:
        raise SpecError(f"model={model!r} is not available for pools; use 'gp' or 'random_forest'")
    if acquisition is None:
        return pool_acquisition(n, n_pending) if model == "gp" else allowed[model][0]
    if acquisition not in allowed[model]:
        raise SpecError(
            f"acquisition={acquisition!r} is not available with model={model!r};"
            f" use {' or '.join(repr(a) for a in allowed[model])}"
        )
    return acquisition


def _pool_forest_picks(
    x: Tensor,
    y: Tensor,
    bounds: Tensor,
    sign: float,
    log_transform: bool | None,
    seed: int,
    pending_x: Tensor,
    cand: Tensor,
    free: Tensor,
    n: int,
    acquisition: str,
    beta: float,
) -> list[PoolPick]:
    """Greedy forest picks among the ``free`` rows of ``cand`` (kriging believer for pending and batch)."""
    targets, direction, log_sign = _targets(y, sign, log_transform)
    forest = fit_forest(x, targets, bounds, direction=direction, log_sign=log_sign, seed=seed)
    picks = pick_greedy(forest, cand, n, acquisition=acquisition, beta=beta, pending=pending_x, allowed=free)
    mean, std = forest.predict(cand[[p.index for p in picks]])
    score = "confidence bound" if acquisition == "ucb" else "expected improvement"
    out = []
    for rank, pick in enumerate(picks):
        why = f"random forest: highest {score} in the pool"
        if rank:
            why = f"random forest: #{rank + 1} pick, highest {score} with the {rank} earlier pick(s) believed"
        out.append(
            PoolPick(
                index=pick.index,
                predicted_mean=float(mean[rank]),
                predicted_std=float(std[rank]),
                acquisition_value=pick.value,
                rationale=f"{why}; predicted {float(mean[rank]):.3g} ± {float(std[rank]):.2g}",
            )
        )
    return out


def _pool_acquisition(
    fitted: _Fitted, x: Tensor, acquisition: str, beta: float, seed: int, mc_samples: int
) -> Callable[[Tensor], AcquisitionFunction]:
    """A function from pending points (``p x d``) to the acquisition function that conditions on them."""

    def build(pending: Tensor) -> AcquisitionFunction:
        sampler = SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed)
        x_pending = pending if pending.shape[0] else None
        if acquisition == "ucb":
            return qUpperConfidenceBound(fitted.model, beta=beta, sampler=sampler, X_pending=x_pending)
        return qLogNoisyExpectedImprovement(
            fitted.model, X_baseline=x, sampler=sampler, X_pending=x_pending, prune_baseline=True
        )

    return build


def _pool_model_picks(
    fitted: _Fitted,
    acquire: Callable[[Tensor], AcquisitionFunction],
    pending_x: Tensor,
    cand: Tensor,
    free: Tensor,
    n: int,
    acquisition: str,
) -> list[PoolPick]:
    """Greedy picks among the ``free`` rows of ``cand``, each conditioned on the pending and earlier ones."""
    free = free.clone()
    pend = pending_x
    picks: list[tuple[int, float]] = []
    for _ in range(min(n, int(free.sum()))):
        acqf = acquire(pend)
        idx = torch.nonzero(free).flatten()
        with torch.no_grad():
            values = torch.cat([acqf(cand[chunk].unsqueeze(-2)) for chunk in idx.split(_CHUNK)])
        if not bool(torch.isfinite(values).any()):
            raise ValueError("the acquisition function is not finite on any candidate")
        best = int(values.nan_to_num(nan=-math.inf).argmax())
        index = int(idx[best])
        picks.append((index, float(values[best])))
        free[index] = False
        pend = torch.cat([pend, cand[index : index + 1]])
    rows = [i for i, _ in picks]
    mean, std = fitted.predict(cand[rows])
    score = "upper confidence bound" if acquisition == "ucb" else "expected improvement"
    out = []
    for rank, (index, value) in enumerate(picks):
        why = (
            f"#{rank + 1} greedy pick: highest {score} given the {rank} earlier pick(s)"
            if rank
            else f"highest {score} in the pool"
        )
        out.append(
            PoolPick(
                index=index,
                predicted_mean=float(mean[rank]),
                predicted_std=float(std[rank]),
                acquisition_value=value,
                rationale=f"{why}; predicted {float(mean[rank]):.3g} ± {float(std[rank]):.2g}",
            )
        )
    return out
