"""A random-forest surrogate and its acquisitions (the forest part of the model layer).

The forest is scikit-learn's ``RandomForestRegressor`` (seeded, :data:`N_TREES` trees, otherwise
scikit-learn's defaults), fitted to the same targets as the Gaussian process of
:mod:`tools.optimiser.models`: ``direction * t``, larger is better, where ``t`` is the value or its
log by the log-scale rule there, standardised to mean 0 and standard deviation 1. Its prediction at a point
is the mean across trees, and its uncertainty the standard deviation across trees, as Liang et al.
(npj Comput. Mater. 7, 188, 2021) use it.

Acquisitions are computed from that mean ``m`` and standard deviation ``s`` on the standardised
scale: a confidence bound ``m + sqrt(beta) * s`` (Liang et al.'s lower confidence bound with
``lambda = sqrt(beta)``, written for maximisation) and expected improvement over the best target
seen. A forest cannot be differentiated, so candidates are scored, not optimised: a finite pool, or
a large seeded sample of feasible points.

Batches and pending points use the *kriging believer*: each pending point, and each point picked so
far in the batch, is added to the training data at the forest's predicted mean and the forest is
refitted before the next pick. The believed values carry no information, but they split the leaves
around those points, which lowers the spread across trees there and steers later picks elsewhere.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from sklearn.ensemble import RandomForestRegressor
from torch import Tensor

__all__ = [
    "FOREST_ACQUISITIONS",
    "LIANG_BETA",
    "N_TREES",
    "FittedForest",
    "ForestPick",
    "confidence_bound",
    "expected_improvement",
    "fit_forest",
    "pick_greedy",
]

#: Trees in the forest.
N_TREES = 100
#: ``beta`` of Liang et al.'s lower confidence bound with ``lambda = 2`` (mean plus two spreads).
LIANG_BETA = 4.0
#: Acquisitions the forest supports: confidence bound and expected improvement.
FOREST_ACQUISITIONS = ("ucb", "ei")
#: Smallest spread across trees used in expected improvement (standardised units).
_MIN_STD = 1e-9
#: Relative difference below which two acquisition values are a tie.
_TIE = 1e-9

ForestAcquisition = Literal["ucb", "ei"]


class FittedForest:
    """A fitted forest and how its targets relate to the objective's values.

    The targets follow :class:`tools.optimiser.models.FittedModel`: ``direction * t`` with
    ``t = log_sign * log(log_sign * y)`` on the log scale and ``t = y`` otherwise (``log_sign == 0``),
    then standardised with :attr:`offset` and :attr:`scale`.

    Attributes:
        x: ``n x d`` training inputs (the caller's units), believed points included.
        targets: ``n`` standardised training targets (larger is better).
        bounds: ``2 x d`` lower and upper bounds the inputs are scaled by.
        direction: +1 to maximise, -1 to minimise.
        log_sign: +1 or -1 when the values are modelled on a log scale, 0 otherwise.
        offset: Mean of the unstandardised targets.
        scale: Standard deviation of the unstandardised targets (1 when they are all equal).
        seed: Seed of the forest.
    """

    def __init__(
        self,
        x: Tensor,
        targets: Tensor,
        bounds: Tensor,
        *,
        direction: float,
        log_sign: float,
        offset: float,
        scale: float,
        seed: int,
    ) -> None:
        self.x = x
        self.targets = targets
        self.bounds = bounds
        self.direction = direction
        self.log_sign = log_sign
        self.offset = offset
        self.scale = scale
        self.seed = seed
        self._forest = RandomForestRegressor(n_estimators=N_TREES, random_state=seed % 2**32, n_jobs=1)
        self._forest.fit(self._unit(x), targets.numpy())

    def _unit(self, x: Tensor) -> np.ndarray:
        """``x`` scaled to the unit cube over :attr:`bounds` (trees split the same either way)."""
        lower, upper = self.bounds
        return ((x - lower) / (upper - lower).clamp_min(1e-300)).numpy()

    def latent(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and spread across trees of the standardised target at ``m x d`` points (each ``m``)."""
        if x.shape[0] == 0:
            empty = torch.zeros(0, dtype=x.dtype)
            return empty, empty
        unit = self._unit(x)
        per_tree = np.stack([tree.predict(unit) for tree in self._forest.estimators_])
        return torch.from_numpy(per_tree.mean(axis=0)), torch.from_numpy(per_tree.std(axis=0))

    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and standard deviation in the objective's unit at ``m x d`` points (each of shape ``m``).

        On the log scale these are the mean and standard deviation of the implied log-normal, as for
        the Gaussian process.
        """
        mean, std = self.latent(x)
        mean = self.direction * (self.offset + self.scale * mean)
        var = (self.scale * std) ** 2
        if not self.log_sign:
            return mean, var.sqrt()
        magnitude = torch.exp(self.log_sign * mean + var / 2)
        return self.log_sign * magnitude, magnitude * torch.expm1(var).sqrt()

    def believe(self, points: Tensor) -> FittedForest:
        """A forest refitted with ``points`` (``p x d``) added at this forest's predicted mean."""
        if points.shape[0] == 0:
            return self
        mean, _ = self.latent(points)
        return FittedForest(
            torch.cat([self.x, points]),
            torch.cat([self.targets, mean]),
            self.bounds,
            direction=self.direction,
            log_sign=self.log_sign,
            offset=self.offset,
            scale=self.scale,
            seed=self.seed,
        )

    @property
    def best(self) -> float:
        """Best standardised target among the training points (believed ones included)."""
        return float(self.targets.max())


def fit_forest(
    x: Tensor, targets: Tensor, bounds: Tensor, *, direction: float, log_sign: float, seed: int
) -> FittedForest:
    """Fit the forest to ``n x d`` inputs and model targets.

    Args:
        x: ``n x d`` inputs, ``n >= 1``.
        targets: ``n`` or ``n x 1`` model targets ``direction * t`` (larger is better), as
            :func:`tools.optimiser.models.model_targets` makes them.
        bounds: ``2 x d`` lower and upper bounds of the inputs.
        direction: +1 to maximise, -1 to minimise.
        log_sign: +1 or -1 when ``t`` is a log, 0 when it is the value itself.
        seed: Seed of the bootstrap samples and split choices.

    Returns:
        The fitted forest.
    """
    t = targets.reshape(-1).to(torch.float64)
    offset = float(t.mean())
    spread = float(t.std()) if t.shape[0] > 1 else 0.0
    scale = spread if spread > 0 else 1.0
    return FittedForest(
        x.to(torch.float64),
        (t - offset) / scale,
        bounds.to(torch.float64),
        direction=direction,
        log_sign=log_sign,
        offset=offset,
        scale=scale,
        seed=seed,
    )


def confidence_bound(mean: Tensor, std: Tensor, beta: float) -> Tensor:
    """Upper confidence bound ``mean + sqrt(beta) * std`` (shapes broadcast, standardised units)."""
    return mean + math.sqrt(beta) * std


def expected_improvement(mean: Tensor, std: Tensor, best: float) -> Tensor:
    """Expected improvement over ``best`` of a normal with ``mean`` and ``std`` (larger is better).

    A zero spread gives the plain improvement ``max(mean - best, 0)``.
    """
    sigma = std.clamp_min(_MIN_STD)
    z = (mean - best) / sigma
    normal = torch.distributions.Normal(torch.zeros((), dtype=mean.dtype), torch.ones((), dtype=mean.dtype))
    return (mean - best) * normal.cdf(z) + sigma * torch.exp(normal.log_prob(z))


def _score(forest: FittedForest, points: Tensor, acquisition: ForestAcquisition, beta: float) -> Tensor:
    """Acquisition values (standardised units) of ``points`` under ``forest``."""
    mean, std = forest.latent(points)
    if acquisition == "ucb":
        return confidence_bound(mean, std, beta)
    return expected_improvement(mean, std, forest.best)


def _break_ties(values: Tensor, points: Tensor, known: Tensor, width: Tensor) -> int:
    """Index of the best value; among (near-)ties, the point farthest from the ``known`` ones.

    A forest's predictions are piecewise constant, so whole regions share one acquisition value; the
    farthest point of such a region is the one the data say least about.
    """
    top = float(values.max())
    tied = torch.nonzero(values >= top - _TIE * max(1.0, abs(top))).flatten()
    if tied.shape[0] == 1 or known.shape[0] == 0:
        return int(tied[0])
    gap = torch.cdist(points[tied] / width, known / width).min(dim=-1).values
    return int(tied[int(gap.argmax())])


class ForestPick:
    """One greedy pick: a row of the candidates and its acquisition value when it was picked.

    Attributes:
        index: Row of the candidates.
        value: Acquisition value (standardised units) given the pending points and earlier picks.
    """

    __slots__ = ("index", "value")

    def __init__(self, index: int, value: float) -> None:
        self.index = index
        self.value = value


def pick_greedy(
    forest: FittedForest,
    candidates: Tensor,
    n: int,
    *,
    acquisition: ForestAcquisition = "ucb",
    beta: float = LIANG_BETA,
    pending: Tensor | None = None,
    allowed: Tensor | None = None,
    exclusion: float | None = None,
) -> list[ForestPick]:
    """Pick up to ``n`` rows of ``candidates``, best first, with the kriging believer.

    The pending points are believed first; then each pick is believed before the next one is scored.
    Rows with the same acquisition value (a forest's predictions are piecewise constant) are told
    apart by their distance from the training and believed points: the farthest wins.

    Args:
        forest: The forest fitted to the measured points.
        candidates: ``m x d`` points to choose from (the forest's input units).
        n: Number of picks (fewer when fewer rows are allowed).
        acquisition: ``"ucb"`` (confidence bound) or ``"ei"`` (expected improvement).
        beta: Exploration weight of ``"ucb"``.
        pending: ``p x d`` points proposed but not measured yet.
        allowed: Boolean mask of shape ``m``: rows that may be picked (default all).
        exclusion: When given, rows within this distance (largest per-column difference, as a fraction
            of the column's range over ``forest.bounds``) of a pick are not picked after it.

    Returns:
        The picks, best first.
    """
    free = torch.ones(candidates.shape[0], dtype=torch.bool) if allowed is None else allowed.clone()
    current = forest.believe(pending) if pending is not None else forest
    lower, upper = forest.bounds
    width = (upper - lower).clamp_min(1e-300)
    picks: list[ForestPick] = []
    for _ in range(n):
        if not bool(free.any()):
            break
        idx = torch.nonzero(free).flatten()
        values = _score(current, candidates[idx], acquisition, beta).nan_to_num(nan=-math.inf)
        best = _break_ties(values, candidates[idx], current.x, width)
        index = int(idx[best])
        picks.append(ForestPick(index, float(values[best])))
        free[index] = False
        if exclusion is not None:
            gap = ((candidates - candidates[index]).abs() / width).amax(dim=-1)
            free &= gap >= exclusion
        if len(picks) < n:
            current = current.believe(candidates[index : index + 1])
    return picks
