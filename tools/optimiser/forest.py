"""One objective on the continuous space with the random-forest surrogate (``surrogate: random_forest``).

:func:`propose_forest` fits the forest of :mod:`tools.optimiser.forest_model` to the same targets as
the GP (the same log-scale rule), scores :data:`FOREST_SAMPLES` seeded feasible compositions by its
confidence bound (Liang et al.'s ``lambda = 2``) since a forest cannot be differentiated, and keeps
the best; a batch and the pending points use the kriging believer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from botorch.utils.sampling import manual_seed
from torch import Tensor

from athanor.models import Observation
from athanor.spec import CampaignSpec
from tools.design_space import DesignSpace, design_space
from tools.optimiser.data import DUPLICATE_DISTANCE, near_duplicates, pending_tensor, usable_tensors
from tools.optimiser.forest_model import LIANG_BETA, fit_forest, pick_greedy
from tools.optimiser.models import (
    NUMERICAL_ERRORS,
    direction_of,
    failure_reason,
    model_targets,
    one_thread,
    unfit_reason,
)
from tools.optimiser.suggestions import Suggestion, fallback, suggestion

__all__ = ["FOREST_SAMPLES", "propose_forest"]

_log = logging.getLogger(__name__)

#: Feasible compositions the random-forest surrogate scores per proposal (it cannot be differentiated).
FOREST_SAMPLES = 4096


def propose_forest(
    spec: CampaignSpec,
    observations: Sequence[Observation],
    n: int,
    seed: int,
    pending: Sequence[dict[str, float]] = (),
    *,
    log_transform: bool | None = None,
) -> list[Suggestion]:
    """Propose ``n`` compositions by the forest's confidence bound, best first.

    Args:
        spec: The campaign spec; its primary objective is optimised in its direction.
        observations: Every observation so far; the usable ones are modelled.
        n: Batch size.
        seed: Seed of the forest and the sampled compositions.
        pending: Compositions (spec unit) proposed but not measured yet; proposals avoid them.
        log_transform: Force (True) or forbid (False) modelling the log of the values.

    Returns:
        ``n`` suggestions, best first, each feasible; space-filling ones (saying why) without a model.

    Raises:
        SpecError: A pending composition lacks a component of the spec.
    """
    if n <= 0:
        return []
    space = design_space(spec)
    with manual_seed(seed), one_thread():
        x, y = usable_tensors(space, observations, [spec.primary_objective.name])
        y = y[:, 0]
        pending_x = pending_tensor(space, pending)
        if space.dim == 0:
            return fallback(space, x, pending_x, n, seed, "the spec allows a single composition")
        reason = unfit_reason(x, y)
        if reason is None:
            try:
                return _forest_suggestions(space, x, y, pending_x, n, seed, log_transform)
            except NUMERICAL_ERRORS as exc:
                _log.warning("model-based proposal failed, using space-filling points: %s", exc)
                reason = failure_reason(exc)
        return fallback(space, x, pending_x, n, seed, reason)


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
    believer of :func:`tools.optimiser.forest_model.pick_greedy`, and later picks keep
    :data:`~tools.optimiser.data.DUPLICATE_DISTANCE` from earlier ones. When the space leaves too
    little room, space-filling points make up the batch.
    """
    targets, direction, log_sign = model_targets(y, direction_of(space.spec), log_transform)
    forest = fit_forest(x, targets, space.bounds, direction=direction, log_sign=log_sign, seed=seed)
    candidates = space.sample(FOREST_SAMPLES, seed)
    allowed = ~near_duplicates(space, candidates, torch.cat([x, pending_x]))
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
            suggestion(
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
        suggestions += fallback(space, x, torch.cat([pending_x, points]), n - len(suggestions), seed, reason)
    return suggestions
