"""The virtual meter's ground truth: faithful to the P3HT/CNT data, noisy like its replicates."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from athanor.errors import InstrumentError
from instruments.emulator import (
    P3HT_COMPONENTS,
    P3HTCNTEmulator,
    SyntheticEmulator,
    emulator_for,
    load_p3ht_cnt,
)

DATA = Path(__file__).parents[2] / "instruments" / "data" / "p3ht_cnt.csv"


@pytest.fixture(scope="module")
def p3ht() -> P3HTCNTEmulator:
    return P3HTCNTEmulator()


def raw_groups():
    groups = defaultdict(list)
    with open(DATA, encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            groups[tuple(row[:5])].append(float(row[5]))
    return groups


def test_data_ships_with_the_package_and_is_grouped_per_composition():
    compositions, replicates = load_p3ht_cnt()
    groups = raw_groups()
    assert len(compositions) == len(groups) == 178
    assert sum(len(r) for r in replicates) == 233
    np.testing.assert_allclose(compositions.sum(axis=1), 1.0)
    assert (Path(DATA).parent / "SOURCE.md").read_text(encoding="utf-8").count("Bash") >= 1


def test_noise_is_the_pooled_spread_of_the_replicates(p3ht):
    squares = dof = 0
    for values in raw_groups().values():
        if len(values) > 1:
            logs = np.log(values)
            squares += ((logs - logs.mean()) ** 2).sum()
            dof += len(values) - 1
    assert p3ht.noise_rel == pytest.approx(math.sqrt(squares / dof))
    assert 0.05 < p3ht.noise_rel < 0.5


def test_best_measured_composition_is_the_highest_mean(p3ht):
    means = {k: np.mean(v) for k, v in raw_groups().items()}
    assert p3ht.best_value == pytest.approx(max(means.values()))
    assert p3ht.best_composition["D1"] > 0.4


def test_fit_follows_the_data_and_generalises(p3ht):
    predicted = p3ht.log10_values(p3ht.compositions)
    in_sample = np.abs(predicted - np.log10(p3ht.mean_values))
    assert np.median(in_sample) < 0.2
    held_out = p3ht.leave_out_error(folds=10, seed=0)
    spread = float(np.std(np.log10(p3ht.mean_values)))
    # Held-out error must be well below the spread of the data (a fit that learned nothing has ~spread).
    assert held_out < 0.35
    assert held_out < 0.5 * spread


def test_ranking_is_preserved_between_poor_and_good_blends(p3ht):
    low = p3ht.true_value({"P3HT": 0.45, "D2": 0.55})  # measured ~15 S/cm
    high = p3ht.true_value({"P3HT": 0.4, "D1": 0.6})  # measured ~800 S/cm
    assert high > 10 * low


def test_predictions_stay_in_the_plausible_range_everywhere(p3ht):
    rng = np.random.default_rng(0)
    points = np.vstack([np.eye(5), rng.dirichlet(np.full(5, 0.3), 5000)])
    values = 10 ** p3ht.log10_values(points)
    low, high = p3ht.value_range
    assert low == pytest.approx(0.5 * p3ht.mean_values.min())
    assert high == pytest.approx(1.2 * p3ht.mean_values.max())
    assert values.min() >= low * (1 - 1e-9) and values.max() <= high * (1 + 1e-9)


def test_optimum_with_and_without_the_p3ht_floor(p3ht):
    free, free_value = p3ht.search_optimum(n_samples=5000)
    floor, floor_value = p3ht.search_optimum({"P3HT": 0.3}, n_samples=5000)
    assert floor["P3HT"] >= 0.3 - 1e-9
    assert sum(floor.values()) == pytest.approx(1.0)
    assert free_value >= floor_value
    # Both optima are D1-rich and of the order of the best measurement.
    assert free["D1"] > 0.4 and floor["D1"] > 0.4
    assert 0.8 * p3ht.best_value < floor_value <= p3ht.value_range[1]


def test_measure_is_lognormal_around_the_truth_and_seeded(p3ht):
    blend = {"P3HT": 0.5, "D1": 0.5}
    truth = p3ht.true_value(blend)
    draws = np.array([p3ht.measure(blend, np.random.default_rng(seed)) for seed in range(400)])
    logs = np.log(draws / truth)
    assert abs(np.median(logs)) < 0.05
    assert np.std(logs) == pytest.approx(p3ht.noise_rel, rel=0.15)
    again = p3ht.measure(blend, np.random.default_rng(7))
    assert again == p3ht.measure(blend, np.random.default_rng(7))
    assert p3ht.measure(blend, np.random.default_rng(7), noise_rel=0.0) == pytest.approx(truth)


def test_amounts_are_normalised_and_missing_components_are_absent(p3ht):
    assert p3ht.true_value({"P3HT": 60, "D1": 40}) == pytest.approx(p3ht.true_value({"P3HT": 0.6, "D1": 0.4}))
    with pytest.raises(InstrumentError, match="D3"):
        p3ht.true_value({"P3HT": 0.5, "D3": 0.5})
    with pytest.raises(InstrumentError, match="empty"):
        p3ht.true_value({"P3HT": 0.0})


def test_synthetic_landscape_has_its_known_optimum():
    emulator = SyntheticEmulator(["A", "B", "C", "D"], seed=3)
    best = emulator.optimum_composition
    assert sum(best.values()) == pytest.approx(1.0)
    assert emulator.true_value(best) == pytest.approx(emulator.optimum_value)
    rng = np.random.default_rng(1)
    others = 10 ** emulator.log10_values(rng.dirichlet(np.ones(4), 20000))
    assert others.max() < emulator.optimum_value
    # The decoy is a lower peak.
    assert emulator.true_value(emulator.decoy_composition) < emulator.optimum_value
    found, value = emulator.search_optimum(n_samples=4000)
    assert value == pytest.approx(emulator.optimum_value, rel=1e-6)
    assert max(abs(found[k] - best[k]) for k in best) < 1e-3


def test_synthetic_landscapes_are_seeded():
    first = SyntheticEmulator(["A", "B", "C"], seed=1)
    assert SyntheticEmulator(["A", "B", "C"], seed=1).optimum_composition == first.optimum_composition
    assert SyntheticEmulator(["A", "B", "C"], seed=2).optimum_composition != first.optimum_composition


def test_emulator_for_picks_the_data_for_p3ht_names_only():
    assert isinstance(emulator_for(list(reversed(P3HT_COMPONENTS)), seed=0), P3HTCNTEmulator)
    assert isinstance(emulator_for(["P3HT", "D1", "D8"], seed=0), P3HTCNTEmulator)
    assert isinstance(emulator_for(["P3HT", "D1", "D2", "D6", "D8", "D9"], seed=0), SyntheticEmulator)
    assert isinstance(emulator_for(["p3ht", "d1"], seed=0), SyntheticEmulator)
    assert isinstance(emulator_for(["D1", "D2"], seed=0), SyntheticEmulator)
    synthetic = emulator_for(["Ni", "Co", "Mn"], seed=5)
    assert synthetic.components == ("Ni", "Co", "Mn")
