"""A two-objective campaign end to end: request, virtual lab with a spectrometer, Pareto report."""

from __future__ import annotations

import csv

import pytest
import yaml
from typer.testing import CliRunner

from athanor.app import RunOptions, run
from athanor.cli import app
from instruments.virtual_lab import virtual_lab_description
from runs.eventlog import read_events, verify_log
from runs.store import list_runs

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


def quick_lab_file(path, time_scale: float) -> str:
    """The virtual lab for P3HT, D1 and D2 with both meters, its actions taking 0.05 s before scaling."""
    lab = virtual_lab_description(
        ["P3HT", "D1", "D2"], time_scale=time_scale, measures=["conductivity", "transmittance"]
    ).model_dump(mode="json")
    for instrument in lab["instruments"]:
        instrument["duration_s"] = 0.05
        instrument["options"].pop("durations", None)
    path.write_text(yaml.safe_dump(lab, sort_keys=False))
    return str(path)


@pytest.mark.slow
def test_the_terminal_names_both_objectives_and_the_time_scale_the_run_used(ray_local, home, tmp_path):
    request = (
        "Maximise the transmittance and minimise the conductivity of a blend of P3HT, D1 and D2"
        " (fractions sum to 1, D2 at most 0.5), 8 experiments in batches of 4, seed 11"
    )
    lab = quick_lab_file(tmp_path / "bench-lab.yaml", time_scale=1.0)
    arguments = ["run", request, "--lab", lab, "--time-scale", "0.002", "--no-literature"]
    result = CliRunner().invoke(app, arguments)

    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # long lines are wrapped at spaces
    assert "objectives: maximise transmittance (%), minimise conductivity (S/cm); budget 8" in said
    assert "time scale 0.002 (--time-scale, over the lab file's 1): a simulated 60 s" in said
    assert "the Pareto front of maximise transmittance (%) and minimise conductivity (S/cm) holds" in said
    (summary,) = list_runs()
    events = read_events(summary.path / "events.jsonl")
    assert next(e["payload"] for e in events if e["kind"] == "lab")["time_scale"] == 0.002
    recorded = next(e["payload"] for e in events if e["kind"] == "time_scale")
    assert (recorded["time_scale"], recorded["source"]) == (0.002, "--time-scale")
    finished = next(e["payload"] for e in events if e["kind"] == "run_finished")
    size = len(finished["summary"]["pareto_front"])
    bar = next(line for line in result.output.splitlines() if line.startswith("experiments "))
    assert "8/8" in bar and bar.endswith(f"Pareto front: {size} experiment{'s' if size > 1 else ''}")
