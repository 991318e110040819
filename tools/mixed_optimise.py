"""Bayesian optimisation on the mixed design space (present components, categorical choices, grid).

:func:`propose_mixed` is what :func:`tools.optimise.propose` runs when a spec sets
``max_active_components``, ``resolution`` or ``categories``. The model and acquisition are those of
the continuous optimiser: a GP with ARD over the amounts (unit fractions of the free components,
normalised over the design-space bounds), standardised outcome, the same log-scale rule, and
``qLogNoisyExpectedImprovement``. With categorical variables the GP is BoTorch's
``MixedSingleTaskGP`` (each choice an integer-coded input under a categorical kernel, combined with
the RBF kernel of the amounts); without them it is a ``SingleTaskGP``. An absent component is an
amount of 0, so the model needs no special input for which components are present.

The acquisition is maximised cell by cell (see :mod:`tools.mixed_space`: a cell is a subset of
present components with one combination of choices): every cell's face is screened with hit-and-run
samples scored in one batch, and only the ``top_cells`` best cells are optimised with
``optimize_acqf`` (the cell's pinned zeros and choices held fixed with
``FixedFeatureAcquisitionFunction``; sum rule and linear constraints of the face as constraints).
Screening costs one batched acquisition call however many cells there are, which is what lets the
search cover every subset; optimising every cell (as ``optimize_acqf_mixed`` over a
``fixed_features_list`` of all cells would) costs a full optimisation per cell. A batch of ``q``
points is built greedily: each pick joins the pending points the next acquisition conditions on.

Each optimum is snapped to the grid (:func:`tools.grid.snap_to_grid`) and the acquisition is scored
again on the snapped points together with the best screening samples, also snapped; the best one
that is not a near-duplicate (within :data:`tools.optimise.DUPLICATE_DISTANCE` of a measured,
pending or already picked point with the same choices) is taken. Without a usable model the points
come from :func:`tools.mixed_space.mixed_initial_design`, away from those measured and pending.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.acquisition.fixed_feature import FixedFeatureAcquisitionFunction
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.fit import fit_gpytorch_mll
from botorch.models import MixedSingleTaskGP, SingleTaskGP
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from botorch.optim import optimize_acqf
from botorch.sampling import SobolQMCNormalSampler
from botorch.utils.sampling import manual_seed
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

from athanor.models import Observation
from athanor.spec import CampaignSpec
from tools.descriptors import descriptor_inputs
from tools.design_space import DTYPE
from tools.mixed_space import (
    Cell,
    MixedPoint,
    MixedSpace,
    mixed_initial_design,
    mixed_space,
    observed_points,
    pending_mixed_points,
)
from tools.optimise import (
    _NUMERICAL_ERRORS,
    DUPLICATE_DISTANCE,
    LOG_SPAN,
    Suggestion,
    _Fitted,
    _one_thread,
    _unfit_reason,
)

__all__ = [
    "CellPick",
    "fit_mixed",
    "greedy_cell_picks",
    "mixed_suggestion",
    "propose_mixed",
    "searched_cells",
]

_log = logging.getLogger(__name__)

#: Hit-and-run samples scored per proposal, shared among the cells, and the per-cell floor/ceiling.
_SCREEN_TOTAL, _SCREEN_MIN, _SCREEN_MAX = 1024, 8, 128
#: Screening samples (best first) snapped and re-scored next to the optimised points.
_SNAPPED_EXTRA = 16
#: Acquisition evaluations per batched call.
_CHUNK = 512
#: Screening samples re-scored per round of a lazy re-screen (:func:`_rescore`).
_LAZY_CHUNK = 128
#: Iterations of the gradient optimisation on one cell (all restarts together). On a 6-element, k = 3,
#: 1 % grid with 30 observations, 50 and 100 gave the same batches; the grid is coarser than the gain.
_CELL_ITERATIONS = 50
#: L-BFGS iterations of the mixed-kernel fit. Uncapped it ran 300-500 iterations (2-4 s on one thread
#: with 30 points); at 150 the fitted marginal log likelihood per point was within 0.01 of the uncapped one.
_MIXED_FIT_ITERATIONS = 150


#: A point to snap: model input (``input_dim``), its cell's index, how it was found, and the
#: optimiser's own output it came from (None when no optimiser ran, see :class:`CellPick`).
_Candidate = tuple[Tensor, int, str, Tensor | None]


@dataclass
class CellPick:
    """One point picked on the mixed space.

    Attributes:
        x: Its model input (``input_dim``).
        point: The admissible point (snapped to the grid).
        value: Acquisition value when it was picked, given the pending points and earlier picks.
        note: How it was found: ``"optimised"``, ``"screened"`` or ``"repeat"``.
        raw: The gradient optimiser's output it was snapped from (``input_dim``, before projection
            onto the cell's face); None for a screening sample or a cell that is a single point.
    """

    x: Tensor
    point: MixedPoint
    value: float
    note: str
    raw: Tensor | None = None


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
            as :func:`tools.optimise.propose` does.
        num_restarts: Starting points of the gradient optimisation per optimised cell.
        raw_samples: Scales the screening: ``16 * raw_samples`` samples shared among the cells.
        mc_samples: Quasi-Monte-Carlo samples of the acquisition function.
        top_cells: Cells optimised by gradient per pick, the best by screening.

    Returns:
        ``n`` suggestions, each meeting ``spec.violations(s.composition, choices=s.choices) == []``
        (at most ``max_active_components`` non-zero amounts, on the grid, sum exact in grid steps),
        with ``active_components`` and ``choices`` set, and none a near-duplicate of a measured,
        pending or other proposed point when the space leaves room.

    Raises:
        SpecError: A pending composition lacks a component, or its choices are missing or invalid.
    """
    if n <= 0:
        return []
    mixed = mixed_space(spec)
    pending_points = pending_mixed_points(spec, pending, pending_choices)
    with manual_seed(seed), _one_thread():
        pending_x = mixed.encode(pending_points)
        x, y, usable = _usable(mixed, observations)
        avoid = observed_points(spec, observations) + pending_points
        reason = _unfit_reason(x, y) if mixed.input_dim else "the spec allows a single composition"
        if reason is None:
            try:
                fitted = fit_mixed(mixed, x, y, log_transform)
                cells = mixed.cells(seed, _preferred(mixed, usable))
                picks = greedy_cell_picks(
                    mixed,
                    lambda taken: _acquisition(fitted, x, taken, seed, mc_samples),
                    cells,
                    x,
                    pending_x,
                    n,
                    seed,
                    num_restarts,
                    raw_samples,
                    top_cells,
                )
                return _describe(mixed, fitted, picks, len(cells))
            except _NUMERICAL_ERRORS as exc:
                _log.warning("model-based proposal failed, using space-filling points: %s", exc)
                reason = f"the model failed ({type(exc).__name__})"
        points = mixed_initial_design(spec, n, seed, avoid=avoid)
        lead = "space-filling point far from measured ones" if len(x) else "space-filling initial design"
        return [mixed_suggestion(mixed, p, f"{lead}: {reason}", source="initial") for p in points]


# ------------------------------------------------------------------------------------------- model
def _usable(
    mixed: MixedSpace, observations: Sequence[Observation]
) -> tuple[Tensor, Tensor, list[tuple[Observation, float]]]:
    """Model inputs (``n x input_dim``), values (``n``) and the usable observations with their values."""
    objective = mixed.spec.primary_objective.name
    points, values, usable = [], [], []
    for obs in observations:
        value = obs.values.get(objective)
        if obs.status != "ok" or value is None or not math.isfinite(value):
            continue
        amounts = [obs.composition.get(n) for n in mixed.space.names]
        if any(a is None or not math.isfinite(a) for a in amounts) or mixed.codes_of(obs.choices) is None:
            continue
        composition = {n: obs.composition.get(n, 0.0) for n in mixed.spec.component_names}
        points.append(MixedPoint(composition=composition, choices=dict(obs.choices)))
        values.append(value)
        usable.append((obs, value))
    return mixed.encode(points), torch.tensor(values, dtype=DTYPE), usable


def _preferred(
    mixed: MixedSpace, usable: list[tuple[Observation, float]]
) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """Cells (present components, choice codes) of the best observations, best first."""
    sign = 1.0 if mixed.spec.primary_objective.direction == "maximise" else -1.0
    ranked = sorted(usable, key=lambda item: -sign * item[1])
    cells = []
    for obs, _ in ranked[:8]:
        codes = mixed.codes_of(obs.choices)
        if codes is not None:
            cells.append((mixed.present_in(obs.composition), codes))
    return cells


def _targets(y: Tensor, direction: float, log_transform: bool | None) -> tuple[Tensor, float]:
    """Model targets (``n x 1``, larger is better) and the log sign, by the rule of the continuous path."""
    log_sign = 1.0 if bool((y > 0).all()) else -1.0 if bool((y < 0).all()) else 0.0
    if log_transform is None:
        magnitude = y.abs()
        use_log = bool(log_sign) and float(magnitude.max() / magnitude.min()) > LOG_SPAN
    else:
        use_log = log_transform and bool(log_sign)
    if not use_log:
        return (direction * y).unsqueeze(-1), 0.0
    return (direction * log_sign * torch.log(log_sign * y)).unsqueeze(-1), log_sign


def fit_mixed(
    mixed: MixedSpace, x: Tensor, y: Tensor, log_transform: bool | None, *, direction: float | None = None
) -> _Fitted:
    """Fit the GP (mixed kernel when there are categorical inputs); raises a numerical error on failure.

    Args:
        mixed: The mixed design space.
        x: Model inputs, ``n x input_dim`` (see :meth:`MixedSpace.encode`).
        y: Values, ``n``, in the quantity's unit.
        log_transform: Force (True) or forbid (False) the log scale; None applies the rule of
            :func:`tools.optimise.propose`.
        direction: +1 when larger values are better, -1 when smaller are; None takes the direction
            of the spec's primary objective.
    """
    if direction is None:
        direction = 1.0 if mixed.spec.primary_objective.direction == "maximise" else -1.0
    targets, log_sign = _targets(y, direction, log_transform)
    d = mixed.dim
    normalize = Normalize(mixed.input_dim, indices=list(range(d)), bounds=mixed.space.bounds) if d else None
    if d and mixed.spec.descriptors:  # the spec refuses descriptors with categories: no cat_dims here
        normalize = descriptor_inputs(mixed.space, x)
    options = {}
    if mixed.cat_dims:
        model = MixedSingleTaskGP(
            x, targets, cat_dims=mixed.cat_dims, input_transform=normalize, outcome_transform=Standardize(m=1)
        )
        options = {"optimizer_kwargs": {"options": {"maxiter": _MIXED_FIT_ITERATIONS}}}
    else:
        model = SingleTaskGP(x, targets, input_transform=normalize, outcome_transform=Standardize(m=1))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model), **options)
    model.eval()
    return _Fitted(model, direction, log_sign)


# ------------------------------------------------------------------------------------------- search
def _acquisition(
    fitted: _Fitted, x: Tensor, pending: Tensor, seed: int, mc_samples: int
) -> AcquisitionFunction:
    return qLogNoisyExpectedImprovement(
        fitted.model,
        X_baseline=x,
        sampler=SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed),
        X_pending=pending if pending.shape[0] else None,
        prune_baseline=True,
    )


def _score(acqf: AcquisitionFunction, x: Tensor) -> Tensor:
    """Acquisition value of each of ``m x input_dim`` points on its own (shape ``m``)."""
    with torch.no_grad():
        return torch.cat([acqf(chunk.unsqueeze(-2)) for chunk in x.split(_CHUNK)]) if len(x) else x[:, 0]


def _too_close(mixed: MixedSpace, point: Tensor, others: Tensor) -> bool:
    """Whether ``point`` lies within :data:`DUPLICATE_DISTANCE` of one of ``others`` with the same choices."""
    if others.shape[0] == 0:
        return False
    d = mixed.dim
    same = (others[:, d:] == point[d:]).all(dim=-1)
    if d == 0:
        return bool(same.any())
    gap = (mixed.space.normalise(others[:, :d]) - mixed.space.normalise(point[:d])).abs().max(dim=-1).values
    return bool((same & (gap < DUPLICATE_DISTANCE)).any())


def _optimise_cell(
    mixed: MixedSpace, acqf: AcquisitionFunction, cell: Cell, starts: Tensor, num_restarts: int
) -> tuple[Tensor, Tensor | None]:
    """The acquisition optimum on one cell's face, from the best screening samples.

    Returns:
        The optimum projected onto the face, and the optimiser's own output, both ``input_dim``
        (no output when the face is a single point: there is nothing to optimise).
    """
    face = cell.face
    if face.dim == 0:
        return mixed.lift(cell, torch.zeros(1, 0, dtype=DTYPE))[0], None
    columns, values = mixed.fixed_columns(cell)
    on_face = FixedFeatureAcquisitionFunction(acqf, mixed.input_dim, columns, values) if columns else acqf
    free = [j for j in range(mixed.input_dim) if j not in columns]
    initial = starts[:num_restarts][:, free].unsqueeze(-2)
    candidate, _ = optimize_acqf(
        on_face,
        bounds=face.bounds,
        q=1,
        num_restarts=initial.shape[0],
        batch_initial_conditions=initial,
        equality_constraints=face.equality_constraints or None,
        inequality_constraints=face.inequality_constraints or None,
        options={"maxiter": _CELL_ITERATIONS},
        retry_on_optimization_warning=False,
    )
    raw = candidate.detach().reshape(1, face.dim)
    return mixed.lift(cell, face.project(raw))[0], mixed.lift(cell, raw)[0]


def _screen(mixed: MixedSpace, cells: list[Cell], raw_samples: int, seed: int) -> tuple[Tensor, Tensor]:
    """Hit-and-run samples on every cell's face as model inputs, and the cell of each row."""
    per_cell = min(_SCREEN_MAX, max(_SCREEN_MIN, (_SCREEN_TOTAL * raw_samples // 64) // len(cells)))
    generator = torch.Generator().manual_seed(seed)
    rows, owners = [], []
    for index, cell in enumerate(cells):
        cell_seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        samples = cell.face.sample(per_cell, cell_seed) if cell.face.dim else torch.zeros(1, 0, dtype=DTYPE)
        lifted = mixed.lift(cell, samples)
        rows.append(lifted)
        owners += [index] * lifted.shape[0]
    return torch.cat(rows), torch.tensor(owners)


def greedy_cell_picks(
    mixed: MixedSpace,
    build: Callable[[Tensor], AcquisitionFunction],
    cells: list[Cell],
    x: Tensor,
    pending_x: Tensor,
    n: int,
    seed: int,
    num_restarts: int,
    raw_samples: int,
    top_cells: int,
    *,
    lazy: bool = False,
) -> list[CellPick]:
    """Greedy picks: screen every cell, optimise the best, snap, re-score, skip near-duplicates.

    Args:
        mixed: The mixed design space.
        build: The acquisition function (of ``b x 1 x input_dim`` inputs) given the points to treat
            as pending (``p x input_dim``: the pending ones, then the earlier picks).
        cells: The cells to search (:meth:`MixedSpace.cells`).
        x: Measured model inputs, ``m x input_dim``; picks keep away from them.
        pending_x: Pending model inputs, ``p x input_dim``; picks keep away from them.
        n: Number of picks.
        seed: Seed of the screening samples.
        num_restarts: Starting points of the gradient optimisation per optimised cell.
        raw_samples: Scales the screening: ``16 * raw_samples`` samples shared among the cells.
        top_cells: Cells optimised by gradient per pick, the best by screening.
        lazy: After the first pick, re-score only the screening samples that could still decide the
            pick (see :func:`_rescore`). Valid when the acquisition can only fall as pending points
            are added, as expected (hypervolume) improvement does.

    Returns:
        ``n`` admissible picks in the order they were made.
    """
    samples, owners = _screen(mixed, cells, raw_samples, seed)
    picks: list[CellPick] = []
    values = None
    for _ in range(n):
        taken_pending = torch.cat([pending_x, *(p.x.unsqueeze(0) for p in picks)])
        acqf = build(taken_pending)
        if lazy and values is not None:
            values = _rescore(acqf, samples, owners, values, top_cells, num_restarts)
        else:
            values = _score(acqf, samples).nan_to_num(nan=-math.inf)
        if not bool(torch.isfinite(values).any()):
            raise ValueError("the acquisition function is not finite on any screening sample")
        best_per_cell = torch.full((len(cells),), -math.inf, dtype=DTYPE).scatter_reduce(
            0, owners, values, reduce="amax"
        )
        candidates: list[_Candidate] = []
        for index in torch.argsort(best_per_cell, descending=True)[:top_cells].tolist():
            mine = torch.nonzero(owners == index).flatten()
            starts = samples[mine[torch.argsort(values[mine], descending=True)]]
            candidate, raw = _optimise_cell(mixed, acqf, cells[index], starts, num_restarts)
            candidates.append((candidate, index, "optimised", raw))
        order = torch.argsort(values, descending=True).tolist()
        candidates += [(samples[i], int(owners[i]), "screened", None) for i in order[:_SNAPPED_EXTRA]]
        taken = torch.cat([x, taken_pending])
        pick = _best_admissible(mixed, acqf, cells, candidates, taken)
        if pick is None:
            rest = [(samples[i], int(owners[i]), "screened", None) for i in order[_SNAPPED_EXTRA:]]
            pick = _best_admissible(mixed, acqf, cells, rest, taken)
        if pick is None:
            pick = _best_admissible(
                mixed, acqf, cells, candidates, torch.zeros(0, mixed.input_dim, dtype=DTYPE)
            )
            if pick is None:
                raise ValueError("no candidate could be snapped onto an admissible point")
            pick.note = "repeat"
        picks.append(pick)
    return picks


def _rescore(
    acqf: AcquisitionFunction,
    samples: Tensor,
    owners: Tensor,
    bound: Tensor,
    top_cells: int,
    num_restarts: int,
) -> Tensor:
    """Screening values under a new acquisition, given ``bound``: each sample's value at the previous pick.

    With one more pending point the expected (hypervolume) improvement of a point can only fall, so
    ``bound`` is an upper bound. Samples are re-scored best bound first, :data:`_LAZY_CHUNK` at a time,
    until the samples that decide the pick (the best :data:`_SNAPPED_EXTRA`, and the best
    ``num_restarts`` of each of the ``top_cells`` best cells: the cells optimised and their starting
    points) all have fresh values; the others keep their bounds.
    """
    values = bound.clone()
    fresh = torch.zeros(len(values), dtype=torch.bool)
    while not bool(fresh.all()):
        order = torch.argsort(values, descending=True)
        leading: dict[int, list[int]] = {}  # cell to its best samples, best cells first
        for i in order.tolist():
            mine = leading.setdefault(int(owners[i]), [])
            if len(mine) < num_restarts:
                mine.append(i)
        decisive = order[:_SNAPPED_EXTRA].tolist()
        for mine in list(leading.values())[:top_cells]:
            decisive += mine
        if bool(fresh[decisive].all()):
            break
        stale = order[~fresh[order]][:_LAZY_CHUNK]
        values[stale] = _score(acqf, samples[stale]).nan_to_num(nan=-math.inf)
        fresh[stale] = True
    return values


def _best_admissible(
    mixed: MixedSpace,
    acqf: AcquisitionFunction,
    cells: list[Cell],
    candidates: list[_Candidate],
    taken: Tensor,
) -> CellPick | None:
    """Snap candidates, score the snapped points and return the best one away from ``taken``."""
    snapped: list[tuple[Tensor, MixedPoint, str, Tensor | None]] = []
    seen = set()
    for candidate, index, how, raw in candidates:
        point = mixed.snap(cells[index], candidate)
        if point is None:
            continue
        key = (tuple(point.composition.values()), tuple(point.choices.items()))
        if key in seen:
            continue
        seen.add(key)
        snapped.append((mixed.encode([point])[0], point, how, raw))
    if not snapped:
        return None
    scores = _score(acqf, torch.stack([s[0] for s in snapped]))
    for i in torch.argsort(scores.nan_to_num(nan=-math.inf), descending=True).tolist():
        row, point, how, raw = snapped[i]
        if not _too_close(mixed, row, taken):
            return CellPick(row, point, float(scores[i]), how, raw)
    return None


# ------------------------------------------------------------------------------------------- output
def _describe(mixed: MixedSpace, fitted: _Fitted, picks: list[CellPick], n_cells: int) -> list[Suggestion]:
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


def searched_cells(mixed: MixedSpace, n_cells: int) -> str:
    """What a search over ``n_cells`` cells covered, e.g. ``10 subsets of components x 3 combinations``."""
    parts = []
    if mixed.spec.max_active_components is not None and mixed.n_subsets > 1:
        parts.append(f"{mixed.n_subsets} subsets of components")
    if mixed.spec.categories:
        parts.append(f"{mixed.n_combinations} combinations of choices")
    if not parts:
        return "the design space"
    total = mixed.n_subsets * mixed.n_combinations
    sampled = f" ({n_cells} of {total} searched)" if n_cells < total else ""
    return " x ".join(parts) + sampled


def mixed_suggestion(
    mixed: MixedSpace,
    point: MixedPoint,
    rationale: str,
    *,
    source: str,
    predicted: tuple[float, float] | None = None,
    acquisition_value: float | None = None,
    model_inputs: Sequence[str] = (),
    raw_candidate: Tensor | None = None,
) -> Suggestion:
    """A checked :class:`Suggestion` for an admissible point, saying what it holds and sits on.

    ``raw_candidate`` is the optimiser's output the point was snapped from (``input_dim`` model
    inputs), kept unrepaired; ``model_inputs`` the model's input columns (see :class:`Suggestion`).
    """
    spec = mixed.spec
    problems = spec.violations(point.composition, choices=point.choices)
    if problems:
        raise ValueError(f"proposal breaks the spec: {'; '.join(problems)}")
    present = list(mixed.present_in(point.composition))
    x = mixed.space.to_tensor([point.composition])[0]
    labels, phrases = [], []
    absent = set(spec.component_names) - set(present)
    for label, phrase in zip(mixed.space.active_constraints(x), mixed.space.active_phrases(x), strict=True):
        if any(label.startswith(f"{name} >= ") for name in absent):
            continue  # an absent component sits on its zero bound by choice, not as a constraint
        labels.append(label)
        phrases.append(phrase)
    k = spec.max_active_components
    notes = []
    if k is not None:
        notes.append(f"components {', '.join(present)} ({len(present)} of at most {k})")
        if len(present) == k and len(mixed.optional) > mixed.choose:
            labels.append(f"max_active_components = {k}")
    if point.choices:
        notes.append(", ".join(f"{name}={choice}" for name, choice in point.choices.items()))
    if spec.resolution is not None:
        notes.append(f"on the {spec.resolution:g} grid")
    rationale = "; ".join([rationale, *notes, *([", ".join(phrases)] if phrases else [])])
    return Suggestion(
        composition=point.composition,
        predicted_mean=predicted[0] if predicted else None,
        predicted_std=predicted[1] if predicted else None,
        acquisition_value=acquisition_value,
        rationale=rationale,
        active_constraints=labels,
        source="model" if source == "model" else "initial",
        active_components=present,
        choices=dict(point.choices),
        model_inputs=list(model_inputs),
        raw_candidate=None if raw_candidate is None else mixed.decode(raw_candidate)[0].composition,
    )
