from __future__ import annotations

import json

import numpy as np
import pytest

from bench.optimiser import METHODS, run_method
from bench.pool import Pool
from bench.study import record, run_config, summarise_runs


def toy_pool():
    rng = np.random.default_rng(8)
    x = rng.random((50, 2))
    y = np.exp(-((x[:, 0] - 0.6) ** 2 + (x[:, 1] - 0.4) ** 2) / 0.05)
    return Pool("toy", ("a", "b"), "y", x, y, 50, "max")


@pytest.mark.parametrize(
    ("config", "method"),
    [("rf-lcb2", "athanor-rf"), ("gp-ucb4", "athanor-ucb"), ("gp-warp-ucb4", "athanor-warp")],
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
