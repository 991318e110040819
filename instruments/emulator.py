"""Ground truth for the virtual conductivity meter: what a composition's conductivity "really" is.

Two emulators share one interface (:class:`Emulator`):

- :class:`P3HTCNTEmulator` is fitted to the published P3HT/CNT measurements shipped in
  ``instruments/data/p3ht_cnt.csv`` (Bash et al. 2021, via the Liang et al. 2021 benchmark set).
  Replicates are averaged per unique composition, compositions are taken as fractions of one, and
  ``log10(conductivity)`` is interpolated over the four free coordinates (D1, D2, D6, D8; P3HT is
  one minus their sum) with a smoothed radial-basis-function fit. The measurement noise is the
  pooled spread of the replicates.
- :class:`SyntheticEmulator` is a smooth landscape with a known optimum and a lower decoy peak, for
  any list of components, so that every campaign can run in the virtual lab.

:func:`emulator_for` picks one from a campaign's component names.
"""

from __future__ import annotations

import csv
import functools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy.interpolate import RBFInterpolator
from scipy.optimize import minimize

from athanor.errors import InstrumentError

__all__ = [
    "P3HT_COMPONENTS",
    "Emulator",
    "P3HTCNTEmulator",
    "SyntheticEmulator",
    "emulator_for",
    "load_p3ht_cnt",
]

#: Component names of the P3HT/CNT data set, in its column order.
P3HT_COMPONENTS: tuple[str, ...] = ("P3HT", "D1", "D2", "D6", "D8")

_DATA_FILE = Path(__file__).parent / "data" / "p3ht_cnt.csv"
_VALUE_COLUMN = "Conductivity (measured) (S/cm)"

# Interpolator settings, chosen by 10-fold cross-validation over a grid of kernels and smoothings:
# every reasonable choice reaches ~0.29-0.30 log10 RMSE, and this one also stays within the data's
# range away from the measurements (thin-plate splines extrapolate to >10x the best value at
# compositions nobody measured, e.g. pure D1).
_KERNEL = "inverse_multiquadric"
_EPSILON = 3.0  # 1/length scale, in fractions of one
_SMOOTHING = 0.03
_DEGREE = 0


def _simplex_samples(n_components: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random points on the unit simplex, half spread evenly, half pushed toward faces and edges.

    Returns:
        Array of shape ``(n, n_components)``; each row sums to 1.
    """
    even = rng.dirichlet(np.ones(n_components), n // 2)
    sparse = rng.dirichlet(np.full(n_components, 0.3), n - n // 2)
    return np.vstack([even, sparse])


class Emulator:
    """A composition-to-conductivity ground truth with multiplicative measurement noise.

    Subclasses set ``components`` and ``noise_rel`` and implement :meth:`log10_values`.

    Attributes:
        components: Component names this emulator understands, in its own order.
        noise_rel: Standard deviation of ``ln(measured / true)``, i.e. the relative noise of one
            measurement (0.1 is about 10 %).
    """

    components: tuple[str, ...]
    noise_rel: float

    def log10_values(self, fractions: np.ndarray) -> np.ndarray:
        """``log10`` of the true conductivity for many compositions.

        Args:
            fractions: Shape ``(n, len(components))``, fractions of one in ``components`` order.

        Returns:
            Shape ``(n,)``, log10 of S/cm.
        """
        raise NotImplementedError

    def to_array(self, fractions: Mapping[str, float]) -> np.ndarray:
        """One composition as a row in ``components`` order, normalised to sum to one.

        Components not named are taken as absent (0).

        Raises:
            athanor.errors.InstrumentError: A name this emulator does not know, a negative amount or
                an empty composition.
        """
        unknown = sorted(set(fractions) - set(self.components))
        if unknown:
            raise InstrumentError(
                f"the emulator does not know component(s) {', '.join(unknown)}; it models"
                f" {', '.join(self.components)}. Use matching stock components in the lab description"
            )
        row = np.array([float(fractions.get(name, 0.0)) for name in self.components])
        if np.any(row < 0) or not np.all(np.isfinite(row)):
            raise InstrumentError(f"composition {dict(fractions)} has a negative or non-finite amount")
        total = row.sum()
        if total <= 0:
            raise InstrumentError("composition is empty; a sample needs at least one component")
        return row / total

    def true_value(self, fractions: Mapping[str, float]) -> float:
        """Noise-free conductivity of a composition.

        Args:
            fractions: Component name to amount; normalised to fractions of one, missing names are 0.

        Returns:
            Conductivity in S/cm.
        """
        return float(10.0 ** self.log10_values(self.to_array(fractions)[None, :])[0])

    def measure(
        self, fractions: Mapping[str, float], rng: np.random.Generator, noise_rel: float | None = None
    ) -> float:
        """One noisy measurement: the true value times ``exp(noise_rel * N(0, 1))``.

        Args:
            fractions: Component name to amount (see :meth:`true_value`).
            rng: Source of the noise.
            noise_rel: Overrides the emulator's own noise level; 0 gives the true value.

        Returns:
            Conductivity in S/cm.
        """
        sigma = self.noise_rel if noise_rel is None else float(noise_rel)
        return self.true_value(fractions) * math.exp(sigma * float(rng.standard_normal()))

    def search_optimum(
        self, lower: Mapping[str, float] | None = None, n_samples: int = 20_000, seed: int = 0
    ) -> tuple[dict[str, float], float]:
        """The highest true value on the simplex, by random search then a local polish.

        Args:
            lower: Optional lower bounds, component name to fraction of one (e.g. ``{"P3HT": 0.3}``).
            n_samples: Random candidates before the polish.
            seed: Seed of the random candidates.

        Returns:
            The best composition (fractions of one, ``components`` order) and its value in S/cm.
        """
        k = len(self.components)
        low = np.array([float((lower or {}).get(name, 0.0)) for name in self.components])
        if low.sum() > 1.0:
            raise InstrumentError(f"lower bounds {dict(lower or {})} add up to more than 1")
        rng = np.random.default_rng(seed)
        # Sample the simplex that remains once the lower bounds are set aside.
        points = low + (1.0 - low.sum()) * _simplex_samples(k, n_samples, rng)
        values = self.log10_values(points)
        start = points[int(np.argmax(values))]
        result = minimize(
            lambda x: -float(self.log10_values(x[None, :])[0]),
            start,
            method="SLSQP",
            bounds=[(lo, 1.0) for lo in low],
            constraints=[{"type": "eq", "fun": lambda x: float(np.sum(x) - 1.0)}],
            options={"maxiter": 200, "ftol": 1e-10},
        )
        best = start
        if result.success and -result.fun >= values.max():
            best = np.clip(result.x, low, 1.0)
            best = best / best.sum()
        value = float(10.0 ** self.log10_values(best[None, :])[0])
        return {name: float(x) for name, x in zip(self.components, best, strict=True)}, value


def load_p3ht_cnt(path: Path | None = None) -> tuple[np.ndarray, list[list[float]]]:
    """The P3HT/CNT measurements grouped by composition.

    Args:
        path: CSV with the five composition columns (percent) and the conductivity column; defaults
            to the copy shipped with the package.

    Returns:
        Unique compositions as fractions of one, shape ``(n, 5)`` in :data:`P3HT_COMPONENTS` order,
        and for each the list of replicate conductivities in S/cm.
    """
    groups: dict[tuple[float, ...], list[float]] = defaultdict(list)
    with open(path or _DATA_FILE, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            key = tuple(float(row[f"{name} content (%)"]) for name in P3HT_COMPONENTS)
            groups[key].append(float(row[_VALUE_COLUMN]))
    compositions = np.array(list(groups), dtype=float)
    # Rows sum to 99.89-100.10 %: normalise to exact fractions of one.
    compositions = compositions / compositions.sum(axis=1, keepdims=True)
    return compositions, list(groups.values())


def _pooled_log_sd(replicates: Sequence[Sequence[float]]) -> float:
    """Pooled standard deviation of ``ln(value)`` within groups of replicates."""
    squares, dof = 0.0, 0
    for values in replicates:
        if len(values) > 1:
            logs = np.log(np.asarray(values, dtype=float))
            squares += float(np.sum((logs - logs.mean()) ** 2))
            dof += len(values) - 1
    return math.sqrt(squares / dof) if dof else 0.0


class P3HTCNTEmulator(Emulator):
    """Conductivity of P3HT/CNT blends, interpolated from the published measurements.

    Attributes:
        components: ``("P3HT", "D1", "D2", "D6", "D8")``.
        noise_rel: Pooled standard deviation of ``ln(conductivity)`` between replicates (about 0.24).
        compositions: Unique measured compositions, shape ``(n, 5)``, fractions of one.
        mean_values: Mean conductivity per composition, shape ``(n,)``, S/cm.
        best_composition: The measured composition with the highest mean conductivity.
        best_value: That mean conductivity, S/cm.
        value_range: Predictions are clipped to ``(0.5 * lowest mean, 1.2 * highest mean)``, S/cm.
    """

    components = P3HT_COMPONENTS

    def __init__(
        self,
        path: Path | None = None,
        kernel: str = _KERNEL,
        epsilon: float = _EPSILON,
        smoothing: float = _SMOOTHING,
    ) -> None:
        """Fit the interpolator.

        Args:
            path: Data file; defaults to the shipped copy.
            kernel: ``scipy.interpolate.RBFInterpolator`` kernel.
            epsilon: Kernel shape parameter (inverse length, in fractions of one).
            smoothing: Smoothing of the fit; 0 interpolates the means exactly.
        """
        compositions, replicates = load_p3ht_cnt(path)
        self.compositions = compositions
        self.mean_values = np.array([float(np.mean(v)) for v in replicates])
        self.noise_rel = _pooled_log_sd(replicates)
        self._settings = {"kernel": kernel, "epsilon": epsilon, "smoothing": smoothing, "degree": _DEGREE}
        self._log_targets = np.log10(self.mean_values)
        self._model = self._fit(compositions, self._log_targets)
        self.value_range = (0.5 * float(self.mean_values.min()), 1.2 * float(self.mean_values.max()))
        best = int(np.argmax(self.mean_values))
        self.best_composition = {
            name: float(x) for name, x in zip(self.components, compositions[best], strict=True)
        }
        self.best_value = float(self.mean_values[best])

    def _fit(self, compositions: np.ndarray, log_values: np.ndarray) -> RBFInterpolator:
        # P3HT is implied by the sum rule, so the fit uses the four CNT fractions only.
        return RBFInterpolator(compositions[:, 1:], log_values, **self._settings)

    def log10_values(self, fractions: np.ndarray) -> np.ndarray:
        """``log10`` conductivity (S/cm) of compositions of shape ``(n, 5)``, clipped to ``value_range``."""
        fractions = np.atleast_2d(np.asarray(fractions, dtype=float))
        low, high = (math.log10(v) for v in self.value_range)
        return np.clip(self._model(fractions[:, 1:]), low, high)

    def leave_out_error(self, folds: int = 10, seed: int = 0) -> float:
        """Cross-validated error of the fit: RMSE of ``log10`` conductivity on held-out compositions.

        Args:
            folds: Number of folds; each composition is held out once.
            seed: Seed of the split.

        Returns:
            Root-mean-square error in decades (0.3 means a typical factor of 10**0.3 = 2).
        """
        n = len(self._log_targets)
        order = np.random.default_rng(seed).permutation(n)
        low, high = (math.log10(v) for v in self.value_range)
        errors = []
        for held in np.array_split(order, folds):
            keep = np.ones(n, dtype=bool)
            keep[held] = False
            model = self._fit(self.compositions[keep], self._log_targets[keep])
            predicted = np.clip(model(self.compositions[held, 1:]), low, high)
            errors.append(predicted - self._log_targets[held])
        return float(np.sqrt(np.mean(np.concatenate(errors) ** 2)))


class SyntheticEmulator(Emulator):
    """A smooth landscape with a known global optimum, for any components.

    ``log10 σ(x) = floor + height * (g(x, x*) + decoy * g(x, x2) * (1 - g(x, x*)))`` with Gaussian
    bumps ``g(x, c) = exp(-|x - c|² / (2 width²))``. The factor ``1 - g(x, x*)`` keeps ``x*`` the
    unique global maximum (value ``10**(floor + height)``) while ``x2`` is a lower local peak.

    Attributes:
        components: The component names given.
        optimum_composition: ``x*``, fractions of one.
        optimum_value: Conductivity at ``x*``, S/cm.
        decoy_composition: ``x2``, the lower local peak.
        noise_rel: Relative measurement noise.
    """

    def __init__(
        self,
        components: Sequence[str],
        seed: int,
        *,
        floor: float = 0.5,
        height: float = 2.5,
        width: float = 0.3,
        decoy: float = 0.5,
        noise_rel: float = 0.05,
    ) -> None:
        """Draw a landscape.

        Args:
            components: Component names, at least one, each once.
            seed: Seed of the optimum and decoy locations.
            floor: ``log10`` S/cm far from both peaks.
            height: Decades from the floor to the optimum.
            width: Bump width, in fractions of one.
            decoy: Height of the decoy relative to the optimum, in ``[0, 1)``.
            noise_rel: Relative measurement noise.
        """
        names = tuple(components)
        if not names or len(set(names)) != len(names):
            raise InstrumentError(f"components {list(names)} must be non-empty and each named once")
        if not 0.0 <= decoy < 1.0 or width <= 0 or height <= 0:
            raise InstrumentError("need 0 <= decoy < 1, width > 0 and height > 0 for a unique optimum")
        self.components = names
        self.noise_rel = float(noise_rel)
        self._floor, self._height, self._width, self._decoy = floor, height, width, decoy
        rng = np.random.default_rng([seed, len(names)])
        alpha = np.full(len(names), 2.0)
        self._peak = rng.dirichlet(alpha)
        self._decoy_at = rng.dirichlet(alpha)
        self.optimum_composition = {n: float(x) for n, x in zip(names, self._peak, strict=True)}
        self.decoy_composition = {n: float(x) for n, x in zip(names, self._decoy_at, strict=True)}
        self.optimum_value = float(10.0 ** (floor + height))

    def _bump(self, fractions: np.ndarray, centre: np.ndarray) -> np.ndarray:
        distance2 = np.sum((fractions - centre) ** 2, axis=1)
        return np.exp(-distance2 / (2.0 * self._width**2))

    def log10_values(self, fractions: np.ndarray) -> np.ndarray:
        """``log10`` conductivity (S/cm) of compositions of shape ``(n, len(components))``."""
        fractions = np.atleast_2d(np.asarray(fractions, dtype=float))
        main = self._bump(fractions, self._peak)
        second = self._bump(fractions, self._decoy_at)
        return self._floor + self._height * (main + self._decoy * second * (1.0 - main))


@functools.lru_cache(maxsize=4)
def _p3ht_emulator() -> P3HTCNTEmulator:
    return P3HTCNTEmulator()


def emulator_for(component_names: Sequence[str], seed: int) -> Emulator:
    """The emulator for a campaign's components.

    The P3HT/CNT emulator is used when the names are ``P3HT`` plus one or more of ``D1``, ``D2``,
    ``D6``, ``D8`` (exact spelling, any order); components left out are absent from every sample,
    which is a face of the measured design space. Anything else gets a :class:`SyntheticEmulator`
    seeded with ``seed``.

    Args:
        component_names: The campaign's component names.
        seed: Seed of the synthetic landscape (unused for P3HT/CNT, which is fixed by the data).
    """
    names = list(component_names)
    known = set(P3HT_COMPONENTS)
    if "P3HT" in names and len(names) >= 2 and set(names) <= known and len(set(names)) == len(names):
        return _p3ht_emulator()
    return SyntheticEmulator(names, seed)
