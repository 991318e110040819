"""Component names in requests: what becomes a component, what stays one name, what is refused."""

from __future__ import annotations

import pytest
from support.refusals import refusal

from agents.llm.reader import read_request
from athanor.spec import CampaignSpec


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


@pytest.mark.parametrize(
    ("request_text", "described", "word"),
    [
        ("Increase the yield strength of an Al-rich alloy, 24 runs", "Al-rich alloy", "rich"),
        (
            "Maximise the tensile strength of a glass-reinforced composite, 16 experiments",
            "glass-reinforced composite",
            "reinforced",
        ),
        ("Minimise the viscosity of a water-based ink, 12 runs in batches of 3", "water-based ink", "based"),
        ("Maximise the hardness of the cobalt-free alloy, 30 runs", "cobalt-free alloy", "free"),
        ("Reduce the resistivity of a Sn-doped film, budget 10", "Sn-doped film", "doped"),
        ("Maximise the density of a perovskite-type ceramic, 8 samples", "perovskite-type ceramic", "type"),
    ],
)
def test_a_hyphenated_description_is_not_read_as_components(request_text, described, word):
    message = refusal(request_text)
    expected = f'no components: "{described}" does not say what is in it ("{word}" is not a component)'
    assert expected in message
    read_so_far = next(line for line in message.splitlines() if line.startswith("Read so far:"))
    assert "components" not in read_so_far


def test_the_phrasing_a_description_refusal_suggests_is_read():
    message = refusal("Maximise the hardness of a Ti-based alloy, 20 experiments")
    suggested = message.split("list the components, e.g. ", 1)[1].split('"')[1]
    assert suggested == "a Ti-based alloy of A, B and C"
    spec = spec_of(f"Maximise the hardness of {suggested.replace('A, B and C', 'Ti, Al and V')}, 20 runs")
    assert spec.component_names == ["Ti", "Al", "V"]


def test_a_described_system_with_its_components_listed_reads_the_list():
    spec = spec_of("Maximise the hardness of a Ni-based alloy of Ni, Cr and Mo (Ni at least 0.5), 20 runs")
    assert {c.name: c.lower for c in spec.components} == {"Ni": 0.5, "Cr": 0.0, "Mo": 0.0}
    assert spec.title == "maximise hardness of Ni-based alloy"


@pytest.mark.parametrize(
    ("request_text", "names"),
    [
        ("Minimise the viscosity of a water-ethanol mixture, 10 experiments", ["water", "ethanol"]),
        ("Maximise the hardness of a Ti-Al-V alloy, 12 runs", ["Ti", "Al", "V"]),
        ("Maximise the conductivity of a PEDOT:PSS-CNT composite, 9 runs", ["PEDOT:PSS", "CNT"]),
    ],
)
def test_a_hyphen_joining_materials_still_names_a_system(request_text, names):
    assert spec_of(request_text).component_names == names


def test_a_description_with_a_chinese_gloss_is_refused_without_made_up_components():
    message = refusal("Maximise the hardness of a Cu-rich alloy (富铜合金), 15 experiments")
    assert 'could not read "富铜合金"' in message
    assert 'no components: "Cu-rich alloy"' in message
    assert "Read so far: maximise hardness; Cu-rich alloy; 15 experiments." in message
