"""Component names in requests: what becomes a component, what stays one name, what is refused."""

from __future__ import annotations

import pytest

from agents.llm.grammar import read_request
from athanor.errors import RequestNotUnderstood
from athanor.spec import CampaignSpec


def refusal(request: str) -> str:
    with pytest.raises(RequestNotUnderstood) as info:
        read_request(request)
    return str(info.value)


@pytest.mark.parametrize(
    ("request_text", "line"),
    [
        (
            "Minimise the density of a blend of Ti, Al and V with Ti + 2*Mo <= 0.8, 25 experiments",
            '"Ti + 2*Mo <= 0.8" bounds Mo, which is not a component; the components are Ti, Al, V',
        ),
        (
            "Maximise the hardness of Cu, Ag and Zr, the sum of Ag and Zn is at most 0.4, 20 runs",
            '"the sum of Ag and Zn is at most 0.4" bounds Zn, which is not a component (did you mean Zr?);'
            " the components are Cu, Ag, Zr",
        ),
        (
            "Raise the yield of X1, X2 and X3, X1 and Y7 together no more than 0.6, 18 experiments",
            '"X1 and Y7 together no more than 0.6" bounds Y7, which is not a component; the components are'
            " X1, X2, X3",
        ),
    ],
)
def test_the_reader_refuses_a_constraint_on_an_unknown_component_in_its_own_words(request_text, line):
    # the spec would refuse it too, later and in its own terms; the reader says it in the request's words
    assert f"  - {line}\n" in refusal(request_text)


def spec_of(request: str) -> CampaignSpec:
    return CampaignSpec.model_validate(read_request(request))


def test_a_colon_inside_a_material_name_stays_part_of_the_name():
    spec = spec_of("Raise the conductivity of a blend of PEDOT:PSS, DMSO and EG, 12 experiments")
    assert spec.component_names == ["PEDOT:PSS", "DMSO", "EG"]
    assert spec.categories == []


def test_a_colon_name_in_bounds_and_constraints_and_beside_a_choice_after_a_colon():
    spec = spec_of(
        "Minimise the sheet resistance of ZnO:Al, ITO and FTO, ZnO:Al at least 0.2,"
        " ITO + 2*ZnO:Al at most 0.9, solvent: ethanol or water, 20 runs in batches of 4"
    )
    assert {c.name: c.lower for c in spec.components} == {"ZnO:Al": 0.2, "ITO": 0.0, "FTO": 0.0}
    assert [c.coefficients for c in spec.constraints] == [{"ITO": 1.0, "ZnO:Al": 2.0}]
    assert [(v.name, v.choices) for v in spec.categories] == [("solvent", ["ethanol", "water"])]


def test_a_colon_name_in_a_system_name_keeps_its_colon():
    spec = spec_of("Maximise the absorbance of a PEDOT:PSS/Ag composite, Ag at most 0.3, 10 experiments")
    assert spec.component_names == ["PEDOT:PSS", "Ag"]
