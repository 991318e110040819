"""Which configuration should be the optimiser's default: candidate surrogates and acquisitions on the pools.

Each configuration runs the protocol of :mod:`bench.optimiser` (same initial rows per seed, same
metrics) on chosen seeds of the four data sets, and every run's pick sequence is kept, so that the
figures of any subset of seeds (choose on seeds 0-9, confirm on 10-19) come from the same runs.
Every GP configuration is a set of options of :func:`tools.optimiser.propose_from_pool` (kernel,
input warping, winsorised targets, acquisition, exploration weight); Thompson sampling fits that
function's GP (:func:`tools.optimiser.models.fit_gp`) and draws from it.

``--batch 4`` runs the batch form of the protocol: each cycle picks 4 rows jointly (greedily, each
conditioned on the earlier ones) and measures them together; experiments-to-X counts experiments.

Usage (``study/`` holds one JSON of runs per configuration, data set and batch size)::

    OMP_NUM_THREADS=1 nice -n 10 python -m bench.study --configs gp-ucb4,rf-lcb2 --seeds 0-9 --out study
    python -m bench.study --report --seeds 0-9 --out study --summary bench/results/study.json
    python -m bench.study --record rf-lcb2=athanor-rf --seeds 0-19 --out study
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from botorch.utils.sampling import manual_seed
from scipy.stats import wilcoxon

from bench.metrics import EF_AT, LEVELS, LIANG_FOLDS, experiments_to, found_counts, liang_figures
from bench.optimiser import AthanorSession, initial_indices, merge_results, summarise
from bench.peers import AxSession, BaybeSession
from bench.pool import Pool, load_pool
from tools.optimiser import propose_from_pool
from tools.optimiser.models import fit_gp, one_thread

__all__ = ["CONFIGS", "DATASETS", "paired", "record", "run_config", "summarise_runs"]

#: Data-set folder name to the direction of its objective.
DATASETS = {"p3ht_cnt": "max", "agnp": "min", "colors_bob": "min", "suzuki": "max"}


class _StudySession(AthanorSession):
    """:class:`AthanorSession` that picks ``batch`` rows per ask (``options`` go to ``propose_from_pool``)."""

    def __init__(self, pool: Pool, seed: int, *, batch: int = 1, **options: Any) -> None:
        super().__init__(pool, seed, **options)
        self._batch = batch

    def ask_batch(self) -> list[int]:
        """The next ``batch`` rows (fewer at the end of the pool)."""
        rows = self._measured
        picks = propose_from_pool(
            None,
            self._pool.x[rows],
            self._pool.y[rows],
            self._pool.x,
            self._batch,
            seed=self._seed * 100_003 + len(rows),
            direction=self._pool.direction,
            **self._options,
        )
        return [p.index for p in picks]


class _ThompsonSession(_StudySession):
    """Thompson sampling on the pool: one joint posterior draw of the warped GP over the free rows.

    Each ask fits the GP :func:`tools.optimiser.propose_from_pool` fits by default (warped inputs,
    standardised outcome, the same log-scale rule) and picks the free row where one joint sample of
    the posterior is highest; a batch takes the ``batch`` highest rows of that one draw.
    """

    def ask_batch(self) -> list[int]:
        """The next ``batch`` rows."""
        rows = self._measured
        x = torch.as_tensor(self._pool.x, dtype=torch.float64)
        y = torch.as_tensor(self._pool.y, dtype=torch.float64)
        seed = self._seed * 100_003 + len(rows)
        lower, upper = x.min(dim=0).values, x.max(dim=0).values
        bounds = torch.stack([lower, torch.where(upper > lower, upper, lower + 1.0)])
        free = torch.ones(self._pool.size, dtype=torch.bool)
        free[rows] = False
        idx = torch.nonzero(free).flatten()
        sign = 1.0 if self._pool.direction == "max" else -1.0
        with manual_seed(seed), one_thread():
            fitted = fit_gp(x[rows], y[rows], bounds, sign, None, warp=True)
            with torch.no_grad():
                draw = fitted.model.posterior(x[idx]).rsample(torch.Size([1])).reshape(-1)
        order = torch.argsort(draw, descending=True)[: self._batch]
        return [int(idx[i]) for i in order]


class _PeerStudySession:
    """A peer library's session (:mod:`bench.peers`) in the study, so its runs are kept seed by seed."""

    def __init__(self, factory: Callable[[Pool, int], Any], pool: Pool, seed: int, batch: int = 1) -> None:
        if batch != 1:
            raise ValueError("peer configurations run one experiment at a time (batch 1)")
        self._session = factory(pool, seed)

    def tell(self, indices: Sequence[int]) -> None:
        """Record measured pool rows."""
        self._session.tell(indices)

    def ask_batch(self) -> list[int]:
        """The peer's next row."""
        return [int(self._session.ask())]


def _config(**options: Any) -> Callable[..., _StudySession]:
    return functools.partial(_StudySession, **options)


#: Configuration name to a session factory (``pool, seed, batch=...``).
CONFIGS: dict[str, Callable[..., _StudySession | _PeerStudySession]] = {
    "gp-qlognei": _config(acquisition="qlognei", warp=False),
    "gp-ucb4": _config(acquisition="ucb", beta=4.0, warp=False),
    "gp-matern-ucb4": _config(kernel="matern", warp=False, acquisition="ucb", beta=4.0),
    # Liang et al.'s GP-ARD (Matérn-5/2) + LCB, lambda = 2, on standardised targets as they fitted them
    "gp-matern-nolog-ucb4": _config(
        kernel="matern", warp=False, acquisition="ucb", beta=4.0, log_transform=False
    ),
    "gp-warp-ucb4": _config(warp=True, acquisition="ucb", beta=4.0),
    "gp-warp-qlognei": _config(warp=True, acquisition="qlognei"),
    "gp-warp-ucb2": _config(acquisition="ucb", beta=2.0),
    "gp-warp-ucb9": _config(acquisition="ucb", beta=9.0),
    "gp-warp-ts": functools.partial(_ThompsonSession),
    "gp-nolog-qlognei": _config(log_transform=False, acquisition="qlognei", warp=False),
    "gp-winsor-qlognei": _config(winsorise=True, warp=False, acquisition="qlognei"),
    "rf-lcb2": _config(model="random_forest", acquisition="ucb", beta=4.0),
    "rf-ei": _config(model="random_forest", acquisition="ei"),
    "rf-lcb2-nolog": _config(model="random_forest", acquisition="ucb", beta=4.0, log_transform=False),
    "ax": functools.partial(_PeerStudySession, AxSession),
    "baybe": functools.partial(_PeerStudySession, BaybeSession),
}


def run_config(pool: Pool, name: str, seed: int, budget: int, batch: int = 1) -> dict[str, Any]:
    """One run: picks in order and seconds per ask, stopped as :func:`bench.optimiser.run_method` stops."""
    session = CONFIGS[name](pool, seed, batch=batch)
    picks = initial_indices(pool.size, seed)
    session.tell(picks)
    top = pool.top_indices()
    seconds = []
    longest_ef = max((i for i in EF_AT if i <= budget), default=0)
    while len(picks) < budget:
        found = found_counts(picks, top)
        if len(picks) >= longest_ef and experiments_to(found, pool.n_top, max(LEVELS), budget) <= budget:
            break
        start = time.perf_counter()
        rows = session.ask_batch()[: budget - len(picks)]
        seconds.append(time.perf_counter() - start)
        if not rows or any(r in picks for r in rows):
            raise RuntimeError(f"{name} seed {seed}: bad picks {rows}")
        picks.extend(rows)
        session.tell(rows)
    return {"seed": seed, "picks": picks, "seconds": seconds}


def summarise_runs(pool: Pool, runs: Sequence[dict[str, Any]], budget: int) -> dict[str, float | None]:
    """Median experiments to 50 % and 80 %, and mean EF(10), over ``runs``.

    With at least ``LIANG_FOLDS`` runs, also :func:`bench.metrics.liang_figures` as ``liang_to_50``,
    ``liang_to_80``, ``liang_ef_max`` and ``liang_af_max``.
    """
    top = pool.top_indices()
    found = [found_counts(r["picks"], top) for r in runs]
    out: dict[str, float | None] = {}
    for level in LEVELS:
        values = [experiments_to(f, pool.n_top, level, budget) for f in found]
        out[f"to_{round(level * 100)}"] = float(np.median(values))
    out["ef10"] = float(np.mean([f[9] / pool.n_top / (10 / pool.size) for f in found]))
    if len(found) >= LIANG_FOLDS:
        width = max(len(f) for f in found)
        padded = np.array([np.pad(f, (0, width - len(f)), mode="edge") for f in found])
        figures = liang_figures(padded, pool.n_top, pool.size)
        out |= {f"liang_{k.replace('exp_', '')}": v for k, v in figures.items()}
    return out


def paired(
    pool: Pool, first: Sequence[dict[str, Any]], second: Sequence[dict[str, Any]], budget: int
) -> dict[str, Any]:
    """Seed-by-seed comparison of two configurations' experiments to 80 % (same seeds, same initial rows).

    Returns:
        ``seeds``; ``wins`` / ``losses`` / ``ties`` of ``first`` (fewer experiments wins); the median of
        the per-seed differences ``first - second``; and the two-sided Wilcoxon signed-rank p-value
        (ties dropped; 1.0 when every seed ties).
    """
    top = pool.top_indices()
    by_seed = {r["seed"]: r for r in second}
    seeds = sorted(r["seed"] for r in first if r["seed"] in by_seed)
    firsts = {r["seed"]: r for r in first}

    def to_80(run: dict[str, Any]) -> float:
        return experiments_to(found_counts(run["picks"], top), pool.n_top, max(LEVELS), budget)

    differences = np.array([to_80(firsts[s]) - to_80(by_seed[s]) for s in seeds])
    nonzero = differences[differences != 0]
    p_value = float(wilcoxon(nonzero).pvalue) if len(nonzero) else 1.0
    return {
        "seeds": len(seeds),
        "wins": int((differences < 0).sum()),
        "losses": int((differences > 0).sum()),
        "ties": int((differences == 0).sum()),
        "median_difference": float(np.median(differences)) if len(seeds) else float("nan"),
        "p_value": p_value,
    }


def record(runs: Sequence[dict[str, Any]], pool: Pool, method: str, results: Path, budget: int = 100) -> None:
    """Merge batch-1 runs on seeds ``0 .. n - 1`` into a results JSON as ``method``.

    The runs are those :func:`bench.optimiser.run_benchmark` would make (same initial rows, seeds and
    stopping rule), so the entry is the one ``athanor bench optimiser`` writes for that method.
    """
    runs = sorted(runs, key=lambda r: r["seed"])
    if [r["seed"] for r in runs] != list(range(len(runs))):
        raise ValueError(f"{method}: record needs seeds 0..n-1, got {[r['seed'] for r in runs]}")
    seconds = [t for r in runs for t in r["seconds"]]
    document = summarise(pool, budget, [method], {method: [r["picks"] for r in runs]}, {method: seconds})
    existing = json.loads(results.read_text()) if results.exists() else None
    merged = merge_results([existing, document]) if existing else document
    results.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")


def _seed_range(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def _pool(name: str) -> Pool:
    return load_pool(Path(__file__).parent / "datasets" / name / "data.csv", DATASETS[name])  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> None:
    """Run configurations (``--configs``) or report finished runs (``--report``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="")
    parser.add_argument("--sets", default=",".join(DATASETS))
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("study"))
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--record", default="", help="config=method: merge its runs into bench/results")
    parser.add_argument("--summary", type=Path, help="with --report: also add the figures to this JSON")
    parser.add_argument("--paired", default="", help="A,B: seed-by-seed comparison of A against B")
    args = parser.parse_args(argv)
    seeds = _seed_range(args.seeds)
    sets = args.sets.split(",")
    torch.set_num_threads(1)
    if args.record:
        config, _, method = args.record.partition("=")
        for dataset in sets:
            path = args.out / f"{config}.{dataset}.b1.json"
            runs = [r for r in json.loads(path.read_text())["runs"] if r["seed"] in seeds]
            results = Path(__file__).parent / "results" / f"{dataset}.json"
            record(runs, _pool(dataset), method or config, results, args.budget)
            print(f"recorded {config} as {method or config} in {results}")
        return
    if args.paired:
        first, second = args.paired.split(",")
        for dataset in sets:
            runs = [
                [
                    r
                    for r in json.loads((args.out / f"{c}.{dataset}.b{args.batch}.json").read_text())["runs"]
                    if r["seed"] in seeds
                ]
                for c in (first, second)
            ]
            print(first, "vs", second, dataset, paired(_pool(dataset), runs[0], runs[1], args.budget))
        return
    if args.report:
        summary = json.loads(args.summary.read_text()) if args.summary and args.summary.exists() else {}
        for path in sorted(args.out.glob(f"*.b{args.batch}.json")):
            config, dataset = path.name.split(".")[:2]
            runs = [r for r in json.loads(path.read_text())["runs"] if r["seed"] in seeds]
            if dataset in sets and len(runs) == len(seeds):
                figures = summarise_runs(_pool(dataset), runs, args.budget)
                print(config, dataset, figures)
                key = f"batch {args.batch}, seeds {args.seeds}, budget {args.budget}"
                summary.setdefault(key, {}).setdefault(config, {})[dataset] = figures
        if args.summary:
            args.summary.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for config in args.configs.split(","):
        for dataset in sets:
            pool = _pool(dataset)
            path = args.out / f"{config}.{dataset}.b{args.batch}.json"
            document = json.loads(path.read_text()) if path.exists() else {"runs": []}
            done = {r["seed"] for r in document["runs"]}
            for seed in seeds:
                if seed in done:
                    continue
                document["runs"].append(run_config(pool, config, seed, args.budget, args.batch))
                path.write_text(json.dumps(document) + "\n", encoding="utf-8")
            print(
                config,
                dataset,
                summarise_runs(pool, [r for r in document["runs"] if r["seed"] in seeds], args.budget),
                flush=True,
            )


if __name__ == "__main__":
    main()
