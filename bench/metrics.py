"""Pool-based benchmark metrics (Liang et al. 2021, npj Comput. Mater. 7, 188).

A run is the sequence of pool indices a method measured, the initial points included. ``Top%(i)``
is the fraction of the top candidates among the first ``i`` experiments. The random baseline is
analytical: drawing ``i`` entries without replacement from a pool of ``N`` that holds ``n_top`` top
candidates finds a hypergeometric number of them, with mean ``i * n_top / N``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy.stats import hypergeom

__all__ = [
    "EF_AT",
    "LEVELS",
    "Spread",
    "enrichment",
    "experiments_to",
    "found_counts",
    "liang_curve",
    "liang_figures",
    "needed",
    "random_experiments_to",
    "spread",
]

#: Fractions of the top candidates whose experiments-to-reach are reported.
LEVELS = (0.5, 0.8)
#: Experiment counts at which the enhancement factor is reported.
EF_AT = (10, 20, 50)

#: Liang et al.'s aggregation: runs split into this many equal groups, over this many random splits.
LIANG_FOLDS, LIANG_SPLITS = 5, 100

#: ``{"median": ..., "p5": ..., "p95": ...}``.
Spread = dict[str, float]


def _ceil(value: float) -> int:
    """``ceil`` that ignores float noise (``0.8 * 10`` is 8, not 9)."""
    return math.ceil(round(value, 9))


def needed(level: float, n_top: int) -> int:
    """Top candidates to find for ``Top% >= level``: ``ceil(level * n_top)``."""
    return _ceil(level * n_top)


def found_counts(picks: Sequence[int], top: Iterable[int]) -> np.ndarray:
    """Top candidates found after each experiment.

    Args:
        picks: Pool indices in the order measured (initial points first).
        top: Pool indices of the top candidates.

    Returns:
        Integer array of ``len(picks)``; entry ``i - 1`` counts the top candidates among the first ``i``.
    """
    top_set = set(int(t) for t in top)
    return np.cumsum([int(int(p) in top_set) for p in picks], dtype=int)


def experiments_to(found: np.ndarray, n_top: int, level: float, budget: int) -> int:
    """Experiments until ``Top% >= level``; ``budget + 1`` when the run never gets there.

    Args:
        found: Output of :func:`found_counts` for one run.
        n_top: Number of top candidates.
        level: Target fraction of the top candidates, e.g. 0.8.
        budget: Experiments the run was allowed (its length when not stopped early).
    """
    hits = np.nonzero(found[:budget] >= needed(level, n_top))[0]
    return int(hits[0]) + 1 if hits.size else budget + 1


def spread(values: Sequence[float]) -> Spread:
    """Median and 5th / 95th percentiles (linear interpolation) of per-seed values."""
    array = np.asarray(values, dtype=float)
    p5, median, p95 = np.percentile(array, [5, 50, 95])
    return {"median": float(median), "p5": float(p5), "p95": float(p95)}


def random_experiments_to(size: int, n_top: int, level: float) -> Spread:
    """Experiments random picking needs to reach ``level``, analytically.

    ``median`` is the smallest ``i`` with ``E[Top%(i)] = i / N >= level``; ``p5`` and ``p95`` are
    quantiles of the number of draws ``T`` needed to find ``k = ceil(level * n_top)`` top candidates,
    from ``P(T <= i) = P(Hypergeom(N, n_top, i) >= k)``.

    Args:
        size: Pool size ``N``.
        n_top: Number of top candidates.
        level: Target fraction of the top candidates.
    """
    draws = np.arange(1, size + 1)
    cdf = hypergeom.sf(needed(level, n_top) - 1, size, n_top, draws)

    def quantile(q: float) -> float:
        return float(draws[np.argmax(cdf >= q - 1e-12)])

    return {"median": float(_ceil(level * size)), "p5": quantile(0.05), "p95": quantile(0.95)}


def enrichment(
    found: np.ndarray, n_top: int, size: int, at: Sequence[int] = EF_AT
) -> dict[str, float | None]:
    """Enhancement factor ``EF(i) = mean_seeds Top%(i) / E_random[Top%(i)]`` with ``E_random = i / N``.

    Args:
        found: ``seeds x budget`` top candidates found after each experiment, one row per seed.
        n_top: Number of top candidates.
        size: Pool size ``N``.
        at: Experiment counts ``i``; an ``i`` beyond the budget gives None.

    Returns:
        ``str(i)`` to the enhancement factor (1 means no better than random).
    """
    out: dict[str, float | None] = {}
    for i in at:
        if i > found.shape[1]:
            out[str(i)] = None
            continue
        top_fraction = float(found[:, i - 1].mean()) / n_top
        out[str(i)] = top_fraction / (i / size)
    return out


def liang_curve(
    top_fraction: np.ndarray, folds: int = LIANG_FOLDS, splits: int = LIANG_SPLITS, seed: int = 0
) -> np.ndarray:
    """The Top% curve aggregated as Liang et al.'s code does, before it reads EF and AF off it.

    Their visualisation splits the runs at random into ``folds`` equal groups, averages the Top% curves
    within each group, repeats this over many random splits and takes the median over all the group
    means, experiment by experiment (50 runs in groups of 10, 100 splits). With fewer runs the groups
    are smaller; runs beyond a multiple of ``folds`` are left out of each split at random.

    Args:
        top_fraction: ``runs x experiments`` Top% after each experiment, one row per run.
        folds: Groups per split.
        splits: Random splits.
        seed: Seed of the splits.

    Returns:
        The median curve, one value per experiment.

    Raises:
        ValueError: Fewer runs than ``folds``.
    """
    runs = top_fraction.shape[0]
    size = runs // folds
    if size < 1:
        raise ValueError(f"{runs} runs cannot be split into {folds} groups")
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(splits):
        order = rng.permutation(runs)
        means.extend(top_fraction[order[k * size : (k + 1) * size]].mean(axis=0) for k in range(folds))
    return np.median(np.array(means), axis=0)


def liang_figures(
    found: np.ndarray, n_top: int, size: int, up_to: float = max(LEVELS)
) -> dict[str, float | None]:
    """Experiments to 50 % and 80 %, EF_max and AF_max on :func:`liang_curve` of the runs.

    ``EF(i) = Top%(i) / (i / N)``; ``AF(f) = f N / i(f)``, with ``i(f)`` the first experiment at which
    the curve reaches ``f`` and ``f N`` the experiments random picking needs on average. The maxima
    are taken over the experiments run and over ``f = k / n_top`` up to ``up_to``: runs stop once they
    have every reported figure, so the curve is known only that far. Both are then lower bounds of the
    maxima over a run to the end of the pool.

    Args:
        found: ``runs x experiments`` top candidates found after each experiment (runs stopped early
            padded with their last count).
        n_top: Number of top candidates.
        size: Pool size ``N``.
        up_to: Highest Top% level the AF is taken at.

    Returns:
        ``exp_to_50`` and ``exp_to_80`` (None when the curve does not get there), ``ef_max``, ``af_max``.
    """
    curve = liang_curve(np.asarray(found, dtype=float) / n_top)
    steps = np.arange(1, curve.size + 1)

    def first(level: float) -> int | None:
        hits = np.nonzero(curve >= level - 1e-9)[0]
        return int(hits[0]) + 1 if hits.size else None

    levels = [k / n_top for k in range(1, needed(up_to, n_top) + 1)]
    af = [level * size / reached for level in levels if (reached := first(level)) is not None]
    out: dict[str, float | None] = {f"exp_to_{round(level * 100)}": first(level) for level in LEVELS}
    out["ef_max"] = float(np.max(curve / (steps / size)))
    out["af_max"] = float(max(af)) if af else None
    return out
