from __future__ import annotations

import json

import numpy as np
import pytest

from bench.optimiser import METHODS, run_method
from bench.pool import Pool
from bench.study import paired, record, run_config, summarise_runs


def toy_pool():
    rng = np.random.default_rng(8)
    x = rng.random((50, 2))
    y = np.exp(-((x[:, 0] - 0.6) ** 2 + (x[:, 1] - 0.4) ** 2) / 0.05)
    return Pool("toy", ("a", "b"), "y", x, y, 50, "max")


@pytest.mark.parametrize(
    ("config", "method"),
    [
        ("rf-lcb2", "athanor-rf"),
        ("gp-ucb4", "athanor-ucb"),
        ("gp-warp-ucb2", "athanor"),
        ("gp-warp-ucb4", "athanor-warp-ucb4"),
        ("gp-qlognei", "athanor-qlognei"),
    ],
)
def test_study_runs_are_the_benchmark_runs(config, method):
    pool = toy_pool()
    run = run_config(pool, config, seed=1, budget=12)
    picks, _ = run_method(pool, METHODS[method], 1, 12)
    assert run["picks"] == picks and len(run["seconds"]) == len(picks) - 2


def test_batches_pick_distinct_rows_and_record_merges_into_results(tmp_path):
    pool = toy_pool()
    run = run_config(pool, "rf-lcb2", seed=0, budget=12, batch=4)
    assert len(run["picks"]) == 12 and len(set(run["picks"])) == 12
    assert len(run["seconds"]) == 3  # 2 initial rows, then batches of 4, 4 and the last 2
    runs = [run_config(pool, "rf-lcb2", seed=s, budget=12) for s in (0, 1)]
    figures = summarise_runs(pool, runs, 12)
    assert set(figures) == {"to_50", "to_80", "ef10"}
    results = tmp_path / "toy.json"
    results.write_text(
        json.dumps(
            {
                "dataset": "toy",
                "pool_size": 50,
                "n_top": 3,
                "seeds": 2,
                "budget": 12,
                "methods": {"ax": {"kept": True}},
            }
        )
    )
    record(runs, pool, "athanor-rf", results, budget=12)
    merged = json.loads(results.read_text())
    assert list(merged["methods"]) == ["ax", "athanor-rf"] and merged["methods"]["ax"] == {"kept": True}
    assert merged["methods"]["athanor-rf"]["exp_to_80"]["median"] == figures["to_80"]
    with pytest.raises(ValueError, match=r"seeds 0\.\.n-1"):
        record(runs[1:], pool, "athanor-rf", results, budget=12)


def test_paired_counts_seed_by_seed_wins_and_tests_the_differences():
    pool = toy_pool()
    top = [int(i) for i in pool.top_indices()]
    rest = [i for i in range(pool.size) if i not in top]
    early = {"seed": 0, "picks": top + rest}  # every top row first: 80 % found after 3 experiments
    late = {"seed": 0, "picks": rest[:20] + top + rest[20:]}
    seeds = range(8)
    first = [{**(early if s < 7 else late), "seed": s} for s in seeds]
    second = [{**late, "seed": s} for s in seeds]
    result = paired(pool, first, second, budget=30)
    assert (result["wins"], result["losses"], result["ties"], result["seeds"]) == (7, 0, 1, 8)
    assert result["median_difference"] == -20.0
    assert result["p_value"] < 0.05
    reversed_ = paired(pool, second, first, budget=30)
    assert (reversed_["wins"], reversed_["losses"]) == (0, 7) and reversed_["median_difference"] == 20.0
    assert paired(pool, second, second, budget=30)["p_value"] == 1.0


def test_peer_configurations_refuse_batches():
    with pytest.raises(ValueError, match="batch 1"):
        run_config(toy_pool(), "ax", seed=0, budget=6, batch=4)
