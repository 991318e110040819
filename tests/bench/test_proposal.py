"""The proposal-speed benchmark: campaign-shaped data, timed calls, and every result checked."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import bench.proposal as proposal
from athanor.cli import app
from athanor.errors import AthanorError
from bench.proposal import CASES, MIN_OBSERVATIONS, make_observations, make_spec, measure_proposals
from tools.optimiser import Suggestion

SCALE = 0.05


@pytest.fixture(scope="module")
def measured():
    return measure_proposals(tuple(CASES), repeats=1, scale=SCALE)


def test_every_case_is_timed_with_its_parameters_and_the_json_round_trips(measured):
    assert json.loads(json.dumps(measured)) == measured
    assert measured["benchmark"] == "proposal"
    assert (measured["repeats"], measured["scale"]) == (1, SCALE)
    assert isinstance(measured["torch_threads"], int) and measured["torch_threads"] >= 1
    assert set(measured["versions"]) >= {"torch", "botorch"}
    assert [row["name"] for row in measured["cases"]] == list(CASES)
    for row in measured["cases"]:
        case = CASES[row["name"]]
        assert row["observations"] == max(MIN_OBSERVATIONS, round(case.observations * SCALE))
        same = ("components", "q", "objectives", "max_active_components", "resolution", "choices", "target_s")
        assert {k: row[k] for k in same} == {k: getattr(case, k) for k in same}
        assert len(row["wall_s"]) == len(row["checks"]) == len(row["seeds"]) == 1
        assert 0 < row["min_s"] <= row["median_s"] <= row["max_s"]


def test_every_result_was_checked_feasible_and_model_based(measured):
    for row in measured["cases"]:
        for check in row["checks"]:
            assert check["suggestions"] == check["feasible"] == check["model"] == row["q"], row["name"]
            assert check["problems"] == []
        assert row["all_feasible"] and row["all_model"]
        if row["target_s"] is None:
            assert row["met"] is None
        else:
            assert row["met"] == (row["median_s"] <= row["target_s"])


def test_the_case_table_matches_the_speed_targets():
    a, b, c, d = (CASES[name] for name in "abcd")
    assert (a.observations, a.components, a.q, a.objectives, a.target_s) == (200, 6, 4, 1, 2.0)
    assert (b.observations, b.components, b.q, b.objectives, b.target_s) == (50, 5, 4, 2, 5.0)
    assert (c.observations, c.components, c.q, c.pending) == (200, 6, 1, 0)
    assert (d.observations, d.components, d.q) == (40, 5, 4)
    spec = make_spec(d)
    assert (spec.max_active_components, spec.resolution) == (3, 0.01)
    assert [len(v.choices) for v in spec.categories] == [3]
    assert len(make_spec(b).objectives) == 2


def test_the_data_are_seeded_feasible_and_the_two_objectives_conflict():
    spec = make_spec(CASES["b"])
    first = make_observations(spec, 30, seed=3)
    assert first == make_observations(spec, 30, seed=3)
    assert [o.values for o in first] != [o.values for o in make_observations(spec, 30, seed=4)]
    assert all(o.status == "ok" and spec.violations(o.composition) == [] for o in first)
    values = [(o.values["conductivity"], o.values["transmittance"]) for o in first]
    front = [v for v in values if not any(w[0] >= v[0] and w[1] >= v[1] and w != v for w in values)]
    assert len(front) >= 2  # no single composition is best at both
    conductivity = [v[0] for v in values]
    assert max(conductivity) / min(conductivity) > 10  # spans decades, like a conductivity


def test_mixed_data_respect_the_limit_the_grid_and_the_choices():
    spec = make_spec(CASES["d"])
    observations = make_observations(spec, 40, seed=0)
    for o in observations:
        assert spec.violations(o.composition, choices=o.choices) == []
        assert sum(v > 0 for v in o.composition.values()) <= 3
    assert len({o.choices["annealing"] for o in observations}) == 3


def _broken_propose(source):
    def fake(spec, observations, n, seed, pending=(), **_):
        composition = dict.fromkeys(spec.component_names, 0.5)  # sums to 3, not 1
        if source == "initial":
            composition = dict.fromkeys(spec.component_names, 1 / len(spec.component_names))
        return [Suggestion(composition=composition, rationale="fake", source=source)] * n

    return fake


def _render(table):
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_an_infeasible_result_is_caught_and_never_meets_the_target():
    row = measure_proposals(["a"], repeats=2, scale=SCALE, proposer=_broken_propose("model"))["cases"][0]
    assert row["seeds"] == [0, 1] and len(row["wall_s"]) == 2
    assert row["all_feasible"] is False and row["met"] is False
    assert row["checks"][0]["feasible"] == 0
    assert any("sum to" in p for p in row["checks"][0]["problems"])
    assert "infeasible" in _render(
        proposal.results_table({"repeats": 2, "torch_threads": 1, "cpu_count": 2, "cases": [row]})
    )


def test_a_space_filling_fallback_does_not_count_as_a_fast_proposal():
    row = measure_proposals(["b"], repeats=1, scale=SCALE, proposer=_broken_propose("initial"))["cases"][0]
    assert row["all_feasible"] is True
    assert row["all_model"] is False and row["met"] is False


def test_bad_arguments_are_refused():
    with pytest.raises(AthanorError, match="choose from a, b, c, d"):
        measure_proposals(["a", "z"])
    with pytest.raises(AthanorError, match="repeats"):
        measure_proposals(["a"], repeats=0)
    with pytest.raises(AthanorError, match="scale"):
        measure_proposals(["a"], scale=0)


def test_cli_refuses_an_unknown_case_with_the_valid_ones():
    result = CliRunner().invoke(app, ["bench", "proposal", "--cases", "a,magic"])
    assert result.exit_code == 2
    assert "'magic'" in result.output and "a, b, c, d" in result.output
    assert "Traceback" not in result.output


def test_cli_times_the_chosen_cases_and_writes_json(monkeypatch, tmp_path):
    monkeypatch.setitem(CASES, "c", CASES["c"].scaled(SCALE))
    out = tmp_path / "results" / "proposal.json"
    result = CliRunner().invoke(
        app, ["bench", "proposal", "--cases", "c", "--repeats", "1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert [row["name"] for row in doc["cases"]] == ["c"]
    assert doc["cases"][0]["all_feasible"] is True
    assert "median s" in result.output and "wrote" in result.output
