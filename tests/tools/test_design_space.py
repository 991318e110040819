from __future__ import annotations

import numpy as np
import pytest
import torch
from support.specs import FIVE, LINEAR, PERCENT, SPECS, make_spec

from athanor.errors import SpecError
from tools.design_space import design_space


def test_percent_spec_is_modelled_in_unit_fractions_and_maps_back_to_percent():
    space = design_space(PERCENT)
    assert space.names == ("Cu", "Ag", "Zn")
    torch.testing.assert_close(
        space.bounds, torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.1, 1.0]], dtype=torch.float64)
    )
    [(idx, coef, rhs)] = space.equality_constraints
    assert idx.tolist() == [0, 1, 2] and coef.tolist() == [1.0, 1.0, 1.0] and rhs == pytest.approx(1.0)
    composition = {"Cu": 60.0, "Ag": 5.0, "Zn": 35.0}
    x = space.to_tensor([composition])
    torch.testing.assert_close(x, torch.tensor([[0.6, 0.05, 0.35]], dtype=torch.float64))
    assert space.to_compositions(x)[0] == pytest.approx(composition)


def test_linear_constraints_become_botorch_greater_equal_constraints():
    space = design_space(LINEAR)
    (idx1, coef1, rhs1), (idx2, coef2, rhs2) = space.inequality_constraints
    assert idx1.tolist() == [0, 1] and coef1.tolist() == [-1.0, -1.0] and rhs1 == pytest.approx(-0.4)
    assert idx2.tolist() == [5] and coef2.tolist() == [1.0] and rhs2 == pytest.approx(0.05)


@pytest.mark.parametrize("name", SPECS)
def test_feasibility_check_agrees_with_the_spec(name):
    spec = SPECS[name]
    space = design_space(spec)
    rng = np.random.default_rng(0)
    lower, upper = space.bounds.numpy()
    margin = 0.05 * (upper - lower)
    x = rng.uniform(lower - margin, upper + margin, size=(400, space.dim))
    if space.equality_constraints:
        x[:200] /= x[:200].sum(axis=1, keepdims=True)  # half on the simplex, half off it
    x = torch.from_numpy(x)
    ours = space.feasible(x).tolist()
    theirs = [spec.violations(c) == [] for c in space.to_compositions(x)]
    assert ours == theirs
    assert any(theirs) and not all(theirs)


def test_bounds_are_tightened_by_the_sum_rule_and_a_lower_bound():
    space = design_space(FIVE)
    assert space.bounds[0].tolist() == pytest.approx([0.3, 0, 0, 0, 0])
    assert space.bounds[1].tolist() == pytest.approx([1.0, 0.7, 0.7, 0.7, 0.7])


def test_components_pinned_by_the_constraints_leave_the_optimiser_but_not_the_compositions():
    spec = make_spec([{"name": "A", "lower": 0.2, "upper": 0.2}, {"name": "B"}, {"name": "C", "lower": 0.5}])
    space = design_space(spec)
    assert space.names == ("B", "C")
    assert space.fixed == {"A": 0.2}
    points = space.sample(50, seed=0)
    for composition in space.to_compositions(points):
        assert composition["A"] == 0.2
        assert spec.violations(composition) == []
    only_point = make_spec([{"name": "A", "lower": 0.4}, {"name": "B", "lower": 0.6}])
    space = design_space(only_point)
    assert space.dim == 0
    assert space.to_compositions(space.sample(3, seed=0)) == [{"A": 0.4, "B": 0.6}] * 3


@pytest.mark.parametrize("name", SPECS)
def test_samples_are_feasible_and_reproducible(name):
    spec = SPECS[name]
    space = design_space(spec)
    points = space.sample(300, seed=3)
    assert points.shape == (300, space.dim)
    assert all(spec.violations(c) == [] for c in space.to_compositions(points))
    assert torch.equal(points, space.sample(300, seed=3))
    assert not torch.equal(points, space.sample(300, seed=4))


def test_samples_are_close_to_uniform_on_the_constrained_simplex():
    # Uniform on {sum = 1, P3HT >= 0.3} is P3HT = 0.3 + 0.7 * Dirichlet(1,1,1,1,1): means 0.44, 0.14.
    points = design_space(FIVE).sample(4000, seed=1)
    assert points.mean(dim=0).tolist() == pytest.approx([0.44, 0.14, 0.14, 0.14, 0.14], abs=0.01)
    # The median of P3HT is 0.3 + 0.7 * (1 - 0.5 ** 0.25) = 0.4114.
    assert float(points[:, 0].median()) == pytest.approx(0.4114, abs=0.015)


@pytest.mark.parametrize("name", SPECS)
def test_projection_repairs_small_violations_and_keeps_feasible_points(name):
    spec = SPECS[name]
    space = design_space(spec)
    points = space.sample(40, seed=5)
    torch.testing.assert_close(space.project(points), points)
    noise = torch.from_numpy(np.random.default_rng(1).normal(0.0, 1e-3, size=points.shape))
    repaired = space.project(points + noise)
    assert all(spec.violations(c, tol=1e-9) == [] for c in space.to_compositions(repaired))
    assert float((repaired - points).abs().max()) < 0.02


def test_projection_onto_a_linear_constraint():
    space = design_space(LINEAR)
    # D1 + D2 = 0.5 breaks D1 + D2 <= 0.4 while meeting the bounds and the sum rule.
    x = torch.tensor([[0.25, 0.25, 0.2, 0.1, 0.1, 0.1]], dtype=torch.float64)
    repaired = space.project(x)
    assert LINEAR.violations(space.to_compositions(repaired)[0]) == []
    assert float(repaired[0, :2].sum()) == pytest.approx(0.4)


def test_active_constraints_name_bounds_and_constraints_in_spec_units():
    space = design_space(LINEAR)
    x = torch.tensor([0.3, 0.1, 0.0, 0.25, 0.3, 0.05], dtype=torch.float64)
    assert space.active_constraints(x) == ["D3 >= 0", "D1 + D2 <= 0.4", "D6 >= 0.05"]
    assert space.active_phrases(x) == ["D3 at its lower bound", "on D1 + D2 <= 0.4", "on D6 >= 0.05"]
    percent = design_space(PERCENT)
    assert percent.active_constraints(percent.to_tensor([{"Cu": 50, "Ag": 10, "Zn": 40}])[0]) == ["Ag <= 10"]


def test_a_composition_missing_a_component_is_refused_with_its_name():
    with pytest.raises(SpecError, match="CNT"):
        design_space(FIVE).to_tensor([{"P3HT": 0.5, "D1": 0.2, "D2": 0.2, "D3": 0.1}])


def test_specs_that_differ_only_in_direction_get_their_own_space():
    other = make_spec(FIVE.model_dump()["components"], direction="minimise")
    assert design_space(FIVE).spec.primary_objective.direction == "maximise"
    assert design_space(other).spec.primary_objective.direction == "minimise"
