from __future__ import annotations

import pytest
import torch
from support.specs import FIVE, LINEAR, PERCENT, SPECS

from athanor.errors import SpecError
from tools.design_space import design_space
from tools.initial_design import initial_design, maximin_indices


def min_gap(spec, compositions):
    space = design_space(spec)
    x = space.normalise(space.to_tensor(compositions))
    gaps = torch.cdist(x, x) + torch.eye(len(x)) * 1e9
    return float(gaps.min())


@pytest.mark.parametrize("name", SPECS)
def test_every_point_meets_bounds_sum_rule_and_constraints(name):
    spec = SPECS[name]
    design = initial_design(spec, 12, seed=7)
    assert len(design) == 12
    for composition in design:
        assert list(composition) == spec.component_names
        assert spec.violations(composition) == []


def test_percent_spec_comes_back_in_percent():
    design = initial_design(PERCENT, 6, seed=0)
    for composition in design:
        assert sum(composition.values()) == pytest.approx(100.0)
        assert composition["Ag"] <= 10.0 + 1e-6
    assert max(c["Cu"] for c in design) > 50  # percent, not fractions


def test_same_seed_same_design_different_seed_different_design():
    assert initial_design(LINEAR, 8, seed=3) == initial_design(LINEAR, 8, seed=3)
    first, second = initial_design(LINEAR, 8, seed=3), initial_design(LINEAR, 8, seed=4)
    assert sum(a != b for a, b in zip(first, second, strict=True)) >= 6


@pytest.mark.parametrize("name", SPECS)
def test_design_is_more_spread_out_than_random_feasible_points(name):
    spec = SPECS[name]
    space = design_space(spec)
    for seed in range(3):
        design_gap = min_gap(spec, initial_design(spec, 8, seed=seed))
        random_gaps = [min_gap(spec, space.to_compositions(space.sample(8, seed=100 + k))) for k in range(20)]
        assert design_gap > max(random_gaps)


def test_avoided_points_are_kept_at_a_distance():
    measured = initial_design(FIVE, 6, seed=1)
    space = design_space(FIVE)
    measured_x = space.normalise(space.to_tensor(measured))
    plain = space.normalise(space.to_tensor(initial_design(FIVE, 4, seed=2)))
    avoiding = space.normalise(space.to_tensor(initial_design(FIVE, 4, seed=2, avoid=measured)))
    nearest_plain = torch.cdist(plain, measured_x).min()
    nearest_avoiding = torch.cdist(avoiding, measured_x).min()
    assert nearest_avoiding > 0.3
    assert nearest_avoiding > nearest_plain


def test_maximin_picks_spread_points_and_starts_in_the_middle():
    grid = torch.linspace(0, 1, 11).reshape(-1, 1)
    assert maximin_indices(grid, 3) == [5, 0, 10]
    assert maximin_indices(grid, 2, existing=torch.tensor([[0.0]])) == [10, 5]
    assert maximin_indices(grid, 0) == []
    assert sorted(maximin_indices(grid, 50)) == list(range(11))


def test_sizes_zero_and_negative():
    assert initial_design(FIVE, 0, seed=0) == []
    with pytest.raises(SpecError, match="n=-1"):
        initial_design(FIVE, -1, seed=0)
