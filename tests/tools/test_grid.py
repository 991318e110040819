"""Rounding onto the resolution grid: exact sums in steps, bounds, zeros and constraints kept."""

from __future__ import annotations

import numpy as np
import pytest

from athanor.errors import SpecError
from athanor.spec import CampaignSpec
from tools.grid import grid_amount, grid_steps, snap_to_grid


def make(components, *, total=1.0, constraints=(), sum_rule=True, **fields):
    return CampaignSpec(
        components=components,
        sum_rule={"total": total} if sum_rule else None,
        constraints=list(constraints),
        objectives=[{"name": "y"}],
        budget={"experiments": 10},
        **fields,
    )


SIX = make(
    [{"name": n} for n in ["Cu", "Ag", "Zr", "Ni", "Co", "Ti"]],
    constraints=[
        {"coefficients": {"Cu": 1, "Ag": 1}, "operator": "<=", "rhs": 0.395},
        {"coefficients": {"Zr": 1}, "operator": ">=", "rhs": 0.105},
    ],
    resolution=0.01,
    max_active_components=4,
)
PERCENT = make(
    [
        {"name": "Cu", "lower": 10.5, "upper": 100},
        {"name": "Ag", "upper": 12.5},
        {"name": "Zn", "upper": 100},
    ],
    total=100.0,
    resolution=1.0,
)
FREE = make(
    [{"name": "A", "upper": 2.0}, {"name": "B", "lower": 0.5, "upper": 1.5}, {"name": "C"}],
    sum_rule=False,
    constraints=[{"coefficients": {"A": 1, "B": 1}, "operator": "<=", "rhs": 2.0}],
    resolution=0.1,
)


def assert_on_grid(spec, composition, support=None):
    step = spec.resolution
    steps = grid_steps(spec, composition)
    for name, count in zip(spec.component_names, steps, strict=True):
        assert abs(composition[name] - count * step) < 1e-9, (name, composition[name])
        if support is not None and name not in support:
            assert composition[name] == 0.0
    if spec.sum_rule is not None:
        assert sum(steps) == round(spec.sum_rule.total / step)  # exact, in whole steps
        assert abs(sum(composition.values()) - spec.sum_rule.total) < 1e-9
    assert spec.violations(composition, tol=1e-12) == []


def test_largest_remainder_keeps_the_sum_exact():
    spec = make([{"name": n} for n in "ABC"], resolution=0.01)
    third = {"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}
    snapped = snap_to_grid(spec, third)
    assert sorted(snapped.values()) == [0.33, 0.33, 0.34]
    assert_on_grid(spec, snapped)
    # the largest remainders get the missing steps
    assert snap_to_grid(spec, {"A": 0.126, "B": 0.437, "C": 0.437}) == {"A": 0.12, "B": 0.44, "C": 0.44}


def test_amounts_print_without_float_noise():
    assert grid_amount(3, 0.1) == 0.3
    assert grid_amount(29, 0.01) == 0.29
    assert grid_amount(0, 0.01) == 0.0


@pytest.mark.parametrize("spec", [SIX, PERCENT, FREE], ids=["six", "percent", "no_sum_rule"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_points_snap_onto_feasible_grid_points(spec, seed):
    rng = np.random.default_rng(seed)
    names = spec.component_names
    for _ in range(60):
        if spec.sum_rule is not None:
            raw = rng.dirichlet(np.full(len(names), 0.7)) * spec.sum_rule.total
        else:
            raw = rng.uniform(0, 2, len(names))
        point = dict(zip(names, raw.tolist(), strict=True))
        snapped = snap_to_grid(spec, point)
        assert snapped is not None
        assert_on_grid(spec, snapped)


def test_components_outside_the_support_stay_zero():
    rng = np.random.default_rng(5)
    support = {"Cu", "Zr", "Ni"}
    for _ in range(40):
        raw = rng.dirichlet(np.ones(3))
        point = {"Cu": raw[0], "Zr": raw[1], "Ni": raw[2], "Ag": 0.0, "Co": 0.0, "Ti": 0.0}
        snapped = snap_to_grid(SIX, point, support)
        assert_on_grid(SIX, snapped, support)


def test_a_constraint_broken_by_rounding_is_repaired_by_single_steps():
    # Cu + Ag = 0.395 is on the constraint; largest remainder gives Ag the half step: 0.2 + 0.2 = 0.4
    point = {"Cu": 0.2, "Ag": 0.195, "Zr": 0.605, "Ni": 0.0, "Co": 0.0, "Ti": 0.0}
    snapped = snap_to_grid(SIX, point, {"Cu", "Ag", "Zr"})
    assert_on_grid(SIX, snapped, {"Cu", "Ag", "Zr"})
    assert snapped["Cu"] + snapped["Ag"] == pytest.approx(0.39)
    moved = sum(abs(snapped[n] - point[n]) for n in point)
    assert moved <= 0.0201  # one step away from the plain rounding


def test_a_point_far_outside_the_constraints_goes_to_the_nearest_grid_point():
    # Cu + Ag must drop from 1.0 to at most 0.395: 0.61 (61 steps) has to move, at least 1.22 in L1
    point = {"Cu": 0.5, "Ag": 0.5, "Zr": 0.0, "Ni": 0.0, "Co": 0.0, "Ti": 0.0}
    snapped = snap_to_grid(SIX, point)
    assert_on_grid(SIX, snapped)
    assert sum(abs(snapped[n] - point[n]) for n in point) == pytest.approx(1.22)


def test_a_support_that_cannot_be_met_falls_back_to_any_support_of_allowed_size():
    # Zr >= 0.105 is required, but the support leaves it out
    point = {"Cu": 0.3, "Ag": 0.05, "Zr": 0.0, "Ni": 0.65, "Co": 0.0, "Ti": 0.0}
    snapped = snap_to_grid(SIX, point, {"Cu", "Ag", "Ni"})
    assert_on_grid(SIX, snapped)
    assert snapped["Zr"] >= 0.11
    assert sum(v > 0 for v in snapped.values()) <= 4


def test_bounds_off_the_grid_round_inwards():
    point = {"Cu": 10.2, "Ag": 12.4, "Zn": 77.4}
    snapped = snap_to_grid(PERCENT, point)
    assert snapped["Cu"] >= 11 and snapped["Ag"] <= 12
    assert_on_grid(PERCENT, snapped)


def test_a_spec_without_resolution_is_refused():
    spec = make([{"name": "A"}, {"name": "B"}])
    with pytest.raises(SpecError, match="no resolution grid"):
        snap_to_grid(spec, {"A": 0.5, "B": 0.5})
