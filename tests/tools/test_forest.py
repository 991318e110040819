from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from support.specs import FIVE, FIVE_COMPONENTS, SPECS, make_spec

from athanor.models import Observation
from athanor.spec import CampaignSpec
from tools.design_space import design_space
from tools.initial_design import initial_design
from tools.optimiser import DUPLICATE_DISTANCE, propose
from tools.optimiser.forest_model import (
    LIANG_BETA,
    confidence_bound,
    expected_improvement,
    fit_forest,
    pick_greedy,
)
from tools.optimiser.models import model_targets


def forest_spec(components=FIVE_COMPONENTS, **changes):
    return make_spec(components).model_copy(update={"surrogate": "random_forest", **changes})


def smooth(spec, composition):
    x = np.array([spec.to_unit_fractions(composition)[n] for n in spec.component_names])
    return float(10 * math.exp(2 * np.linspace(1.0, -1.0, len(x)) @ x) + 1)


def observe(compositions, value_of, start=0):
    return [
        Observation(experiment_id=f"E{start + i:04d}", iteration=0, composition=c, values={"conductivity": v})
        for i, (c, v) in enumerate((c, value_of(c)) for c in compositions)
    ]


def fit(x, y, *, direction=1.0, log_transform=None, seed=0):
    targets, direction, log_sign = model_targets(y, direction, log_transform)
    bounds = torch.stack([x.min(dim=0).values, x.max(dim=0).values])
    return fit_forest(x, targets, bounds, direction=direction, log_sign=log_sign, seed=seed)


# ------------------------------------------------------------------------------ the surrogate itself


def test_predictions_are_in_the_objective_unit_for_both_directions_and_scales():
    x = torch.linspace(0, 1, 30, dtype=torch.float64).reshape(-1, 1)
    y = 10 ** (3 * x.squeeze(-1)) + 1.0  # 2 to 1001: the log rule applies
    for direction in (1.0, -1.0):
        forest = fit(x, y, direction=direction)
        assert forest.log_sign == 1.0
        mean, std = forest.predict(x)
        # A forest averages neighbours, so it is close at the training points, not exact.
        assert torch.corrcoef(torch.stack([torch.log(mean), torch.log(y)]))[0, 1] > 0.97
        assert float(mean.min()) > 0 and bool((std >= 0).all())
    # Negative values spanning decades: still the objective's unit and sign.
    forest = fit(x, -y, direction=-1.0)
    mean, _ = forest.predict(x)
    assert forest.log_sign == -1.0 and float(mean.max()) < 0
    assert float(mean[-1]) < float(mean[0])  # -1001 at the right end, -2 at the left


def test_mean_and_spread_are_those_across_trees_and_seeded():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((25, 3)))
    y = torch.from_numpy(rng.random(25) - 0.5)  # mixed sign: never logged
    forest = fit(x, y)
    points = torch.from_numpy(rng.random((7, 3)))
    trees = np.stack([t.predict(forest._unit(points)) for t in forest._forest.estimators_])
    mean, std = forest.latent(points)
    assert np.allclose(mean.numpy(), trees.mean(axis=0)) and np.allclose(std.numpy(), trees.std(axis=0))
    objective_mean, objective_std = forest.predict(points)
    assert torch.allclose(objective_mean, forest.offset + forest.scale * mean)
    assert torch.allclose(objective_std, forest.scale * std)
    assert torch.equal(fit(x, y).latent(points)[1], std)
    assert not torch.equal(fit(x, y, seed=1).latent(points)[1], std)


def test_acquisitions_by_hand():
    mean = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    std = torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64)
    assert confidence_bound(mean, std, LIANG_BETA).tolist() == [2.0, 1.0, 3.0]
    ei = expected_improvement(mean, std, best=1.0)
    # z = -1: (-1) * Phi(-1) + phi(-1); a zero spread gives the plain improvement.
    assert float(ei[0]) == pytest.approx(-0.158655254 + 0.241970725, abs=1e-8)
    assert float(ei[1]) == pytest.approx(0.0, abs=1e-9)
    assert float(ei[2]) == pytest.approx(1.0 * 0.977249868 + 0.5 * 0.053990967, abs=1e-8)


def test_believed_points_join_the_data_at_the_predicted_mean_and_steer_picks_away():
    x = torch.tensor([[0.0], [0.3], [1.0]], dtype=torch.float64)
    y = torch.tensor([0.0, 1.0, 0.2], dtype=torch.float64)
    forest = fit(x, y, log_transform=False)
    candidates = torch.linspace(0, 1, 101, dtype=torch.float64).reshape(-1, 1)
    first = pick_greedy(forest, candidates, 1)[0]
    believed = forest.believe(candidates[first.index : first.index + 1])
    assert believed.targets.shape[0] == 4
    assert float(believed.targets[-1]) == pytest.approx(float(forest.latent(candidates[[first.index]])[0][0]))
    # A pending point where the first pick would be moves the pick at least the exclusion away.
    moved = pick_greedy(forest, candidates, 1, pending=candidates[[first.index]], exclusion=0.05)[0]
    batch = pick_greedy(forest, candidates, 3, exclusion=0.05)
    assert batch[0].index == first.index
    rows = [p.index for p in batch]
    assert len(set(rows)) == 3
    gaps = (candidates[rows] - candidates[rows].T).abs() + torch.eye(3)
    assert float(gaps.min()) >= 0.05 - 1e-12
    assert moved.index != first.index or moved.value < first.value


def test_ties_go_to_the_candidate_farthest_from_the_data():
    x = torch.tensor([[0.0], [0.1]], dtype=torch.float64)
    y = torch.tensor([0.0, 1.0], dtype=torch.float64)
    bounds = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    forest = fit_forest(x, y, bounds, direction=1.0, log_sign=0.0, seed=0)
    candidates = torch.tensor([[0.5], [0.9], [0.7], [1.0], [0.6]], dtype=torch.float64)
    values = confidence_bound(*forest.latent(candidates), LIANG_BETA)
    assert float(values.max() - values.min()) == 0.0  # one leaf holds every candidate
    assert pick_greedy(forest, candidates, 1)[0].index == 3


# ------------------------------------------------------------------------------ propose with a forest


@pytest.mark.parametrize("name", SPECS)
def test_forest_proposals_are_feasible_distinct_and_explained(name):
    spec = SPECS[name].model_copy(update={"surrogate": "random_forest"})
    observations = observe(initial_design(spec, 8, seed=1), lambda c: smooth(spec, c))
    pending = initial_design(spec, 1, seed=9, avoid=[o.composition for o in observations])
    suggestions = propose(spec, observations, 3, seed=2, pending=pending)
    assert len(suggestions) == 3
    compositions = [s.composition for s in suggestions]
    for s in suggestions:
        assert spec.violations(s.composition) == [] and s.source == "model"
        assert "random forest" in s.rationale and "confidence bound" in s.rationale
        assert s.predicted_mean is not None and s.predicted_std is not None and s.predicted_std >= 0
        assert s.acquisition_value is not None and math.isfinite(s.acquisition_value)
    space = design_space(spec)

    def gaps(a, b):
        return torch.cdist(
            space.normalise(space.to_tensor(a)), space.normalise(space.to_tensor(b)), p=float("inf")
        )

    measured = [o.composition for o in observations]
    assert float(gaps(compositions, measured + pending).min()) >= DUPLICATE_DISTANCE
    assert float((gaps(compositions, compositions) + torch.eye(3)).min()) >= DUPLICATE_DISTANCE
    assert propose(spec, observations, 3, seed=2, pending=pending) == suggestions  # seeded


def test_forest_campaign_climbs_a_smooth_landscape():
    spec = forest_spec()
    space = design_space(spec)
    random_values = [smooth(spec, c) for c in space.to_compositions(space.sample(2048, 123))]
    observations = observe(initial_design(spec, 5, seed=0), lambda c: smooth(spec, c))
    for iteration in range(5):
        batch = propose(spec, observations, 3, seed=iteration)
        observations += observe([s.composition for s in batch], lambda c: smooth(spec, c), len(observations))
    values = [o.values["conductivity"] for o in observations]
    assert max(values) > max(values[:5])
    assert max(values) > np.percentile(random_values, 99)
    # The proposals as a whole sit far above a random composition, not just the lucky best one.
    assert np.mean(values[5:]) > 1.5 * np.median(random_values)


def test_forest_without_a_model_falls_back_to_space_filling():
    spec = forest_spec()
    suggestions = propose(spec, [], 2, seed=0)
    assert [s.source for s in suggestions] == ["initial", "initial"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"objectives": [{"name": "a"}, {"name": "b", "direction": "minimise"}]}, "objectives"),
        ({"max_active_components": 2}, "max_active_components"),
        ({"resolution": 0.05}, "resolution"),
        ({"categories": [{"name": "route", "choices": ["x", "y"]}]}, "categories"),
    ],
)
def test_specs_the_forest_cannot_handle_are_refused_naming_the_field(changes, field):
    data = {**FIVE.model_dump(), "surrogate": "random_forest", **changes}
    with pytest.raises(ValidationError, match=rf"surrogate: 'random_forest' does not handle .*\({field}\)"):
        CampaignSpec.model_validate(data)
    # The same spec with the default surrogate is fine.
    assert CampaignSpec.model_validate({**data, "surrogate": "gp"}).surrogate == "gp"


def test_the_default_surrogate_is_the_gaussian_process_and_stays_out_of_the_record():
    assert FIVE.surrogate == "gp"
    assert "surrogate" not in FIVE.model_dump()  # specs recorded before the option read back the same
    forest = CampaignSpec.model_validate({**FIVE.model_dump(), "surrogate": "random_forest"})
    assert CampaignSpec.model_validate(forest.model_dump()).surrogate == "random_forest"
    with pytest.raises(ValidationError, match="surrogate"):
        CampaignSpec.model_validate({**FIVE.model_dump(), "surrogate": "svm"})
