"""Cost-aware multi-fidelity optimisation: a cheap source beside the experiment, and whether it pays.

A spec with :attr:`~athanor.spec.CampaignSpec.fidelities` names the target (the lab's experiment,
cost 1) and one cheap source (a simulator, cost < 1 of an experiment). The budget stays counted in
experiments: a cheap evaluation spends its ``cost`` of one (:func:`budget_spent`).

Model. A BoTorch ``MultiTaskGP`` (ICM kernel) over (composition, source), the source as a task
feature: with two discrete sources the task covariance learns their correlation directly, each
source gets its own mean and noise, and values are standardised per source, so a biased or noisier
simulator is absorbed. ``SingleTaskMultiFidelityGP`` was not used: its fidelity kernels assume a
continuous fidelity parameter whose correlation with the target decays smoothly, not a separate
source with its own bias. BoTorch's default prior on the task covariance was dropped: it pulls the
correlation towards positive values, and on synthetic tests an unrelated source was fitted as 0.24-0.29
correlated with it and 0.00 without it. Values are logged by the optimiser's rule
(:data:`tools.optimise.LOG_SPAN`) applied to both sources together.

Acquisition. For a candidate composition ``x`` and source ``s``::

    log a(x, s) = log EI_target(x) + log rho_s(x)^2 - log cost_s

``EI_target`` is the analytic expected improvement of the target at ``x`` over the best predicted
target value, and ``rho_s(x)^2 = Cov(y_s(x), f(x))^2 / (Var(y_s(x)) Var(f(x)))`` the share of the
target's posterior variance at ``x`` that one observation of source ``s`` there removes, its noise
included: the expected improvement weighted by the information an evaluation brings, per unit cost
(the augmented expected improvement of Huang et al., J. Global Optim. 2006, with the variance share
in place of the correlation). An unrelated source has ``rho ~ 0`` and is never worth its cost; a
well-correlated one at a twentieth of the cost usually is. qMF-MES and qMF-KG were measured first
(2 cores, 40 observations, 4 components, q = 4): qMF-MES took 27 s with gradient optimisation and
8-10 s on a 512-point pool, and its noisy posterior fails with per-source noise; qMF-KG is heavier
still. A proposal like that takes 2-4 s here, most of it the fit.

Batches are picked greedily: a pool of feasible compositions (hit-and-run) is scored for every
source the budget can still pay for, the best points are refined locally (projected back onto
the feasible set, so the sum rule, bounds and linear constraints hold), and after each pick the
model is conditioned on its own prediction there (kriging believer) so later picks go elsewhere.

:func:`advise` checks the published guidance (Nat. Comput. Sci. best-practice study of
multi-fidelity BO): a cheap source pays only when it costs under about 0.1 of the expensive one and
predicts it well (R² above about 0.8). Both are measured on the compositions evaluated at both
sources.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import MultiTaskGP
from botorch.models.transforms.input import Normalize
from botorch.utils.sampling import manual_seed
from gpytorch.mlls import ExactMarginalLogLikelihood
from pydantic import BaseModel, ConfigDict
from torch import Tensor

from athanor.errors import SpecError
from athanor.models import Observation
from athanor.ports import SimulationResult
from athanor.spec import CampaignSpec
from tools.design_space import DTYPE, DesignSpace, design_space
from tools.optimise import DUPLICATE_DISTANCE, LOG_SPAN, propose

__all__ = [
    "COST_LIMIT",
    "MIN_PAIRS",
    "PAIR_TOLERANCE",
    "R2_LIMIT",
    "Advice",
    "EntryPointSimulator",
    "FidelitySuggestion",
    "advise",
    "budget_spent",
    "check_fidelities",
    "cost_of",
    "is_target",
    "load_simulator",
    "paired_values",
    "propose_multifidelity",
    "simulate",
]

_log = logging.getLogger(__name__)

#: A cheap source pays only below this cost, as a fraction of one experiment (the published guidance).
COST_LIMIT = 0.1
#: ... and only when it explains more than this share of the experiment's variance.
R2_LIMIT = 0.8
#: Compositions measured at both sources needed before :func:`advise` judges the correlation.
MIN_PAIRS = 5
#: Two observations are of the same composition when no amount differs by more than this (unit
#: fractions); pipette rounding moves a made composition by about 1e-3.
PAIR_TOLERANCE = 0.01

_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_TARGET_TASK, _CHEAP_TASK = 0, 1
_POOL = 512
_REFINE_TOP, _REFINE_SAMPLES, _REFINE_STEP = 4, 48, 0.05
_NUMERICAL_ERRORS = (RuntimeError, ValueError, ArithmeticError)
#: L-BFGS iterations of the hyperparameter fit: the default (up to 200) took 4-8 s on 45 points, 60
#: take 2-4 s and gave the same choice of sources on the synthetic tests.
_FIT_ITERATIONS = 60


class FidelitySuggestion(BaseModel):
    """One (composition, source) pair to evaluate next.

    Attributes:
        composition: Component name to amount, in the spec's unit.
        fidelity: Name of the source to evaluate it with (a name in ``spec.fidelities``).
        cost: What the evaluation spends, in experiments.
        predicted_mean: Model mean of the target at this composition, in the objective's unit.
        predicted_std: Model standard deviation of the target there.
        acquisition_value: ``log`` of expected improvement x variance share per unit cost (see the
            module docstring); None without a multi-fidelity model.
        rationale: One line saying why this pair was chosen.
        source: ``"model"`` or ``"initial"`` (space-filling point).
    """

    model_config = ConfigDict(extra="forbid")

    composition: dict[str, float]
    fidelity: str
    cost: float
    predicted_mean: float | None = None
    predicted_std: float | None = None
    acquisition_value: float | None = None
    rationale: str
    source: Literal["model", "initial"] = "model"


class Advice(BaseModel):
    """Whether the cheap source is worth using, by the published guidance.

    Attributes:
        fidelity: Name of the cheap source.
        cost: Its cost as a fraction of one experiment.
        pairs: Compositions evaluated at both the cheap source and the target.
        r2: Share of the target's variance the cheap source explains on those pairs (squared Pearson
            correlation, on the model's scale); None with fewer than :data:`MIN_PAIRS` pairs.
        log_scale: Whether ``r2`` was computed on log values.
        verdict: ``"pays"`` (cost < :data:`COST_LIMIT` and r2 > :data:`R2_LIMIT`), ``"does_not_pay"``
            or ``"too_few_pairs"`` (cheap enough, but the correlation cannot be judged yet).
        message: One sentence for the user.
    """

    model_config = ConfigDict(extra="forbid")

    fidelity: str
    cost: float
    pairs: int
    r2: float | None
    log_scale: bool
    verdict: Literal["pays", "does_not_pay", "too_few_pairs"]
    message: str


# ----------------------------------------------------------------------------------- sources and budget
def _cheap(spec: CampaignSpec) -> Any:
    """The spec's cheap source (its :class:`~athanor.spec.Fidelity`), or None."""
    return next((f for f in spec.fidelities if f.cost < 1.0), None)


def _target_name(spec: CampaignSpec) -> str | None:
    return next((f.name for f in spec.fidelities if f.cost == 1.0), None)


def is_target(spec: CampaignSpec, fidelity: str | None) -> bool:
    """Whether an observation or proposal of ``fidelity`` is an experiment (None is the target)."""
    return fidelity is None or fidelity == _target_name(spec)


def cost_of(spec: CampaignSpec, fidelity: str | None) -> float:
    """What one evaluation at ``fidelity`` spends, in experiments (1 for the target).

    Raises:
        SpecError: ``fidelity`` is not a source of the spec.
    """
    if is_target(spec, fidelity):
        return 1.0
    for source in spec.fidelities:
        if source.name == fidelity:
            return float(source.cost)
    known = ", ".join(f.name for f in spec.fidelities) or "none"
    raise SpecError(f"fidelity {fidelity!r} is not a source of this campaign; its sources are: {known}")


def budget_spent(spec: CampaignSpec, observations: Sequence[Observation], running: int = 0) -> float:
    """Experiments spent: each observation's cost, plus ``running`` experiments still on the instruments.

    Without fidelities this is the number of observations plus ``running``.
    """
    return sum(cost_of(spec, o.fidelity) for o in observations) + running


# ----------------------------------------------------------------------------------- simulators
def load_simulator(entry_point: str) -> Callable[..., float]:
    """Import the function ``"package.module:function"`` names.

    Raises:
        SpecError: The text is not of that form, the module cannot be imported, or the name is not a
            callable in it.
    """
    if not _ENTRY_POINT.match(entry_point):
        raise SpecError(
            f"simulator {entry_point!r} is not an entry point; write it as 'package.module:function'"
            " (e.g. 'instruments.virtual_world:screen')"
        )
    module_name, _, attribute = entry_point.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SpecError(
            f"simulator {entry_point!r}: module {module_name!r} cannot be imported ({error}); install the"
            " package that provides it or fix the module path"
        ) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise SpecError(
            f"simulator {entry_point!r}: {module_name} has no function {attribute!r}; name a function"
            " that takes a composition dict and returns the value"
        )
    return function


def simulate(spec: CampaignSpec, fidelity: str, composition: dict[str, float]) -> float:
    """Evaluate ``composition`` (spec unit) with the simulator of source ``fidelity``.

    The simulator is called as ``function(composition)``, plus ``seed=spec.seed`` when it takes a
    ``seed`` keyword (so a simulated landscape can match the virtual lab's).

    Returns:
        The simulated value of the primary objective, in its unit.

    Raises:
        SpecError: ``fidelity`` is not a simulated source, or the simulator cannot be loaded.
        ValueError: The simulator returned something that is not a finite number.
    """
    source = next((f for f in spec.fidelities if f.name == fidelity and f.simulator), None)
    if source is None:
        raise SpecError(f"fidelity {fidelity!r} is not a simulated source of this campaign")
    function = load_simulator(source.simulator)
    try:
        takes_seed = "seed" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        takes_seed = False
    value = function(dict(composition), seed=spec.seed) if takes_seed else function(dict(composition))
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"simulator {source.simulator} returned {value}, not a finite number")
    return value


class EntryPointSimulator:
    """The :class:`~athanor.ports.SimulatorPort` of a live run: calls each source's entry point."""

    def evaluate(self, spec: CampaignSpec, fidelity: str, composition: dict[str, float]) -> SimulationResult:
        """Evaluate ``composition`` with :func:`simulate`; any failure comes back as ``error``."""
        try:
            return SimulationResult(value=simulate(spec, fidelity, composition))
        except Exception as error:  # a user's simulator may raise anything; the campaign goes on
            return SimulationResult(error=f"{type(error).__name__}: {error}")


def check_fidelities(spec: CampaignSpec) -> list[str]:
    """Plan-time check of the spec's sources: refuse what cannot run, warn about what may not pay.

    Returns:
        Warnings, one sentence each (empty without a cheap source).

    Raises:
        SpecError: A simulator cannot be imported or is not callable.
    """
    cheap = _cheap(spec)
    if cheap is None:
        return []
    load_simulator(cheap.simulator)
    warnings = []
    if cheap.cost >= COST_LIMIT:
        warnings.append(
            f"fidelities: {cheap.name} costs {cheap.cost:g} of an experiment; multi-fidelity optimisation"
            f" pays only below ~{COST_LIMIT:g} (Nat. Comput. Sci. best-practice study), so it may spend"
            " budget for little; consider dropping it"
        )
    warnings.append(
        f"fidelities: how well {cheap.name} predicts {spec.primary_objective.name} is not known yet; it is"
        f" measured on the initial design (both sources) and reported once {MIN_PAIRS} compositions have"
        " both"
    )
    return warnings


# ----------------------------------------------------------------------------------- advice
def _log_scale(values: Sequence[float]) -> bool:
    """The optimiser's rule: log when all values share a sign and span more than :data:`LOG_SPAN`."""
    if not values:
        return False
    if not (all(v > 0 for v in values) or all(v < 0 for v in values)):
        return False
    magnitudes = [abs(v) for v in values]
    return max(magnitudes) / min(magnitudes) > LOG_SPAN


def _scaled(values: Sequence[float], log: bool) -> list[float]:
    return [math.copysign(math.log(abs(v)), v) for v in values] if log else list(values)


def _usable(spec: CampaignSpec, observations: Sequence[Observation]) -> list[Observation]:
    name = spec.primary_objective.name
    return [
        o
        for o in observations
        if o.status == "ok"
        and math.isfinite(o.values.get(name, math.nan))
        and all(math.isfinite(o.composition.get(c, math.nan)) for c in spec.component_names)
    ]


def paired_values(spec: CampaignSpec, observations: Sequence[Observation]) -> list[tuple[float, float]]:
    """``(cheap value, target value)`` for each composition evaluated at both sources.

    Two observations are of one composition when no amount differs by more than
    :data:`PAIR_TOLERANCE` (fractions of the total); each cheap observation pairs at most once.
    """
    cheap = _cheap(spec)
    if cheap is None:
        return []
    name = spec.primary_objective.name
    usable = _usable(spec, observations)
    targets = [o for o in usable if is_target(spec, o.fidelity)]
    cheaps = [o for o in usable if o.fidelity == cheap.name]
    scale = spec.unit_scale
    pairs, taken = [], set()
    for target in targets:
        best, gap = None, PAIR_TOLERANCE
        for i, other in enumerate(cheaps):
            if i in taken:
                continue
            distance = max(
                abs(target.composition[c] - other.composition[c]) / scale for c in spec.component_names
            )
            if distance <= gap:
                best, gap = i, distance
        if best is not None:
            taken.add(best)
            pairs.append((cheaps[best].values[name], target.values[name]))
    return pairs


def advise(spec: CampaignSpec, observations: Sequence[Observation]) -> Advice | None:
    """Whether the cheap source pays, from its cost and its R² against the target on paired compositions.

    Args:
        spec: The campaign spec.
        observations: Every observation so far (both sources).

    Returns:
        The advice, or None when the spec has no cheap source.
    """
    cheap = _cheap(spec)
    if cheap is None:
        return None
    pairs = paired_values(spec, observations)
    objective = spec.primary_objective.name
    log = _log_scale([v for pair in pairs for v in pair])
    r2 = None
    if len(pairs) >= MIN_PAIRS:
        x = torch.tensor(_scaled([p[0] for p in pairs], log), dtype=DTYPE)
        y = torch.tensor(_scaled([p[1] for p in pairs], log), dtype=DTYPE)
        sx, sy = float(x.std()), float(y.std())
        r2 = 0.0 if sx == 0 or sy == 0 else float(torch.corrcoef(torch.stack([x, y]))[0, 1] ** 2)
    guidance = (
        f"multi-fidelity pays only below ~{COST_LIMIT:g} and above ~{R2_LIMIT:g} (Nat. Comput. Sci."
        " best-practice study)"
    )
    lead = f"the {cheap.name} costs {cheap.cost:.2g} of an experiment"
    if r2 is None:
        verdict: Literal["pays", "does_not_pay", "too_few_pairs"] = (
            "does_not_pay" if cheap.cost >= COST_LIMIT else "too_few_pairs"
        )
        message = (
            f"{lead}; {len(pairs)} of the {MIN_PAIRS} compositions needed are measured at both sources, too"
            f" few to judge how well it predicts {objective}; {guidance}"
        )
        if verdict == "does_not_pay":
            message += "; at that cost consider dropping it"
    else:
        verdict = "pays" if cheap.cost < COST_LIMIT and r2 > R2_LIMIT else "does_not_pay"
        scale = " (log values)" if log else ""
        message = (
            f"{lead} and explains {100 * r2:.0f} % of its variance{scale} on {len(pairs)} paired"
            f" compositions; {guidance}; " + ("it pays here" if verdict == "pays" else "consider dropping it")
        )
    return Advice(
        fidelity=cheap.name,
        cost=float(cheap.cost),
        pairs=len(pairs),
        r2=r2,
        log_scale=log,
        verdict=verdict,
        message=message,
    )


# ----------------------------------------------------------------------------------- the model
class _Model:
    """A fitted multi-task GP on standardised, direction-signed targets, and how to undo that."""

    def __init__(
        self,
        space: DesignSpace,
        x: Tensor,
        t: Tensor,
        task_stats: dict[int, tuple[float, float]],
        log_sign: float,
    ) -> None:
        """Fit the GP.

        Args:
            space: The design space.
            x: ``n x (d + 1)`` inputs: unit fractions of the free components, then the source index.
            t: ``n`` standardised targets (larger is better).
            task_stats: Source index to the ``(centre, scale)`` its targets were standardised with.
            log_sign: 0 when values are modelled as they are; +1 (-1) when they are positive (negative)
                and modelled as ``log_sign * log(log_sign * y)``.
        """
        self.space = space
        self.x, self.t = x, t
        self.stats = task_stats
        self.log_sign = log_sign
        self.direction = 1.0 if space.spec.primary_objective.direction == "maximise" else -1.0
        self.gp = self._build(x, t)
        fit_gpytorch_mll(
            ExactMarginalLogLikelihood(self.gp.likelihood, self.gp),
            optimizer_kwargs={"options": {"maxiter": _FIT_ITERATIONS}},
        )
        self.gp.eval()

    def _build(self, x: Tensor, t: Tensor) -> MultiTaskGP:
        d = self.space.dim
        bounds = torch.cat([self.space.bounds, torch.tensor([[0.0], [1.0]], dtype=DTYPE)], dim=-1)
        return MultiTaskGP(
            x,
            t.unsqueeze(-1),
            task_feature=d,
            output_tasks=[_TARGET_TASK],
            all_tasks=[_TARGET_TASK, _CHEAP_TASK],
            task_covar_prior=None,
            outcome_transform=None,
            input_transform=Normalize(d + 1, indices=list(range(d)), bounds=bounds),
        )

    def believe(self, point: Tensor) -> None:
        """Condition on the model's own mean at ``point`` (``d + 1``), keeping the fitted hyperparameters."""
        with torch.no_grad():
            mean = self.gp.posterior(point.unsqueeze(0)).mean.reshape(1)
        state = self.gp.state_dict()
        self.x, self.t = torch.cat([self.x, point.unsqueeze(0)]), torch.cat([self.t, mean])
        self.gp = self._build(self.x, self.t)
        self.gp.load_state_dict(state)
        self.gp.eval()

    def noise(self, task: int) -> float:
        """Observation noise variance of ``task`` (standardised units)."""
        noise = self.gp.likelihood.noise.detach().reshape(-1)
        return float(noise[task] if noise.numel() > 1 else noise[0])

    def joint(self, x: Tensor, task: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Target mean, target variance, covariance with source ``task`` and that source's variance at ``x``.

        Args:
            x: ``m x d`` compositions (unit fractions).
            task: Source index.

        Returns:
            Four tensors of shape ``m``; the source's variance includes its observation noise.
        """
        m = x.shape[0]
        target = torch.cat([x, torch.full((m, 1), float(_TARGET_TASK), dtype=DTYPE)], dim=-1)
        source = torch.cat([x, torch.full((m, 1), float(task), dtype=DTYPE)], dim=-1)
        with torch.no_grad():
            posterior = self.gp.posterior(torch.stack([target, source], dim=-2))
            cov = posterior.distribution.covariance_matrix
            mean = posterior.mean[..., 0, 0]
        var_t = cov[..., 0, 0].clamp_min(1e-12)
        return mean, var_t, cov[..., 0, 1], cov[..., 1, 1].clamp_min(1e-12) + self.noise(task)

    def unit(self, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        """Target mean and standard deviation in the objective's unit (log-normal when logged)."""
        centre, scale = self.stats[_TARGET_TASK]
        mu = self.direction * (centre + scale * mean)
        var = var * scale**2
        if not self.log_sign:
            return mu, var.sqrt()
        magnitude = torch.exp(self.log_sign * mu + var / 2)
        return self.log_sign * magnitude, magnitude * torch.expm1(var).sqrt()


def _log_ei(u: Tensor) -> Tensor:
    """``log(u Phi(u) + phi(u))``, stable for very negative ``u``."""
    normal = torch.distributions.Normal(torch.zeros((), dtype=DTYPE), torch.ones((), dtype=DTYPE))
    safe = u.clamp_min(-5.0)
    direct = torch.log((safe * normal.cdf(safe) + normal.log_prob(safe).exp()).clamp_min(1e-300))
    tail = normal.log_prob(u) - 2.0 * torch.log(u.abs().clamp_min(1e-12))  # u Phi(u) + phi(u) ~ phi(u)/u²
    return torch.where(u > -5.0, direct, tail)


def _training_data(
    spec: CampaignSpec, space: DesignSpace, observations: Sequence[Observation]
) -> tuple[Tensor, list[float], list[int]]:
    """Inputs (``n x d``), values and task index of every usable observation of either source."""
    cheap = _cheap(spec)
    rows, values, tasks = [], [], []
    for o in _usable(spec, observations):
        if is_target(spec, o.fidelity):
            task = _TARGET_TASK
        elif cheap is not None and o.fidelity == cheap.name:
            task = _CHEAP_TASK
        else:
            continue
        rows.append({c: o.composition[c] for c in space.names})
        values.append(o.values[spec.primary_objective.name])
        tasks.append(task)
    x = space.to_tensor(rows) if rows else torch.zeros(0, space.dim, dtype=DTYPE)
    return x, values, tasks


def _fit(space: DesignSpace, x: Tensor, values: list[float], tasks: list[int]) -> _Model:
    """Per-source standardised, direction-signed (and possibly logged) targets, then the multi-task GP."""
    log = _log_scale(values)
    sign = 1.0 if values[0] > 0 else -1.0
    direction = 1.0 if space.spec.primary_objective.direction == "maximise" else -1.0
    raw = torch.tensor(_scaled(values, log), dtype=DTYPE) * direction
    task = torch.tensor(tasks)
    stats: dict[int, tuple[float, float]] = {}
    t = torch.empty_like(raw)
    for k in (_TARGET_TASK, _CHEAP_TASK):
        chosen = raw[task == k]
        centre = float(chosen.mean())
        scale = float(chosen.std()) if chosen.numel() > 1 else 1.0
        scale = scale if scale > 1e-12 else 1.0
        stats[k] = (centre, scale)
        t[task == k] = (chosen - centre) / scale
    inputs = torch.cat([x, task.to(DTYPE).unsqueeze(-1)], dim=-1)
    return _Model(space, inputs, t, stats, sign if log else 0.0)


# ----------------------------------------------------------------------------------- proposing
def _too_close(space: DesignSpace, points: Tensor, others: Tensor) -> Tensor:
    if others.shape[0] == 0 or points.shape[0] == 0:
        return torch.zeros(points.shape[0], dtype=torch.bool)
    gap = torch.cdist(space.normalise(points), space.normalise(others), p=float("inf"))
    return (gap < DUPLICATE_DISTANCE).any(dim=-1)


def _score(model: _Model, x: Tensor, task: int, cost: float, best: float) -> tuple[Tensor, Tensor]:
    """``log a(x, task)`` (see the module docstring) and the variance share ``rho²`` at ``x``."""
    mean, var_t, cov, var_s = model.joint(x, task)
    sigma = var_t.sqrt()
    log_ei = _log_ei((mean - best) / sigma) + torch.log(sigma)
    share = (cov.clamp_min(0.0) ** 2 / (var_t * var_s)).clamp(1e-12, 1.0)
    return log_ei + torch.log(share) - math.log(cost), share


def _best_for(
    model: _Model,
    space: DesignSpace,
    pool: Tensor,
    task: int,
    cost: float,
    best: float,
    avoid: Tensor,
    seed: int,
) -> tuple[Tensor, float, float] | None:
    """The best composition for source ``task`` from the pool, refined locally; None if all are taken."""
    free = pool[~_too_close(space, pool, avoid)]
    if free.shape[0] == 0:
        return None
    values, _ = _score(model, free, task, cost, best)
    top = free[torch.argsort(values, descending=True)[:_REFINE_TOP]]
    generator = torch.Generator().manual_seed(seed)
    width = (space.bounds[1] - space.bounds[0]) * _REFINE_STEP
    noise = torch.randn(top.shape[0], _REFINE_SAMPLES, space.dim, generator=generator, dtype=DTYPE) * width
    local = space.project((top.unsqueeze(1) + noise).reshape(-1, space.dim))
    local = local[space.feasible(local) & ~_too_close(space, local, avoid)]
    candidates = torch.cat([top, local])
    values, shares = _score(model, candidates, task, cost, best)
    i = int(values.nan_to_num(nan=-math.inf).argmax())
    return candidates[i], float(values[i]), float(shares[i])


def _target_only(
    spec: CampaignSpec,
    observations: Sequence[Observation],
    n: int,
    seed: int,
    pending: Sequence[dict[str, float]],
    why: str,
) -> list[FidelitySuggestion]:
    """Single-fidelity proposals from the target's observations alone, every one at the target."""
    target = _target_name(spec) or "target"
    own = [o for o in observations if is_target(spec, o.fidelity)]
    return [
        FidelitySuggestion(
            composition=s.composition,
            fidelity=target,
            cost=1.0,
            predicted_mean=s.predicted_mean,
            predicted_std=s.predicted_std,
            rationale=f"{target} ({why}): {s.rationale}",
            source=s.source,
        )
        for s in propose(spec, own, n, seed, pending)
    ]


def propose_multifidelity(
    spec: CampaignSpec,
    observations: Sequence[Observation],
    n: int,
    seed: int,
    pending: Sequence[dict[str, float]] = (),
    *,
    cheap_budget: float | None = None,
    min_target: int = 0,
) -> list[FidelitySuggestion]:
    """Propose ``n`` (composition, source) pairs to evaluate next, in pick order.

    Args:
        spec: A campaign spec with a cheap source (``spec.fidelities``) and one objective.
        observations: Every observation so far, of both sources (``Observation.fidelity``).
        n: Number of pairs.
        seed: Seed of the candidate pool and the refinement; the same inputs give the same pairs.
        pending: Compositions (spec unit) on the instruments, at the target; picks avoid them.
        cheap_budget: Experiments the cheap picks may spend together (None: no limit); the caller
            limits the target picks through ``n``.
        min_target: At least this many picks are at the target (the last ones, when the
            acquisition prefers the cheap source).

    Returns:
        Up to ``n`` suggestions, each feasible, the cheap ones costing at most ``cheap_budget``
        together. With fewer than two usable observations of either source, or when the model fails
        numerically, every pick is at the target, from the single-fidelity optimiser.

    Raises:
        SpecError: The spec has no cheap source, or a pending composition lacks a component.
    """
    cheap = _cheap(spec)
    if cheap is None:
        raise SpecError("propose_multifidelity needs a spec with a cheap source in fidelities")
    target = _target_name(spec) or "target"
    limit = math.inf if cheap_budget is None else float(cheap_budget)
    if n <= 0:
        return []
    space = design_space(spec)
    x, values, tasks = _training_data(spec, space, observations)
    count = {k: tasks.count(k) for k in (_TARGET_TASK, _CHEAP_TASK)}
    pending_x = space.to_tensor(list(pending)) if pending else torch.zeros(0, space.dim, dtype=DTYPE)
    if space.dim == 0 or min(count.values()) < 2:
        why = "the spec allows a single composition" if space.dim == 0 else "too few evaluations of a source"
        return _target_only(spec, observations, n, seed, pending, why)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with manual_seed(seed):
            model = _fit(space, x, values, tasks)
            return _greedy(spec, space, model, x, tasks, pending_x, n, seed, limit, min_target, cheap, target)
    except _NUMERICAL_ERRORS as exc:
        _log.warning("multi-fidelity proposal failed, proposing at the target only: %s", exc)
        return _target_only(spec, observations, n, seed, pending, "the model failed")
    finally:
        torch.set_num_threads(previous)


def _greedy(
    spec: CampaignSpec,
    space: DesignSpace,
    model: _Model,
    x: Tensor,
    tasks: list[int],
    pending_x: Tensor,
    n: int,
    seed: int,
    limit: float,
    min_target: int,
    cheap: Any,
    target: str,
) -> list[FidelitySuggestion]:
    """Pick ``n`` pairs one by one, each conditioned on the model's belief at the earlier ones."""
    task_of = torch.tensor(tasks)
    measured = {k: x[task_of == k] for k in (_TARGET_TASK, _CHEAP_TASK)}
    taken = {_TARGET_TASK: torch.cat([measured[_TARGET_TASK], pending_x]), _CHEAP_TASK: measured[_CHEAP_TASK]}
    target_x = torch.cat([measured[_TARGET_TASK], pending_x])
    pool = space.sample(_POOL, seed)
    costs = {_TARGET_TASK: 1.0, _CHEAP_TASK: float(cheap.cost)}
    names = {_TARGET_TASK: target, _CHEAP_TASK: cheap.name}
    out: list[FidelitySuggestion] = []
    cheap_spent, targets = 0.0, 0
    unit = spec.primary_objective.unit
    for slot in range(n):
        still_needed = max(0, min_target - targets)
        options = []
        for task in (_TARGET_TASK, _CHEAP_TASK):
            if task == _CHEAP_TASK and (still_needed >= n - slot or cheap_spent + costs[task] > limit + 1e-9):
                continue  # every remaining slot must be an experiment, or the cheap budget is spent
            with torch.no_grad():
                best = float(model.joint(target_x, _TARGET_TASK)[0].max()) if target_x.shape[0] else 0.0
            found = _best_for(model, space, pool, task, costs[task], best, taken[task], seed + slot)
            if found is not None:
                options.append((found[1], task, found[0], found[2]))
        if not options:
            break
        value, task, point, share = max(options, key=lambda item: item[0])
        mean, var_t, _, _ = model.joint(point.unsqueeze(0), _TARGET_TASK)
        mu, sd = model.unit(mean, var_t)
        others = ", ".join(f"{names[t]} {v:.3g}" for v, t, _, _ in options if t != task)
        rationale = (
            f"{names[task]} (cost {costs[task]:g}): highest expected improvement x information per unit cost"
            f" (log score {value:.3g}{'; ' + others if others else ''}); one evaluation here removes"
            f" {100 * share:.0f} % of the target's uncertainty; predicted {float(mu[0]):.3g} ±"
            f" {float(sd[0]):.2g} {unit}".rstrip()
        )
        out.append(
            FidelitySuggestion(
                composition=space.to_compositions(point)[0],
                fidelity=names[task],
                cost=costs[task],
                predicted_mean=float(mu[0]),
                predicted_std=float(sd[0]),
                acquisition_value=value,
                rationale=rationale,
            )
        )
        cheap_spent += costs[task] if task == _CHEAP_TASK else 0.0
        targets += task == _TARGET_TASK
        taken[task] = torch.cat([taken[task], point.unsqueeze(0)])
        if task == _TARGET_TASK:
            target_x = torch.cat([target_x, point.unsqueeze(0)])
        if slot + 1 < n:
            model.believe(torch.cat([point, torch.tensor([float(task)], dtype=DTYPE)]))
    return out
