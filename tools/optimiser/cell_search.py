"""The search of the mixed design space, cell by cell (shared by the mixed strategies).

A cell is a subset of present components with one combination of choices (see
:mod:`tools.mixed_space`). Every cell's face is screened with hit-and-run samples scored in one
batch (:func:`screen`, :func:`score`), and only the ``top_cells`` best cells are optimised with
``optimize_acqf`` (the cell's pinned zeros and choices held fixed with
``FixedFeatureAcquisitionFunction``; sum rule and linear constraints of the face as constraints).
Screening costs one batched acquisition call however many cells there are, which is what lets the
search cover every subset; optimising every cell (as ``optimize_acqf_mixed`` over a
``fixed_features_list`` of all cells would) costs a full optimisation per cell. A batch of ``q``
points is built greedily (:func:`greedy_cell_picks`): each pick joins the pending points the next
acquisition conditions on.

Each optimum is snapped to the grid (:func:`tools.grid.snap_to_grid`) and the acquisition is scored
again on the snapped points together with the best screening samples, also snapped; the best one
that is not a near-duplicate (within :data:`tools.optimiser.data.DUPLICATE_DISTANCE` of a measured,
pending or already picked point with the same choices) is taken.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import botorch.optim
import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.acquisition.fixed_feature import FixedFeatureAcquisitionFunction
from torch import Tensor

from tools.design_space import DTYPE
from tools.mixed_space import Cell, MixedPoint, MixedSpace
from tools.optimiser.data import near_duplicates

__all__ = ["CellPick", "greedy_cell_picks", "rescore", "score", "screen"]

#: Hit-and-run samples scored per proposal, shared among the cells, and the per-cell floor/ceiling.
_SCREEN_TOTAL, _SCREEN_MIN, _SCREEN_MAX = 1024, 8, 128
#: Screening samples (best first) snapped and re-scored next to the optimised points.
_SNAPPED_EXTRA = 16
#: Acquisition evaluations per batched call.
_CHUNK = 512
#: Screening samples re-scored per round of a lazy re-screen (:func:`rescore`).
_LAZY_CHUNK = 128
#: Iterations of the gradient optimisation on one cell (all restarts together). On a 6-element, k = 3,
#: 1 % grid with 30 observations, 50 and 100 gave the same batches; the grid is coarser than the gain.
_CELL_ITERATIONS = 50

#: A point to snap: model input (``input_dim``), its cell's index, how it was found, and the
#: optimiser's own output it came from (None when no optimiser ran, see :class:`CellPick`).
_Candidate = tuple[Tensor, int, str, Tensor | None]
#: Maximises an acquisition: BoTorch's ``optimize_acqf`` or a function with its signature.
Maximiser = Callable[..., Any]


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


def _too_close(mixed: MixedSpace, point: Tensor, others: Tensor) -> bool:
    """Whether ``point`` is a near-duplicate of one of ``others`` (``k x input_dim``), same choices."""
    d = mixed.dim
    same = (others[:, d:] == point[d:]).all(dim=-1).unsqueeze(0)
    return bool(near_duplicates(mixed.space, point[:d].unsqueeze(0), others[:, :d], same)[0])


def score(acqf: AcquisitionFunction, x: Tensor) -> Tensor:
    """Acquisition value of each of ``m x input_dim`` points on its own (shape ``m``)."""
    with torch.no_grad():
        return torch.cat([acqf(chunk.unsqueeze(-2)) for chunk in x.split(_CHUNK)]) if len(x) else x[:, 0]


def _optimise_cell(
    mixed: MixedSpace,
    acqf: AcquisitionFunction,
    cell: Cell,
    starts: Tensor,
    num_restarts: int,
    optimize: Maximiser,
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
    candidate, _ = optimize(
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


def screen(mixed: MixedSpace, cells: list[Cell], raw_samples: int, seed: int) -> tuple[Tensor, Tensor]:
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
    optimize: Maximiser = botorch.optim.optimize_acqf,
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
            pick (see :func:`rescore`). Valid when the acquisition can only fall as pending points
            are added, as expected (hypervolume) improvement does.
        optimize: Maximises the acquisition on a cell's face (BoTorch's ``optimize_acqf`` by default).

    Returns:
        ``n`` admissible picks in the order they were made.
    """
    samples, owners = screen(mixed, cells, raw_samples, seed)
    picks: list[CellPick] = []
    values = None
    for _ in range(n):
        taken_pending = torch.cat([pending_x, *(p.x.unsqueeze(0) for p in picks)])
        acqf = build(taken_pending)
        if lazy and values is not None:
            values = rescore(acqf, samples, owners, values, top_cells, num_restarts)
        else:
            values = score(acqf, samples).nan_to_num(nan=-math.inf)
        if not bool(torch.isfinite(values).any()):
            raise ValueError("the acquisition function is not finite on any screening sample")
        best_per_cell = torch.full((len(cells),), -math.inf, dtype=DTYPE).scatter_reduce(
            0, owners, values, reduce="amax"
        )
        candidates: list[_Candidate] = []
        for index in torch.argsort(best_per_cell, descending=True)[:top_cells].tolist():
            mine = torch.nonzero(owners == index).flatten()
            starts = samples[mine[torch.argsort(values[mine], descending=True)]]
            candidate, raw = _optimise_cell(mixed, acqf, cells[index], starts, num_restarts, optimize)
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


def rescore(
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
        values[stale] = score(acqf, samples[stale]).nan_to_num(nan=-math.inf)
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
    scores = score(acqf, torch.stack([s[0] for s in snapped]))
    for i in torch.argsort(scores.nan_to_num(nan=-math.inf), descending=True).tolist():
        row, point, how, raw = snapped[i]
        if not _too_close(mixed, row, taken):
            return CellPick(row, point, float(scores[i]), how, raw)
    return None
