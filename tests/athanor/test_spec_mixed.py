"""The spec's mixed-space fields: how many components may be present, the grid, categorical choices."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from athanor.spec import CampaignSpec

ELEMENTS = ["Cu", "Ag", "Zr", "Ni", "Co"]


def make(components=None, **fields):
    return CampaignSpec(
        components=components or [{"name": n} for n in ELEMENTS],
        objectives=[{"name": "hardness"}],
        budget={"experiments": 20, "batch_size": 4},
        **fields,
    )


def refused(**fields) -> str:
    with pytest.raises(ValidationError) as info:
        make(**fields)
    return str(info.value)


# ------------------------------------------------------------------------------- max_active_components
def test_cardinality_within_range_is_accepted():
    assert make(max_active_components=3).max_active_components == 3
    assert make(max_active_components=5).max_active_components == 5


@pytest.mark.parametrize(
    ("k", "phrase"),
    [
        (0, "max_active_components is 0; it must be at least 1"),
        (-2, "max_active_components is -2; it must be at least 1"),
        (6, "max_active_components (6) exceeds the number of components (5); lower it to at most 5"),
    ],
)
def test_cardinality_out_of_range_names_the_field_and_the_fix(k, phrase):
    assert phrase in refused(max_active_components=k)


def test_cardinality_below_the_always_present_components_is_refused():
    components = [{"name": "A", "lower": 0.1}, {"name": "B", "lower": 0.2}, {"name": "C"}, {"name": "D"}]
    message = refused(components=components, max_active_components=1)
    assert "A, B have positive lower bounds and are always present" in message
    assert "raise it to at least 2" in message
    assert make(components=components, max_active_components=2).max_active_components == 2


def test_cardinality_that_no_composition_meets_is_refused():
    # each upper bound is 0.4: at least three components must be present to reach the total of 1
    components = [{"name": n, "upper": 0.4} for n in ELEMENTS]
    message = refused(components=components, max_active_components=2)
    assert message.count("max_active_components: no composition with at most 2 non-zero components") == 1
    assert make(components=components, max_active_components=3).max_active_components == 3


def test_cardinality_counts_components_that_constraints_force_in():
    # Cu + Ag >= 0.3 and Zr >= 0.6 cannot both hold with one component present
    constraints = [
        {"coefficients": {"Cu": 1, "Ag": 1}, "operator": ">=", "rhs": 0.3},
        {"coefficients": {"Zr": 1}, "operator": ">=", "rhs": 0.6},
    ]
    assert "max_active_components" in refused(constraints=constraints, max_active_components=1)
    assert make(constraints=constraints, max_active_components=2).max_active_components == 2


# ------------------------------------------------------------------------------- resolution
def test_resolution_that_divides_the_total_is_accepted():
    assert make(resolution=0.01).resolution == 0.01
    assert make(resolution=0.25).resolution == 0.25
    percent = [{"name": n, "upper": 100} for n in ELEMENTS]
    assert make(components=percent, sum_rule={"total": 100}, resolution=1).resolution == 1


@pytest.mark.parametrize("step", [0.03, 0.3, 2.0])
def test_resolution_that_does_not_divide_the_total_is_refused_with_a_step_that_does(step):
    message = refused(resolution=step)
    assert f"resolution {step:g} does not divide the sum-rule total 1" in message
    assert "use a step that does" in message


@pytest.mark.parametrize("step", [0.0, -0.01, float("nan")])
def test_resolution_must_be_a_positive_step(step):
    assert "give a positive grid step" in refused(resolution=step)


def test_bounds_off_the_grid_are_fine_while_the_grid_stays_feasible():
    # Cu in [0.305, 0.5] keeps 0.31 ... 0.5 on the 0.01 grid
    components = [{"name": "Cu", "lower": 0.305, "upper": 0.5}, {"name": "Ag"}, {"name": "Zr"}]
    spec = make(components=components, resolution=0.01)
    assert spec.violations({"Cu": 0.31, "Ag": 0.49, "Zr": 0.2}) == []
    assert any("Cu=0.3 outside" in p for p in spec.violations({"Cu": 0.3, "Ag": 0.5, "Zr": 0.2}))


def test_bounds_holding_no_grid_point_are_refused():
    components = [{"name": "Cu", "lower": 0.305, "upper": 0.309}, {"name": "Ag"}]
    message = refused(components=components, resolution=0.01)
    assert "the bounds of Cu [0.305, 0.309] hold no multiple of the step 0.01" in message


def test_bounds_that_make_the_grid_infeasible_as_a_whole_are_refused():
    # Cu in [0.25, 0.3] and Ag in [0.62, 0.75]: on a 0.1 grid Cu = 0.3 and Ag = 0.7 add up to 1.0 only
    # when nothing else is left; with Zr at least 0.05 (so at least 0.1 on the grid) nothing fits
    components = [
        {"name": "Cu", "lower": 0.25, "upper": 0.3},
        {"name": "Ag", "lower": 0.62, "upper": 0.75},
        {"name": "Zr", "lower": 0.05},
    ]
    message = refused(components=components, resolution=0.1)
    assert "resolution: no composition on the grid of 0.1 meets the bounds and the sum rule" in message
    assert make(components=components, resolution=0.01).resolution == 0.01


def test_grid_and_cardinality_together_name_the_field_to_change():
    # one element per composition works on a continuous scale (A = 0.95 ...), never on a 0.1 grid
    components = [{"name": "A", "upper": 0.95}, {"name": "B", "upper": 0.95}, {"name": "C"}]
    assert make(components=components, max_active_components=1).max_active_components == 1
    components = [{"name": "A", "upper": 0.95}, {"name": "B", "upper": 0.95}]
    message = refused(components=components, max_active_components=1, resolution=0.05)
    assert message.count("max_active_components: no composition with at most 1 non-zero") == 1


# ------------------------------------------------------------------------------- categories
def test_categories_are_accepted_and_round_trip_through_yaml():
    spec = make(categories=[{"name": "annealing", "choices": ["none", "150C", "200C"]}], resolution=0.05)
    again = CampaignSpec.from_yaml(spec.to_yaml())
    assert again == spec
    assert again.categories[0].choices == ["none", "150C", "200C"]


@pytest.mark.parametrize(
    ("categories", "phrase"),
    [
        ([{"name": "annealing", "choices": ["none"]}], "has 1 choice(s); give at least two"),
        ([{"name": "annealing", "choices": ["a", "b", "a"]}], "choice(s) a listed more than once"),
        ([{"name": "annealing", "choices": ["a", " b"]}], "without leading or trailing spaces"),
        ([{"name": "2nd", "choices": ["a", "b"]}], "must start with a letter"),
        ([{"name": "Cu", "choices": ["a", "b"]}], "Cu is already the name of a component"),
        ([{"name": "status", "choices": ["a", "b"]}], "status is already the name of"),
        (
            [{"name": "route", "choices": ["a", "b"]}, {"name": "route", "choices": ["c", "d"]}],
            "categories: route listed more than once",
        ),
    ],
)
def test_bad_categories_are_refused_with_the_fix(categories, phrase):
    assert phrase in refused(categories=categories)


# ------------------------------------------------------------------------------- violations
def test_violations_report_too_many_components_off_grid_amounts_and_bad_choices():
    spec = make(
        max_active_components=2,
        resolution=0.05,
        categories=[{"name": "annealing", "choices": ["none", "150C"]}],
    )
    good = {"Cu": 0.55, "Ag": 0.45, "Zr": 0.0, "Ni": 0.0, "Co": 0.0}
    assert spec.violations(good, choices={"annealing": "150C"}) == []
    assert spec.violations(good) == []  # choices unchecked when not given

    crowded = {"Cu": 0.5, "Ag": 0.25, "Zr": 0.25, "Ni": 0.0, "Co": 0.0}
    assert "3 components are non-zero (Cu, Ag, Zr); at most 2 may be" in spec.violations(crowded)

    off_grid = {"Cu": 0.52, "Ag": 0.48, "Zr": 0.0, "Ni": 0.0, "Co": 0.0}
    problems = spec.violations(off_grid)
    assert "Cu=0.52 is not a multiple of the resolution 0.05" in problems
    assert "Ag=0.48 is not a multiple of the resolution 0.05" in problems

    assert spec.violations(good, choices={"annealing": "300C"}) == [
        "annealing='300C' is not a choice; choose one of none, 150C"
    ]
    assert spec.violations(good, choices={}) == ["no choice for annealing; choose one of none, 150C"]
    assert (
        "unknown categorical variable 'atmosphere'"
        in spec.violations(good, choices={"annealing": "none", "atmosphere": "air"})[0]
    )


def test_specs_without_the_new_fields_behave_as_before():
    spec = make()
    assert (spec.max_active_components, spec.resolution, spec.categories) == (None, None, [])
    assert spec.violations({"Cu": 0.123, "Ag": 0.2, "Zr": 0.3, "Ni": 0.2, "Co": 0.177}) == []
