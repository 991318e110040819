"""The mixed design space: faces of present components, choices, and the initial design on it."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from athanor.spec import CampaignSpec
from tools.grid import grid_steps
from tools.mixed_space import (
    MAX_CELLS,
    MixedPoint,
    mixed_initial_design,
    mixed_space,
    needs_mixed_space,
)

ELEMENTS = ["Cu", "Ag", "Zr", "Ni", "Co", "Ti"]
ANNEALING = {"name": "annealing", "choices": ["none", "150C", "200C"]}


def make(components=None, **fields):
    return CampaignSpec(
        components=components or [{"name": n} for n in ELEMENTS],
        objectives=[{"name": "hardness"}],
        budget={"experiments": 40, "batch_size": 4},
        **fields,
    )


SPECS = {
    "k3_grid": make(max_active_components=3, resolution=0.01),
    "k2_choices": make(max_active_components=2, categories=[ANNEALING]),
    "all_three_constrained": make(
        components=[{"name": "Cu", "lower": 0.2}] + [{"name": n, "upper": 0.6} for n in ELEMENTS[1:]],
        constraints=[
            {"coefficients": {"Ag": 1, "Zr": 1}, "operator": "<=", "rhs": 0.35},
            {"coefficients": {"Ni": 1}, "operator": ">=", "rhs": 0.05},
        ],
        max_active_components=4,
        resolution=0.05,
        categories=[ANNEALING, {"name": "atmosphere", "choices": ["air", "N2"]}],
    ),
    "percent_grid_only": make(
        components=[{"name": n, "upper": 100} for n in ELEMENTS[:4]], sum_rule={"total": 100}, resolution=2.5
    ),
}


def assert_admissible(spec, point):
    """Everything the spec asks of a point, checked independently of the code under test."""
    assert spec.violations(point.composition, tol=1e-9, choices=point.choices) == []
    if spec.max_active_components is not None:
        assert sum(v > 0 for v in point.composition.values()) <= spec.max_active_components
    if spec.resolution is not None:
        steps = grid_steps(spec, point.composition)
        for name, count in zip(spec.component_names, steps, strict=True):
            assert abs(point.composition[name] - count * spec.resolution) < 1e-9
        if spec.sum_rule is not None:
            assert sum(steps) == round(spec.sum_rule.total / spec.resolution)
    for variable in spec.categories:
        assert point.choices[variable.name] in variable.choices
    assert set(point.choices) == {v.name for v in spec.categories}


def test_needs_mixed_space():
    assert not needs_mixed_space(make())
    assert needs_mixed_space(make(max_active_components=6))
    assert needs_mixed_space(make(resolution=0.1))
    assert needs_mixed_space(make(categories=[ANNEALING]))


def test_components_split_into_always_present_and_optional():
    mixed = mixed_space(SPECS["all_three_constrained"])
    # Cu by its bound, Ni by the constraint Ni >= 0.05
    assert mixed.always == ("Cu", "Ni")
    assert mixed.optional == ("Ag", "Zr", "Co", "Ti")
    assert mixed.choose == 2  # 4 allowed, 2 always present
    assert mixed.n_subsets == math.comb(4, 2)
    assert mixed.n_combinations == 6


def test_cells_are_every_subset_times_every_combination_when_few():
    mixed = mixed_space(SPECS["k2_choices"])
    cells = mixed.cells(seed=0)
    assert len(cells) == math.comb(6, 2) * 3
    assert {(c.present, c.codes) for c in cells} == {
        (tuple(n for n in ELEMENTS if n in pair), (code,))
        for pair in itertools.combinations(ELEMENTS, 2)
        for code in range(3)
    }
    for cell in cells:
        absent = set(ELEMENTS) - set(cell.present)
        assert all(cell.face.fixed.get(n) == 0.0 for n in absent)


def test_many_cells_are_sampled_with_the_preferred_ones_first():
    spec = make(components=[{"name": f"E{i}"} for i in range(12)], max_active_components=3)
    mixed = mixed_space(spec)
    assert mixed.n_subsets == math.comb(12, 3) > MAX_CELLS
    prefer = [(("E4", "E7", "E9"), ()), (("E1",), ())]
    cells = mixed.cells(seed=3, prefer=prefer)
    assert len(cells) == MAX_CELLS
    assert cells[0].present == ("E4", "E7", "E9")
    assert "E1" in cells[1].present and len(cells[1].present) == 3  # topped up to a full face
    assert len({c.present for c in cells}) == MAX_CELLS
    assert [c.present for c in mixed.cells(seed=3, prefer=prefer)] == [c.present for c in cells]


def test_encode_and_decode_round_trip():
    spec = SPECS["all_three_constrained"]
    mixed = mixed_space(spec)
    point = MixedPoint(
        composition={"Cu": 0.4, "Ag": 0.1, "Zr": 0.0, "Ni": 0.3, "Co": 0.0, "Ti": 0.2},
        choices={"annealing": "200C", "atmosphere": "N2"},
    )
    x = mixed.encode([point])
    assert x.shape == (1, mixed.input_dim)
    assert x[0, mixed.dim :].tolist() == [2.0, 1.0]
    back = mixed.decode(x)[0]
    assert back.choices == point.choices
    assert back.composition == pytest.approx(point.composition)


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("seed", [0, 7])
def test_initial_design_respects_every_rule(name, seed):
    spec = SPECS[name]
    points = mixed_initial_design(spec, 10, seed)
    assert len(points) == 10
    for point in points:
        assert_admissible(spec, point)
    keys = {(tuple(p.composition.values()), tuple(p.choices.items())) for p in points}
    assert len(keys) == 10  # no repeats while the space has room


def test_initial_design_spreads_over_subsets_and_choices():
    spec = SPECS["k2_choices"]
    points = mixed_initial_design(spec, 12, 1)
    mixed = mixed_space(spec)
    subsets = {mixed.present_in(p.composition) for p in points}
    assert len(subsets) >= 6
    assert {p.choices["annealing"] for p in points} == {"none", "150C", "200C"}


def test_initial_design_is_reproducible_and_stays_away_from_given_points():
    spec = SPECS["k3_grid"]
    first = mixed_initial_design(spec, 6, 4)
    assert mixed_initial_design(spec, 6, 4) == first
    more = mixed_initial_design(spec, 6, 4, avoid=first)
    mixed = mixed_space(spec)
    gap = torch.cdist(mixed.features(mixed.encode(more)), mixed.features(mixed.encode(first)))
    assert float(gap.min()) > 0.05


def test_a_tiny_grid_repeats_points_rather_than_failing():
    spec = make(components=[{"name": "A"}, {"name": "B"}], resolution=0.5)
    points = mixed_initial_design(spec, 5, 0)
    assert len(points) == 5
    assert {tuple(p.composition.values()) for p in points} == {(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)}
