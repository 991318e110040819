from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from linear_operator.utils.errors import NotPSDError
from support.specs import FIVE, FIVE_COMPONENTS, LINEAR, PERCENT, SPECS, make_spec

from athanor.errors import SpecError
from athanor.models import Observation
from athanor.spec import CampaignSpec
from tools.design_space import design_space
from tools.initial_design import initial_design
from tools.optimiser import DUPLICATE_DISTANCE, OptimiserOptions, fit_summary, propose

#: Interior optimum of the synthetic landscape on FIVE (unit fractions, P3HT above its bound).
PEAK = np.array([0.45, 0.15, 0.1, 0.2, 0.1])


def peak_conductivity(spec, composition):
    """2 S/cm far from PEAK, 1200 S/cm at it: a sharp bump spanning almost three decades."""
    x = np.array([spec.to_unit_fractions(composition)[n] for n in spec.component_names])
    return float(2 * 600 ** math.exp(-((x - PEAK) ** 2).sum() / (2 * 0.15**2)))


def smooth(spec, composition):
    """A smooth positive function of any spec's components (spans a few decades)."""
    x = np.array([spec.to_unit_fractions(composition)[n] for n in spec.component_names])
    weights = np.linspace(1.0, -1.0, len(x))
    return float(10 * math.exp(2 * weights @ x) + 1)


def observe(compositions, value_of, start=0):
    return [
        Observation(
            experiment_id=f"E{start + i:04d}",
            iteration=0,
            composition=c,
            values={"conductivity": value_of(c)},
        )
        for i, c in enumerate(compositions)
    ]


def distance_to_peak(spec, composition):
    x = np.array([spec.to_unit_fractions(composition)[n] for n in spec.component_names])
    return float(np.linalg.norm(x - PEAK))


def linf_gaps(spec, points, others):
    space = design_space(spec)
    a = space.normalise(space.to_tensor(points))
    b = space.normalise(space.to_tensor(others))
    return torch.cdist(a, b, p=float("inf"))


@pytest.mark.parametrize("name", SPECS)
def test_proposals_meet_bounds_sum_rule_and_constraints(name):
    spec = SPECS[name]
    observations = observe(initial_design(spec, 8, seed=1), lambda c: smooth(spec, c))
    suggestions = propose(spec, observations, 3, seed=2)
    assert len(suggestions) == 3
    for s in suggestions:
        assert list(s.composition) == spec.component_names
        assert spec.violations(s.composition) == []
        assert s.source == "model"
        assert s.predicted_mean is not None and s.predicted_std is not None and s.predicted_std >= 0
        assert s.acquisition_value is not None and math.isfinite(s.acquisition_value)
        assert "expected improvement" in s.rationale and "\n" not in s.rationale
    values = [s.acquisition_value for s in suggestions]
    assert values == sorted(values, reverse=True)
    if spec is PERCENT:
        assert all(sum(s.composition.values()) == pytest.approx(100.0) for s in suggestions)


def test_same_seed_gives_identical_proposals():
    observations = observe(initial_design(LINEAR, 8, seed=1), lambda c: smooth(LINEAR, c))
    first = propose(LINEAR, observations, 3, seed=11)
    again = propose(LINEAR, observations, 3, seed=11)
    assert [s.model_dump() for s in first] == [s.model_dump() for s in again]


def linear_variant(mode):
    """LINEAR (sum rule, two linear constraints) as each optimiser sees it: alone, mixed, Pareto, both."""
    data = LINEAR.model_dump(mode="json")
    if mode in ("pareto", "mixed_pareto"):
        data["objectives"] = [*data["objectives"], {"name": "cost", "direction": "minimise", "unit": "EUR/g"}]
    if mode in ("mixed", "mixed_pareto"):
        data["max_active_components"] = 3
    return CampaignSpec.model_validate(data)


@pytest.mark.parametrize("mode", ["continuous", "mixed", "pareto", "mixed_pareto"])
def test_the_acquisition_optimisers_own_candidates_meet_the_sum_rule_and_constraints(mode):
    spec = linear_variant(mode)
    # conductivity grows with D1 + D2, which D1 + D2 <= 0.4 caps: the optimum sits on that constraint
    conductivity = observe(initial_design(LINEAR, 8, seed=5), lambda c: math.exp(4 * (c["D1"] + c["D2"])))
    observations = [
        o.model_copy(update={"values": o.values | {"cost": 3.0 * o.composition["D1"] + o.composition["D4"]}})
        for o in conductivity
    ]
    suggestions = propose(spec, observations, 2, seed=3, num_restarts=2, raw_samples=16, mc_samples=32)
    raw = [s.raw_candidate for s in suggestions if s.raw_candidate is not None]
    assert raw, [s.rationale for s in suggestions]  # at least one point came from the optimiser
    for candidate in raw:  # as the optimiser returned it, before any projection or snapping
        assert list(candidate) == spec.component_names
        assert spec.violations(candidate) == [], candidate
        assert sum(candidate.values()) == pytest.approx(1.0, abs=1e-7)


def test_pending_compositions_steer_the_acquisition_away():
    observations = observe(initial_design(FIVE, 10, seed=4), lambda c: peak_conductivity(FIVE, c))
    first = propose(FIVE, observations, 2, seed=5)
    pending = [s.composition for s in first]
    second = propose(FIVE, observations, 2, seed=5, pending=pending)
    # Away from the pending points by the acquisition itself, not by the near-duplicate repair.
    assert all(s.rationale.startswith("#") for s in second)
    assert float(linf_gaps(FIVE, [s.composition for s in second], pending).min()) > 0.1


def test_near_duplicates_from_the_optimiser_are_replaced():
    observations = observe(initial_design(FIVE, 10, seed=4), lambda c: peak_conductivity(FIVE, c))
    pending = initial_design(FIVE, 1, seed=8)
    space = design_space(FIVE)
    stuck = torch.cat([space.to_tensor(pending), space.to_tensor([observations[0].composition])] * 2)

    def optimiser_landing_on_known_points(acqf, bounds, q, **kwargs):
        return stuck[:q].clone(), torch.zeros(())

    options = OptimiserOptions(optimize_acqf=optimiser_landing_on_known_points)
    points = propose(FIVE, observations, 3, seed=5, pending=pending, options=options)
    compositions = [s.composition for s in points]
    assert all(s.source == "model" and "near-duplicate" in s.rationale for s in points)
    assert all(s.raw_candidate is None for s in points)  # none of them is the optimiser's output
    assert float(linf_gaps(FIVE, compositions, pending).min()) >= DUPLICATE_DISTANCE
    assert (
        float(linf_gaps(FIVE, compositions, [o.composition for o in observations]).min())
        >= DUPLICATE_DISTANCE
    )
    among = linf_gaps(FIVE, compositions, compositions) + torch.eye(len(compositions))
    assert float(among.min()) >= DUPLICATE_DISTANCE
    assert all(FIVE.violations(c) == [] for c in compositions)


def run_campaign(spec, value_of, seed):
    """Initial design of 5, then 10 batches of 2 from the optimiser; returns every observation."""
    observations = observe(initial_design(spec, 5, seed=seed), value_of)
    last = []
    for iteration in range(10):
        last = propose(spec, observations, 2, seed=1000 * seed + iteration)
        observations += observe([s.composition for s in last], value_of, start=len(observations))
    return observations, last


@pytest.mark.parametrize("seed", [0, 1])
def test_optimiser_finds_an_interior_peak(seed):
    observations, last = run_campaign(FIVE, lambda c: peak_conductivity(FIVE, c), seed)
    initial = min(distance_to_peak(FIVE, o.composition) for o in observations[:5])
    found = min(distance_to_peak(FIVE, o.composition) for o in observations)
    # The nearest of 25 uniform random feasible points is within 0.04 of PEAK in 1% of draws.
    assert found < 0.03
    assert found < initial / 2
    best = last[0]
    truth = peak_conductivity(FIVE, best.composition)
    assert best.predicted_mean == pytest.approx(truth, rel=0.35)  # back in S/cm, not log units
    assert 0 < best.predicted_std < best.predicted_mean


def test_minimise_finds_the_same_peak_negated():
    spec = make_spec(FIVE_COMPONENTS, direction="minimise")
    observations, last = run_campaign(spec, lambda c: -peak_conductivity(spec, c), seed=0)
    assert min(distance_to_peak(spec, o.composition) for o in observations) < 0.03
    assert last[0].predicted_mean < -500  # predictions keep the objective's sign and unit


def test_minimise_with_the_untransformed_model_keeps_units_and_heads_for_the_minimum():
    spec = make_spec(FIVE_COMPONENTS, direction="minimise")

    def bowl(c):
        x = np.array([c[n] for n in spec.component_names])
        return float(100 + 300 * ((x - PEAK) ** 2).sum())

    observations = observe(initial_design(spec, 15, seed=2), bowl)
    assert fit_summary(spec, observations).log_transform is False
    best_seen = min(o.values["conductivity"] for o in observations)
    top = propose(spec, observations, 1, seed=0)[0]
    assert 90 < top.predicted_mean < best_seen + 5  # in S/cm, at or below the best seen
    assert bowl(top.composition) < best_seen + 5
    worst = max(o.values["conductivity"] for o in observations)
    assert bowl(top.composition) < (best_seen + worst) / 2


def test_no_observations_gives_a_space_filling_design():
    suggestions = propose(FIVE, [], 4, seed=0)
    assert len(suggestions) == 4
    for s in suggestions:
        assert s.source == "initial" and s.predicted_mean is None and s.acquisition_value is None
        assert "space-filling" in s.rationale and "0 usable" in s.rationale
        assert FIVE.violations(s.composition) == []
    assert [s.composition for s in suggestions] == [s.composition for s in propose(FIVE, [], 4, seed=0)]


def test_one_observation_falls_back_far_from_it():
    measured = initial_design(FIVE, 1, seed=0)
    suggestions = propose(FIVE, observe(measured, lambda c: 5.0), 3, seed=0)
    assert all(s.source == "initial" and "only 1 usable" in s.rationale for s in suggestions)
    assert float(linf_gaps(FIVE, [s.composition for s in suggestions], measured).min()) > 0.1


def test_failed_outlier_and_nan_observations_are_ignored():
    good = observe(initial_design(FIVE, 6, seed=2), lambda c: smooth(FIVE, c))
    extra = initial_design(FIVE, 3, seed=9)
    bad = [
        Observation(
            experiment_id="X1", iteration=1, composition=extra[0], values={"conductivity": float("nan")}
        ),
        Observation(experiment_id="X2", iteration=1, composition=extra[1], values={}, status="failed"),
        Observation(
            experiment_id="X3",
            iteration=1,
            composition=extra[2],
            values={"conductivity": 1e9},
            status="outlier",
        ),
    ]
    summary = fit_summary(FIVE, good + bad)
    assert summary.n_used == 6 and summary.n_ignored == 3
    only_one = propose(FIVE, good[:1] + bad, 2, seed=0)
    assert all("only 1 usable" in s.rationale for s in only_one)


@pytest.mark.parametrize(
    "values",
    [[1.0, 5.0, 9.0, 20.0], [3.0, 3.0, 3.0, 3.0]],
    ids=["identical-compositions-varying-values", "constant-values"],
)
def test_degenerate_data_does_not_raise(values):
    composition = initial_design(FIVE, 1, seed=3)[0]
    compositions = [composition] * 4 if values[0] != values[1] else initial_design(FIVE, 4, seed=3)
    observations = observe(compositions, lambda c: 0.0)
    for o, v in zip(observations, values, strict=True):
        o.values["conductivity"] = v
    suggestions = propose(FIVE, observations, 2, seed=0)
    assert len(suggestions) == 2
    assert all(s.source == "initial" and FIVE.violations(s.composition) == [] for s in suggestions)


@pytest.mark.parametrize("target", ["fit_gpytorch_mll", "optimize_acqf"])
def test_numerical_failures_fall_back_instead_of_raising(target):
    def broken(*args, **kwargs):
        raise NotPSDError("matrix not positive definite")

    observations = observe(initial_design(FIVE, 8, seed=1), lambda c: smooth(FIVE, c))
    suggestions = propose(FIVE, observations, 2, seed=0, options=OptimiserOptions(**{target: broken}))
    assert all(s.source == "initial" and "NotPSDError" in s.rationale for s in suggestions)
    assert all(FIVE.violations(s.composition) == [] for s in suggestions)


def test_log_scale_is_chosen_only_for_same_sign_values_spanning_a_decade():
    compositions = initial_design(FIVE, 12, seed=5)
    wide = observe(compositions, lambda c: peak_conductivity(FIVE, c))
    narrow = observe(compositions, lambda c: 50 + 10 * c["CNT"])
    mixed = observe(compositions, lambda c: c["CNT"] - 0.1)
    assert fit_summary(FIVE, wide).log_transform is True
    assert fit_summary(FIVE, narrow).log_transform is False
    assert fit_summary(FIVE, mixed).log_transform is False
    assert fit_summary(FIVE, wide, log_transform=False).log_transform is False


def test_fit_summary_reports_a_good_fit_on_a_smooth_function():
    observations = observe(initial_design(LINEAR, 30, seed=0), lambda c: smooth(LINEAR, c))
    summary = fit_summary(LINEAR, observations)
    assert summary.loo_r2 > 0.9
    assert list(summary.lengthscales) == LINEAR.component_names
    assert fit_summary(LINEAR, observations[:1]) is None


def test_a_single_composition_spec_and_an_empty_batch():
    only = make_spec([{"name": "A", "lower": 0.4}, {"name": "B", "lower": 0.6}])
    suggestions = propose(only, [], 2, seed=0)
    assert [s.composition for s in suggestions] == [{"A": 0.4, "B": 0.6}] * 2
    assert propose(FIVE, [], 0, seed=0) == []


def test_a_pending_composition_missing_a_component_is_refused():
    with pytest.raises(SpecError, match="CNT"):
        propose(FIVE, [], 1, seed=0, pending=[{"P3HT": 1.0}])
