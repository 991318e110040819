"""Pool mode: the optimiser on a finite pool of candidates with generic columns.

:func:`propose_from_pool` is the GP of the continuous strategy on a data set or a plate of pre-made
samples: the acquisition is scored on every unmeasured candidate instead of being optimised over the
simplex. Its GP warps the inputs, and a single pick with nothing pending is scored by an upper
confidence bound (:func:`pool_acquisition`): on the pool benchmarks of BENCHMARKS.md both beat the
plain GP with qLogNEI, while over the simplex warping found an interior peak less closely, so the
continuous strategy does neither. ``model="random_forest"`` swaps the GP for the random forest of
:mod:`tools.optimiser.forest_model` (expected improvement or its confidence bound from the mean and
spread across trees).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Literal

import torch
from botorch.utils.sampling import manual_seed
from pydantic import BaseModel, ConfigDict
from torch import Tensor

from athanor.errors import SpecError
from athanor.spec import CampaignSpec
from tools.design_space import DTYPE
from tools.initial_design import maximin_indices
from tools.optimiser.acquisitions import UCB_BETA, AcquisitionBuilder, builder
from tools.optimiser.forest_model import FOREST_ACQUISITIONS, LIANG_BETA, fit_forest, pick_greedy
from tools.optimiser.models import (
    NUMERICAL_ERRORS,
    FittedModel,
    Kernel,
    direction_of,
    failure_reason,
    fit_gp,
    model_targets,
    one_thread,
    unfit_reason,
)

__all__ = ["PoolPick", "pool_acquisition", "propose_from_pool"]

_log = logging.getLogger(__name__)

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
    from_spec = None if spec is None else ("max" if direction_of(spec) > 0 else "min")
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
    kernel: Kernel = "rbf",
    winsorise: bool = False,
) -> list[PoolPick]:
    """Pick ``n`` rows of a finite pool of candidates to measure next, best first.

    The inputs are generic columns (not necessarily a mixture). They are normalised to the unit cube
    over the per-column min and max of the pool, the measured and the pending rows together; the
    model is the one :func:`tools.optimiser.propose` fits (ARD GP, standardised outcome, the same
    log-scale rule)
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
            (:mod:`tools.optimiser.forest_model`: mean and spread across trees, the same targets;
            pending points and earlier picks are believed at the forest's predicted mean).
        acquisition: For the GP ``"qlognei"`` (noisy expected improvement) or ``"ucb"``
            (``mean + sqrt(beta) * std`` on the model's standardised scale; with pending points its
            Monte-Carlo form). For the forest ``"ucb"`` (the same bound, Liang et al.'s LCB) or
            ``"ei"`` (expected improvement). None takes the model's default: for the GP
            :func:`pool_acquisition` (``"ucb"`` for one pick with nothing pending, ``"qlognei"``
            otherwise), ``"ucb"`` for the forest.
        beta: Exploration weight of ``"ucb"`` (4 puts the bound two standard deviations up); None
            takes :data:`~tools.optimiser.acquisitions.UCB_BETA` for the GP and Liang et al.'s
            :data:`~tools.optimiser.forest_model.LIANG_BETA` for the forest.
        log_transform: Force (True) or forbid (False) modelling the log of the values; None applies
            the rule of :func:`tools.modelling.log_sign` (same sign, magnitudes spanning more than a
            decade).
        mc_samples: Quasi-Monte-Carlo samples of the acquisition function.
        warp: Warp the GP's inputs (a learnt monotone stretch of each column; see
            :func:`tools.optimiser.models.fit_gp`).
            None (the default) warps them; ``warp=False, acquisition="qlognei"`` is the model and
            acquisition of :func:`tools.optimiser.propose` (bench method ``athanor-qlognei``).
        kernel: The GP's kernel: ``"rbf"`` (BoTorch's default) or ``"matern"`` (Matérn-5/2).
        winsorise: Clip the bad tail of the GP's targets at Tukey's lower fence (Ax's default).

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
    if (kernel != "rbf" or winsorise) and model != "gp":
        raise SpecError(
            f"kernel={kernel!r} and winsorise={winsorise} shape the GP; model={model!r} is not one: use"
            " model='gp' or drop them"
        )
    if kernel not in ("rbf", "matern"):
        raise SpecError(f"kernel={kernel!r} is not available; use 'rbf' or 'matern'")
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

    with manual_seed(seed), one_thread():
        reason = unfit_reason(x, y)
        if reason is None:
            try:
                if model == "random_forest":
                    return _pool_forest_picks(
                        x, y, bounds, sign, log_transform, seed, pending_x, cand, free, n, acquisition, beta
                    )
                warped = warp is not False
                fitted = fit_gp(
                    x, y, bounds, sign, log_transform, warp=warped, kernel=kernel, winsorise=winsorise
                )
                acquire = builder(fitted.model, x, seed, mc_samples, acquisition, beta)
                return _pool_model_picks(fitted, acquire, pending_x, cand, free, n, acquisition)
            except NUMERICAL_ERRORS as exc:
                _log.warning("model-based pool pick failed, using space-filling picks: %s", exc)
                reason = failure_reason(exc)
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
    targets, direction, log_sign = model_targets(y, sign, log_transform)
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


def _pool_model_picks(
    fitted: FittedModel,
    acquire: AcquisitionBuilder,
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
