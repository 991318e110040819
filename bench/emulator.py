"""The designer's continuous optimiser on emulators of the benchmark data sets.

``athanor bench optimiser`` scores :func:`tools.optimiser.propose_from_pool` on the data sets as finite
pools. A campaign's designer instead calls :func:`tools.optimiser.propose`, which searches the spec's
box or simplex continuously. This benchmark gives that search a ground truth everywhere in the space:

- the emulator (:class:`Emulator`): an ensemble of :data:`MEMBERS` seeded scikit-learn
  ``MLPRegressor`` s (:data:`HIDDEN` tanh units, L2 weight :data:`ALPHA`, L-BFGS) fitted to the data
  set (replicates averaged by :func:`bench.pool.load_pool`; inputs scaled to the unit cube over the
  data's min and max, targets standardised); their mean is the truth ``f(x)``. Not a GP, which would
  favour a GP optimiser, and not a forest, which is piecewise constant. Its 5-fold cross-validated R²
  on the data says how faithful it is. Away from the data the network extrapolates freely (its best
  point sat on the box's edge, far from any row, on every data set), so the truth trusts it only near
  the data: ``f(x) = w m(x) + (1 - w) median(y)`` with ``w = exp(-d² / 2ℓ²)``, ``d`` the distance (unit
  cube) from ``x`` to the nearest data row and ``ℓ = TRUST_LENGTH √D`` (:data:`TRUST_LENGTH`): the
  distance at which every one of the ``D`` inputs is off by that fraction of its range. Readings
  may carry Gaussian noise (``noise`` times the data's standard deviation);
- the space (:func:`build_spec`): a :class:`CampaignSpec` with one component per input column over
  the data's min and max, and a sum rule when every row adds up to 1 or 100 (within 0.5 %);
- the scale (:class:`Scale`): ``f_best``, the emulator's best over :data:`SCALE_SAMPLES` seeded
  feasible points, the data's rows (moved onto the space) and a local polish from the best few;
  ``f_median``, its median over those samples. The score after ``i`` experiments is
  ``(best so far - f_median) / (f_best - f_median)``: 1 is the emulator's optimum, 0 a typical point
  (it can exceed 1 by a hair when a method beats the polish). "Best so far" is the emulator's
  noiseless value of the measured points, whatever the noise on the readings.

A run: :data:`N_INITIAL` seeded random feasible points (the same for every method for a seed), then
one batch of proposals per cycle (``--batch``, 1 by default; all its readings are told before the
next cycle) until the budget, initial points included. Methods (:data:`METHODS`):
``random`` (the spec's own hit-and-run sampler), ``athanor`` (``propose(spec, observations, q)``
with its defaults: qLogNEI), ``athanor-warp`` (the same with the GP's inputs warped),
``athanor-ucb`` and ``athanor-warp-ucb`` (the upper confidence bound with ``beta = 4`` instead of
qLogNEI, as the pool default scored one pick when these were run; :data:`METHOD_OPTIONS`) and
``ax`` (Ax's default model on a continuous search space, :class:`AxDesigner`; needs the optional
``ax-platform``). Reported per method: the score after 10, 20, 30 and ``budget`` experiments and the
experiments to reach a score of 0.9 and 0.95 (median, 5th and 95th percentile over seeds; a seed
that never gets there counts as ``budget + 1``), and the mean seconds per proposal call (one batch).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from linear_operator.utils.warnings import NumericalWarning
from rich.console import Console
from rich.table import Table
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold
from sklearn.neural_network import MLPRegressor

from athanor.errors import AthanorError
from athanor.models import Observation
from athanor.spec import CampaignSpec
from bench.metrics import spread
from bench.output import run_with_progress
from bench.peers import PEER_PACKAGES, require_peer
from bench.pool import Pool, load_pool
from tools.design_space import DTYPE, DesignSpace, design_space
from tools.optimiser import OptimiserOptions, propose

__all__ = [
    "ALPHA",
    "HIDDEN",
    "LEVELS",
    "MEMBERS",
    "METHODS",
    "METHOD_OPTIONS",
    "N_INITIAL",
    "SCALE_SAMPLES",
    "SCORE_AT",
    "SUM_TOLERANCE",
    "TRUST_LENGTH",
    "AthanorDesigner",
    "AxDesigner",
    "AxSpace",
    "Designer",
    "Emulator",
    "RandomDesigner",
    "Run",
    "Scale",
    "build_spec",
    "default_methods",
    "initial_points",
    "render_table",
    "run_benchmark",
    "run_cli",
    "run_method",
    "safe_names",
    "sum_rule_total",
    "summarise",
]

#: MLPs in the emulator's ensemble.
MEMBERS = 5
#: Hidden layers of each MLP. With tanh units and the weight below, the ensemble's 5-fold CV R² was
#: 0.69 (P3HT/CNT), 0.91 (AgNP), 0.92 (colours), 0.95 (Suzuki), each fit well under a second.
HIDDEN = (16, 16)
#: Trust length of the emulator per input, as a fraction of the input's range (``ℓ = 0.07 √D``, 0.16
#: in 5 dimensions). A typical random point lies 0.2 (Suzuki) to 0.39 (AgNP) from the nearest row of
#: a benchmark set, where the network's value weighs 0.43 to 0.04. (A length set by the rows' own
#: spacing would not do: the P3HT/CNT rows come in tight clusters, which would leave spikes on a flat
#: floor.)
TRUST_LENGTH = 0.07
#: L2 weight of each MLP (scikit-learn's ``alpha``); smaller ones overfitted the small data sets.
ALPHA = 0.3
#: Folds of the emulator's cross-validation.
CV_FOLDS = 5
#: Seeded feasible points the scale (``f_best``, ``f_median``) is computed on.
SCALE_SAMPLES = 20_000
#: Best points polished locally for ``f_best``.
POLISH_STARTS = 5
#: Random initial points per seed, shared by every method.
N_INITIAL = 2
#: Experiment counts at which the score is reported (the budget is added).
SCORE_AT = (10, 20, 30)
#: Scores whose experiments-to-reach are reported.
LEVELS = (0.9, 0.95)
#: Rows must add up to the same total within this fraction of it for the spec to get a sum rule.
SUM_TOLERANCE = 0.005
#: Seed offsets of the initial points and of the random method's points (distinct streams).
_INITIAL_STREAM, _RANDOM_STREAM = 10_000_000, 20_000_000
_AX_OBJECTIVE = "objective"


# ------------------------------------------------------------------------------------------ the space
def safe_names(headers: Sequence[str], taken: Sequence[str] = ()) -> dict[str, str]:
    """Valid, distinct spec names for CSV headers: units in brackets dropped, other symbols to ``_``.

    ``"P3HT content (%)"`` becomes ``P3HT_content``, ``"Qtot(uL/min)"`` ``Qtot``; a name that would
    not start with a letter gets an ``x`` in front, and a repeated one a suffix ``_2``, ``_3``, ...

    Args:
        headers: Column headers, in order.
        taken: Names already in use (they are avoided too).

    Returns:
        Header to name, in header order.
    """
    used = set(taken)
    out: dict[str, str] = {}
    for j, header in enumerate(headers):
        base = re.sub(r"[^A-Za-z0-9]+", "_", re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", header)).strip("_")
        if not base:
            base = re.sub(r"[^A-Za-z0-9]+", "_", header).strip("_")
        if not base or not base[0].isalpha():
            base = f"x{j}_{base}" if base else f"x{j}"
        name, k = base, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        out[header] = name
    return out


def sum_rule_total(x: np.ndarray, tolerance: float = SUM_TOLERANCE) -> float | None:
    """1 or 100 when every row of ``x`` (``N x d``) adds up to it within ``tolerance`` of it, else None."""
    sums = x.sum(axis=1)
    for total in (1.0, 100.0):
        if bool(np.all(np.abs(sums - total) <= tolerance * total)):
            return total
    return None


def build_spec(pool: Pool, budget: int = 100) -> tuple[CampaignSpec, dict[str, str]]:
    """The campaign spec of a data set, and the header-to-name mapping of its columns.

    One component per input column, bounded by the column's min and max (in the data's units); a sum
    rule (:func:`sum_rule_total`) when the rows add up to 1 or 100; the objective in the pool's
    direction. ``budget`` is recorded in the spec only (``propose`` does not read it).

    Raises:
        AthanorError: A column holds negative values (amounts cannot be negative).
    """
    names = safe_names(pool.columns)
    objective = safe_names([pool.objective], taken=list(names.values()))[pool.objective]
    lower, upper = pool.x.min(axis=0), pool.x.max(axis=0)
    negative = [h for h, low in zip(pool.columns, lower, strict=True) if low < 0]
    if negative:
        raise AthanorError(
            f"dataset {pool.name}: column(s) {', '.join(repr(h) for h in negative)} hold negative values,"
            " and a spec's amounts cannot be negative; shift those columns to start at 0"
        )
    total = sum_rule_total(pool.x)
    if total is not None:  # rows within the tolerance may exceed the total by a hair
        upper = np.minimum(upper, total)
        lower = np.minimum(lower, total)
    components = [
        {"name": names[h], "lower": float(lo), "upper": float(hi)}
        for h, lo, hi in zip(pool.columns, lower, upper, strict=True)
    ]
    spec = CampaignSpec.model_validate(
        {
            "title": f"designer benchmark on {pool.name}",
            "components": components,
            "sum_rule": None if total is None else {"total": total},
            "objectives": [
                {"name": objective, "direction": "maximise" if pool.direction == "max" else "minimise"}
            ],
            "budget": {"experiments": budget, "batch_size": 1},
        }
    )
    return spec, names | {pool.objective: objective}


def _to_data(space: DesignSpace, points: torch.Tensor | np.ndarray) -> np.ndarray:
    """``n x d`` design-space points (unit fractions of the free components) as ``n x D`` data rows."""
    z = np.asarray(points, dtype=float).reshape(-1, space.dim)
    scale = space.spec.unit_scale
    columns = []
    for name in space.spec.component_names:
        if name in space.names:
            columns.append(z[:, space.names.index(name)] * scale)
        else:
            columns.append(np.full(z.shape[0], space.fixed[name] * scale))
    return np.stack(columns, axis=1)


def initial_points(spec: CampaignSpec, seed: int) -> list[dict[str, float]]:
    """The :data:`N_INITIAL` random feasible compositions every method starts from for ``seed``."""
    space = design_space(spec)
    return space.to_compositions(space.sample(N_INITIAL, _INITIAL_STREAM + seed))


# ------------------------------------------------------------------------------------------ the emulator
@dataclass(frozen=True)
class Scale:
    """What a score is measured against.

    Attributes:
        f_best: The emulator's best value over the feasible space (max or min by ``direction``).
        f_median: The emulator's median over seeded feasible samples.
        x_best: The composition (spec units) where ``f_best`` was found.
        direction: ``"max"`` or ``"min"``.
    """

    f_best: float
    f_median: float
    x_best: dict[str, float]
    direction: Literal["max", "min"]

    def score(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """Score after each experiment: ``(best so far - f_median) / (f_best - f_median)``.

        Args:
            values: The emulator's values of the measured points, in order.

        Returns:
            An array of ``len(values)`` scores (1 = the optimum, 0 = a typical point).
        """
        array = np.asarray(values, dtype=float)
        best = np.maximum.accumulate(array) if self.direction == "max" else np.minimum.accumulate(array)
        return (best - self.f_median) / (self.f_best - self.f_median)


class Emulator:
    """A smooth ground truth fitted to a data set: the mean of :data:`MEMBERS` MLPs.

    Args:
        pool: The data set (:func:`bench.pool.load_pool`).
        noise: Standard deviation of the Gaussian noise on a reading, as a fraction of the data's
            standard deviation (0: noiseless readings).
        seed: Seed of the MLPs' initial weights (member ``k`` uses ``seed * MEMBERS + k``).
        budget: Recorded in :attr:`spec`.

    Attributes:
        pool: The data set.
        spec: The search space (:func:`build_spec`).
        names: CSV header to spec name, the objective's included.
        noise_sd: Standard deviation of the noise on a reading, in the objective's unit.
        trust_length: ``ℓ`` of the trust weight, in unit-cube distance.
    """

    def __init__(self, pool: Pool, *, noise: float = 0.0, seed: int = 0, budget: int = 100) -> None:
        if not (math.isfinite(noise) and noise >= 0):
            raise AthanorError(f"--noise is {noise}; give a fraction of the data's sd >= 0 (e.g. 0.05)")
        self.pool = pool
        self.spec, self.names = build_spec(pool, budget)
        self.noise = float(noise)
        self.noise_sd = self.noise * float(np.std(pool.y))
        self._seed = seed
        self._lower = pool.x.min(axis=0)
        self._width = np.where(pool.x.max(axis=0) > self._lower, pool.x.max(axis=0) - self._lower, 1.0)
        self._members = self._fit(self._unit(pool.x), pool.y)
        self._cv_r2: float | None = None
        self._rows = torch.as_tensor(self._unit(pool.x), dtype=torch.float64)
        self.trust_length = TRUST_LENGTH * math.sqrt(pool.x.shape[1])
        self._floor = float(np.median(pool.y))

    def _unit(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=float) - self._lower) / self._width

    def _fit(self, x: np.ndarray, y: np.ndarray) -> tuple[list[MLPRegressor], float, float]:
        """Fit the ensemble on unit-cube inputs ``x`` (``n x D``) and values ``y`` (``n``)."""
        mean, sd = float(np.mean(y)), float(np.std(y)) or 1.0
        members = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for k in range(MEMBERS):
                mlp = MLPRegressor(
                    hidden_layer_sizes=HIDDEN,
                    activation="tanh",
                    solver="lbfgs",
                    alpha=ALPHA,
                    max_iter=2000,
                    random_state=self._seed * MEMBERS + k,
                )
                members.append(mlp.fit(x, (y - mean) / sd))
        return members, mean, sd

    @staticmethod
    def _predict(fitted: tuple[list[MLPRegressor], float, float], x: np.ndarray) -> np.ndarray:
        members, mean, sd = fitted
        return np.mean([m.predict(x) for m in members], axis=0) * sd + mean

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The truth ``f`` at ``n x D`` data rows (columns in CSV order, data units): ``n`` values."""
        unit = self._unit(np.atleast_2d(x))
        return self.trust(unit) * (self._predict(self._members, unit) - self._floor) + self._floor

    def trust(self, unit: np.ndarray) -> np.ndarray:
        """Weight ``w`` (``n``) of the network at ``n x D`` unit-cube points: 1 on a data row, 0 far away."""
        d = torch.cdist(torch.as_tensor(unit, dtype=torch.float64), self._rows).min(dim=1).values.numpy()
        return np.exp(-0.5 * (d / self.trust_length) ** 2)

    def values(self, compositions: Sequence[Mapping[str, float]]) -> np.ndarray:
        """The truth at compositions (spec name to amount, spec units)."""
        names = self.spec.component_names
        return self(np.array([[c[n] for n in names] for c in compositions], dtype=float))

    @property
    def cv_r2(self) -> float:
        """5-fold cross-validated R² of the ensemble on the data set (computed once)."""
        if self._cv_r2 is None:
            x, y = self._unit(self.pool.x), self.pool.y
            predicted = np.empty_like(y)
            folds = KFold(min(CV_FOLDS, len(y)), shuffle=True, random_state=self._seed)
            for train, test in folds.split(x):
                predicted[test] = self._predict(self._fit(x[train], y[train]), x[test])
            self._cv_r2 = float(1.0 - np.sum((predicted - y) ** 2) / np.sum((y - np.mean(y)) ** 2))
        return self._cv_r2

    def scale(self, samples: int = SCALE_SAMPLES, seed: int = 0, polish: int = POLISH_STARTS) -> Scale:
        """``f_best`` and ``f_median`` over the feasible space.

        ``f_median`` is the median over ``samples`` seeded feasible points (the spec's hit-and-run
        sampler). ``f_best`` is the best of those points, of the data's rows moved onto the space, and
        of a local polish (L-BFGS-B within the bounds; SLSQP when the sum rule adds an equality) from
        the ``polish`` best of them.

        Raises:
            AthanorError: The emulator is flat (its best equals its median).
        """
        space = design_space(self.spec)
        sign = 1.0 if self.pool.direction == "max" else -1.0
        drawn = space.sample(samples, seed).numpy()
        sampled = self(_to_data(space, drawn))
        f_median = float(np.median(sampled))
        rows = [dict(zip(self.spec.component_names, r, strict=True)) for r in self.pool.x.tolist()]
        rows_z = space.project(space.to_tensor(rows)).numpy()
        points = np.vstack([drawn, rows_z])
        values = np.concatenate([sampled, self(_to_data(space, rows_z))])
        for start in np.argsort(-sign * values)[:polish]:
            z = _polish(space, lambda z: -sign * float(self(_to_data(space, z))[0]), points[start])
            points = np.vstack([points, z])
            values = np.append(values, self(_to_data(space, z)))
        best = int(np.argmax(sign * values))
        f_best = float(values[best])
        if not abs(f_best - f_median) > 1e-12 * max(1.0, abs(f_median)):
            raise AthanorError(
                f"dataset {self.pool.name}: the emulator is flat (best {f_best:g} = median); the data hold no"
                " trend to benchmark on"
            )
        x_best = space.to_compositions(torch.as_tensor(points[best], dtype=DTYPE))[0]
        return Scale(f_best, f_median, x_best, self.pool.direction)

    def summary(self, scale: Scale) -> dict[str, Any]:
        """The emulator's entry of the benchmark document."""
        return {
            "model": f"mean of {MEMBERS} MLPRegressor {list(HIDDEN)} tanh, alpha {ALPHA}",
            "trust_length": self.trust_length,
            "cv_r2": self.cv_r2,
            "f_best": scale.f_best,
            "f_median": scale.f_median,
            "x_best": scale.x_best,
            "noise": self.noise,
            "noise_sd": self.noise_sd,
        }


def _polish(space: DesignSpace, objective: Callable[[np.ndarray], float], start: np.ndarray) -> np.ndarray:
    """A short local minimisation of ``objective`` from ``start`` within the space, projected onto it."""
    bounds = list(zip(space.bounds[0].tolist(), space.bounds[1].tolist(), strict=True))
    constraints = []
    for kind, listed in (("eq", space.equality_constraints), ("ineq", space.inequality_constraints)):
        for idx, coef, rhs in listed:
            i, c = idx.numpy(), coef.numpy()
            constraints.append({"type": kind, "fun": lambda z, i=i, c=c, rhs=rhs: float(c @ z[i] - rhs)})
    method = "SLSQP" if constraints else "L-BFGS-B"
    result = minimize(
        objective, start, method=method, bounds=bounds, constraints=constraints, options={"maxiter": 100}
    )
    return space.project(torch.as_tensor(result.x, dtype=DTYPE)).numpy()[0]


# ------------------------------------------------------------------------------------------ the methods
class Designer(Protocol):
    """One seeded optimisation run: told each measured composition, asked for the next batch."""

    def tell(self, composition: dict[str, float], value: float) -> None:
        """Record a measured composition (spec units) and its reading."""

    def ask(self, count: int = 1, pending: Sequence[dict[str, float]] = ()) -> list[dict[str, float]]:
        """The next ``count`` compositions to measure together (spec units, feasible).

        ``pending`` are compositions proposed earlier and still being measured (asynchronous runs).
        """


#: Builds a designer for a spec, a seed and a budget.
DesignerFactory = Callable[[CampaignSpec, int, int], Designer]


class RandomDesigner:
    """Seeded random feasible points from the spec's own sampler (hit-and-run, as ``propose`` uses)."""

    def __init__(self, spec: CampaignSpec, seed: int, budget: int) -> None:
        space = design_space(spec)
        self._points = space.to_compositions(space.sample(budget, _RANDOM_STREAM + seed))

    def tell(self, composition: dict[str, float], value: float) -> None:
        """Random search ignores the readings."""

    def ask(self, count: int = 1, pending: Sequence[dict[str, float]] = ()) -> list[dict[str, float]]:
        """The next ``count`` random points (``pending`` makes no difference)."""
        return [self._points.pop() for _ in range(count)]


#: The model and acquisition of each ``athanor`` method: warped inputs, and the upper confidence
#: bound with ``beta = 4`` (two standard deviations), its weight in pool mode when the designer
#: benchmark in BENCHMARKS.md was run (the pool now uses :data:`tools.optimiser.UCB_BETA`).
METHOD_OPTIONS: dict[str, OptimiserOptions] = {
    "athanor": OptimiserOptions(),
    "athanor-warp": OptimiserOptions(warp=True),
    "athanor-ucb": OptimiserOptions(acquisition="ucb", beta=4.0),
    "athanor-warp-ucb": OptimiserOptions(warp=True, acquisition="ucb", beta=4.0),
}


class AthanorDesigner:
    """The designer's optimiser: ``propose(spec, observations, count, seed, options=options)``.

    Args:
        spec: The search space.
        seed: Seed of the run; each proposal uses a seed derived from it and the step.
        budget: Unused (the signature of :data:`DesignerFactory`).
        options: The optimiser's model and acquisition (the defaults: qLogNEI on the plain GP).
    """

    def __init__(
        self, spec: CampaignSpec, seed: int, budget: int, *, options: OptimiserOptions | None = None
    ) -> None:
        self._spec = spec
        self._seed = seed
        self._options = options or OptimiserOptions()
        self._observations: list[Observation] = []
        self.fallbacks = 0

    def tell(self, composition: dict[str, float], value: float) -> None:
        """Record an observation of the primary objective."""
        self._observations.append(
            Observation(
                experiment_id=f"E{len(self._observations) + 1:04d}",
                iteration=len(self._observations),
                composition=composition,
                values={self._spec.primary_objective.name: float(value)},
            )
        )

    def ask(self, count: int = 1, pending: Sequence[dict[str, float]] = ()) -> list[dict[str, float]]:
        """The ``count`` compositions ``propose`` suggests next, as one joint batch beside ``pending``.

        :attr:`fallbacks` counts the space-filling ones.
        """
        seed = self._seed * 100_003 + len(self._observations)
        suggestions = propose(
            self._spec, self._observations, count, seed=seed, pending=pending, options=self._options
        )
        self.fallbacks += sum(s.source != "model" for s in suggestions)
        return [s.composition for s in suggestions]


@dataclass(frozen=True)
class AxSpace:
    """A spec's space as Ax parameters and constraints, and the way back to compositions.

    One float parameter per component that varies, over the spec's bounds. Ax's Client takes no
    equality constraint, so a sum rule uses the usual substitution: the last varying component is not a
    parameter but ``total - sum(the others)`` (less any pinned amounts), and its bounds become two linear
    constraints on the others' sum: ``sum <= total - lower`` (with a lower bound of 0 this is
    ``sum <= total``) and ``sum >= total - upper``. With a single parameter left they tighten its bounds.

    Attributes:
        bounds: Parameter name to ``(lower, upper)``, spec units.
        constraints: Ax parameter constraints, e.g. ``"a + b <= 100.0"``.
        pinned: Components that do not vary, to their amount.
        last: The component given by the sum rule (None without one).
        rest: The sum rule's total less the pinned amounts (0 without a sum rule).
        order: Component names in spec order.
    """

    bounds: dict[str, tuple[float, float]]
    constraints: list[str]
    pinned: dict[str, float]
    last: str | None
    rest: float
    order: tuple[str, ...]

    @classmethod
    def of(cls, spec: CampaignSpec) -> AxSpace:
        """The Ax form of ``spec`` (bounds and sum rule; the benchmark's specs have no other constraint).

        Raises:
            AthanorError: No component is left to vary.
        """
        varying = [c for c in spec.components if c.upper > c.lower]
        pinned = {c.name: c.lower for c in spec.components if c.upper <= c.lower}
        last = varying.pop() if spec.sum_rule is not None and varying else None
        bounds = {c.name: (c.lower, c.upper) for c in varying}
        constraints: list[str] = []
        rest = 0.0
        if last is not None and spec.sum_rule is not None:
            rest = spec.sum_rule.total - sum(pinned.values())
            low, high = rest - last.upper, rest - last.lower
            if len(varying) == 1:
                name = varying[0].name
                bounds[name] = (max(bounds[name][0], low), min(bounds[name][1], high))
            else:
                terms = " + ".join(c.name for c in varying)
                constraints = [f"{terms} <= {high!r}", f"{terms} >= {low!r}"]
        if not bounds:
            raise AthanorError("method 'ax' needs at least one component that varies; drop ax from --methods")
        names = tuple(spec.component_names)
        return cls(bounds, constraints, pinned, last.name if last else None, rest, names)

    def parameters(self, composition: Mapping[str, float]) -> dict[str, float]:
        """The Ax parameters of a composition."""
        return {n: float(composition[n]) for n in self.bounds}

    def composition(self, parameters: Mapping[str, float]) -> dict[str, float]:
        """The composition (spec order) of Ax parameters: pinned amounts and the sum rule's last added."""
        amounts = {n: float(parameters[n]) for n in self.bounds} | self.pinned
        if self.last is not None:
            amounts[self.last] = self.rest - sum(amounts[n] for n in self.bounds)
        return {n: amounts[n] for n in self.order}


class AxDesigner:
    """Ax's default Bayesian optimisation on a continuous search space (Ax's Client API).

    The space is :class:`AxSpace` (the sum rule by substitution). Ax's Sobol initialisation is
    replaced by the shared initial points, attached as completed trials; every proposal then comes
    from the model node of Ax's default generation strategy (``method="fast"``: its default surrogate
    and qLogNEI), and is completed with its reading.

    Raises:
        AthanorError: ax-platform is not installed, or nothing is left to vary.
    """

    def __init__(self, spec: CampaignSpec, seed: int, budget: int) -> None:
        require_peer("ax")
        from ax.api.client import Client
        from ax.api.configs import RangeParameterConfig
        from ax.utils.common.logger import set_ax_logger_levels

        set_ax_logger_levels(logging.WARNING)
        self._space = design_space(spec)
        self._ax = AxSpace.of(spec)
        self._client = Client(random_seed=seed)
        self._client.configure_experiment(
            parameters=[
                RangeParameterConfig(n, bounds=b, parameter_type="float") for n, b in self._ax.bounds.items()
            ],
            parameter_constraints=self._ax.constraints or None,
            name=f"designer-benchmark-seed{seed}",
        )
        sign = "" if spec.primary_objective.direction == "maximise" else "-"
        self._client.configure_optimization(sign + _AX_OBJECTIVE)
        self._client.configure_generation_strategy(
            method="fast", initialization_budget=0, initialize_with_center=False
        )
        self._asked: list[tuple[int, dict[str, float]]] = []

    def tell(self, composition: dict[str, float], value: float) -> None:
        """Complete the trial Ax proposed for ``composition``, or attach it as a completed trial."""
        match = next((i for i, (_, asked) in enumerate(self._asked) if asked == composition), None)
        if match is not None:
            trial = self._asked.pop(match)[0]
        else:
            trial = self._client.attach_trial(self._ax.parameters(composition))
        self._client.complete_trial(trial, {_AX_OBJECTIVE: float(value)})

    def ask(self, count: int = 1, pending: Sequence[dict[str, float]] = ()) -> list[dict[str, float]]:
        """Ax's next ``count`` trials (one batch) as compositions, moved onto the space where rounding
        left them a hair off. Ax counts its own trials still running as pending, so ``pending`` (its
        earlier proposals) needs no passing on."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NumericalWarning)  # routine jitter on near-singular fits
            trials = self._client.get_next_trials(max_trials=count)
        out = []
        for trial, parameters in trials.items():
            point = self._space.project(self._space.to_tensor([self._ax.composition(parameters)]))
            composition = self._space.to_compositions(point)[0]
            self._asked.append((trial, composition))
            out.append(composition)
        return out


#: Method name to designer factory.
METHODS: dict[str, DesignerFactory] = {
    "random": RandomDesigner,
    **{name: functools.partial(AthanorDesigner, options=options) for name, options in METHOD_OPTIONS.items()},
    "ax": AxDesigner,
}


def default_methods() -> list[str]:
    """Every method, ``ax`` only when ax-platform is installed."""
    out = []
    for name in METHODS:
        try:
            if name in PEER_PACKAGES:
                require_peer(name)
        except AthanorError:
            continue
        out.append(name)
    return out


# ------------------------------------------------------------------------------------------ runs
@dataclass
class Run:
    """One method's run on one seed.

    Attributes:
        method: Method name.
        seed: Seed.
        compositions: Measured compositions in order (spec units), the initial ones first.
        values: The emulator's noiseless value of each.
        readings: What the method was told (the value plus noise).
        seconds: Wall time of each proposal call (s; one call proposes a whole batch), the initial
            points excluded.
        fallbacks: Proposals that were space-filling points instead of the model's (athanor methods:
            a fit or the acquisition failed numerically).
    """

    method: str
    seed: int
    compositions: list[dict[str, float]] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    readings: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    fallbacks: int = 0


def run_method(
    emulator: Emulator,
    method: str,
    seed: int,
    budget: int,
    factories: Mapping[str, DesignerFactory] | None = None,
    batch: int = 1,
    mode: Literal["sync", "async"] = "sync",
) -> Run:
    """Run one method on one seed: the shared initial points, then proposals until the budget.

    ``sync``: each cycle asks for ``batch`` compositions at once (fewer in the last cycle, so that the
    run ends on the budget), measures all of them and tells the designer every reading before the
    next cycle. ``async`` (continuous flow, ``batch`` instruments): the first ``batch`` proposals are
    asked together; from then on the oldest experiment finishes, its reading is told, and one new
    composition is asked for with the other ``batch - 1`` still running passed as pending.
    The noise on the ``i``-th reading is the same for every method for a seed.

    Raises:
        RuntimeError: The method proposed a composition outside the spec, or a batch of the wrong size.
    """
    spec = emulator.spec
    factory = {**METHODS, **(factories or {})}[method]
    designer = factory(spec, seed, budget)
    noise = emulator.noise_sd * np.random.default_rng([seed, 17]).standard_normal(budget)
    run = Run(method, seed)

    def measure(composition: dict[str, float]) -> None:
        value = float(emulator.values([composition])[0])
        reading = value + float(noise[len(run.values)])
        run.compositions.append(composition)
        run.values.append(value)
        run.readings.append(reading)
        designer.tell(composition, reading)

    for composition in initial_points(spec, seed)[:budget]:
        measure(composition)

    def ask(count: int, pending: Sequence[dict[str, float]]) -> list[dict[str, float]]:
        start = time.perf_counter()
        compositions = designer.ask(count, pending)
        run.seconds.append(time.perf_counter() - start)
        if len(compositions) != count:
            raise RuntimeError(
                f"{method} seed {seed}: asked for {count} compositions, got {len(compositions)}"
            )
        for composition in compositions:
            problems = spec.violations(composition)
            if problems:
                raise RuntimeError(f"{method} seed {seed}: infeasible proposal: {'; '.join(problems)}")
        return compositions

    if mode == "async":
        running: deque[dict[str, float]] = deque(ask(min(batch, budget - len(run.values)), ()))
        while running:
            measure(running.popleft())
            if len(run.values) + len(running) < budget:
                running.extend(ask(1, list(running)))
    while len(run.values) < budget:
        for composition in ask(min(batch, budget - len(run.values)), ()):
            measure(composition)
    run.fallbacks = int(getattr(designer, "fallbacks", 0))
    return run


def _experiments_to(scores: np.ndarray, level: float, budget: int) -> int:
    """Experiments until the score reaches ``level``; ``budget + 1`` when it never does."""
    hits = np.nonzero(scores[:budget] >= level)[0]
    return int(hits[0]) + 1 if hits.size else budget + 1


def _level_key(level: float) -> str:
    return f"exp_to_{round(level * 100)}"


def summarise(
    emulator: Emulator,
    scale: Scale,
    budget: int,
    methods: Sequence[str],
    runs: Mapping[str, Sequence[Run]],
    batch: int = 1,
    mode: Literal["sync", "async"] = "sync",
) -> dict[str, Any]:
    """The benchmark's JSON document from the runs so far.

    Returns:
        ``{"benchmark", "dataset", "direction", "emulator": {"model", "cv_r2", "f_best", "f_median",
        "x_best", "noise", "noise_sd"}, "space": {"names", "sum_rule", "bounds"}, "seeds", "budget",
        "batch", "mode", "methods": {name: {"score_at": {"10", "20", "30", str(budget)}, "exp_to_90",
        "exp_to_95", "seconds_per_proposal", "fallbacks", "scores"}}}``. Each ``score_at`` entry and
        ``exp_to_*`` is a spread (``median``, ``p5``, ``p95`` over seeds); a count beyond the budget
        gives None. ``seconds_per_proposal`` is per call, i.e. per batch. ``fallbacks`` counts
        space-filling proposals over all seeds; ``scores`` holds each seed's score after every
        experiment.
    """
    counts = sorted({*SCORE_AT, budget})
    out: dict[str, Any] = {}
    for method in methods:
        traces = [scale.score(r.values) for r in runs[method]]
        if not traces:
            continue
        seconds = [s for r in runs[method] for s in r.seconds]
        entry: dict[str, Any] = {
            "score_at": {
                str(i): (spread([float(t[i - 1]) for t in traces]) if i <= budget else None) for i in counts
            }
        }
        for level in LEVELS:
            entry[_level_key(level)] = spread([_experiments_to(t, level, budget) for t in traces])
        entry["seconds_per_proposal"] = float(np.mean(seconds)) if seconds else 0.0
        entry["fallbacks"] = sum(r.fallbacks for r in runs[method])
        entry["scores"] = [[round(float(v), 6) for v in t] for t in traces]
        out[method] = entry
    spec = emulator.spec
    return {
        "benchmark": "designer",
        "dataset": emulator.pool.name,
        "direction": emulator.pool.direction,
        "emulator": emulator.summary(scale),
        "space": {
            "names": emulator.names,
            "sum_rule": None if spec.sum_rule is None else spec.sum_rule.total,
            "bounds": {c.name: [c.lower, c.upper] for c in spec.components},
        },
        "seeds": max((len(runs[m]) for m in methods), default=0),
        "budget": budget,
        "batch": batch,
        "mode": mode,
        "methods": out,
    }


def _check(
    seeds: int,
    budget: int,
    methods: Sequence[str],
    known: Sequence[str],
    batch: int = 1,
    mode: str = "sync",
) -> None:
    """Refuse arguments that cannot give a benchmark, naming the option and the fix."""
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise AthanorError(
            f"--methods: unknown method(s) {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    if not methods:
        raise AthanorError(f"--methods: no method given; choose from {', '.join(known)}")
    if seeds < 1:
        raise AthanorError(f"--seeds is {seeds}; run at least 1 seed")
    if budget <= N_INITIAL:
        raise AthanorError(
            f"--budget is {budget}; it must exceed the {N_INITIAL} initial experiments (e.g. --budget 50)"
        )
    if not 1 <= batch <= budget - N_INITIAL:
        raise AthanorError(
            f"--batch is {batch}; it must be between 1 and the {budget - N_INITIAL} experiments after the"
            f" {N_INITIAL} initial ones (e.g. --batch 4)"
        )
    if mode not in ("sync", "async"):
        raise AthanorError(f"--mode {mode!r} is not understood; use sync or async")
    if mode == "async" and batch < 2:
        raise AthanorError("--mode async needs --batch 2 or more: the number of experiments running at once")
    for method in methods:
        if method in PEER_PACKAGES:
            require_peer(method)


def run_benchmark(
    emulator: Emulator,
    scale: Scale,
    *,
    seeds: int,
    budget: int,
    methods: Sequence[str] = ("random", "athanor"),
    factories: Mapping[str, DesignerFactory] | None = None,
    batch: int = 1,
    mode: Literal["sync", "async"] = "sync",
    on_run: Callable[[str, int], None] | None = None,
    on_seed: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Benchmark methods on an emulator over seeds ``0 .. seeds - 1``, torch on one thread.

    Args:
        emulator: The ground truth and its space.
        scale: Its :meth:`Emulator.scale`.
        seeds: Number of seeds.
        budget: Experiments per run, the initial points included.
        methods: Names from :data:`METHODS` (or ``factories``), in output order.
        factories: Extra or replacement designer factories by method name.
        batch: Compositions proposed together per cycle, or running at once (:func:`run_method`).
        mode: ``sync`` (batches) or ``async`` (continuous flow).
        on_run: Called with ``(method, seed)`` after each run.
        on_seed: Called with the document so far after each seed (all methods).

    Returns:
        The document of :func:`summarise`.

    Raises:
        AthanorError: An unknown method, a missing peer package, too few seeds, a budget too small or
            a batch that does not fit it.
    """
    registry = {**METHODS, **(factories or {})}
    methods = list(dict.fromkeys(methods))
    _check(seeds, budget, methods, list(registry), batch, mode)
    runs: dict[str, list[Run]] = {m: [] for m in methods}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # fair timings on a shared machine; propose runs on one thread anyway
    try:
        for seed in range(seeds):
            for method in methods:
                runs[method].append(run_method(emulator, method, seed, budget, factories, batch, mode))
                if on_run is not None:
                    on_run(method, seed)
            if on_seed is not None:
                on_seed(summarise(emulator, scale, budget, methods, runs, batch, mode))
    finally:
        torch.set_num_threads(threads)
    return summarise(emulator, scale, budget, methods, runs, batch, mode)


# ------------------------------------------------------------------------------------------ output
def _fmt(entry: Mapping[str, float], digits: int = 2) -> str:
    """Median over the 5th–95th percentile range, on two lines."""
    return f"{entry['median']:.{digits}f}\n[dim]{entry['p5']:.{digits}f}–{entry['p95']:.{digits}f}[/]"


def _flow(result: Mapping[str, Any]) -> str:
    """How the run proposed: ``batches of 4`` or ``4 running at once`` (asynchronous)."""
    batch = result.get("batch", 1)
    return f"batches of {batch}" if result.get("mode", "sync") == "sync" else f"{batch} running at once"


def render_table(result: Mapping[str, Any]) -> Table:
    """A rich table of a benchmark document: one row per method, counts beyond the budget left out."""
    emulator = result["emulator"]
    table = Table(
        title=f"{result['dataset']} emulator (CV R² {emulator['cv_r2']:.2f}; f_best {emulator['f_best']:.4g},"
        f" f_median {emulator['f_median']:.4g}): {result['seeds']} seeds, budget {result['budget']},"
        f" {_flow(result)};"
        " score 1 = optimum, 0 = median; median over p5–p95",
        title_justify="left",
    )
    table.add_column("method")
    methods = result["methods"]
    first = next(iter(methods.values()), {"score_at": {}})
    counts = [i for i, v in first["score_at"].items() if v is not None]
    for i in counts:
        table.add_column(f"score\n@{i}", justify="right")
    for level in LEVELS:
        table.add_column(f"exp to\n{level:g}", justify="right")
    table.add_column("s/call", justify="right")
    for name, entry in methods.items():
        cells = [name, *(_fmt(entry["score_at"][i]) for i in counts)]
        cells += [_fmt(entry[_level_key(level)], 0) for level in LEVELS]
        cells.append(f"{entry['seconds_per_proposal']:.2f}")
        table.add_row(*cells)
    return table


def run_cli(
    dataset: Path,
    *,
    seeds: int,
    budget: int,
    direction: Literal["min", "max"],
    methods: Sequence[str] | None,
    noise: float = 0.0,
    batch: int = 1,
    mode: Literal["sync", "async"] = "sync",
    out: Path | None,
    console: Console,
) -> dict[str, Any]:
    """Build the emulator, run the benchmark with a progress bar, print the table and write the JSON.

    With ``out``, the JSON is rewritten after every seed, so an interrupted run leaves the seeds done.

    Args:
        dataset: CSV (header; inputs first, the objective last).
        seeds: Seeds per method.
        budget: Experiments per run, the initial points included.
        direction: ``"max"`` or ``"min"``.
        methods: Method names; None runs :func:`default_methods`.
        noise: Noise on a reading, as a fraction of the data's standard deviation.
        batch: Compositions proposed together per cycle, or running at once with ``mode="async"``.
        mode: ``sync`` (batches) or ``async`` (continuous flow).
        out: Where to write the JSON (None: nowhere).
        console: Where to print.

    Raises:
        AthanorError: A bad data set or bad arguments.
    """
    methods = list(dict.fromkeys(methods)) if methods is not None else default_methods()
    _check(seeds, budget, methods, list(METHODS), batch, mode)
    pool = load_pool(dataset, direction)
    console.print(
        f"[bold]{pool.name}[/]: {pool.rows} rows, {pool.size} unique inputs ({len(pool.columns)} columns),"
        f" {direction} {pool.objective}"
    )
    start = time.perf_counter()
    emulator = Emulator(pool, noise=noise, budget=budget)
    scale = emulator.scale()
    rule = emulator.spec.sum_rule
    console.print(
        f"emulator: CV R² {emulator.cv_r2:.3f}, f_best {scale.f_best:.4g}, f_median {scale.f_median:.4g}"
        f" ({'sum rule ' + format(rule.total, 'g') if rule else 'no sum rule'};"
        f" built in {time.perf_counter() - start:.1f} s)"
    )
    return run_with_progress(
        console,
        seeds * len(methods),
        out,
        lambda on_run, on_seed: run_benchmark(
            emulator,
            scale,
            seeds=seeds,
            budget=budget,
            methods=methods,
            batch=batch,
            mode=mode,
            on_run=on_run,
            on_seed=on_seed,
        ),
        render_table,
    )
