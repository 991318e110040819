"""Pool-based optimiser benchmark on real data sets (protocol of Liang et al. 2021).

Each seed draws two random initial rows of the pool (the same for every method), then each method
picks one unmeasured row per cycle until the budget (initial rows included) is spent. Reported per
method: experiments to find 50 % and 80 % of the top candidates (median, 5th and 95th percentile over
seeds; a seed that never gets there counts as ``budget + 1``), the enhancement factor over random
picking after 10, 20 and 50 experiments, and the mean wall time of one proposal. ``random`` is not
simulated: its figures are the analytical hypergeometric ones (:mod:`bench.metrics`).

A run stops as soon as every reported number is known (80 % found and at least 50 experiments, or
the budget), which gives the same figures as running to the budget.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from athanor.errors import AthanorError
from bench.metrics import (
    EF_AT,
    LEVELS,
    LIANG_FOLDS,
    enrichment,
    experiments_to,
    found_counts,
    liang_figures,
    needed,
    random_experiments_to,
    spread,
)
from bench.output import run_with_progress
from bench.peers import PEER_PACKAGES, AxSession, BaybeSession, require_peer
from bench.pool import Pool, load_pool
from tools.optimiser import LIANG_BETA, propose_from_pool

__all__ = [
    "METHODS",
    "N_INITIAL",
    "AthanorSession",
    "Session",
    "initial_indices",
    "merge_results",
    "render_table",
    "run_benchmark",
    "run_cli",
    "run_method",
    "summarise",
]

#: Random initial rows per seed, shared by every method.
N_INITIAL = 2


class Session(Protocol):
    """One seeded optimisation run on a pool: told the measured rows, asked for the next one."""

    def tell(self, indices: Sequence[int]) -> None:
        """Record that pool rows ``indices`` were measured (their values are in the pool)."""

    def ask(self) -> int:
        """The next pool row to measure (not measured before)."""


#: Builds a session for a pool and a seed.
SessionFactory = Callable[[Pool, int], Session]


class AthanorSession:
    """athanor's optimiser in pool mode (:func:`tools.optimiser.propose_from_pool`).

    Args:
        pool: The pool.
        seed: Seed of the run; each proposal uses a seed derived from it and the step.
        options: Keyword options passed to :func:`propose_from_pool` (e.g. ``log_transform``).
    """

    def __init__(self, pool: Pool, seed: int, **options: Any) -> None:
        self._pool = pool
        self._seed = seed
        self._options = options
        self._measured: list[int] = []

    def tell(self, indices: Sequence[int]) -> None:
        """Record measured pool rows."""
        self._measured.extend(int(i) for i in indices)

    def ask(self) -> int:
        """The row :func:`propose_from_pool` picks given the measured rows."""
        rows = self._measured
        picks = propose_from_pool(
            None,
            self._pool.x[rows],
            self._pool.y[rows],
            self._pool.x,
            1,
            seed=self._seed * 100_003 + len(rows),
            direction=self._pool.direction,
            **self._options,
        )
        return picks[0].index


#: Method name to session factory; ``random`` is analytical and has none. ``athanor`` is the
#: optimiser's default (warped inputs; one pick at a time, as here, is scored by the upper confidence
#: bound :data:`tools.optimiser.UCB_BETA`); ``athanor-warp-ucb4`` is the previous default (the bound
#: two standard deviations up); ``athanor-qlognei`` the one before (no warping, qLogNEI);
#: ``athanor-ucb`` is the two-deviation bound without warping; ``athanor-rf`` is the random-forest
#: surrogate with Liang et al.'s lower confidence bound (``lambda = 2``, mean plus two spreads across
#: trees).
METHODS: dict[str, SessionFactory | None] = {
    "random": None,
    "athanor": AthanorSession,
    "athanor-qlognei": functools.partial(AthanorSession, acquisition="qlognei", warp=False),
    "athanor-warp-ucb4": functools.partial(AthanorSession, acquisition="ucb", beta=4.0),
    "athanor-ucb": functools.partial(AthanorSession, acquisition="ucb", beta=4.0, warp=False),
    "athanor-rf": functools.partial(
        AthanorSession, model="random_forest", acquisition="ucb", beta=LIANG_BETA
    ),
    "baybe": BaybeSession,
    "ax": AxSession,
}


def initial_indices(size: int, seed: int) -> list[int]:
    """The :data:`N_INITIAL` distinct random pool rows every method starts from for ``seed``."""
    return [int(i) for i in np.random.default_rng(seed).choice(size, N_INITIAL, replace=False)]


def _run_length(pool: Pool, budget: int, found: np.ndarray) -> bool:
    """Whether a run with top-candidate counts ``found`` has every metric it reports."""
    longest_ef = max((i for i in EF_AT if i <= budget), default=0)
    return len(found) >= budget or (
        len(found) >= longest_ef and int(found[-1]) >= needed(max(LEVELS), pool.n_top)
    )


def run_method(
    pool: Pool, factory: SessionFactory, seed: int, budget: int, *, stop_early: bool = True
) -> tuple[list[int], list[float]]:
    """Run one method on one seed.

    Args:
        pool: The pool.
        factory: Builds the method's session.
        seed: Seed; fixes the initial rows and the method's randomness.
        budget: Experiments allowed, the initial rows included.
        stop_early: Stop once every reported metric is known (see the module docstring).

    Returns:
        The pool rows measured, in order, and the wall time of each proposal (s).

    Raises:
        RuntimeError: The method proposed a row outside the pool or one measured before.
    """
    picks = initial_indices(pool.size, seed)
    session = factory(pool, seed)
    session.tell(picks)
    top = pool.top_indices()
    seconds = []
    while len(picks) < budget:
        if stop_early and _run_length(pool, budget, found_counts(picks, top)):
            break
        start = time.perf_counter()
        index = int(session.ask())
        seconds.append(time.perf_counter() - start)
        if not 0 <= index < pool.size or index in picks:
            raise RuntimeError(f"seed {seed}: the method proposed row {index}, outside the pool or measured")
        picks.append(index)
        session.tell([index])
    return picks, seconds


def _level_key(level: float) -> str:
    return f"exp_to_{round(level * 100)}"


def summarise(
    pool: Pool,
    budget: int,
    methods: Sequence[str],
    runs: Mapping[str, Sequence[Sequence[int]]],
    seconds: Mapping[str, Sequence[float]],
) -> dict[str, Any]:
    """The benchmark's JSON document from the runs so far.

    Args:
        pool: The pool.
        budget: Experiments per run.
        methods: Method names, in output order (``random`` is analytical).
        runs: Method to one pick sequence per seed (same number of seeds for every method).
        seconds: Method to the wall times of all its proposals.

    Returns:
        ``{"dataset", "pool_size", "n_top", "seeds", "budget", "methods": {name: {"exp_to_50",
        "exp_to_80", "ef", "seconds_per_proposal", "liang"}}}``. ``liang`` (with at least
        ``LIANG_FOLDS`` seeds, not for ``random``) holds :func:`bench.metrics.liang_figures`: the
        same figures read off the aggregate curve Liang et al.'s code plots.
    """
    top = pool.top_indices()
    simulated = [m for m in methods if m != "random"]
    n_seeds = len(runs[simulated[0]]) if simulated else 0
    out: dict[str, Any] = {}
    for method in methods:
        if method == "random":
            entry: dict[str, Any] = {
                _level_key(level): random_experiments_to(pool.size, pool.n_top, level) for level in LEVELS
            }
            entry["ef"] = {str(i): (1.0 if i <= budget else None) for i in EF_AT}
            entry["seconds_per_proposal"] = 0.0
        else:
            found = [found_counts(p, top) for p in runs[method]]
            entry = {
                _level_key(level): spread([experiments_to(f, pool.n_top, level, budget) for f in found])
                for level in LEVELS
            }
            # Early-stopped runs have every count the enrichment needs; pad to one length for the array.
            width = max(len(f) for f in found)
            padded = np.array([np.pad(f, (0, width - len(f)), mode="edge") for f in found])
            entry["ef"] = enrichment(padded, pool.n_top, pool.size)
            for i in EF_AT:
                if i > budget:
                    entry["ef"][str(i)] = None
            if len(found) >= LIANG_FOLDS:
                entry["liang"] = liang_figures(padded, pool.n_top, pool.size)
            times = seconds[method]
            entry["seconds_per_proposal"] = float(np.mean(times)) if len(times) else 0.0
        out[method] = entry
    return {
        "dataset": pool.name,
        "pool_size": pool.size,
        "n_top": pool.n_top,
        "seeds": n_seeds,
        "budget": budget,
        "methods": out,
    }


def _check(
    pool: Pool, seeds: int, budget: int, methods: Sequence[str], known: Sequence[str] = tuple(METHODS)
) -> None:
    """Refuse arguments that cannot give a benchmark, naming the fix."""
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise AthanorError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    if not methods:
        raise AthanorError(f"no method given; choose from {', '.join(known)}")
    if seeds < 1:
        raise AthanorError(f"seeds={seeds}; run at least 1 seed")
    if not N_INITIAL < budget <= pool.size:
        raise AthanorError(
            f"budget={budget} must exceed the {N_INITIAL} initial experiments and not exceed the pool of"
            f" {pool.size} unique inputs; use a budget between {N_INITIAL + 1} and {pool.size}"
        )
    for method in methods:
        if method in PEER_PACKAGES:
            require_peer(method)


def run_benchmark(
    pool: Pool,
    *,
    seeds: int,
    budget: int,
    methods: Sequence[str] = ("random", "athanor"),
    factories: Mapping[str, SessionFactory] | None = None,
    on_run: Callable[[str, int], None] | None = None,
    on_seed: Callable[[dict[str, Any]], None] | None = None,
    stop_early: bool = True,
) -> dict[str, Any]:
    """Benchmark methods on a pool over seeds ``0 .. seeds - 1``.

    Args:
        pool: The pool.
        seeds: Number of seeds.
        budget: Experiments per run, the initial rows included.
        methods: Names from :data:`METHODS` (or from ``factories``), in output order.
        factories: Extra or replacement session factories by method name (e.g. variants).
        on_run: Called with ``(method, seed)`` after each run.
        on_seed: Called with the JSON document so far after each seed (all methods).
        stop_early: See :func:`run_method`.

    Returns:
        The JSON document of :func:`summarise`.

    Raises:
        AthanorError: An unknown method, a missing peer package, or a budget the pool cannot hold.
    """
    registry: dict[str, SessionFactory | None] = {**METHODS, **(factories or {})}
    methods = list(dict.fromkeys(methods))
    _check(pool, seeds, budget, methods, known=list(registry))
    runs: dict[str, list[list[int]]] = {m: [] for m in methods}
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # every method on one thread: fair timings, and the machine may be shared
    try:
        for seed in range(seeds):
            for method in methods:
                factory = registry[method]
                if factory is None:
                    continue
                picks, times = run_method(pool, factory, seed, budget, stop_early=stop_early)
                runs[method].append(picks)
                seconds[method].extend(times)
                if on_run is not None:
                    on_run(method, seed)
            if on_seed is not None:
                on_seed(summarise(pool, budget, methods, runs, seconds))
    finally:
        torch.set_num_threads(threads)
    return summarise(pool, budget, methods, runs, seconds)


def merge_results(documents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Join benchmark documents of the same data set, seeds and budget that ran different methods.

    Later documents win for a method present in several.

    Raises:
        AthanorError: The documents differ in data set, pool, seeds or budget.
    """
    if not documents:
        raise AthanorError("nothing to merge; give at least one benchmark document")
    keys = ("dataset", "pool_size", "n_top", "seeds", "budget")
    first = documents[0]
    for other in documents[1:]:
        differ = [k for k in keys if other[k] != first[k]]
        if differ:
            raise AthanorError(
                f"cannot merge benchmark results that differ in {', '.join(differ)};"
                " merge only runs of one data set with the same --seeds and --budget"
            )
    merged = {k: first[k] for k in keys}
    merged["methods"] = {name: entry for doc in documents for name, entry in doc["methods"].items()}
    return merged


def _fmt_spread(entry: Mapping[str, float]) -> str:
    return f"{entry['median']:g} ({entry['p5']:g}–{entry['p95']:g})"


def render_table(result: Mapping[str, Any]) -> Table:
    """A rich table of a benchmark document: one row per method."""
    title = (
        f"{result['dataset']}: pool {result['pool_size']}, top {result['n_top']}, "
        f"{result['seeds']} seeds, budget {result['budget']}"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("method")
    for level in LEVELS:
        table.add_column(f"to {round(level * 100)}%\n(p5–p95)", justify="right")
        table.add_column(f"AF{round(level * 100)}", justify="right")
    for i in EF_AT:
        table.add_column(f"EF{i}", justify="right")
    table.add_column("s/prop", justify="right")
    methods = result["methods"]
    random_entry = methods.get("random")
    for name, entry in methods.items():
        cells = [name]
        for level in LEVELS:
            key = _level_key(level)
            cells.append(_fmt_spread(entry[key]))
            if random_entry is None:
                cells.append("—")
            else:
                cells.append(f"{random_entry[key]['median'] / entry[key]['median']:.2f}")
        cells += ["—" if entry["ef"][str(i)] is None else f"{entry['ef'][str(i)]:.2f}" for i in EF_AT]
        cells.append(f"{entry['seconds_per_proposal']:.3f}")
        table.add_row(*cells)
    return table


def run_cli(
    dataset: Path,
    *,
    seeds: int,
    budget: int,
    direction: Literal["min", "max"],
    methods: Sequence[str],
    out: Path | None,
    console: Console,
) -> dict[str, Any]:
    """Load a CSV, run the benchmark with a progress bar, print the table and write the JSON.

    With ``out``, the JSON is rewritten after every seed, so an interrupted run leaves the seeds done.

    Raises:
        AthanorError: A bad data set or bad arguments.
    """
    pool = load_pool(dataset, direction)
    methods = list(dict.fromkeys(methods))
    _check(pool, seeds, budget, methods)
    simulated = [m for m in methods if METHODS[m] is not None]
    console.print(
        f"[bold]{pool.name}[/]: {pool.rows} rows, {pool.size} unique inputs ({len(pool.columns)} columns),"
        f" top {pool.n_top} by {direction} {pool.objective}"
    )
    return run_with_progress(
        console,
        seeds * len(simulated),
        out,
        lambda on_run, on_seed: run_benchmark(
            pool, seeds=seeds, budget=budget, methods=methods, on_run=on_run, on_seed=on_seed
        ),
        render_table,
    )
