"""The request grammar with several objectives, thresholds and outcome constraints."""

from __future__ import annotations

import pytest
from support.refusals import refusal

from agents.llm.reader import read_request
from athanor.spec import CampaignSpec


def spec_of(request: str) -> CampaignSpec:
    return CampaignSpec.model_validate(read_request(request))


def objectives(spec: CampaignSpec) -> list[tuple[str, str, str, float | None, float | None]]:
    return [(o.name, o.direction, o.unit, o.target, o.threshold) for o in spec.objectives]


def outcomes(spec: CampaignSpec) -> list[tuple[str, str, float, str]]:
    return [(c.name, c.operator, c.value, c.unit) for c in spec.outcome_constraints]




def test_two_objectives_each_with_its_verb():
    spec = spec_of(
        "Maximise the conductivity and minimise the cost of a blend of A, B and C (fractions sum to 1),"
        " 30 experiments in batches of 4"
    )
    assert objectives(spec) == [
        ("conductivity", "maximise", "S/cm", None, None),
        ("cost", "minimise", "", None, None),
    ]
    assert spec.component_names == ["A", "B", "C"]
    assert (spec.budget.experiments, spec.budget.batch_size) == (30, 4)
    assert spec.title == "maximise conductivity and minimise cost of A, B and C"
    assert spec.outcome_constraints == []


def test_objectives_sharing_a_verb_and_their_thresholds():
    spec = spec_of(
        "Maximise the conductivity and the transmittance of A, B and C, conductivity at least 100 S/cm,"
        " transmittance at least 60 %, 30 experiments in batches of 4"
    )
    assert objectives(spec) == [
        ("conductivity", "maximise", "S/cm", None, 100.0),
        ("transmittance", "maximise", "%", None, 60.0),
    ]
    assert spec.title == "maximise conductivity and transmittance of A, B and C"
    three = spec_of("Maximise the conductivity, transmittance and yield of A and B, 20 runs")
    assert [o.name for o in three.objectives] == ["conductivity", "transmittance", "yield"]
    assert {o.direction for o in three.objectives} == {"maximise"}


def test_a_minimised_objective_takes_an_upper_threshold_and_targets_are_named():
    spec = spec_of(
        "Maximise the conductivity and minimise the band gap of TiO2 and ZnO,"
        " target conductivity of 800 S/cm, band gap at most 3 eV, 24 experiments"
    )
    assert objectives(spec) == [
        ("conductivity", "maximise", "S/cm", 800.0, None),
        ("band_gap", "minimise", "eV", None, 3.0),
    ]


def test_a_bound_on_a_quantity_that_is_not_an_objective_is_an_outcome_constraint():
    spec = spec_of(
        "Minimise the cost of A, B and C while keeping the conductivity at least 500 S/cm, 20 runs"
    )
    assert objectives(spec) == [("cost", "minimise", "", None, None)]
    assert outcomes(spec) == [("conductivity", ">=", 500.0, "S/cm")]
    spec = spec_of(
        "Maximise the transmittance of A and B with conductivity above 50, 12 runs in batches of 4"
    )
    assert outcomes(spec) == [("conductivity", ">=", 50.0, "S/cm")]
    assert spec.measured_names == ["transmittance", "conductivity"]


def test_with_one_objective_a_bound_on_it_is_an_outcome_constraint():
    spec = spec_of("Maximise the conductivity of A and B, conductivity at least 500 S/cm, 10 experiments")
    assert objectives(spec) == [("conductivity", "maximise", "S/cm", None, None)]
    assert outcomes(spec) == [("conductivity", ">=", 500.0, "S/cm")]


def test_component_bounds_are_still_component_bounds():
    spec = spec_of(
        "Maximise the conductivity and the transmittance of a P3HT/CNT blend of P3HT, D1 and D2,"
        " P3HT at least 0.3, D1 and D2 each at most 0.4, transmittance must be at least 50 %, 30 experiments"
    )
    assert {c.name: (c.lower, c.upper) for c in spec.components} == {
        "P3HT": (0.3, 1.0),
        "D1": (0.0, 0.4),
        "D2": (0.0, 0.4),
    }
    assert spec.objectives[1].threshold == 50.0
    # a capitalised name after "and" is a component, not another objective
    spec = spec_of("Maximise the conductivity of A, B and C, A and B each at most 0.5, 30 experiments")
    assert [o.name for o in spec.objectives] == ["conductivity"]


@pytest.mark.parametrize(
    ("request_text", "phrase"),
    [
        (
            "Maximise the yield and minimise the cost of A and B, target 80, 30 runs",
            'the target "target 80" does not name one of the objectives (yield, cost)',
        ),
        (
            "Maximise the conductivity and the yield of A and B, conductivity at most 10, 30 runs",
            "a threshold is the worst acceptable value",
        ),
        (
            "Maximise the conductivity (S/cm) and the yield of A and B, conductivity at least 10 S/m, 9 runs",
            "is in S/m but conductivity is in S/cm",
        ),
        (
            "Maximise the conductivity and the yield of A and B, yield at least 10, yield above 20, 9 runs",
            "the threshold of yield is given twice",
        ),
        (
            "Maximise the conductivity of A and B and minimise the conductivity, 30 experiments",
            "conflicting directions",
        ),
        ("Maximise the conductivity of A and B and minimise it, 30 experiments", "conflicting directions"),
        (
            "Maximise the conductivity and the magic dust of A and B using fairy wings, 30 runs",
            '"fairy wings"',
        ),
    ],
)
def test_refusals(request_text, phrase):
    assert phrase in refusal(request_text)


def test_too_many_objectives_are_read_and_then_refused_by_the_spec():
    data = read_request(
        "Maximise the conductivity, transmittance, yield, density and hardness of A and B, 30 runs"
    )
    assert len(data["objectives"]) == 5
    with pytest.raises(ValueError, match="at most 4"):
        CampaignSpec.model_validate(data)
