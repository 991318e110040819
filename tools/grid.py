"""Rounding a composition onto the spec's resolution grid without breaking the sum rule.

A spec with ``resolution`` (a step in the spec's unit, e.g. 0.01 or 1 at.%) only admits amounts that
are whole multiples of the step. :func:`snap_to_grid` maps a continuous composition (an acquisition
optimum) to such a point in four stages, all in whole grid steps:

1. Bounds: each component may take ``ceil(lower / step)`` to ``floor(upper / step)`` steps; a
   component outside the allowed support (not chosen under ``max_active_components``) takes 0.
2. Largest remainder: every amount is rounded down, and the steps still missing from the total go,
   one each, to the components with the largest remainders and room under their upper bound (or are
   taken from the smallest remainders when clipping to a bound overshot). The sum is exact in steps.
   Without a sum rule each amount is rounded to the nearest step within its bounds.
3. Repair: while a linear constraint is broken, move one step from one component to another (or add
   or remove one step without a sum rule), always the move that reduces the total violation most and,
   among equals, stays closest to the continuous point.
4. Search: if that gets stuck, the feasible grid point nearest the continuous point (L1 distance in
   steps) on the same support, by a small mixed-integer program; failing that, the nearest one with
   any support of at most ``max_active_components`` components.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from athanor.errors import SpecError
from athanor.spec import CampaignSpec

__all__ = ["grid_amount", "grid_steps", "snap_to_grid"]

#: Slack on a whole-step comparison (steps).
_STEP_TOL = 1e-9
#: Single-step moves tried by the repair before the search takes over, per component.
_MOVES_PER_COMPONENT = 4


def grid_amount(steps: int, step: float) -> float:
    """``steps`` grid steps as an amount, without float noise (3 x 0.1 gives 0.3, not 0.30000000000000004)."""
    return round(steps * step, 12) + 0.0


def grid_steps(spec: CampaignSpec, composition: Mapping[str, float]) -> list[int]:
    """Each component's amount in whole grid steps, in spec order (amounts must lie on the grid).

    Raises:
        SpecError: The spec has no resolution.
    """
    step = _step(spec)
    return [round(composition.get(name, 0.0) / step) for name in spec.component_names]


def _step(spec: CampaignSpec) -> float:
    if spec.resolution is None:
        raise SpecError("this spec has no resolution grid; set resolution (e.g. 0.01) to round to one")
    return spec.resolution


def _limits(spec: CampaignSpec, support: Collection[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest whole number of steps per component; 0 for components outside ``support``."""
    step = _step(spec)
    lower = np.array([np.ceil(c.lower / step - _STEP_TOL) for c in spec.components])
    upper = np.array([np.floor(c.upper / step + _STEP_TOL) for c in spec.components])
    if support is not None:
        # a component with a positive lower bound is always present, whatever the support says
        off = np.array([name not in support for name in spec.component_names]) & (lower <= 0)
        upper[off] = 0.0
    return lower, upper


def _constraint_rows(spec: CampaignSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear constraints as ``a @ steps <= b`` (spec unit per step) and a slack per row."""
    step = _step(spec)
    names = spec.component_names
    a = np.zeros((len(spec.constraints), len(names)))
    b = np.zeros(len(spec.constraints))
    slack = np.zeros(len(spec.constraints))
    for i, constraint in enumerate(spec.constraints):
        sign = 1.0 if constraint.operator == "<=" else -1.0
        for name, coef in constraint.coefficients.items():
            a[i, names.index(name)] = sign * coef * step
        b[i] = sign * constraint.rhs
        slack[i] = 1e-9 * spec.unit_scale * max(1.0, sum(abs(v) for v in constraint.coefficients.values()))
    return a, b, slack


def _total_steps(spec: CampaignSpec) -> int | None:
    return None if spec.sum_rule is None else round(spec.sum_rule.total / _step(spec))


def _largest_remainder(
    target: np.ndarray, lower: np.ndarray, upper: np.ndarray, total: int | None
) -> np.ndarray | None:
    """Whole steps near ``target`` within the limits, adding up to ``total`` (None: no sum rule)."""
    if total is None:
        return np.clip(np.round(target), lower, upper)
    steps = np.clip(np.floor(target + _STEP_TOL), lower, upper)
    remainder = target - steps
    gap = int(total - steps.sum())
    while gap:
        room = steps < upper if gap > 0 else steps > lower
        if not room.any():
            return None
        key = np.where(room, -remainder if gap > 0 else remainder, np.inf)
        order = np.argsort(key, kind="stable")[: min(abs(gap), int(room.sum()))]
        change = 1.0 if gap > 0 else -1.0
        steps[order] += change
        remainder[order] -= change
        gap -= int(change) * len(order)
    return steps


def _violation(a: np.ndarray, b: np.ndarray, slack: np.ndarray, steps: np.ndarray) -> float:
    return float(np.maximum(a @ steps - b - slack, 0.0).sum())


def _repair(
    a: np.ndarray,
    b: np.ndarray,
    slack: np.ndarray,
    steps: np.ndarray,
    target: np.ndarray,
    limits: tuple[np.ndarray, np.ndarray],
    sum_rule: bool,
) -> np.ndarray | None:
    """Single-step moves that reduce the constraint violation to zero, or None when they get stuck."""
    lower, upper = limits
    n = len(steps)
    steps = steps.copy()
    for _ in range(_MOVES_PER_COMPONENT * n + 10):
        current = _violation(a, b, slack, steps)
        if current == 0.0:
            return steps
        residual = a @ steps - b - slack
        if sum_rule:
            # move one step from component i to component j: new residual r + a[:, j] - a[:, i]
            delta = a[:, None, :] - a[:, :, None]
            allowed = (steps > lower)[:, None] & (steps < upper)[None, :] & ~np.eye(n, dtype=bool)
            gone = np.abs(steps - 1 - target) - np.abs(steps - target)
            came = np.abs(steps + 1 - target) - np.abs(steps - target)
            distance = gone[:, None] + came[None, :]
        else:
            # add (+) or remove (-) one step of component i
            delta = np.concatenate([a, -a], axis=1)[:, None, :]
            allowed = np.r_[steps < upper, steps > lower][None, :]
            distance = np.r_[
                np.abs(steps + 1 - target) - np.abs(steps - target),
                np.abs(steps - 1 - target) - np.abs(steps - target),
            ][None, :]
        after = np.maximum(residual[:, None, None] + delta, 0.0).sum(axis=0)
        after = np.where(allowed, after, np.inf)
        best = np.lexsort((np.where(allowed, distance, np.inf).ravel(), after.ravel()))[0]
        if not after.ravel()[best] < current - 1e-12:
            return None
        if sum_rule:
            i, j = divmod(int(best), n)
            steps[i] -= 1
            steps[j] += 1
        else:
            index = int(best)
            steps[index % n] += 1 if index < n else -1
    return steps if _violation(a, b, slack, steps) == 0.0 else None


def _nearest(
    spec: CampaignSpec, target: np.ndarray, limits: tuple[np.ndarray, np.ndarray], k: int | None
) -> np.ndarray | None:
    """The feasible grid point nearest ``target`` in L1 distance (steps), with at most ``k`` non-zero."""
    lower, upper = limits
    n = len(target)
    a, b, slack = _constraint_rows(spec)
    total = _total_steps(spec)
    # variables: steps (n, integer), distance (n), present (n, binary)
    rows: list[np.ndarray] = []
    lo: list[float] = []
    hi: list[float] = []

    def add(row: np.ndarray, low: float, high: float) -> None:
        rows.append(row)
        lo.append(low)
        hi.append(high)

    eye = np.eye(n)
    zeros = np.zeros((n, n))
    for i in range(n):
        add(np.r_[eye[i], -eye[i], zeros[i]], -np.inf, target[i])  # steps - distance <= target
        add(np.r_[-eye[i], -eye[i], zeros[i]], -np.inf, -target[i])  # -steps - distance <= -target
        add(np.r_[eye[i], zeros[i], -upper[i] * eye[i]], -np.inf, 0.0)  # steps <= upper * present
    for row, rhs, extra in zip(a, b, slack, strict=True):
        add(np.r_[row, np.zeros(2 * n)], -np.inf, rhs + extra)
    if total is not None:
        add(np.r_[np.ones(n), np.zeros(2 * n)], total, total)
    add(np.r_[np.zeros(2 * n), np.ones(n)], 0.0, float(k if k is not None else n))
    result = milp(
        c=np.r_[np.zeros(n), np.ones(n), np.zeros(n)],
        integrality=np.r_[np.ones(n), np.zeros(n), np.ones(n)],
        bounds=Bounds(np.r_[lower, np.zeros(2 * n)], np.r_[upper, np.full(n, np.inf), np.ones(n)]),
        constraints=LinearConstraint(np.array(rows), np.array(lo), np.array(hi)),
    )
    if result.status != 0:
        return None
    return np.round(result.x[:n])


def _largest(spec: CampaignSpec, target: np.ndarray, k: int) -> set[str]:
    """The components a limit of ``k`` keeps: those with a positive lower bound, then the largest."""
    always = {c.name for c in spec.components if c.lower > 0}
    order = [spec.component_names[i] for i in np.argsort(-target, kind="stable")]
    return always | set([n for n in order if n not in always][: max(0, k - len(always))])


def snap_to_grid(
    spec: CampaignSpec, composition: Mapping[str, float], support: Collection[str] | None = None
) -> dict[str, float] | None:
    """The grid point for a continuous composition (see the module docstring for how it is found).

    Args:
        spec: A spec with a ``resolution``; its bounds, sum rule, linear constraints and
            ``max_active_components`` are kept.
        composition: Component name to amount in the spec's unit (missing components count as 0).
        support: Components allowed to be non-zero (the chosen elements); None allows every one, or
            with ``max_active_components`` set, those with a positive lower bound and the largest.

    Returns:
        Component name to amount (a whole multiple of the step) in spec order, adding up to the
        sum-rule total exactly in steps; None when no grid point meets the spec.

    Raises:
        SpecError: The spec has no resolution.
    """
    step = _step(spec)
    names = spec.component_names
    target = np.array([float(composition.get(name, 0.0)) / step for name in names])
    if support is None and spec.max_active_components is not None:
        support = _largest(spec, target, spec.max_active_components)
    limits = _limits(spec, support)
    a, b, slack = _constraint_rows(spec)
    steps = _largest_remainder(target, *limits, _total_steps(spec))
    if steps is not None and _violation(a, b, slack, steps) > 0.0:
        steps = _repair(a, b, slack, steps, target, limits, spec.sum_rule is not None)
    if steps is None:
        steps = _nearest(spec, target, limits, None)
    if steps is None and support is not None:
        steps = _nearest(spec, target, _limits(spec, None), spec.max_active_components)
    if steps is None:
        return None
    return {name: grid_amount(int(count), step) for name, count in zip(names, steps, strict=True)}
