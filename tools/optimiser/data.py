"""Observations to model inputs: the usable observations as tensors, pending points, near-duplicates.

Which observations a model learns from is the one rule of :func:`tools.modelling.is_usable` (status
ok, every needed value finite, every free component's amount finite); on the mixed space an
observation's choices must also be valid options. A proposal closer than :data:`DUPLICATE_DISTANCE`
to a measured, pending or earlier proposed point (with the same choices, on the mixed space) is a
near-duplicate (:func:`near_duplicates`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from athanor.models import Observation
from tools.design_space import DTYPE, DesignSpace
from tools.mixed_space import MixedPoint, MixedSpace
from tools.modelling import is_usable

__all__ = ["DUPLICATE_DISTANCE", "near_duplicates", "pending_tensor", "usable_mixed", "usable_tensors"]

#: A proposal closer than this to a measured, pending or earlier proposal (largest per-component
#: difference, as a fraction of that component's range) is a near-duplicate and is replaced.
DUPLICATE_DISTANCE = 0.02


def usable_tensors(
    space: DesignSpace, observations: Sequence[Observation], names: Sequence[str]
) -> tuple[Tensor, Tensor]:
    """Inputs (``n x d`` unit fractions) and values (``n x k``, one column per name) a model may use.

    Infeasible observations are used too (they tell where the bounds lie).
    """
    rows, values = [], []
    for obs in observations:
        if is_usable(obs, names, space.names):
            rows.append({n: obs.composition[n] for n in space.names})
            values.append([obs.values[name] for name in names])
    x = space.to_tensor(rows) if rows else torch.zeros(0, space.dim, dtype=DTYPE)
    return x, torch.tensor(values, dtype=DTYPE).reshape(len(values), len(names))


def usable_mixed(
    mixed: MixedSpace, observations: Sequence[Observation], names: Sequence[str]
) -> tuple[Tensor, Tensor, list[Observation]]:
    """Model inputs (``n x input_dim``), values (``n x k``, one column per name) and the observations used.

    On top of :func:`tools.modelling.is_usable`, an observation's choices must be options of the spec.
    """
    points, values, usable = [], [], []
    for obs in observations:
        if not is_usable(obs, names, mixed.space.names) or mixed.codes_of(obs.choices) is None:
            continue
        composition = {n: obs.composition.get(n, 0.0) for n in mixed.spec.component_names}
        points.append(MixedPoint(composition=composition, choices=dict(obs.choices)))
        values.append([obs.values[name] for name in names])
        usable.append(obs)
    y = torch.tensor(values, dtype=DTYPE).reshape(len(values), len(names))
    return mixed.encode(points), y, usable


def pending_tensor(space: DesignSpace, pending: Sequence[dict[str, float]]) -> Tensor:
    """Pending compositions (spec unit) as ``p x d`` unit fractions.

    Raises:
        SpecError: A pending composition lacks a free component.
    """
    return space.to_tensor(list(pending)) if pending else torch.zeros(0, space.dim, dtype=DTYPE)


def near_duplicates(space: DesignSpace, points: Tensor, others: Tensor, same: Tensor | None = None) -> Tensor:
    """Which of ``points`` (``m x d``) lie within :data:`DUPLICATE_DISTANCE` of one of ``others`` (``k x d``).

    Args:
        space: The design space the points are unit fractions of (distances are per component, as a
            fraction of its range).
        points: ``m x d`` points.
        others: ``k x d`` points to keep away from.
        same: Optional ``m x k`` mask: only pairs where it holds count (on the mixed space, the pairs
            with the same choices).

    Returns:
        A boolean tensor of shape ``m``.
    """
    if others.shape[0] == 0 or points.shape[0] == 0:
        return torch.zeros(points.shape[0], dtype=torch.bool)
    if space.dim:
        gap = torch.cdist(space.normalise(points), space.normalise(others), p=float("inf"))
        close = gap < DUPLICATE_DISTANCE
    else:
        close = torch.ones(points.shape[0], others.shape[0], dtype=torch.bool)
    if same is not None:
        close &= same
    return close.any(dim=-1)
