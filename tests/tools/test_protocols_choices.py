"""Compiling mixed-space proposals: zeros for absent components, choices carried to the protocol."""

from __future__ import annotations

import pytest

from athanor.errors import SpecError
from athanor.models import Proposal
from athanor.spec import CampaignSpec
from instruments.virtual_lab import virtual_lab_description
from tools.protocols import compile_protocol

ELEMENTS = ["Cu", "Ag", "Zr", "Ni", "Co"]
SPEC = CampaignSpec(
    components=[{"name": n} for n in ELEMENTS],
    objectives=[{"name": "conductivity"}],
    budget={"experiments": 10, "batch_size": 2},
    max_active_components=2,
    resolution=0.05,
    categories=[{"name": "annealing", "choices": ["none", "150C", "200C"]}],
)
LAB = virtual_lab_description(ELEMENTS, time_scale=0.0)
TWO_OF_FIVE = {"Cu": 0.0, "Ag": 0.65, "Zr": 0.0, "Ni": 0.35, "Co": 0.0}


def test_absent_components_get_no_dispense_and_the_choices_ride_along():
    proposal = Proposal(experiment_id="E0001", composition=TWO_OF_FIVE, choices={"annealing": "150C"})
    protocol = compile_protocol(proposal, SPEC, LAB, "A1")
    dispensed = {c.params["stock"] for c in protocol.commands if c.action == "dispense"}
    assert dispensed == {"Ag_stock", "Ni_stock"}
    assert protocol.choices == {"annealing": "150C"}
    assert protocol.composition["Ag"] == pytest.approx(0.65)
    # what the rounded volumes make still obeys the limit and the grid
    assert SPEC.violations(protocol.composition, tol=1e-6, choices=protocol.choices) == []
    # no command was invented for the choice
    assert {c.action for c in protocol.commands} == {"dispense", "mix", "measure"}


@pytest.mark.parametrize(
    ("choices", "phrase"),
    [
        ({}, "no choice for annealing; choose one of none, 150C, 200C"),
        ({"annealing": "300C"}, "annealing='300C' is not a choice"),
        ({"annealing": "none", "speed": "fast"}, "unknown categorical variable 'speed'"),
    ],
)
def test_missing_or_invalid_choices_are_refused_naming_the_variable(choices, phrase):
    proposal = Proposal(experiment_id="E0002", composition=TWO_OF_FIVE, choices=choices)
    with pytest.raises(SpecError) as info:
        compile_protocol(proposal, SPEC, LAB, "A2")
    assert "proposal E0002" in str(info.value)
    assert phrase in str(info.value)


def test_too_many_components_are_refused_after_rounding():
    crowded = {"Cu": 0.4, "Ag": 0.3, "Zr": 0.3, "Ni": 0.0, "Co": 0.0}
    proposal = Proposal(experiment_id="E0003", composition=crowded, choices={"annealing": "none"})
    with pytest.raises(SpecError, match="at most 2 may be"):
        compile_protocol(proposal, SPEC, LAB, "A3")
