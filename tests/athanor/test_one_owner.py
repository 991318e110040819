"""One campaign per deck: a second campaign on a lab in use is refused, and no well is used twice."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from support.cli_process import ROOT, athanor_command, athanor_environment
from typer.testing import CliRunner

from athanor.app import RunOptions, run
from athanor.cli import app
from instruments.virtual_lab import virtual_lab_description
from runs.eventlog import read_events

runner = CliRunner()


def campaign(title: str, experiments: int) -> dict:
    return {
        "title": title,
        "components": [{"name": "PbI2"}, {"name": "MAI"}, {"name": "FAI"}],
        "objectives": [{"name": "conductivity", "unit": "S/cm"}],
        "budget": {"experiments": experiments, "batch_size": 2},
        "seed": 4,
    }


def lab_file(tmp_path: Path, name: str = "glovebox line 2") -> Path:
    data = virtual_lab_description(["PbI2", "MAI", "FAI"], time_scale=0.02).model_dump(mode="json")
    data["name"] = name
    path = tmp_path / f"{name.replace(' ', '-')}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _athanor(home: Path, *args: str, **popen) -> subprocess.Popen[str]:
    env = athanor_environment(home)
    return subprocess.Popen(athanor_command(*args), cwd=ROOT, env=env, text=True, **popen)


@pytest.mark.slow
def test_a_second_run_on_a_lab_in_use_is_refused_naming_the_first_and_starts_nothing(tmp_path):
    home = tmp_path / "home"
    lab = lab_file(tmp_path)
    spec = tmp_path / "long.yaml"
    spec.write_text(yaml.safe_dump(campaign("long night", 40)), encoding="utf-8")
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    first = _athanor(home, "run", str(spec), "--lab", str(lab), "--no-literature", **pipes)
    try:
        deadline = time.monotonic() + 120
        while not list((home / "runs").glob("*/events.jsonl")):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        (first_run,) = [p.parent.name for p in (home / "runs").glob("*/events.jsonl")]

        # the same lab, typed again from another terminal, under another file name
        copy = tmp_path / "copy.yaml"
        copy.write_text(lab.read_text(encoding="utf-8"), encoding="utf-8")
        other = tmp_path / "short.yaml"
        other.write_text(yaml.safe_dump(campaign("impatient", 4)), encoding="utf-8")
        second = _athanor(home, "run", str(other), "--lab", str(copy), "--no-literature", **pipes)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2, err
        assert f"lab 'glovebox line 2' is in use by run {first_run}" in err
        assert sorted(p.name for p in (home / "runs").iterdir()) == [first_run]  # nothing else started
        assert first.poll() is None  # and the first campaign goes on
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 0


def _wells(run_dir: Path) -> list[str]:
    return [e["payload"]["well"] for e in read_events(run_dir / "events.jsonl", "protocol")]


@pytest.mark.slow
def test_runs_on_one_lab_file_never_dispense_into_a_used_well(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path / "home"))
    lab = lab_file(tmp_path, "spin coater bench")
    options = RunOptions(lab_file=lab, literature=False, time_scale=0.001)
    specs = []
    for title, experiments in (("morning", 4), ("afternoon", 6)):
        path = tmp_path / f"{title}.yaml"
        path.write_text(yaml.safe_dump(campaign(title, experiments)), encoding="utf-8")
        specs.append(path)

    morning = run(str(specs[0]), options)
    afternoon = run(str(specs[1]), options)

    assert _wells(morning.run_dir) == ["A1", "A2", "A3", "A4"]
    assert _wells(afternoon.run_dir) == ["A5", "A6", "A7", "A8", "A9", "A10"]
    record = json.loads((tmp_path / "home" / "labs" / "spin-coater-bench" / "plate.json").read_text())
    assert {w: e["run_id"] for w, e in record["wells"].items()} == {
        **{w: morning.run_dir.name for w in ("A1", "A2", "A3", "A4")},
        **{w: afternoon.run_dir.name for w in ("A5", "A6", "A7", "A8", "A9", "A10")},
    }

    fresh = runner.invoke(app, ["lab", "new-plate", str(lab)])
    assert fresh.exit_code == 0, fresh.output
    assert "10 used well(s) of the previous plate forgotten" in fresh.output
    evening = run(str(specs[0]), options)
    assert _wells(evening.run_dir) == ["A1", "A2", "A3", "A4"]


@pytest.mark.slow
def test_resume_is_refused_while_another_campaign_holds_the_lab(ray_local, tmp_path, monkeypatch):
    from athanor.app import resume
    from athanor.errors import AthanorError, LLMError
    from runs.lab_hold import LabHold

    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path / "home"))
    script = {"parse_request": [campaign("interrupted", 6)], "decide": [LLMError("endpoint down")]}
    with pytest.raises(LLMError):
        run("scripted", RunOptions(llm="mock", llm_script=script, literature=False, time_scale=0.001))
    (run_dir,) = (tmp_path / "home" / "runs").iterdir()
    before = (run_dir / "events.jsonl").read_bytes()

    other = LabHold(virtual_lab_description(["Cu"]), described=False, home=tmp_path / "home")
    other.acquire("20261208-230000-someone-elses-run-9f3e")
    try:
        with pytest.raises(AthanorError, match="in use by run 20261208-230000-someone-elses-run-9f3e"):
            resume(run_dir.name, RunOptions(literature=False, time_scale=0.001))
    finally:
        other.release()
    assert (run_dir / "events.jsonl").read_bytes() == before  # nothing was recorded
    assert len(resume(run_dir.name, RunOptions(literature=False, time_scale=0.001)).observations) == 6
