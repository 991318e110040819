"""Several objectives in the spec (thresholds, outcome constraints) and the Pareto front."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from athanor.models import Observation
from athanor.pareto import counts, dominates, hypervolume, pareto_front, shortfalls, targets_met
from athanor.spec import CampaignSpec

BASE = {
    "components": [{"name": "A"}, {"name": "B"}],
    "budget": {"experiments": 10},
}
TWO = [
    {"name": "conductivity", "unit": "S/cm"},
    {"name": "cost", "direction": "minimise", "unit": "EUR/g"},
]


def spec_with(**changes: object) -> CampaignSpec:
    return CampaignSpec.model_validate({**BASE, "objectives": TWO, **changes})


def refusal(**changes: object) -> str:
    with pytest.raises(ValidationError) as info:
        spec_with(**changes)
    return str(info.value)


def obs(
    name: str, conductivity: float | None, cost: float | None, status: str = "ok", **extra: float
) -> Observation:
    values = {k: v for k, v in (("conductivity", conductivity), ("cost", cost)) if v is not None}
    return Observation(
        experiment_id=name,
        iteration=0,
        composition={"A": 0.5, "B": 0.5},
        values=values | extra,
        status=status,
    )


# --- the spec -------------------------------------------------------------------------------------------


def test_threshold_and_outcome_constraints_round_trip_and_name_the_measured_values():
    spec = spec_with(
        objectives=[{**TWO[0], "threshold": 100, "target": 800}, {**TWO[1], "threshold": 5}],
        outcome_constraints=[{"name": "transmittance", "operator": ">=", "value": 60, "unit": "%"}],
    )
    assert spec.measured_names == ["conductivity", "cost", "transmittance"]
    assert spec.outcome_constraints[0].describe() == "transmittance >= 60 %"
    assert CampaignSpec.from_yaml(spec.to_yaml()) == spec


def test_an_objective_without_threshold_serialises_as_before():
    dumped = CampaignSpec.model_validate({**BASE, "objectives": [TWO[0]]}).model_dump()
    assert dumped["objectives"][0] == {
        "name": "conductivity",
        "direction": "maximise",
        "unit": "S/cm",
        "target": None,
    }
    assert dumped["outcome_constraints"] == []


@pytest.mark.parametrize(
    ("objective", "phrase"),
    [
        ({**TWO[0], "threshold": 900, "target": 800}, "threshold 900 is not below the target 800"),
        ({**TWO[1], "threshold": 2, "target": 3}, "threshold 2 is not above the target 3"),
        ({**TWO[0], "threshold": float("inf")}, "threshold must be finite"),
    ],
)
def test_a_threshold_on_the_wrong_side_of_the_target_is_refused(objective, phrase):
    other = TWO[1] if objective["name"] == "conductivity" else TWO[0]
    assert phrase in refusal(objectives=[objective, other])


def test_a_threshold_with_one_objective_is_refused_with_what_to_use_instead():
    with pytest.raises(ValidationError) as info:
        CampaignSpec.model_validate({**BASE, "objectives": [{**TWO[0], "threshold": 1}]})
    message = str(info.value)
    assert "objectives[0].threshold" in message and "target" in message and "outcome constraint" in message


def test_more_than_four_objectives_are_refused_with_the_reason():
    five = [{"name": name} for name in ("conductivity", "transmittance", "cost", "yield", "density")]
    message = refusal(objectives=five)
    assert "5 objectives given, at most 4" in message and "Pareto-optimal" in message
    assert spec_with(objectives=five[:4]).objectives[3].name == "yield"


def test_outcome_constraints_must_name_something_measured_and_be_satisfiable():
    message = refusal(outcome_constraints=[{"name": "hardness", "operator": ">=", "value": 3}])
    assert "outcome_constraints[0] (hardness >= 3)" in message and "transmittance" in message
    message = refusal(
        outcome_constraints=[
            {"name": "transmittance", "operator": ">=", "value": 60},
            {"name": "transmittance", "operator": "<=", "value": 50},
        ]
    )
    assert "no value of transmittance is both >= 60 and <= 50" in message
    message = refusal(
        components=[{"name": "A"}, {"name": "temperature"}],
        outcome_constraints=[{"name": "temperature", "operator": "<=", "value": 80}],
    )
    assert "'temperature' is already a component" in message
    # a quantity an instrument measures, and an objective, may both be constrained
    spec = spec_with(outcome_constraints=[{"name": "cost", "operator": "<=", "value": 9}])
    assert spec.measured_names == ["conductivity", "cost"]


def test_several_objectives_combine_with_a_mixed_design_space():
    spec = spec_with(
        resolution=0.1,
        max_active_components=2,
        categories=[{"name": "route", "choices": ["x", "y"]}],
        outcome_constraints=[{"name": "conductivity", "operator": ">=", "value": 20}],
    )
    assert (spec.resolution, spec.max_active_components, spec.categories[0].name) == (0.1, 2, "route")
    assert spec.measured_names == ["conductivity", "cost"]


# --- the front ------------------------------------------------------------------------------------------


def test_pareto_front_of_a_hand_made_set_with_a_maximised_and_a_minimised_objective():
    spec = spec_with(outcome_constraints=[{"name": "conductivity", "operator": ">=", "value": 20}])
    observations = [
        obs("E1", 100, 10),  # front: most conductive
        obs("E2", 60, 4),  # front
        obs("E3", 60, 5),  # dominated by E2 (same conductivity, dearer)
        obs("E4", 30, 1),  # front: cheapest that qualifies
        obs("E5", 10, 0.5),  # cheaper still, but breaks conductivity >= 20
        obs("E6", 90, 12),  # dominated by E1
        obs("E7", 60, 4),  # the same values as E2: kept with it
        obs("E8", 500, 0.1, status="failed"),  # would dominate everything, but failed
        obs("E9", 500, None),  # no cost measured
    ]
    front = pareto_front(spec, observations)
    assert [o.experiment_id for o in front] == ["E1", "E2", "E7", "E4"]
    assert shortfalls(spec, observations[4]) == ["breaks conductivity >= 20"]
    assert shortfalls(spec, observations[7]) == ["status failed"]
    assert shortfalls(spec, observations[8]) == ["no cost"]
    assert counts(spec, observations[0]) and not counts(spec, observations[4])
    assert dominates(spec, {"conductivity": 60, "cost": 4}, {"conductivity": 60, "cost": 5})
    assert not dominates(spec, {"conductivity": 60, "cost": 4}, {"conductivity": 60, "cost": 4})


def test_hypervolume_of_a_staircase_is_its_area():
    spec = spec_with()
    front = [obs("E1", 100, 10), obs("E2", 60, 4), obs("E4", 30, 1), obs("E6", 90, 12)]
    reference = {"conductivity": 0.0, "cost": 20.0}
    # slabs: cost 10..20 up to 100, cost 4..10 up to 60, cost 1..4 up to 30
    assert hypervolume(spec, front, reference) == pytest.approx(100 * 10 + 60 * 6 + 30 * 3)
    assert hypervolume(spec, front, {"conductivity": 200.0, "cost": 20.0}) == 0.0
    three = CampaignSpec.model_validate({**BASE, "objectives": [*TWO, {"name": "transmittance"}]})
    cube = [obs("E1", 2, 1, transmittance=3), obs("E2", 1, 0, transmittance=1)]
    # a 2 x 1 x 3 box and a 1 x 2 x 1 box overlapping in a 1 x 1 x 1 box
    assert hypervolume(three, cube, {"conductivity": 0, "cost": 2, "transmittance": 0}) == pytest.approx(
        6 + 2 - 1
    )


def test_targets_are_met_only_by_one_experiment_reaching_all_of_them():
    spec = spec_with(
        objectives=[{**TWO[0], "target": 80}, {**TWO[1], "target": 3}],
        outcome_constraints=[{"name": "transmittance", "operator": ">=", "value": 50}],
    )
    assert (
        targets_met(spec, [obs("E1", 100, 5, transmittance=60), obs("E2", 50, 1, transmittance=60)]) is None
    )
    assert targets_met(spec, [obs("E3", 90, 2, transmittance=40)]) is None  # breaks the constraint
    met = targets_met(spec, [obs("E1", 100, 5, transmittance=60), obs("E4", 85, 2.5, transmittance=55)])
    assert met is not None and met.experiment_id == "E4"
    assert targets_met(spec_with(), [obs("E1", 1e9, 0)]) is None  # no targets, nothing to meet


def test_the_cli_shows_the_pareto_front_with_every_objective():
    from athanor.cli import _composition_table, best_rows

    spec = spec_with()
    observations = [obs("E1", 100, 10), obs("E2", 60, 4), obs("E3", 60, 5), obs("E4", 30, 1)]
    rows = best_rows(spec, observations)
    assert [o.experiment_id for o in rows] == ["E1", "E2", "E4"]
    table = _composition_table(spec, rows, "best compositions")
    assert table.title == "Pareto front"
    assert [c.header for c in table.columns] == [
        "experiment",
        "A",
        "B",
        "conductivity (S/cm)",
        "cost (EUR/g)",
    ]
    constrained = CampaignSpec.model_validate(
        {
            **BASE,
            "objectives": [TWO[0]],
            "outcome_constraints": [{"name": "transmittance", "operator": ">=", "value": 50}],
        }
    )
    ranked = best_rows(constrained, [obs("E1", 100, 1, transmittance=40), obs("E2", 60, 1, transmittance=55)])
    assert [o.experiment_id for o in ranked] == ["E2"]
    assert _composition_table(constrained, ranked, "best compositions").title == "best compositions"
