"""The mixed design space: which components are present, categorical process choices, a grid.

A spec may add three things to the continuous constrained simplex of :mod:`tools.design_space`:

- ``max_active_components = k``: at most ``k`` components are non-zero. Components that every
  feasible composition contains (a positive bound, or one the constraints imply) always count; of the
  others (*optional* components) ``s = k - always present`` may be chosen. Since an optional
  component may still be 0 inside a subset, subsets of exactly ``s`` optional components cover every
  composition with fewer. Each subset is a *face*: the other optional components are pinned at 0 and
  the face is a :class:`DesignSpace` of its own (bounds tightened by LP, sum rule and linear
  constraints on the rest). Faces that admit no composition are dropped.
- ``categories``: each combination of choices is a fixed setting of integer-coded inputs.
- ``resolution``: amounts are snapped to the grid after optimisation (:func:`tools.grid.snap_to_grid`).

A *cell* is one face with one combination of choices. When there are at most :data:`MAX_CELLS`
cells they are all used. Otherwise :data:`MAX_CELLS` are drawn: the cells of the best observations
first (their present components and choices), the rest at random, so that the work per proposal stays
bounded however many elements there are to choose from (C(20, 4) = 4845 subsets).

The optimiser's inputs are the unit fractions of the continuous space's free components followed by
one integer code per categorical variable (the index of the choice); :meth:`MixedSpace.encode` and
:meth:`MixedSpace.decode` map between them and compositions with choices.

:func:`mixed_initial_design` is the space-filling design on this space: a pool of points drawn by
hit-and-run on every cell's face and snapped to the grid, from which points are picked by greedy
maximin distance (component ranges normalised; two different choices of a variable are as far apart
as a component's full range).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from athanor.errors import SpecError
from athanor.models import Observation
from athanor.spec import CampaignSpec, Component
from tools.design_space import DTYPE, FIXED_WIDTH, DesignSpace, design_space
from tools.grid import snap_to_grid
from tools.initial_design import maximin_indices

__all__ = [
    "MAX_CELLS",
    "Cell",
    "MixedPoint",
    "MixedSpace",
    "mixed_initial_design",
    "mixed_space",
    "needs_mixed_space",
    "observed_points",
    "pending_mixed_points",
]

#: Most cells (subset of present components x combination of choices) used per proposal.
MAX_CELLS = 64
#: Observations whose cells are always among the cells used, best first.
_BEST_CELLS = 8
#: Pool points per requested initial point, and the pool's floor and ceiling.
_POOL_PER_POINT, _POOL_MIN, _POOL_MAX = 64, 512, 4096
#: An amount below this fraction of the total is read as 0 (present components, model inputs).
_ZERO = 1e-9


def needs_mixed_space(spec: CampaignSpec) -> bool:
    """Whether ``spec`` limits the present components, has categorical choices or a grid."""
    return spec.max_active_components is not None or spec.resolution is not None or bool(spec.categories)


class MixedPoint(BaseModel):
    """A composition with its categorical choices.

    Attributes:
        composition: Component name to amount in the spec's unit, in spec order.
        choices: Categorical variable name to the chosen option (empty without categories).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    composition: dict[str, float]
    choices: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Cell:
    """One face of the design space with one combination of categorical choices.

    Attributes:
        present: Components that may be non-zero on this face, in spec order.
        face: The face's continuous design space (the other components pinned at 0).
        codes: Index of the chosen option of each categorical variable, in spec order.
    """

    present: tuple[str, ...]
    face: DesignSpace
    codes: tuple[int, ...]


@dataclass(eq=False)
class MixedSpace:
    """A spec's mixed design space; build it with :func:`mixed_space`.

    Attributes:
        spec: The campaign spec.
        space: The continuous design space without the cardinality limit (the model's coordinates).
        always: Components present in every feasible composition (pinned above 0 or bounded away
            from 0 by the bounds and constraints).
        optional: Components that may be 0 or not.
        choose: How many optional components one face holds (``len(optional)`` without a limit).
    """

    spec: CampaignSpec
    space: DesignSpace
    always: tuple[str, ...]
    optional: tuple[str, ...]
    choose: int
    _faces: dict[tuple[str, ...], DesignSpace | None] = field(default_factory=dict, repr=False)

    # ----------------------------------------------------------------------------- sizes
    @property
    def dim(self) -> int:
        """Number of continuous inputs ``d`` (free components of :attr:`space`)."""
        return self.space.dim

    @property
    def input_dim(self) -> int:
        """Number of model inputs: ``d`` continuous plus one per categorical variable."""
        return self.space.dim + len(self.spec.categories)

    @property
    def input_names(self) -> list[str]:
        """Names of the model inputs: the free components of :attr:`space`, then the categorical variables."""
        return [*self.space.names, *(v.name for v in self.spec.categories)]

    @property
    def cat_dims(self) -> list[int]:
        """Indices of the categorical inputs."""
        return list(range(self.space.dim, self.input_dim))

    @property
    def n_subsets(self) -> int:
        """How many subsets of optional components there are to choose from."""
        return math.comb(len(self.optional), self.choose)

    @property
    def n_combinations(self) -> int:
        """How many combinations of categorical choices there are."""
        return math.prod(len(v.choices) for v in self.spec.categories)

    # ----------------------------------------------------------------------------- cells
    def face(self, chosen: Sequence[str]) -> DesignSpace | None:
        """The face on which ``chosen`` optional components may be non-zero (None if it is empty)."""
        key = tuple(n for n in self.optional if n in set(chosen))
        if key not in self._faces:
            self._faces[key] = self._build_face(key)
        return self._faces[key]

    def _build_face(self, chosen: tuple[str, ...]) -> DesignSpace | None:
        if len(chosen) == len(self.optional):
            return self.space
        off = set(self.optional) - set(chosen)
        components = [
            Component(name=c.name, lower=0.0, upper=0.0, unit=c.unit) if c.name in off else c
            for c in self.spec.components
        ]
        face_spec = self.spec.model_copy(
            update={
                "components": components,
                "max_active_components": None,
                "resolution": None,
                "categories": [],
            }
        )
        try:
            return design_space(face_spec)
        except SpecError:
            return None

    def present_in(self, composition: dict[str, float]) -> tuple[str, ...]:
        """Components with a non-zero amount, in spec order."""
        zero = _ZERO * self.spec.unit_scale
        return tuple(n for n in self.spec.component_names if composition.get(n, 0.0) > zero)

    def cells(self, seed: int, prefer: Sequence[tuple[Sequence[str], tuple[int, ...]]] = ()) -> list[Cell]:
        """The cells to search: all of them, or :data:`MAX_CELLS` with the ``prefer`` ones first.

        Args:
            seed: Seed of the draw when there are more than :data:`MAX_CELLS` cells.
            prefer: ``(present components, choice codes)`` of cells to include first (e.g. those of
                the best observations); present components beyond one face's worth are dropped.

        Returns:
            Cells whose face admits a composition; at least one.
        """
        total = self.n_subsets * self.n_combinations
        keys: list[tuple[tuple[str, ...], tuple[int, ...]]] = []
        if total <= MAX_CELLS:
            subsets = itertools.combinations(self.optional, self.choose)
            keys = [(s, c) for s in subsets for c in self._combinations()]
        else:
            rng = np.random.default_rng(seed)
            for present, codes in prefer:
                keys.append((self._complete(present, rng), tuple(codes)))
            tries = 0
            while len(set(keys)) < MAX_CELLS and tries < 20 * MAX_CELLS:
                tries += 1
                picked = rng.choice(len(self.optional), self.choose, replace=False)
                subset = tuple(self.optional[i] for i in sorted(picked))
                codes = tuple(int(rng.integers(len(v.choices))) for v in self.spec.categories)
                keys.append((subset, codes))
            keys = list(dict.fromkeys(keys))[:MAX_CELLS]
        cells = []
        for subset, codes in keys:
            face = self.face(subset)
            if face is not None:
                cells.append(Cell(self._present(subset), face, codes))
        if not cells:
            raise SpecError(
                "no subset of components admits a composition; raise max_active_components or relax"
                " the bounds and constraints"
            )
        return cells

    def _combinations(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*(range(len(v.choices)) for v in self.spec.categories)))

    def _present(self, subset: Sequence[str]) -> tuple[str, ...]:
        keep = set(self.always) | set(subset)
        return tuple(n for n in self.spec.component_names if n in keep)

    def _complete(self, present: Sequence[str], rng: np.random.Generator) -> tuple[str, ...]:
        """``present``'s optional components, topped up at random (or cut) to one face's worth."""
        chosen = [n for n in self.optional if n in set(present)][: self.choose]
        others = [n for n in self.optional if n not in chosen]
        extra = rng.choice(len(others), self.choose - len(chosen), replace=False) if others else []
        chosen += [others[i] for i in extra]
        return tuple(n for n in self.optional if n in set(chosen))

    # ----------------------------------------------------------------------------- coordinates
    def lift(self, cell: Cell, x_face: Tensor) -> Tensor:
        """Map ``n x face.dim`` points of a cell's face to ``n x input_dim`` model inputs."""
        face = cell.face
        x_face = x_face.unsqueeze(0) if x_face.ndim == 1 else x_face
        out = torch.zeros(x_face.shape[0], self.input_dim, dtype=DTYPE)
        for j, name in enumerate(self.space.names):
            if name in face.names:
                out[:, j] = x_face[:, face.names.index(name)]
            else:
                out[:, j] = face.fixed.get(name, 0.0)
        out[:, self.space.dim :] = torch.tensor(cell.codes, dtype=DTYPE)
        return out

    def fixed_columns(self, cell: Cell) -> tuple[list[int], list[float]]:
        """Model inputs that a cell fixes (pinned components, choices) and their values."""
        columns, values = [], []
        for j, name in enumerate(self.space.names):
            if name not in cell.face.names:
                columns.append(j)
                values.append(float(cell.face.fixed.get(name, 0.0)))
        for j, code in enumerate(cell.codes):
            columns.append(self.space.dim + j)
            values.append(float(code))
        return columns, values

    def codes_of(self, choices: dict[str, str]) -> tuple[int, ...] | None:
        """Choice codes for ``choices``, or None when one is missing or not an option."""
        codes = []
        for variable in self.spec.categories:
            chosen = choices.get(variable.name)
            if chosen not in variable.choices:
                return None
            codes.append(variable.choices.index(chosen))
        return tuple(codes)

    def choices_of(self, codes: Sequence[float]) -> dict[str, str]:
        """The options that choice codes stand for."""
        return {
            v.name: v.choices[round(float(code))] for v, code in zip(self.spec.categories, codes, strict=True)
        }

    def encode(self, points: Sequence[MixedPoint]) -> Tensor:
        """Model inputs (``n x input_dim``) for points; their choices must be valid.

        Raises:
            SpecError: A point lacks a component or a valid choice.
        """
        if not points:
            return torch.zeros(0, self.input_dim, dtype=DTYPE)
        x = self.space.to_tensor([p.composition for p in points])
        codes = []
        for i, point in enumerate(points):
            code = self.codes_of(point.choices)
            if code is None:
                problems = "; ".join(self.spec.choice_problems(point.choices))
                raise SpecError(f"point {i}: {problems}")
            codes.append(code)
        return torch.cat([x, torch.tensor(codes, dtype=DTYPE).reshape(len(points), -1)], dim=-1)

    def decode(self, x: Tensor) -> list[MixedPoint]:
        """Points for ``n x input_dim`` model inputs (no snapping)."""
        x = x.reshape(-1, self.input_dim)
        compositions = self.space.to_compositions(x[:, : self.space.dim])
        return [
            MixedPoint(composition=c, choices=self.choices_of(row[self.space.dim :].tolist()))
            for c, row in zip(compositions, x, strict=True)
        ]

    def features(self, x: Tensor) -> Tensor:
        """``n x input_dim`` inputs as features for distances: normalised amounts, scaled one-hot choices."""
        x = x.reshape(-1, self.input_dim)
        parts = [self.space.normalise(x[:, : self.space.dim])]
        for j, variable in enumerate(self.spec.categories):
            codes = x[:, self.space.dim + j].round().long()
            parts.append(torch.nn.functional.one_hot(codes, len(variable.choices)).to(DTYPE) / math.sqrt(2))
        return torch.cat(parts, dim=-1)

    # ----------------------------------------------------------------------------- snapping
    def snap(self, cell: Cell, x: Tensor) -> MixedPoint | None:
        """The admissible point for one model input on a cell (snapped to the grid), or None.

        Without a grid, amounts below a billionth of the total are set to 0 (the largest amount
        takes up the difference). The result meets the whole spec, or None is returned.
        """
        point = self.decode(x)[0]
        composition = dict(point.composition)
        if self.spec.resolution is not None:
            snapped = snap_to_grid(self.spec, composition, cell.present)
            if snapped is None:
                return None
            composition = snapped
        else:
            zero = _ZERO * self.spec.unit_scale
            tiny = {n: v for n, v in composition.items() if 0.0 < v <= zero or n not in cell.present}
            if tiny:
                largest = max(composition, key=lambda n: composition[n])
                for name, value in tiny.items():
                    composition[name] = 0.0
                    if self.spec.sum_rule is not None:
                        composition[largest] += value
        if self.spec.violations(composition, choices=point.choices):
            return None
        return MixedPoint(composition=composition, choices=point.choices)

    # ----------------------------------------------------------------------------- sampling
    def pool(self, cells: Sequence[Cell], size: int, seed: int) -> tuple[list[MixedPoint], list[int]]:
        """About ``size`` distinct admissible points drawn by hit-and-run over the cells, snapped.

        Returns:
            The points and, for each, the index of its cell.
        """
        per_cell = max(4, math.ceil(size / len(cells)))
        rng = np.random.default_rng(seed)
        points: list[MixedPoint] = []
        owners: list[int] = []
        seen: set[tuple[tuple[float, ...], tuple[tuple[str, str], ...]]] = set()
        for index, cell in enumerate(cells):
            raw = cell.face.sample(per_cell, int(rng.integers(2**31)))
            for row in self.lift(cell, raw):
                point = self.snap(cell, row)
                if point is None:
                    continue
                key = (tuple(point.composition.values()), tuple(point.choices.items()))
                if key in seen:
                    continue
                seen.add(key)
                points.append(point)
                owners.append(index)
        return points, owners


def mixed_space(spec: CampaignSpec) -> MixedSpace:
    """Build the mixed design space of ``spec`` (see the module docstring)."""
    space = design_space(spec)
    always, optional = [], []
    lower = dict(zip(space.names, space.bounds[0].tolist(), strict=True))
    for name in spec.component_names:
        if name in space.fixed:
            if space.fixed[name] > FIXED_WIDTH:
                always.append(name)
        elif lower[name] > FIXED_WIDTH:
            always.append(name)
        else:
            optional.append(name)
    k = spec.max_active_components
    choose = len(optional) if k is None else max(0, min(len(optional), k - len(always)))
    return MixedSpace(spec, space, tuple(always), tuple(optional), choose)


def mixed_initial_design(
    spec: CampaignSpec,
    n: int,
    seed: int,
    *,
    avoid: Sequence[MixedPoint] = (),
) -> list[MixedPoint]:
    """A seeded space-filling design of ``n`` admissible points on the mixed space.

    Args:
        spec: The campaign spec.
        n: Number of points.
        seed: Seed; the same seed gives the same design.
        avoid: Points already measured or planned, to stay away from (their choices may be empty).

    Returns:
        ``n`` points, each meeting ``spec.violations(p.composition, choices=p.choices) == []``: at
        most ``max_active_components`` non-zero amounts, on the grid, valid choices. When the space
        holds fewer than ``n`` distinct points, they repeat.

    Raises:
        SpecError: ``n`` is negative.
    """
    if n < 0:
        raise SpecError(f"initial design size n={n} is negative; ask for 0 or more compositions")
    if n == 0:
        return []
    mixed = mixed_space(spec)
    cells = mixed.cells(seed)
    size = min(max(_POOL_MIN, _POOL_PER_POINT * n), _POOL_MAX)
    points, _ = mixed.pool(cells, size, seed)
    if not points:
        raise SpecError("no admissible composition was found; relax the bounds, constraints or grid")
    existing = None
    if avoid:
        existing = mixed.features(_encode_loosely(mixed, avoid))
    picks = maximin_indices(mixed.features(mixed.encode(points)), n, existing)
    return [points[picks[i % len(picks)]] for i in range(n)]


def _encode_loosely(mixed: MixedSpace, points: Sequence[MixedPoint]) -> Tensor:
    """Model inputs for points whose choices may be missing (code 0 stands in for them)."""
    default = {v.name: v.choices[0] for v in mixed.spec.categories}
    fixed = [
        MixedPoint(
            composition=p.composition,
            choices=p.choices if mixed.codes_of(p.choices) is not None else default,
        )
        for p in points
    ]
    return mixed.encode(fixed)


def pending_mixed_points(
    spec: CampaignSpec, pending: Sequence[dict[str, float]], pending_choices: Sequence[dict[str, str]]
) -> list[MixedPoint]:
    """The experiments still running as points of the mixed space, with their choices.

    Raises:
        SpecError: A spec with categories got a different number of choice sets than compositions.
    """
    if spec.categories and len(pending_choices) != len(pending):
        raise SpecError(
            f"{len(pending)} pending composition(s) but {len(pending_choices)} set(s) of pending choices;"
            f" give the choices ({', '.join(v.name for v in spec.categories)}) of every pending one"
        )
    choices = list(pending_choices) if spec.categories else [{} for _ in pending]
    return [MixedPoint(composition=dict(c), choices=dict(ch)) for c, ch in zip(pending, choices, strict=True)]


def observed_points(spec: CampaignSpec, observations: Sequence[Observation]) -> list[MixedPoint]:
    """Every observation as a point (composition made and choices used), to keep new points away from."""
    names = spec.component_names
    return [
        MixedPoint(composition={n: o.composition.get(n, 0.0) for n in names}, choices=dict(o.choices))
        for o in observations
    ]
