"""A whole campaign through the real graph, the mock LLM and the virtual lab in real Ray actors."""

from __future__ import annotations

import csv

import pytest

from athanor.app import RunOptions, run
from runs.eventlog import read_events, verify_log

SPEC = {
    "title": "graph test",
    "components": [
        {"name": "P3HT", "lower": 0.3, "upper": 1.0},
        {"name": "D1", "upper": 0.7},
        {"name": "D2", "upper": 0.7},
        {"name": "D6", "upper": 0.7},
        {"name": "D8", "upper": 0.7},
    ],
    "sum_rule": {"total": 1.0},
    "constraints": [{"coefficients": {"D6": 1, "D8": 1}, "operator": "<=", "rhs": 0.2}],
    "objectives": [{"name": "conductivity", "direction": "maximise", "unit": "S/cm"}],
    "budget": {"experiments": 12, "batch_size": 4},
    "seed": 11,
}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path))
    return tmp_path


@pytest.mark.slow
def test_twelve_experiment_campaign_runs_end_to_end(ray_local, home):
    options = RunOptions(
        llm="mock",
        llm_script={"parse_request": [SPEC]},
        literature=False,
        time_scale=0.001,
    )
    result = run("any request: the mock answers with the scripted spec", options)

    assert result.run_dir.parent.parent == home
    assert len(result.observations) == 12
    assert all(o.status == "ok" for o in result.observations), [o.note for o in result.observations]
    for observation in result.observations:
        # what was made, after rounding volumes to the pipette's resolution, still obeys the spec
        assert result.spec.violations(observation.composition, tol=1e-3) == []
        assert observation.values["conductivity"] > 0
    assert result.decision["action"] == "stop"

    with open(result.run_dir / "observations.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12
    assert {"P3HT", "D1", "D2", "D6", "D8", "conductivity"} <= set(rows[0])

    check = verify_log(result.run_dir / "events.jsonl")
    assert check.ok, check.reason
    events = read_events(result.run_dir / "events.jsonl")
    kinds = [e["kind"] for e in events]
    for kind in ("request", "spec", "optimiser_call", "protocol", "reading", "observation", "decision"):
        assert kind in kinds, kind
    assert kinds[-1] == "run_finished"
    assert kinds.count("decision") == 3  # 12 experiments in batches of 4
    assert [e["payload"]["method"] for e in events if e["kind"] == "optimiser_call"] == [
        "initial_design",
        "propose",
        "propose",
    ]
    # exactly once at the hardware: every command carried its own idempotency key
    keys = [e["payload"]["key"] for e in events if e["kind"] == "reading"]
    assert len(keys) == len(set(keys)) > 12
    assert (result.run_dir / "report.md").exists()
    assert (result.run_dir / "convergence.png").stat().st_size > 1000
    assert (result.run_dir / "manifest.json").exists()


@pytest.mark.slow
def test_async_campaign_keeps_slots_filled_with_pending_points(ray_local, home):
    spec = {**SPEC, "budget": {"experiments": 10, "batch_size": 3, "mode": "async"}, "seed": 5}
    options = RunOptions(llm="mock", llm_script={"parse_request": [spec]}, literature=False, time_scale=0.001)
    result = run("scripted", options)

    assert len(result.observations) == 10
    assert all(o.status == "ok" for o in result.observations)
    events = read_events(result.run_dir / "events.jsonl")
    in_flight, most = 0, 0
    for event in events:
        if event["kind"] == "protocol_submitted":
            in_flight += 1
            most = max(most, in_flight)
        elif event["kind"] == "observation":
            in_flight -= 1
    assert in_flight == 0
    assert most == 3  # never more than batch_size experiments on the instruments at once
    calls = [
        e["payload"] for e in events if e["kind"] == "optimiser_call" and e["payload"]["method"] == "propose"
    ]
    # each model call filled the freed slot(s) while the others were still running
    assert len(calls) >= 5
    assert all(call["n"] + len(call["pending"]) <= 3 for call in calls)
    assert sum(len(call["pending"]) > 0 for call in calls) >= len(calls) - 1
    assert sum(call["n"] for call in calls) == 7  # 3 initial + 7 model-guided = budget


@pytest.mark.slow
def test_the_same_seed_gives_the_same_campaign(ray_local, home):
    spec = {**SPEC, "budget": {"experiments": 8, "batch_size": 4}}
    options = RunOptions(llm="mock", llm_script={"parse_request": [spec]}, literature=False, time_scale=0.001)
    first = run("scripted", options)
    options = RunOptions(llm="mock", llm_script={"parse_request": [spec]}, literature=False, time_scale=0.001)
    second = run("scripted", options)
    assert first.run_dir != second.run_dir
    assert (first.run_dir / "observations.csv").read_text() == (
        second.run_dir / "observations.csv"
    ).read_text()
    calls = [
        [
            e["payload"]["proposals"]
            for e in read_events(r.run_dir / "events.jsonl")
            if e["kind"] == "optimiser_call"
        ]
        for r in (first, second)
    ]
    assert calls[0] == calls[1]
