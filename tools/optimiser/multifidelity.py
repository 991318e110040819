"""Cost-aware multi-fidelity optimisation: a cheap source beside the experiment.

A spec with :attr:`~athanor.spec.CampaignSpec.fidelities` names the target (the lab's experiment,
cost 1) and one cheap source (a simulator, cost < 1 of an experiment). What each evaluation costs,
the budget spent and whether the cheap source pays are in :mod:`tools.budget` (no torch).

Model. A BoTorch ``MultiTaskGP`` (ICM kernel) over (composition, source), the source as a task
feature: with two discrete sources the task covariance learns their correlation directly, each
source gets its own mean and noise, and values are standardised per source, so a biased or noisier
simulator is absorbed. ``SingleTaskMultiFidelityGP`` was not used: its fidelity kernels assume a
continuous fidelity parameter whose correlation with the target decays smoothly, not a separate
source with its own bias. BoTorch's default prior on the task covariance was dropped: it pulls the
correlation towards positive values, and on synthetic tests an unrelated source was fitted as 0.24-0.29
correlated with it and 0.00 without it. Values are logged by the optimiser's rule
(:func:`tools.modelling.log_sign`) applied to both sources together.

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

With fewer than two usable evaluations of either source, or when the model fails numerically, every
pick is at the target, from the single-fidelity optimiser the caller passes in (the router,
:func:`tools.optimiser.propose_multifidelity`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Literal

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
from athanor.spec import CampaignSpec, Fidelity
from tools.budget import cheap_source, is_target, target_name, usable_evaluations
from tools.design_space import DTYPE, DesignSpace, design_space
from tools.modelling import log_sign, signed_logs
from tools.optimiser.data import near_duplicates, pending_tensor
from tools.optimiser.models import direction_of, one_thread

__all__ = ["FidelitySuggestion", "TargetOnly", "propose_by_cost"]

_log = logging.getLogger(__name__)

_TARGET_TASK, _CHEAP_TASK = 0, 1
_POOL = 512
_REFINE_TOP, _REFINE_SAMPLES, _REFINE_STEP = 4, 48, 0.05
#: Failures of the multi-task fit and scoring that send every pick to the target instead.
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


#: Every pick at the target, from the single-fidelity optimiser, given why (e.g. "the model failed").
TargetOnly = Callable[[str], list[FidelitySuggestion]]


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
        self.direction = direction_of(space.spec)
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
    cheap = cheap_source(spec)
    rows, values, tasks = [], [], []
    for o in usable_evaluations(spec, observations):
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
    sign = log_sign(values)
    direction = direction_of(space.spec)
    raw = torch.tensor(signed_logs(values, bool(sign)), dtype=DTYPE) * direction
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
    return _Model(space, inputs, t, stats, sign)


# ----------------------------------------------------------------------------------- proposing
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
    free = pool[~near_duplicates(space, pool, avoid)]
    if free.shape[0] == 0:
        return None
    values, _ = _score(model, free, task, cost, best)
    top = free[torch.argsort(values, descending=True)[:_REFINE_TOP]]
    generator = torch.Generator().manual_seed(seed)
    width = (space.bounds[1] - space.bounds[0]) * _REFINE_STEP
    noise = torch.randn(top.shape[0], _REFINE_SAMPLES, space.dim, generator=generator, dtype=DTYPE) * width
    local = space.project((top.unsqueeze(1) + noise).reshape(-1, space.dim))
    local = local[space.feasible(local) & ~near_duplicates(space, local, avoid)]
    candidates = torch.cat([top, local])
    values, shares = _score(model, candidates, task, cost, best)
    i = int(values.nan_to_num(nan=-math.inf).argmax())
    return candidates[i], float(values[i]), float(shares[i])


def propose_by_cost(
    spec: CampaignSpec,
    observations: Sequence[Observation],
    n: int,
    seed: int,
    pending: Sequence[dict[str, float]] = (),
    *,
    target_only: TargetOnly,
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
        target_only: The picks when there is no multi-fidelity model, given why.
        cheap_budget: Experiments the cheap picks may spend together (None: no limit); the caller
            limits the target picks through ``n``.
        min_target: At least this many picks are at the target (the last ones, when the
            acquisition prefers the cheap source).

    Returns:
        Up to ``n`` suggestions, each feasible, the cheap ones costing at most ``cheap_budget``
        together. With fewer than two usable observations of either source, or when the model fails
        numerically, the picks of ``target_only``.

    Raises:
        SpecError: The spec has no cheap source, or a pending composition lacks a component.
    """
    cheap = cheap_source(spec)
    if cheap is None:
        raise SpecError("propose_multifidelity needs a spec with a cheap source in fidelities")
    target = target_name(spec) or "target"
    limit = math.inf if cheap_budget is None else float(cheap_budget)
    if n <= 0:
        return []
    space = design_space(spec)
    x, values, tasks = _training_data(spec, space, observations)
    count = {k: tasks.count(k) for k in (_TARGET_TASK, _CHEAP_TASK)}
    pending_x = pending_tensor(space, pending)
    if space.dim == 0 or min(count.values()) < 2:
        why = "the spec allows a single composition" if space.dim == 0 else "too few evaluations of a source"
        return target_only(why)
    try:
        with manual_seed(seed), one_thread():
            model = _fit(space, x, values, tasks)
            return _greedy(spec, space, model, x, tasks, pending_x, n, seed, limit, min_target, cheap, target)
    except _NUMERICAL_ERRORS as exc:
        _log.warning("multi-fidelity proposal failed, proposing at the target only: %s", exc)
    return target_only("the model failed")


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
    cheap: Fidelity,
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
