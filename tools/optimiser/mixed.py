"""One objective on the mixed design space (present components, categorical choices, grid).

:func:`propose_mixed` is what :func:`tools.optimiser.propose` runs when a spec sets
``max_active_components``, ``resolution`` or ``categories``. The model and acquisition are those of
the continuous strategy: a GP with ARD over the amounts (unit fractions of the free components,
normalised over the design-space bounds), standardised outcome, the same log-scale rule, and
``qLogNoisyExpectedImprovement``. With categorical variables the GP is BoTorch's
``MixedSingleTaskGP`` (:func:`tools.optimiser.models.fit_mixed`). An absent component is an amount
of 0, so the model needs no special input for which components are present.

The acquisition is maximised cell by cell (:mod:`tools.optimiser.cell_search`), the best cells first:
those of the best observations are always among the cells searched. Without a usable model the
points come from :func:`tools.mixed_space.mixed_initial_design`, away from those measured and pending.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from botorch.utils.sampling import manual_seed

from athanor.models import Observation
from athanor.spec import CampaignSpec
from tools.mixed_space import MixedSpace, mixed_space, observed_points, pending_mixed_points
from tools.optimiser.acquisitions import builder
from tools.optimiser.cell_search import CellPick, greedy_cell_picks
from tools.optimiser.data import usable_mixed
from tools.optimiser.models import (
    NUMERICAL_ERRORS,
    FittedModel,
    direction_of,
    failure_reason,
    fit_mixed,
    one_thread,
    unfit_reason,
)
from tools.optimiser.options import OptimiserOptions
from tools.optimiser.suggestions import Suggestion, mixed_fallback, mixed_suggestion, searched_cells

__all__ = ["propose_mixed"]

_log = logging.getLogger(__name__)

#: Best observations whose cells are always searched.
_PREFERRED = 8


def propose_mixed(
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
    top_cells: int = 3,
    options: OptimiserOptions | None = None,
) -> list[Suggestion]:
    """Propose ``n`` points on the mixed design space, best first.

    Args:
        spec: The campaign spec (with ``max_active_components``, ``resolution`` and/or ``categories``).
        observations: Every observation so far; those with status ``"ok"``, a finite value of the
            primary objective, every free component and valid choices are modelled.
        n: Batch size.
        seed: Seed of every random stream; the same inputs and seed give the same proposals.
        pending: Compositions (spec unit) proposed but not measured yet.
        pending_choices: The choices of each pending composition, in the same order (required when
            the spec has categories).
        log_transform: Force (True) or forbid (False) modelling the log of the values; None decides
            as :func:`tools.optimiser.propose` does.
        num_restarts: Starting points of the gradient optimisation per optimised cell.
        raw_samples: Scales the screening: ``16 * raw_samples`` samples shared among the cells.
        mc_samples: Quasi-Monte-Carlo samples of the acquisition function.
        top_cells: Cells optimised by gradient per pick, the best by screening.
        options: Only the BoTorch functions it holds apply here (the fit and the maximiser); the
            model and acquisition options are refused.

    Returns:
        ``n`` suggestions, each meeting ``spec.violations(s.composition, choices=s.choices) == []``
        (at most ``max_active_components`` non-zero amounts, on the grid, sum exact in grid steps),
        with ``active_components`` and ``choices`` set, and none a near-duplicate of a measured,
        pending or other proposed point when the space leaves room.

    Raises:
        SpecError: A pending composition lacks a component, its choices are missing or invalid, or
            a model or acquisition option is given.
    """
    if n <= 0:
        return []
    options = options or OptimiserOptions()
    options.refuse_model_options("a spec with a mixed space (components present, choices, a grid)")
    mixed = mixed_space(spec)
    pending_points = pending_mixed_points(spec, pending, pending_choices)
    with manual_seed(seed), one_thread():
        pending_x = mixed.encode(pending_points)
        x, y, usable = usable_mixed(mixed, observations, [spec.primary_objective.name])
        y = y[:, 0]
        avoid = observed_points(spec, observations) + pending_points
        reason = unfit_reason(x, y) if mixed.input_dim else "the spec allows a single composition"
        if reason is None:
            try:
                fitted = fit_mixed(mixed, x, y, log_transform, fit_mll=options.fit_gpytorch_mll)
                cells = mixed.cells(seed, _preferred(mixed, usable, y.tolist()))
                picks = greedy_cell_picks(
                    mixed,
                    builder(fitted.model, x, seed, mc_samples),
                    cells,
                    x,
                    pending_x,
                    n,
                    seed,
                    num_restarts,
                    raw_samples,
                    top_cells,
                    optimize=options.optimize_acqf,
                )
                return _describe(mixed, fitted, picks, len(cells))
            except NUMERICAL_ERRORS as exc:
                _log.warning("model-based proposal failed, using space-filling points: %s", exc)
                reason = failure_reason(exc)
        return mixed_fallback(mixed, avoid, len(x), n, seed, reason)


def _preferred(
    mixed: MixedSpace, usable: list[Observation], values: list[float]
) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """Cells (present components, choice codes) of the best observations, best first."""
    sign = direction_of(mixed.spec)
    ranked = sorted(zip(usable, values, strict=True), key=lambda item: -sign * item[1])
    cells = []
    for obs, _ in ranked[:_PREFERRED]:
        codes = mixed.codes_of(obs.choices)
        if codes is not None:
            cells.append((mixed.present_in(obs.composition), codes))
    return cells


def _describe(
    mixed: MixedSpace, fitted: FittedModel, picks: list[CellPick], n_cells: int
) -> list[Suggestion]:
    """Suggestions with predictions, the cells searched and the constraints each pick sits on."""
    mean, std = fitted.predict(torch.stack([p.x for p in picks]))
    unit = mixed.spec.primary_objective.unit
    searched = searched_cells(mixed, n_cells)
    inputs = fitted.input_names(mixed.input_names)
    out = []
    for rank, pick in enumerate(picks):
        if pick.note == "repeat":
            why = "repeats a measured or pending point: every admissible point nearby was taken"
        elif len(picks) == 1:
            why = f"highest expected improvement over {searched}"
        else:
            why = f"#{rank + 1} of {len(picks)} greedy picks by expected improvement over {searched}"
        predicted = f"predicted {float(mean[rank]):.3g} ± {float(std[rank]):.2g} {unit}".rstrip()
        out.append(
            mixed_suggestion(
                mixed,
                pick.point,
                f"{why}; {predicted}",
                source="model",
                predicted=(float(mean[rank]), float(std[rank])),
                acquisition_value=pick.value,
                model_inputs=inputs,
                raw_candidate=pick.raw,
            )
        )
    return out
