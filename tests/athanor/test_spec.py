"""CampaignSpec validation: good specs pass and round-trip; bad specs name the field and the fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from athanor.errors import format_validation_error
from athanor.spec import CampaignSpec


def spec_data(**overrides):
    data = {
        "title": "p3ht",
        "components": [
            {"name": "P3HT", "lower": 0.3, "upper": 1.0},
            {"name": "D1", "lower": 0.0, "upper": 0.7},
            {"name": "D2", "lower": 0.0, "upper": 0.7},
        ],
        "sum_rule": {"total": 1.0},
        "constraints": [{"coefficients": {"D1": 1, "D2": 1}, "operator": "<=", "rhs": 0.6}],
        "objectives": [{"name": "conductivity", "direction": "maximise", "unit": "S/cm"}],
        "budget": {"experiments": 12, "batch_size": 4},
        "seed": 3,
    }
    data.update(overrides)
    return data


def error_text(data) -> str:
    with pytest.raises(ValidationError) as info:
        CampaignSpec.model_validate(data)
    return format_validation_error(info.value)


def test_valid_spec_round_trips_through_yaml():
    spec = CampaignSpec.model_validate(spec_data())
    again = CampaignSpec.from_yaml(spec.to_yaml())
    assert again == spec
    assert again.component_names == ["P3HT", "D1", "D2"]
    assert again.budget.n_initial == 4


def test_percent_spec_converts_to_unit_fractions():
    spec = CampaignSpec.model_validate(
        spec_data(
            components=[
                {"name": "Cu", "lower": 50, "upper": 100},
                {"name": "Ag", "lower": 0, "upper": 10},
                {"name": "Zr", "lower": 0, "upper": 50},
            ],
            sum_rule={"total": 100},
            constraints=[],
        )
    )
    assert spec.unit_scale == 100
    assert spec.to_unit_fractions({"Cu": 80, "Ag": 5, "Zr": 15}) == {"Cu": 0.8, "Ag": 0.05, "Zr": 0.15}
    assert spec.violations({"Cu": 80, "Ag": 5, "Zr": 15}) == []
    assert any("Ag=12" in v for v in spec.violations({"Cu": 78, "Ag": 12, "Zr": 10}))


def test_violations_lists_each_broken_rule():
    spec = CampaignSpec.model_validate(spec_data())
    problems = spec.violations({"P3HT": 0.2, "D1": 0.5, "D2": 0.5})
    assert any("P3HT=0.2 outside" in p for p in problems)
    assert any("sum to 1.2" in p for p in problems)
    assert any("D1 + D2 <= 0.6" in p for p in problems)
    assert spec.violations({"P3HT": 0.4, "D1": 0.3, "D2": 0.3}) == []


@pytest.mark.parametrize(
    ("overrides", "field", "phrase"),
    [
        # lower bounds that exceed the total
        (
            {
                "components": [
                    {"name": "A", "lower": 0.6, "upper": 1},
                    {"name": "B", "lower": 0.6, "upper": 1},
                ]
            },
            "",
            "lower bounds add up to 1.2",
        ),
        # upper bounds that cannot reach the total
        (
            {"components": [{"name": "A", "upper": 0.3}, {"name": "B", "upper": 0.3}], "constraints": []},
            "",
            "upper bounds add up to 0.6",
        ),
        # constraint on an unknown component
        (
            {"constraints": [{"coefficients": {"Ni": 1}, "operator": "<=", "rhs": 0.2}]},
            "",
            "unknown component(s) Ni",
        ),
        # infeasible constraint given the bounds and the sum rule
        (
            {"constraints": [{"coefficients": {"P3HT": 1}, "operator": "<=", "rhs": 0.1}]},
            "",
            "no composition within the bounds",
        ),
        # batch larger than the budget
        (
            {"budget": {"experiments": 3, "batch_size": 5}},
            "budget",
            "batch_size (5) is larger than the budget",
        ),
        # zero experiments
        ({"budget": {"experiments": 0}}, "budget.experiments", "greater than or equal to 1"),
        # inverted bounds
        (
            {"components": [{"name": "A", "lower": 0.8, "upper": 0.2}, {"name": "B"}], "constraints": []},
            "components.0",
            "swap them",
        ),
        # negative amount
        (
            {"components": [{"name": "A", "lower": -0.1}, {"name": "B"}], "constraints": []},
            "components.0",
            "cannot be negative",
        ),
        # duplicate component
        ({"components": [{"name": "A"}, {"name": "A"}], "constraints": []}, "", "listed more than once"),
        # a single component is not a mixture
        ({"components": [{"name": "A"}], "constraints": []}, "components", "at least 2 items"),
        # no objective
        ({"objectives": []}, "objectives", "at least 1 item"),
        # unknown direction
        ({"objectives": [{"name": "conductivity", "direction": "up"}]}, "objectives.0.direction", "maximise"),
        # a name that cannot be a column
        (
            {"components": [{"name": "P3HT/CNT"}, {"name": "B"}], "constraints": []},
            "components.0.name",
            "letter",
        ),
        # a typo in a field name is not silently ignored
        ({"budjet": {"experiments": 3}}, "budjet", "Extra inputs are not permitted"),
        # upper bound above the total
        (
            {"components": [{"name": "A", "upper": 1.5}, {"name": "B"}], "constraints": []},
            "",
            "exceeds the sum-rule total",
        ),
    ],
)
def test_bad_spec_is_refused_with_field_and_fix(overrides, field, phrase):
    text = error_text(spec_data(**overrides))
    assert phrase in text
    if field:
        assert text.startswith(field) or f"\n{field}" in text


def test_a_component_name_may_join_parts_with_a_colon_as_material_names_do():
    components = [{"name": "PEDOT:PSS", "lower": 0.4}, {"name": "ZnO:Al"}, {"name": "EG"}]
    constraints = [{"coefficients": {"ZnO:Al": 1, "EG": 1}, "operator": "<=", "rhs": 0.5}]
    spec = CampaignSpec.model_validate(spec_data(components=components, constraints=constraints))
    assert CampaignSpec.from_yaml(spec.to_yaml()) == spec
    assert spec.component_names == ["PEDOT:PSS", "ZnO:Al", "EG"]


@pytest.mark.parametrize("name", [":PSS", "PEDOT:", "PEDOT::PSS", "PEDOT: PSS"])
def test_a_colon_that_does_not_join_two_parts_of_a_name_is_refused(name):
    text = error_text(spec_data(components=[{"name": name}, {"name": "B"}], constraints=[]))
    assert text.startswith("components.0.name") and "':' between two of them" in text


def test_a_categorical_variable_name_still_may_not_hold_a_colon():
    text = error_text(spec_data(categories=[{"name": "solvent:main", "choices": ["water", "ethanol"]}]))
    assert text.startswith("categories.0.name")


def test_percent_component_under_fraction_rule_is_refused():
    text = error_text(
        spec_data(
            components=[{"name": "A", "unit": "percent", "upper": 1}, {"name": "B"}],
            constraints=[],
        )
    )
    assert "give every amount in fraction" in text
