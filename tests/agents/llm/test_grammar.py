"""The controlled-English request grammar: phrasings it must read, and requests it must refuse."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.refusals import refusal

from agents.llm.reader import EXAMPLE_REQUEST, read_request
from athanor.spec import CampaignSpec

DEMO = (
    "Maximise the conductivity of a P3HT/CNT blend of P3HT, D1, D2, D6 and D8 (fractions sum to 1, P3HT at"
    " least 0.3), 30 experiments in batches of 5"
)
DESIGN = (
    "Maximise the electrical conductivity of a Cu-Ag-Zr alloy, Ag at most 10 at.%, 20 experiments in batches"
    " of 5"
)


def spec_of(request: str) -> CampaignSpec:
    return CampaignSpec.model_validate(read_request(request))


def bounds(spec: CampaignSpec) -> dict[str, tuple[float, float]]:
    return {c.name: (c.lower, c.upper) for c in spec.components}


def constraints(spec: CampaignSpec) -> list[tuple[dict[str, float], str, float]]:
    return [(c.coefficients, c.operator, c.rhs) for c in spec.constraints]


def test_demo_request():
    spec = spec_of(DEMO)
    assert bounds(spec) == {
        "P3HT": (0.3, 1.0),
        "D1": (0.0, 1.0),
        "D2": (0.0, 1.0),
        "D6": (0.0, 1.0),
        "D8": (0.0, 1.0),
    }
    assert spec.sum_rule is not None and spec.sum_rule.total == 1.0
    objective = spec.primary_objective
    assert (objective.name, objective.direction, objective.unit, objective.target) == (
        "conductivity",
        "maximise",
        "S/cm",
        None,
    )
    assert (spec.budget.experiments, spec.budget.batch_size) == (30, 5)
    assert spec.constraints == []
    assert spec.request == DEMO
    assert spec.title == "maximise conductivity of P3HT/CNT blend"


def test_design_example_alloy_in_atomic_percent():
    spec = spec_of(DESIGN)
    assert bounds(spec) == {"Cu": (0.0, 100.0), "Ag": (0.0, 10.0), "Zr": (0.0, 100.0)}
    assert spec.sum_rule is not None and spec.sum_rule.total == 100.0
    assert spec.primary_objective.name == "conductivity"
    assert spec.primary_objective.direction == "maximise"
    assert (spec.budget.experiments, spec.budget.batch_size) == (20, 5)
    assert "Cu-Ag-Zr alloy" in spec.title


def test_example_phrasing_shown_in_refusals_parses():
    spec = spec_of(EXAMPLE_REQUEST)
    assert spec.component_names == ["P3HT", "D1", "D2"]
    assert bounds(spec)["P3HT"] == (0.5, 1.0)
    assert (spec.budget.experiments, spec.budget.batch_size) == (30, 5)


def test_minimise_band_gap_with_default_unit_and_one_at_a_time():
    spec = spec_of("Minimise the band gap of A, B and C, 12 runs one at a time")
    assert spec.component_names == ["A", "B", "C"]
    assert bounds(spec) == {"A": (0.0, 1.0), "B": (0.0, 1.0), "C": (0.0, 1.0)}
    objective = spec.primary_objective
    assert (objective.name, objective.direction, objective.unit) == ("band_gap", "minimise", "eV")
    assert (spec.budget.experiments, spec.budget.batch_size) == (12, 1)


def test_together_constraint_symbol_bound_and_budget_of_samples():
    spec = spec_of(
        "maximize hardness of a Ni-Co-Cr alloy, Ni and Co together at most 0.3, Cr <= 0.8,"
        " a budget of 40 samples, 4 at a time"
    )
    assert bounds(spec) == {"Ni": (0.0, 1.0), "Co": (0.0, 1.0), "Cr": (0.0, 0.8)}
    assert constraints(spec) == [({"Ni": 1.0, "Co": 1.0}, "<=", 0.3)]
    assert (spec.primary_objective.name, spec.primary_objective.unit) == ("hardness", "")
    assert (spec.budget.experiments, spec.budget.batch_size) == (40, 4)


def test_components_keyword_percent_sum_range_and_seed():
    spec = spec_of(
        "Minimise the resistivity of components X, Y, Z summing to 100 %, X between 10 and 30 %,"
        " 25 experiments, batch size 5, seed 3"
    )
    assert bounds(spec) == {"X": (10.0, 30.0), "Y": (0.0, 100.0), "Z": (0.0, 100.0)}
    assert spec.sum_rule is not None and spec.sum_rule.total == 100.0
    assert spec.primary_objective.direction == "minimise"
    assert (spec.budget.experiments, spec.budget.batch_size, spec.seed) == (25, 5, 3)


def test_mixing_with_unit_in_parentheses_and_reversed_bound():
    spec = spec_of(
        "Reduce the band gap (eV) mixing TiO2 and ZnO, at most 0.2 of ZnO, twenty runs in batches of 4"
    )
    assert bounds(spec) == {"TiO2": (0.0, 1.0), "ZnO": (0.0, 0.2)}
    assert spec.primary_objective.direction == "minimise"
    assert (spec.budget.experiments, spec.budget.batch_size) == (20, 4)


def test_percent_bound_converted_to_fraction_when_fractions_sum_to_one():
    spec = spec_of(
        "Find the highest yield of A, B, C and D, fractions sum to 1, A from 0.1 to 0.2, no more than 20 % D,"
        " 10 experiments"
    )
    assert bounds(spec) == {"A": (0.1, 0.2), "B": (0.0, 1.0), "C": (0.0, 1.0), "D": (0.0, 0.2)}
    assert (spec.primary_objective.name, spec.primary_objective.direction) == ("yield", "maximise")
    assert spec.primary_objective.unit == "%"


def test_slash_system_with_colon_name_and_target():
    spec = spec_of(
        "Increase the absorbance of a PEDOT:PSS/CNT composite, CNT at most 0.4, target 2.5,"
        " 16 experiments in batches of 4"
    )
    assert bounds(spec) == {"PEDOT:PSS": (0.0, 1.0), "CNT": (0.0, 0.4)}
    objective = spec.primary_objective
    assert (objective.name, objective.direction, objective.target) == ("absorbance", "maximise", 2.5)


def test_unit_and_until_target():
    spec = spec_of(
        "Maximise conductivity in S/m of P3HT and CNT until it reaches 800 S/m, 30 runs in batches of 3,"
        " seed 7"
    )
    objective = spec.primary_objective
    assert (objective.unit, objective.target) == ("S/m", 800.0)
    assert spec.component_names == ["P3HT", "CNT"]
    assert (spec.budget.experiments, spec.budget.batch_size, spec.seed) == (30, 3, 7)


def test_plus_constraint_with_coefficient_and_per_batch():
    spec = spec_of(
        "Maximise the Seebeck coefficient of Bi, Sb and Te with 2*Bi + Sb <= 0.6 and Te at least 0.3,"
        " 40 experiments, 8 per batch"
    )
    assert constraints(spec) == [({"Bi": 2.0, "Sb": 1.0}, "<=", 0.6)]
    assert bounds(spec)["Te"] == (0.3, 1.0)
    assert spec.primary_objective.name == "seebeck_coefficient"
    assert (spec.budget.experiments, spec.budget.batch_size) == (40, 8)


def test_each_bounds_sum_of_constraint_and_initial_design():
    spec = spec_of(
        "Maximise the conductivity of A, B and C, A and B each at most 0.5, the sum of B and C is at least"
        " 0.2, each component at least 0.05, 30 experiments in batches of 5 with an initial design of 10"
        " samples"
    )
    assert bounds(spec) == {"A": (0.05, 0.5), "B": (0.05, 0.5), "C": (0.05, 1.0)}
    assert constraints(spec) == [({"B": 1.0, "C": 1.0}, ">=", 0.2)]
    assert (spec.budget.experiments, spec.budget.batch_size, spec.budget.initial_experiments) == (30, 5, 10)


def test_percent_amounts_without_sum_rule_and_chained_bound_and_independent_amounts():
    percent = spec_of(
        "Maximise the conductivity of P3HT and D1 (amounts in percent, P3HT at least 50), 9 runs"
    )
    assert bounds(percent) == {"P3HT": (50.0, 100.0), "D1": (0.0, 100.0)}
    assert percent.sum_rule is not None and percent.sum_rule.total == 100.0

    free = spec_of("Maximise the conductivity of A and B, no sum rule, 0.1 <= A <= 0.6, 10 experiments")
    assert free.sum_rule is None
    assert bounds(free) == {"A": (0.1, 0.6), "B": (0.0, 1.0)}
    assert {c.unit for c in free.components} == {"fraction"}


def test_keywords_are_case_insensitive_and_element_names_keep_case():
    spec = spec_of(
        "MAXIMISE THE CONDUCTIVITY OF In, Ga AND Zn, In AT MOST 0.5, 10 EXPERIMENTS IN BATCHES OF 2"
    )
    assert bounds(spec) == {"In": (0.0, 0.5), "Ga": (0.0, 1.0), "Zn": (0.0, 1.0)}
    assert (spec.budget.experiments, spec.budget.batch_size) == (10, 2)




def test_refuses_unread_words_and_quotes_them():
    message = refusal("Maximise the conductivity of A and B, 30 experiments, using magic dust")
    assert '"magic dust"' in message
    assert "components A, B" in message and "30 experiments" in message  # what was read


def test_refuses_without_objective_verb():
    message = refusal("Study the conductivity of A and B, 30 experiments")
    assert "no objective" in message
    assert '"Study the conductivity"' in message


def test_refuses_one_component():
    message = refusal("Maximise the conductivity of P3HT, 30 experiments")
    assert "no components" in message and '"P3HT"' in message


def test_refuses_bound_on_unknown_component():
    message = refusal("Maximise the conductivity of A, B and C, D9 at most 0.3, 30 experiments")
    assert "D9, which is not a component" in message
    assert "the components are A, B, C" in message


def test_refuses_conflicting_directions():
    message = refusal("Maximise the conductivity of A and B and minimise the conductivity, 30 experiments")
    assert "conflicting directions" in message


def test_refuses_missing_budget():
    message = refusal("Maximise the conductivity of A and B in batches of 5")
    assert "no budget" in message


def test_refuses_ambiguous_group_bound():
    message = refusal("Maximise the conductivity of A, B and C, A and B at most 0.5, 30 experiments")
    assert "ambiguous" in message and "each" in message and "together" in message


def test_refuses_mixed_percent_and_plain_amounts():
    message = refusal("Maximise the conductivity of A and B, A at most 10 %, B at least 0.2, 30 experiments")
    assert "some amounts are in percent and some have no unit" in message


def test_refuses_unsupported_sum_and_negative_budget():
    assert "must sum to 1" in refusal("Maximise the yield of A and B, fractions sum to 2, 30 experiments")
    assert '"-5 experiments"' in refusal("Maximise the yield of A and B, -5 experiments")


@pytest.mark.parametrize(
    ("request_text", "phrase"),
    [
        ("Maximise the yield of A and B, 20 experiments in batches of 0.5", "batches of 0.5"),
        ("Minimise the cost of A and B, 7.5 experiments", "7.5 experiments"),
        ("Maximise the yield of A and B, -3 runs", "-3 runs"),
        ("Maximise the yield of A and B, 10 experiments, batch size -2", "batch size -2"),
    ],
)
def test_a_count_that_is_not_a_whole_positive_number_is_quoted_not_rounded(request_text, phrase):
    assert f'could not read "{phrase}"' in refusal(request_text)


def test_a_long_request_is_cut_in_its_refusal_with_its_length():
    notes = (f"note {i}: the film was spun at {1000 + i} rpm and dried overnight." for i in range(110))
    pasted = " ".join(notes)
    request = f"Maximise the conductivity of A and B, 30 experiments. {pasted}"
    assert len(request) > 6000
    message = refusal(request)
    assert len(message) < 1000
    unread = next(line for line in message.splitlines() if "could not read" in line)
    assert unread.startswith('  - could not read "note 0: the film was spun at 1000 rpm')
    cut = re.search(r"… \((\d+) characters\)$", unread)
    assert cut is not None and len(pasted) - 5 < int(cut.group(1)) < len(pasted) + 20  # the full length
    assert "components A, B; 30 experiments" in message  # what was read is still shown in full


def test_a_long_list_of_components_is_cut_in_what_was_read():
    names = ", ".join(f"Dopant{i}" for i in range(600))
    message = refusal(f"Minimise the band gap of {names} and Host, 40 runs, and bake them twice")
    read_line = next(line for line in message.splitlines() if line.startswith("Read so far:"))
    assert read_line.startswith("Read so far: minimise band gap; components Dopant0, Dopant1, Dopant2")
    assert len(read_line) < 300 and "characters)" in read_line
    assert '"bake them twice"' in message


def test_refuses_empty_request():
    assert "empty" in refusal("   ")


def docs_section(heading: str) -> str:
    text = (Path(__file__).resolve().parents[3] / "docs" / "request-grammar.md").read_text(encoding="utf-8")
    return text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_every_example_in_the_docs_is_read():
    block = docs_section("Examples that are read").split("```text\n", 1)[1].split("```", 1)[0]
    examples = [line for line in block.splitlines() if line.strip()]
    assert len(examples) >= 8
    for example in examples:
        assert spec_of(example).request == example


def test_every_refused_example_in_the_docs_is_refused():
    examples = re.findall(r"^\| `([^`]+)`", docs_section("Examples that are refused, and why"), re.MULTILINE)
    assert len(examples) >= 6
    for example in examples:
        refusal(example)


@pytest.mark.parametrize(
    ("request_text", "basis"),
    [
        (
            "Maximise the electrical conductivity of a Cu-Ag-Zr alloy, Ag at most 10 at.%, 20 experiments",
            "mole",
        ),
        ("Maximise the conductivity of a blend of A and B (A at most 30 wt.%), 10 experiments", "mass"),
        ("Maximise the conductivity of a blend of A and B (A at most 30 vol.%), 10 experiments", "volume"),
        ("Maximise the conductivity of a blend of A and B (fractions sum to 1), 10 experiments", "volume"),
    ],
)
def test_a_percent_marker_sets_the_basis_of_the_fractions(request_text, basis):
    assert read_request(request_text).get("basis", "volume") == basis
