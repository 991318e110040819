from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from athanor.cli import app
from athanor.errors import AthanorError, SpecError
from bench.metrics import (
    enrichment,
    experiments_to,
    found_counts,
    liang_curve,
    liang_figures,
    needed,
    random_experiments_to,
    spread,
)
from bench.optimiser import initial_indices, merge_results, run_benchmark, run_method, summarise
from bench.pool import Pool, group_replicates, load_pool, n_top_of
from tools.optimiser import propose_from_pool


def make_pool(y, direction="max", name="toy"):
    y = np.asarray(y, dtype=float)
    x = np.arange(len(y), dtype=float).reshape(-1, 1)
    return Pool(name, ("x",), "y", x, y, len(y), direction)


class Oracle:
    """A method that knows the answer: it picks the best unmeasured row."""

    def __init__(self, pool, seed):
        self.pool = pool
        self.measured = []

    def tell(self, indices):
        self.measured.extend(indices)

    def ask(self):
        key = -self.pool.y if self.pool.direction == "max" else self.pool.y
        return next(int(i) for i in np.argsort(key, kind="stable") if int(i) not in self.measured)


def write_csv(path, rows, header):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")


# ----------------------------------------------------------------------------------------- metrics


def test_top_candidates_are_the_best_ceil_five_percent():
    assert [n_top_of(n) for n in (178, 164, 161, 247, 180, 20, 21, 3)] == [9, 9, 9, 13, 9, 1, 2, 1]
    pool = make_pool([5, 1, 9, 3, 7] * 4, direction="min")  # 20 rows -> 1 top candidate
    assert pool.n_top == 1 and pool.top_indices().tolist() == [1]
    assert needed(0.8, 9) == 8 and needed(0.5, 9) == 5 and needed(0.8, 10) == 8


def test_replicates_are_averaged_per_unique_input(tmp_path):
    x = np.array([[1.0, 2.0], [0.0, 5.0], [1.0, 2.0], [1.0, 2.0]])
    y = np.array([1.0, 10.0, 2.0, 6.0])
    unique, mean = group_replicates(x, y)
    assert unique.tolist() == [[0.0, 5.0], [1.0, 2.0]]
    assert mean.tolist() == [10.0, 3.0]

    path = tmp_path / "data.csv"
    write_csv(path, [[1, 2, 1], [0, 5, 10], [1, 2, 2], [1, 2, 6], [3, 3, 0]], ["a (%)", "b", "score"])
    pool = load_pool(path, "min")
    assert (pool.size, pool.rows, pool.columns, pool.objective) == (3, 5, ("a (%)", "b"), "score")
    assert sorted(pool.y.tolist()) == [0.0, 3.0, 10.0]
    assert pool.name == tmp_path.name


def test_bad_csvs_are_refused_with_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    write_csv(path, [[1, 2], [2, "n/a"], [3, 4], [5, 6]], ["a", "y"])
    with pytest.raises(AthanorError, match="line 3"):
        load_pool(path)
    with pytest.raises(AthanorError, match="does not exist"):
        load_pool(tmp_path / "missing.csv")


def test_an_oracle_reaches_80_percent_in_ceil_point_8_n_top_plus_2():
    y = np.linspace(0.0, 1.0, 60)
    pool = make_pool(y)  # n_top = 3: rows 59, 58, 57
    budget = 20
    seed = next(s for s in range(100) if not set(initial_indices(pool.size, s)) & {57, 58, 59})
    picks, seconds = run_method(pool, Oracle, seed, budget, stop_early=False)
    assert len(picks) == budget and len(seconds) == budget - 2 and len(set(picks)) == budget
    found = found_counts(picks, pool.top_indices())
    assert experiments_to(found, pool.n_top, 0.8, budget) == math.ceil(0.8 * pool.n_top) + 2 == 5
    assert experiments_to(found, pool.n_top, 0.5, budget) == math.ceil(0.5 * pool.n_top) + 2 == 4


def test_a_level_never_reached_counts_as_budget_plus_one():
    found = found_counts([0, 1, 2, 3], top=[3, 7, 8, 9])
    assert found.tolist() == [0, 0, 0, 1]
    assert experiments_to(found, 4, 0.25, budget=4) == 4
    assert experiments_to(found, 4, 0.5, budget=4) == 5


def test_spread_and_enrichment_by_hand():
    assert spread([1, 2, 3, 4, 5]) == {"median": 3.0, "p5": 1.2, "p95": 4.8}
    # Two seeds, pool of 100 with 5 top candidates: after 10 experiments 1 and 2 found.
    found = np.zeros((2, 20), dtype=int)
    found[0, 9:] = 1
    found[1, 9:] = 2
    ef = enrichment(found, n_top=5, size=100, at=(10, 20, 50))
    assert ef["10"] == pytest.approx((1.5 / 5) / (10 / 100)) == pytest.approx(3.0)
    assert ef["20"] == pytest.approx(1.5) and ef["50"] is None


def test_liang_curve_is_the_median_of_group_means():
    rng = np.random.default_rng(0)
    runs = np.sort(rng.uniform(0, 1, (5, 12)), axis=1)
    # five runs in five groups: every group is one run, so the curve is the median of the runs
    np.testing.assert_allclose(liang_curve(runs), np.median(runs, axis=0))
    same = np.tile(np.linspace(0, 1, 8), (10, 1))
    np.testing.assert_allclose(liang_curve(same), same[0])
    # ten runs, half fast and half slow: group means of 2 runs mix them, and their median is the middle
    fast, slow = np.ones(4), np.array([0.0, 0.0, 0.0, 1.0])
    mixed = liang_curve(np.array([fast] * 5 + [slow] * 5))
    assert mixed.tolist() == [0.5, 0.5, 0.5, 1.0]
    with pytest.raises(ValueError, match="4 runs"):
        liang_curve(runs[:4])


def test_liang_figures_by_hand():
    # 4 top candidates in a pool of 40, every run finds them after experiments 2, 4, 5 and 6
    found = np.tile([0, 1, 1, 2, 3, 4, 4], (5, 1))
    figures = liang_figures(found, n_top=4, size=40)
    assert figures["exp_to_50"] == 4 and figures["exp_to_80"] == 6
    # EF(i) = Top%(i) / (i / 40): 5 at i = 2 and 4, 6 at i = 5, 6.67 at i = 6
    assert figures["ef_max"] == pytest.approx(40 / 6)
    # AF(f) = 40 f / i(f) at f = 1/4 .. 4/4: 5, 5, 6, 6.67
    assert figures["af_max"] == pytest.approx(40 / 6)
    never = liang_figures(np.zeros((5, 3), dtype=int), n_top=4, size=40)
    assert never["exp_to_80"] is None and never["af_max"] is None and never["ef_max"] == 0


def test_analytical_random_baseline_matches_a_simulation():
    size, n_top, draws = 60, 3, 20_000
    rng = np.random.default_rng(0)
    orders = np.argsort(rng.random((draws, size)), axis=1)
    is_top = orders < n_top  # rows 0..n_top-1 are the top candidates
    found = np.cumsum(is_top, axis=1)
    # Expected fraction found after i draws is i / N.
    for i in (5, 20, 40):
        assert found[:, i - 1].mean() / n_top == pytest.approx(i / size, abs=0.01)
    # Quantiles of the experiments needed to reach each level.
    for level in (0.5, 0.8):
        reach = np.argmax(found >= needed(level, n_top), axis=1) + 1
        analytical = random_experiments_to(size, n_top, level)
        assert analytical["p5"] == pytest.approx(np.percentile(reach, 5, method="inverted_cdf"), abs=1)
        assert analytical["p95"] == pytest.approx(np.percentile(reach, 95, method="inverted_cdf"), abs=1)
        assert analytical["median"] == math.ceil(level * size)
    # And through the simulated "random" method.
    assert enrichment(found[:, :50], n_top, size)["20"] == pytest.approx(1.0, abs=0.03)


# --------------------------------------------------------------------------------------- pool mode


def bump(x):
    """A smooth bump with its maximum at (0.7, 0.3)."""
    return np.exp(-((x[:, 0] - 0.7) ** 2 + (x[:, 1] - 0.3) ** 2) / 0.08)


def test_propose_from_pool_returns_distinct_unvisited_indices():
    rng = np.random.default_rng(1)
    pool = rng.random((80, 2))
    visited = [3, 10, 50]
    pending = pool[[7]]
    picks = propose_from_pool(None, pool[visited], bump(pool[visited]), pool, 4, seed=0, pending=pending)
    indices = [p.index for p in picks]
    assert len(indices) == 4 and len(set(indices)) == 4
    assert not set(indices) & {3, 10, 50, 7}
    assert all(p.source == "model" and p.predicted_std > 0 for p in picks)
    values = [p.acquisition_value for p in picks]
    assert values[0] == max(values)  # best first
    # Everything measured: nothing left to pick.
    assert propose_from_pool(None, pool, bump(pool), pool, 2, seed=0) == []


def test_propose_from_pool_finds_the_maximum_of_a_smooth_pool_quickly():
    rng = np.random.default_rng(2)
    pool = rng.random((150, 2))
    best = int(np.argmax(bump(pool)))
    measured = [int(i) for i in rng.choice(150, 2, replace=False) if i != best]
    while best not in measured and len(measured) < 20:
        pick = propose_from_pool(None, pool[measured], bump(pool[measured]), pool, 1, seed=len(measured))
        assert pick[0].index not in measured
        measured.append(pick[0].index)
    assert best in measured  # random picking needs 75 on average


def test_propose_from_pool_with_an_upper_confidence_bound():
    rng = np.random.default_rng(5)
    pool = rng.random((80, 2))
    measured = [0, 1, 2, 3]
    picks = propose_from_pool(None, pool[measured], bump(pool[measured]), pool, 3, seed=0, acquisition="ucb")
    assert len({p.index for p in picks}) == 3 and not {p.index for p in picks} & set(measured)
    assert all("upper confidence bound" in p.rationale for p in picks)
    # With no exploration the bound is the posterior mean: the pick is the best predicted row.
    args = (None, pool[measured], bump(pool[measured]), pool)
    greedy = propose_from_pool(*args, 1, seed=0, acquisition="ucb", beta=0.0, log_transform=False)[0]
    every = propose_from_pool(*args, 76, seed=0, log_transform=False)
    assert len(every) == 76
    assert greedy.predicted_mean == pytest.approx(max(p.predicted_mean for p in every))
    with pytest.raises(SpecError, match="acquisition"):
        propose_from_pool(None, pool[measured], bump(pool[measured]), pool, 1, seed=0, acquisition="pi")


def test_the_pool_default_is_warped_ucb_for_one_pick_and_warped_qlognei_otherwise():
    rng = np.random.default_rng(6)
    pool = rng.random((60, 2))
    measured = [0, 1, 2, 3, 4]
    args = (None, pool[measured], bump(pool[measured]), pool)
    one = propose_from_pool(*args, 1, seed=0)
    assert one == propose_from_pool(*args, 1, seed=0, acquisition="ucb", warp=True)
    assert one != propose_from_pool(*args, 1, seed=0, acquisition="ucb", warp=False)  # the warp is on
    assert "upper confidence bound" in one[0].rationale
    batch = propose_from_pool(*args, 3, seed=0)
    assert batch == propose_from_pool(*args, 3, seed=0, acquisition="qlognei", warp=True)
    assert all("expected improvement" in p.rationale for p in batch)
    waiting = propose_from_pool(*args, 1, seed=0, pending=pool[[9]])
    assert "expected improvement" in waiting[0].rationale


def test_propose_from_pool_with_warped_inputs_climbs_a_steep_pool_and_only_for_the_gp():
    rng = np.random.default_rng(3)
    pool = rng.random((150, 2))

    def steep(x):  # flat over most of the first input, then a sharp rise near 1
        return np.exp(8 * x[:, 0] ** 6) * (1 - (x[:, 1] - 0.5) ** 2)

    best = int(np.argmax(steep(pool)))
    measured = [int(i) for i in rng.choice(150, 3, replace=False) if i != best]
    while best not in measured and len(measured) < 25:
        values = steep(pool[measured])
        picks = propose_from_pool(
            None, pool[measured], values, pool, 1, seed=len(measured), acquisition="ucb", warp=True
        )
        assert picks[0].source == "model" and picks[0].index not in measured
        measured.append(picks[0].index)
    assert best in measured  # random picking needs 75 on average
    with pytest.raises(SpecError, match="warp=True warps the GP's inputs"):
        propose_from_pool(None, pool[:4], steep(pool[:4]), pool, 1, seed=0, model="random_forest", warp=True)


def test_propose_from_pool_minimises_and_respects_the_spec_direction():
    from athanor.spec import CampaignSpec

    rng = np.random.default_rng(3)
    pool = rng.random((60, 2))
    y = -bump(pool)  # minimum at the bump's peak
    measured = [0, 1, 2, 3, 4, 5]
    pick = propose_from_pool(None, pool[measured], y[measured], pool, 1, seed=0, direction="min")
    assert pick[0].index not in measured
    spec = CampaignSpec(
        components=[{"name": "A"}, {"name": "B"}],
        sum_rule=None,
        objectives=[{"name": "loss", "direction": "minimise"}],
        budget={"experiments": 10},
    )
    same = propose_from_pool(spec, pool[measured], y[measured], pool, 1, seed=0)
    assert same[0].index == pick[0].index
    with pytest.raises(SpecError, match="contradicts"):
        propose_from_pool(spec, pool[measured], y[measured], pool, 1, seed=0, direction="max")
    with pytest.raises(SpecError, match="3 columns"):
        propose_from_pool(spec, np.zeros((2, 3)), [1.0, 2.0], np.zeros((5, 3)), 1, seed=0)


def test_propose_from_pool_without_a_model_spreads_its_picks():
    pool = torch.linspace(0, 1, 11).reshape(-1, 1)
    picks = propose_from_pool(None, pool[[5]], [1.0], pool, 2, seed=0)
    assert all(p.source == "initial" for p in picks)
    assert {p.index for p in picks} == {0, 10}  # farthest from the measured middle, then each other


def test_propose_from_pool_with_a_random_forest():
    rng = np.random.default_rng(6)
    pool = rng.random((120, 2))
    measured = [0, 1, 2, 3, 4, 5]
    args = (None, pool[measured], bump(pool[measured]), pool)
    pending = pool[[6]]
    for acquisition, words in (("ucb", "confidence bound"), ("ei", "expected improvement")):
        picks = propose_from_pool(
            *args, 3, seed=0, pending=pending, model="random_forest", acquisition=acquisition
        )
        rows = [p.index for p in picks]
        assert len(set(rows)) == 3 and not set(rows) & {*measured, 6}
        assert all(words in p.rationale and "random forest" in p.rationale for p in picks)
        assert all(p.source == "model" and p.predicted_std >= 0 for p in picks)
    # The forest's default acquisition is the confidence bound, and it is seeded.
    default = propose_from_pool(*args, 2, seed=3, model="random_forest")
    assert default == propose_from_pool(*args, 2, seed=3, model="random_forest", acquisition="ucb")
    # With no exploration the bound is the forest's mean: the pick is the best predicted row.
    small = (None, pool[measured], bump(pool[measured]), pool[:30])
    greedy = propose_from_pool(*small, 1, seed=0, model="random_forest", beta=0.0, log_transform=False)[0]
    every = propose_from_pool(*small, 24, seed=0, model="random_forest", beta=0.0, log_transform=False)
    assert greedy.predicted_mean == pytest.approx(max(p.predicted_mean for p in every))
    with pytest.raises(SpecError, match="'ucb' or 'ei'"):
        propose_from_pool(*args, 1, seed=0, model="random_forest", acquisition="qlognei")
    with pytest.raises(SpecError, match="'qlognei' or 'ucb'"):
        propose_from_pool(*args, 1, seed=0, acquisition="ei")
    with pytest.raises(SpecError, match="model"):
        propose_from_pool(*args, 1, seed=0, model="svm")


def test_the_forest_heads_for_the_top_of_a_smooth_pool():
    rng = np.random.default_rng(2)
    pool = rng.random((150, 2))
    rank = np.argsort(np.argsort(-bump(pool)))  # 0 = best row
    measured = [int(i) for i in rng.choice(150, 2, replace=False)]
    while len(measured) < 30:
        args = (None, pool[measured], bump(pool[measured]), pool, 1)
        measured.append(propose_from_pool(*args, seed=len(measured), model="random_forest")[0].index)
    # Random picks have a median rank of 75 and find a top-10 row among 28 picks in 87 % of draws.
    assert min(rank[measured]) < 10
    assert np.median(rank[measured[10:]]) < 50


def test_athanor_rf_runs_through_the_benchmark():
    rng = np.random.default_rng(7)
    x = rng.random((60, 2))
    pool = Pool("toy", ("a", "b"), "y", x, bump(x), 60, "max")
    doc = run_benchmark(pool, seeds=2, budget=25, methods=["random", "athanor-rf"])
    entry = doc["methods"]["athanor-rf"]
    assert doc["methods"]["random"]["exp_to_80"]["median"] == 48  # 80 % of the top 3
    assert entry["exp_to_80"]["median"] <= 25
    assert entry["seconds_per_proposal"] > 0


# ------------------------------------------------------------------------------------- end to end


def test_summary_json_has_exactly_the_documented_shape():
    pool = make_pool(np.linspace(0, 1, 40))
    runs = {"athanor": [[0, 1, 39, 38], [2, 3, 4, 5]]}
    doc = summarise(pool, 4, ["random", "athanor"], runs, {"athanor": [0.1, 0.3]})
    assert set(doc) == {"dataset", "pool_size", "n_top", "seeds", "budget", "methods"}
    assert (doc["pool_size"], doc["n_top"], doc["seeds"], doc["budget"]) == (40, 2, 2, 4)
    for entry in doc["methods"].values():
        # two seeds are too few for Liang et al.'s five groups, so no "liang" entry
        assert set(entry) == {"exp_to_50", "exp_to_80", "ef", "seconds_per_proposal"}
        assert set(entry["exp_to_50"]) == set(entry["exp_to_80"]) == {"median", "p5", "p95"}
        assert set(entry["ef"]) == {"10", "20", "50"}
    athanor = doc["methods"]["athanor"]
    assert athanor["exp_to_50"]["median"] == (3 + 5) / 2 and athanor["exp_to_80"]["median"] == (4 + 5) / 2
    assert athanor["seconds_per_proposal"] == pytest.approx(0.2)
    assert doc["methods"]["random"]["exp_to_80"]["median"] == 32
    json.dumps(doc)
    merged = merge_results([doc, {**doc, "methods": {"baybe": athanor}}])
    assert list(merged["methods"]) == ["random", "athanor", "baybe"]
    with pytest.raises(AthanorError, match="budget"):
        merge_results([doc, {**doc, "budget": 5}])
    five = summarise(pool, 4, ["random", "athanor"], {"athanor": [[39, 38, 0, 1]] * 5}, {"athanor": [0.1]})
    assert "liang" not in five["methods"]["random"]
    assert five["methods"]["athanor"]["liang"] == {
        "exp_to_50": 1,
        "exp_to_80": 2,
        "ef_max": 20.0,
        "af_max": 20.0,
    }


def test_bench_cli_end_to_end_on_a_small_csv(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.random((40, 2))
    rows = [[*xi, 10 * b] for xi, b in zip(x.round(4).tolist(), bump(x.round(4)).tolist(), strict=True)]
    data = tmp_path / "toy" / "data.csv"
    data.parent.mkdir()
    write_csv(data, rows, ["a", "b", "signal"])
    out = tmp_path / "result.json"
    args = ["bench", "optimiser", "--dataset", str(data), "--seeds", "2", "--budget", "12"]
    result = CliRunner().invoke(app, [*args, "--methods", "random,athanor", "--out", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    header = (doc["dataset"], doc["pool_size"], doc["n_top"], doc["seeds"], doc["budget"])
    assert header == ("toy", 40, 2, 2, 12)
    assert list(doc["methods"]) == ["random", "athanor"]
    assert doc["methods"]["athanor"]["ef"]["50"] is None
    assert doc["methods"]["athanor"]["ef"]["10"] > 0
    assert "athanor" in result.output and "EF10" in result.output

    bad = CliRunner().invoke(app, [*args[:-1], "400", "--methods", "random,athanor"])
    assert bad.exit_code == 2 and "budget" in bad.output
    unknown = CliRunner().invoke(app, [*args, "--methods", "random,magic"])
    assert unknown.exit_code == 2 and "magic" in unknown.output


def test_a_missing_peer_says_how_to_install_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "baybe" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    pool = make_pool(np.linspace(0, 1, 40))
    with pytest.raises(AthanorError, match="make bench-setup"):
        run_benchmark(pool, seeds=1, budget=5, methods=["baybe"])
