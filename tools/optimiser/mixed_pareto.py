"""Several objectives and outcome constraints on the mixed design space (components present, choices, grid).

:func:`propose_pareto_mixed` is what :func:`tools.optimiser.propose_pareto` runs when a spec also
sets ``max_active_components``, ``resolution`` or ``categories``. It combines the two:

- Models: one GP per measured quantity (the objectives, then any other quantity an outcome
  constraint names) on the mixed model inputs of :mod:`tools.mixed_space` (unit fractions of the free
  components, then one integer code per categorical variable), fitted by
  :func:`tools.optimiser.models.fit_mixed` (``MixedSingleTaskGP`` with categorical inputs), each with
  the direction and log-scale rule of :mod:`tools.optimiser.multioutput`.
- Acquisition: qLogNEHVI with the outcome constraints (feasibility-weighted qLogNEI with one
  objective), reference point from the thresholds or the measured values, exactly as on the
  continuous space (:func:`tools.optimiser.acquisitions.pareto_builder`).
- Search: :func:`tools.optimiser.cell_search.greedy_cell_picks` screens every cell in one batched
  call, optimises the best cells with their pinned zeros and choices held fixed, snaps to the grid
  (the sum stays exact in grid steps) and picks greedily, each pick joining the pending points of the
  next acquisition.

When there are more cells than :data:`tools.mixed_space.MAX_CELLS`, the cells of the measured
Pareto front are always among those searched. Without a usable model the points are the mixed
space-filling design, away from the measured and pending ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from botorch.utils.sampling import manual_seed

from athanor.models import Observation
from athanor.pareto import pareto_front
from athanor.spec import CampaignSpec
from tools.mixed_space import MixedSpace, mixed_space, observed_points, pending_mixed_points
from tools.optimiser.acquisitions import fused_kernel_build, pareto_builder
from tools.optimiser.cell_search import CellPick, greedy_cell_picks
from tools.optimiser.data import usable_mixed
from tools.optimiser.models import NUMERICAL_ERRORS, failure_reason, fit_mixed, one_thread
from tools.optimiser.multioutput import (
    ModelledOutput,
    OutcomeBound,
    acquisition_phrase,
    explain,
    fit_outputs,
    why_unfit,
)
from tools.optimiser.options import OptimiserOptions
from tools.optimiser.suggestions import Suggestion, mixed_fallback, mixed_suggestion, searched_cells

__all__ = ["propose_pareto_mixed"]

_log = logging.getLogger(__name__)

#: Front members whose cells are always searched when not every cell can be.
_FRONT_CELLS = 8


def propose_pareto_mixed(
    spec: CampaignSpec,
    observations: Sequence[Observation],
    n: int,
    seed: int,
    pending: Sequence[dict[str, float]] = (),
    *,
    pending_choices: Sequence[dict[str, str]] = (),
    log_transform: bool | None = None,
    num_restarts: int = 2,
    raw_samples: int = 64,
    mc_samples: int = 128,
    top_cells: int = 3,
    lazy: bool = True,
    fused_kernel: bool = False,
    options: OptimiserOptions | None = None,
) -> list[Suggestion]:
    """Propose ``n`` points of the mixed space that best extend the feasible Pareto front, best first.

    Args:
        spec: The campaign spec: several objectives and/or outcome constraints, and
            ``max_active_components``, ``resolution`` and/or ``categories``.
        observations: Every observation so far. Those with status ``"ok"``, a finite value of every
            objective and constrained quantity, every free component and valid choices are modelled.
        n: Batch size; points are picked greedily, each given the pending points and earlier picks.
        seed: Seed of every random stream; the same inputs and seed give the same proposals.
        pending: Compositions (spec unit) proposed but not measured yet; proposals avoid them.
        pending_choices: The choices of each pending composition, in the same order (required when
            the spec has categories).
        log_transform: Force (True) or forbid (False) modelling the log of each quantity; None
            decides per quantity as on the continuous space.
        num_restarts: Starting points of the gradient optimisation per optimised cell.
        raw_samples: Scales the screening: ``16 * raw_samples`` samples shared among the cells.
        mc_samples: Quasi-Monte-Carlo samples of the acquisition function.
        top_cells: Cells optimised by gradient per pick, the best by screening.
        lazy: After the first pick, re-score only the screening samples whose value at the previous
            pick could still make them the best (expected hypervolume improvement only falls as
            pending points are added); False re-scores every sample for every pick.
        fused_kernel: Let BoTorch JIT-compile its fused qLogNEHVI kernel (see
            :func:`tools.optimiser.acquisitions.fused_kernel_build`).
        options: Only the BoTorch functions it holds apply here (the fit and the maximiser); the
            model and acquisition options are refused.

    Returns:
        ``n`` suggestions, each meeting ``spec.violations(s.composition, choices=s.choices) == []``
        (at most ``max_active_components`` non-zero amounts, on the grid with the sum exact in grid
        steps, valid choices), with ``active_components`` and ``choices`` set, and none a
        near-duplicate of a measured, pending or other proposed point with the same choices when the
        space leaves room. ``predicted_mean`` and ``predicted_std`` are the primary objective's; the
        rationale gives every quantity's prediction, the probability of meeting the outcome
        constraints, the reference point, the cell chosen and the constraints the point sits on.

    Raises:
        SpecError: A pending composition lacks a component, its choices are missing or invalid, or
            a model or acquisition option is given.
    """
    if n <= 0:
        return []
    options = options or OptimiserOptions()
    options.refuse_model_options("a spec with several objectives or outcome constraints")
    mixed = mixed_space(spec)
    pending_points = pending_mixed_points(spec, pending, pending_choices)
    names = spec.measured_names
    fit_mll = options.fit_gpytorch_mll
    with manual_seed(seed), one_thread(), fused_kernel_build(fused_kernel):
        pending_x = mixed.encode(pending_points)
        x, y, usable = usable_mixed(mixed, observations, names)
        reason = why_unfit(x, y, names) if mixed.input_dim else "the spec allows a single composition"
        if reason is None:
            try:
                outputs = fit_outputs(
                    spec,
                    y,
                    names,
                    log_transform,
                    lambda t, d, log: fit_mixed(mixed, x, t, log, direction=d, fit_mll=fit_mll),
                )
                build, bounds, note = pareto_builder(spec, outputs, x, y, seed, mc_samples)
                cells = mixed.cells(seed, _front_cells(mixed, usable))
                picks = greedy_cell_picks(
                    mixed,
                    build,
                    cells,
                    x,
                    pending_x,
                    n,
                    seed,
                    num_restarts,
                    raw_samples,
                    top_cells,
                    lazy=lazy,
                    optimize=options.optimize_acqf,
                )
                return _describe(mixed, outputs, bounds, picks, note, len(cells))
            except NUMERICAL_ERRORS as exc:
                _log.warning("model-based Pareto proposal failed, using space-filling points: %s", exc)
                reason = failure_reason(exc)
        avoid = observed_points(spec, observations) + pending_points
        return mixed_fallback(mixed, avoid, len(x), n, seed, reason)


def _front_cells(
    mixed: MixedSpace, usable: list[Observation]
) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """Cells (present components, choice codes) of the measured Pareto front (feasible members only)."""
    cells = []
    for obs in pareto_front(mixed.spec, usable)[:_FRONT_CELLS]:
        codes = mixed.codes_of(obs.choices)
        if codes is not None:
            cells.append((mixed.present_in(obs.composition), codes))
    return cells


def _describe(
    mixed: MixedSpace,
    outputs: list[ModelledOutput],
    bounds: list[OutcomeBound],
    picks: list[CellPick],
    note: str,
    n_cells: int,
) -> list[Suggestion]:
    """Suggestions with every quantity's prediction, the feasibility probability, the cell and why."""
    what = acquisition_phrase(mixed.spec)
    searched = searched_cells(mixed, n_cells)
    whys = []
    for rank, pick in enumerate(picks):
        if pick.note == "repeat":
            whys.append("repeats a measured or pending point: every admissible point nearby was taken")
        elif len(picks) == 1:
            whys.append(f"highest {what} over {searched}")
        else:
            whys.append(f"#{rank + 1} of {len(picks)} greedy picks by {what} over {searched}")
    explained = explain(outputs, bounds, torch.stack([p.x for p in picks]), whys, note)
    inputs = outputs[0].fitted.input_names(mixed.input_names)
    return [
        mixed_suggestion(
            mixed,
            pick.point,
            text,
            source="model",
            predicted=predicted,
            acquisition_value=pick.value,
            model_inputs=inputs,
            raw_candidate=pick.raw,
        )
        for pick, (text, predicted) in zip(picks, explained, strict=True)
    ]
