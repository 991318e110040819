"""A seeded, space-filling initial design on the constrained simplex.

A large pool of feasible points is drawn by hit-and-run (:meth:`DesignSpace.sample`) and ``n`` of
them are picked by greedy maximin distance, measured in the unit cube over the design-space bounds
so that a component with a narrow range counts as much as a wide one. Without earlier points the
design starts at the pool point nearest the pool's centroid, a composition in the middle of the
space; with earlier points (``avoid``) every pick is as far as possible from those too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from athanor.errors import SpecError
from athanor.spec import CampaignSpec
from tools.design_space import DesignSpace, design_space

__all__ = ["initial_design", "maximin_indices", "space_filling"]

#: Pool points drawn per requested point, and the pool's floor and ceiling.
_POOL_PER_POINT, _POOL_MIN, _POOL_MAX = 64, 512, 4096


def maximin_indices(candidates: Tensor, n: int, existing: Tensor | None = None) -> list[int]:
    """Greedily pick ``n`` rows of ``candidates`` that are far from each other and from ``existing``.

    Args:
        candidates: ``m x d`` points, in a space where Euclidean distance is meaningful.
        n: Number of rows to pick (at most ``m``).
        existing: ``k x d`` points already chosen; ``None`` or empty to start at the candidate
            nearest the candidates' centroid.

    Returns:
        ``n`` distinct row indices in pick order.
    """
    n = min(n, candidates.shape[0])
    if n <= 0:
        return []
    if existing is not None and existing.shape[0] > 0:
        nearest = torch.cdist(candidates, existing).min(dim=-1).values
        picks: list[int] = []
    else:
        first = int(torch.cdist(candidates, candidates.mean(dim=0, keepdim=True)).argmin())
        picks = [first]
        nearest = torch.cdist(candidates, candidates[first : first + 1]).squeeze(-1)
    while len(picks) < n:
        if picks:
            nearest[picks] = -1.0
        best = int(nearest.argmax())
        picks.append(best)
        nearest = torch.minimum(nearest, torch.cdist(candidates, candidates[best : best + 1]).squeeze(-1))
    return picks


def space_filling(space: DesignSpace, n: int, seed: int, avoid: Tensor | None = None) -> Tensor:
    """``n`` space-filling feasible points as an ``n x d`` tensor of unit fractions.

    Args:
        space: The design space.
        n: Number of points.
        seed: Seed of the candidate pool; the same seed gives the same points.
        avoid: ``k x d`` points (unit fractions) to stay away from, e.g. those already measured.
    """
    pool_size = min(max(_POOL_MIN, _POOL_PER_POINT * n), _POOL_MAX)
    pool = space.sample(max(pool_size, n), seed)
    existing = None if avoid is None or avoid.shape[0] == 0 else space.normalise(avoid)
    return pool[maximin_indices(space.normalise(pool), n, existing)]


def initial_design(
    spec: CampaignSpec, n: int, seed: int, *, avoid: Sequence[dict[str, float]] = ()
) -> list[dict[str, float]]:
    """A seeded space-filling design of ``n`` feasible compositions.

    Args:
        spec: The campaign spec (bounds, sum rule, linear constraints).
        n: Number of compositions.
        seed: Seed; the same seed gives the same design.
        avoid: Compositions (spec unit) already measured or planned, to stay away from.

    Returns:
        ``n`` compositions, component name to amount in the spec's unit, each meeting
        ``spec.violations(...) == []``.

    Raises:
        SpecError: ``n`` is negative or a composition in ``avoid`` lacks a component.
    """
    if n < 0:
        raise SpecError(f"initial design size n={n} is negative; ask for 0 or more compositions")
    space = design_space(spec)
    avoid_x = space.to_tensor(list(avoid)) if avoid else None
    compositions = space.to_compositions(space_filling(space, n, seed, avoid_x))
    for composition in compositions:
        problems = spec.violations(composition)
        if problems:
            raise SpecError(f"initial design produced an infeasible composition: {'; '.join(problems)}")
    return compositions
