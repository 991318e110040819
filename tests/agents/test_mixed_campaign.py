"""A campaign on the mixed space end to end: mock LLM, real graph, virtual lab in Ray actors."""

from __future__ import annotations

import csv

import pytest

from athanor.app import RunOptions, run
from athanor.models import Proposal
from runs.eventlog import read_events

ELEMENTS = ["Cu", "Ag", "Zr", "Ni", "Co"]
SPEC = {
    "title": "mixed test",
    "components": [{"name": n} for n in ELEMENTS],
    "sum_rule": {"total": 1.0},
    "objectives": [{"name": "conductivity", "direction": "maximise", "unit": "S/cm"}],
    "budget": {"experiments": 8, "batch_size": 4},
    "max_active_components": 2,
    "resolution": 0.05,
    "categories": [{"name": "annealing", "choices": ["none", "150C", "200C"]}],
    "seed": 3,
}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path))
    return tmp_path


@pytest.mark.slow
def test_campaign_with_element_choice_grid_and_choices_runs_end_to_end(ray_local, home):
    options = RunOptions(llm="mock", llm_script={"parse_request": [SPEC]}, literature=False, time_scale=0.001)
    result = run("scripted: the mock answers with the spec", options)

    assert result.spec.max_active_components == 2
    assert len(result.observations) == 8
    assert all(o.status == "ok" for o in result.observations), [o.note for o in result.observations]
    for observation in result.observations:
        # what was made, after rounding volumes to the pipette, obeys the limit, the grid and the choices
        assert result.spec.violations(observation.composition, tol=1e-3, choices=observation.choices) == []
        assert sum(v > 1e-6 for v in observation.composition.values()) <= 2

    events = read_events(result.run_dir / "events.jsonl")
    calls = [e["payload"] for e in events if e["kind"] == "optimiser_call"]
    assert [c["method"] for c in calls] == ["initial_design", "propose"]
    proposals = [Proposal.model_validate(p) for call in calls for p in call["proposals"]]
    assert len(proposals) == 8
    for proposal in proposals:
        # the proposals themselves sit exactly on the grid
        assert result.spec.violations(proposal.composition, tol=1e-9, choices=proposal.choices) == []
    assert all("of at most 2" in p.rationale for p in proposals if p.source == "model")
    by_id = {o.experiment_id: o for o in result.observations}
    assert all(by_id[p.experiment_id].choices == p.choices for p in proposals)
    protocols = [e["payload"] for e in events if e["kind"] == "protocol"]
    assert all(p["choices"]["annealing"] in {"none", "150C", "200C"} for p in protocols)
    # the user is told, before the first experiment, that nothing on the bench applies the choice
    kinds = [e["kind"] for e in events]
    notices = [e["payload"]["message"] for e in events if e["kind"] == "notice"]
    assert len(notices) == 1 and notices[0].startswith("categories: annealing (none, 150C, 200C)")
    assert "no instrument carries it out" in notices[0]
    assert kinds.index("notice") < kinds.index("protocol")

    with open(result.run_dir / "observations.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8
    assert {r["experiment_id"]: r["annealing"] for r in rows} == {
        o.experiment_id: o.choices["annealing"] for o in result.observations
    }


@pytest.mark.slow
def test_async_campaign_passes_the_choices_of_running_experiments_as_pending(ray_local, home):
    spec = {**SPEC, "budget": {"experiments": 6, "batch_size": 3, "mode": "async"}, "seed": 4}
    options = RunOptions(llm="mock", llm_script={"parse_request": [spec]}, literature=False, time_scale=0.001)
    result = run("scripted", options)

    assert len(result.observations) == 6
    assert all(o.status == "ok" for o in result.observations)
    events = read_events(result.run_dir / "events.jsonl")
    calls = [
        e["payload"] for e in events if e["kind"] == "optimiser_call" and e["payload"]["method"] == "propose"
    ]
    assert calls and any(call["pending"] for call in calls)
    for call in calls:
        assert len(call["pending_choices"]) == len(call["pending"])
        assert all(choice["annealing"] in {"none", "150C", "200C"} for choice in call["pending_choices"])
