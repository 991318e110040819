"""A two-objective campaign end to end: request, virtual lab with a spectrometer, Pareto report."""

from __future__ import annotations

import csv

import pytest

from athanor.app import RunOptions, run
from runs.eventlog import read_events, verify_log

REQUEST = (
    "Maximise the conductivity and the transmittance of a blend of P3HT, D1 and D2 (fractions sum to 1,"
    " P3HT at least 0.3), conductivity at least 1 S/cm, 8 experiments in batches of 4, seed 3"
)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path))
    return tmp_path


@pytest.mark.slow
def test_a_two_objective_campaign_runs_and_reports_its_pareto_front(ray_local, home):
    # the mock has no scripted replies: it reads the request with the grammar, as the offline back end does
    options = RunOptions(llm="mock", literature=False, time_scale=0.001)
    result = run(REQUEST, options)

    spec = result.spec
    assert [(o.name, o.threshold) for o in spec.objectives] == [
        ("conductivity", 1.0),
        ("transmittance", None),
    ]
    assert len(result.observations) == 8
    assert all(o.status == "ok" for o in result.observations), [o.note for o in result.observations]
    for observation in result.observations:
        assert spec.violations(observation.composition, tol=1e-3) == []
        assert observation.values["conductivity"] > 0 and 0 < observation.values["transmittance"] < 100

    events = read_events(result.run_dir / "events.jsonl")
    assert verify_log(result.run_dir / "events.jsonl").ok
    lab = next(e["payload"] for e in events if e["kind"] == "lab")
    assert [i["kind"] for i in lab["instruments"]] == ["liquid_handler", "conductivity_meter", "spectrometer"]
    calls = [e["payload"] for e in events if e["kind"] == "optimiser_call"]
    assert [c["method"] for c in calls] == ["initial_design", "propose"]
    guided = calls[1]["proposals"]
    assert len(guided) == 4 and all("hypervolume" in p["rationale"] for p in guided)
    assert all("conductivity 1 S/cm (threshold)" in p["rationale"] for p in guided if p["source"] == "model")

    front = result.summary["pareto_front"]
    assert 1 <= len(front) <= 8 and set(front[0]["values"]) == {"conductivity", "transmittance"}
    text = result.report.read_text()
    assert f"## Pareto front ({len(front)} of 8 experiments that count)" in text
    assert (result.run_dir / "pareto.png").stat().st_size > 1000
    with open(result.run_dir / "observations.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and float(rows[0]["transmittance"]) > 0
