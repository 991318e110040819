"""The grammar's mixed-space phrases: how many components may be present, grid step, process choices."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agents.llm.reader import read_request
from athanor.errors import RequestNotUnderstood
from athanor.spec import CampaignSpec

ELEMENTS = ["Cu", "Ag", "Zr", "Ni", "Co"]


def spec_of(request: str) -> CampaignSpec:
    return CampaignSpec.model_validate(read_request(request))


def test_the_full_example_reads_every_new_field():
    spec = spec_of(
        "Maximise the hardness, choose at most 3 of Cu, Ag, Zr, Ni and Co, in steps of 1 at.%,"
        " annealing none, 150C or 200C, 30 experiments in batches of 5"
    )
    assert spec.component_names == ELEMENTS
    assert spec.max_active_components == 3
    assert spec.sum_rule.total == 100.0  # "at.%" with no sum rule stated: percent
    assert spec.resolution == 1.0
    assert [(v.name, v.choices) for v in spec.categories] == [("annealing", ["none", "150C", "200C"])]
    assert (spec.budget.experiments, spec.budget.batch_size) == (30, 5)


@pytest.mark.parametrize(
    "phrase",
    [
        "choose at most 3 of Cu, Ag, Zr, Ni and Co",
        "pick up to 3 from Cu, Ag, Zr, Ni and Co",
        "using no more than three elements of Cu, Ag, Zr, Ni and Co",
        "select a maximum of 3 among Cu, Ag, Zr, Ni and Co",
    ],
)
def test_choose_phrases_give_the_limit_and_the_components(phrase):
    spec = spec_of(f"Maximise the hardness, {phrase}, 20 experiments")
    assert spec.component_names == ELEMENTS
    assert spec.max_active_components == 3


@pytest.mark.parametrize(
    "phrase",
    [
        "at most 2 elements at once",
        "using at most 2 of them",
        "with at most 2 non-zero components",
        "up to 2 components per sample",
        "no more than two elements present",
    ],
)
def test_limit_phrases_after_a_component_list(phrase):
    spec = spec_of(f"Maximise the hardness of a Cu-Ag-Zr-Ni-Co alloy, {phrase}, 20 experiments")
    assert spec.component_names == ELEMENTS
    assert spec.max_active_components == 2


def test_the_same_list_twice_is_one_list_but_two_lists_are_refused():
    same = spec_of("Maximise the hardness of Cu, Ag and Zr, choose at most 2 of Cu, Ag and Zr, 20 runs")
    assert same.component_names == ["Cu", "Ag", "Zr"]
    with pytest.raises(RequestNotUnderstood, match="components are listed more than once"):
        read_request("Maximise the hardness of Cu, Ag and Zr, choose at most 2 of Cu, Ni and Co, 20 runs")


def test_limit_given_twice_differently_is_refused():
    with pytest.raises(
        RequestNotUnderstood, match="how many components may be present is given more than once"
    ):
        read_request("Maximise the hardness of Cu, Ag and Zr, at most 2 elements, at most 1 of them, 20 runs")


@pytest.mark.parametrize(
    ("phrase", "total", "step"),
    [
        ("in steps of 0.01", 1.0, 0.01),
        ("to the nearest 0.05", 1.0, 0.05),
        ("with a resolution of 0.1", 1.0, 0.1),
        ("step 0.25", 1.0, 0.25),
        ("in steps of 1 at.%", 100.0, 1.0),
        ("on a 5 % grid", 100.0, 5.0),
        ("fractions sum to 1, in steps of 2 %", 1.0, 0.02),
    ],
)
def test_grid_step_phrases_in_the_spec_unit(phrase, total, step):
    spec = spec_of(f"Maximise the hardness of Cu, Ag and Zr, {phrase}, 20 runs")
    assert spec.sum_rule.total == total
    assert spec.resolution == pytest.approx(step)


def test_grid_step_in_plain_numbers_mixed_with_percent_is_refused():
    with pytest.raises(RequestNotUnderstood, match="some amounts are in percent and some have no unit"):
        read_request("Maximise the hardness of Cu, Ag and Zr, Ag at most 10 at.%, in steps of 0.01, 20 runs")


def test_a_step_that_does_not_divide_the_total_is_refused_by_the_spec():
    with pytest.raises(ValidationError, match=r"resolution 0\.03 does not divide the sum-rule total 1"):
        spec_of("Maximise the yield of A and B, in steps of 0.03, 20 runs")


@pytest.mark.parametrize(
    ("phrase", "name", "choices"),
    [
        ("annealing none, 150C or 200C", "annealing", ["none", "150C", "200C"]),
        ("annealing one of none, 150C and 200C", "annealing", ["none", "150C", "200C"]),
        ("atmosphere either N2 or air", "atmosphere", ["N2", "air"]),
        ("solvent: toluene, xylene", "solvent", ["toluene", "xylene"]),
        ("anneal from 150°C or 200°C", "anneal", ["150°C", "200°C"]),
    ],
)
def test_categorical_phrases(phrase, name, choices):
    spec = spec_of(f"Maximise the hardness of Cu, Ag and Zr, {phrase}, 20 runs")
    assert [(v.name, v.choices) for v in spec.categories] == [(name, choices)]
    assert spec.component_names == ["Cu", "Ag", "Zr"]


def test_two_categorical_variables():
    spec = spec_of(
        "Maximise the hardness of Cu, Ag and Zr, annealing none, 150C or 200C; atmosphere either N2 or air,"
        " 20 runs"
    )
    assert [v.name for v in spec.categories] == ["annealing", "atmosphere"]


@pytest.mark.parametrize(
    ("request_text", "phrase"),
    [
        ("Maximise the yield of A, B or C, 20 runs", 'could not read "or C"'),
        (
            "Maximise the yield of A and B, annealing none or 150C, annealing 200C or 250C, 20 runs",
            "given more",
        ),
        ("Maximise the yield of A and B, choose at most of A and B, 20 runs", "could not read"),
    ],
)
def test_unreadable_or_contradictory_phrases_are_still_refused(request_text, phrase):
    with pytest.raises(RequestNotUnderstood) as info:
        read_request(request_text)
    assert phrase in str(info.value)


def test_requests_without_the_new_phrases_leave_the_fields_unset():
    data = read_request("Maximise the conductivity of A, B and C, 20 runs")
    assert not {"max_active_components", "resolution", "categories"} & set(data)
