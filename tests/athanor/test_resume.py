"""A run that stops part-way continues from its checkpoint: nothing lost, nothing done twice."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest
import yaml
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.sqlite import SqliteSaver
from support.cli_process import ROOT, athanor_command, athanor_environment
from support.power import ctrl_c_after, power_cut_after
from typer.testing import CliRunner

from athanor.app import RunOptions, resume, run
from athanor.cli import app
from athanor.errors import AthanorError, LLMError
from runs.eventlog import read_events, verify_log
from runs.store import list_runs

SPEC = {
    "title": "resume test",
    "components": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
    "objectives": [{"name": "conductivity", "unit": "S/cm"}],
    "budget": {"experiments": 12, "batch_size": 4},
    "seed": 3,
}


@pytest.mark.slow
def test_a_failed_run_resumes_to_its_budget_without_repeating_anything(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path))
    script = {
        "parse_request": [SPEC],
        "decide": [{"action": "continue", "reason": "first batch looks fine"}, LLMError("endpoint down")],
    }
    options = RunOptions(llm="mock", llm_script=script, literature=False, time_scale=0.001)
    with pytest.raises(LLMError, match="endpoint down"):
        run("scripted", options)
    (summary,) = list_runs()
    assert summary.status == "failed"
    run_dir = summary.path
    with open(run_dir / "observations.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 8  # two batches were measured before the failure

    result = resume(summary.run_id, RunOptions(llm="offline", literature=False, time_scale=0.001))

    assert result.run_dir == run_dir
    assert len(result.observations) == 12
    with open(run_dir / "observations.csv", newline="") as handle:
        ids = [row["experiment_id"] for row in csv.DictReader(handle)]
    assert ids == [f"E{i:04d}" for i in range(1, 13)]  # each experiment written once, none lost
    events = read_events(run_dir / "events.jsonl")
    kinds = [e["kind"] for e in events]
    assert kinds.count("run_failed") == 1 and kinds.count("run_resumed") == 1
    assert kinds[-1] == "run_finished"
    keys = Counter(e["payload"]["key"] for e in events if e["kind"] == "reading")
    assert keys and max(keys.values()) == 1  # no instrument command ran twice
    assert verify_log(run_dir / "events.jsonl").ok
    (summary,) = list_runs()
    assert summary.status == "finished"
    with pytest.raises(AthanorError, match="already finished"):
        resume(summary.run_id, RunOptions(llm="offline", literature=False))


@pytest.mark.slow
def test_a_crash_mid_batch_resumes_with_the_ledger_answering_for_done_steps(ray_local, tmp_path, monkeypatch):
    import athanor.app as app_module
    from instruments.actors import ledger_file
    from instruments.ledger import Ledger
    from instruments.virtual_lab import virtual_lab_description

    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path))

    monkeypatch.setattr(app_module, "RecordingInstruments", power_cut_after(6))
    options = RunOptions(llm="mock", llm_script={"parse_request": [SPEC]}, literature=False, time_scale=0.001)
    with pytest.raises(AthanorError, match="power cut"):
        run("scripted", options)
    monkeypatch.undo()
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path))
    (summary,) = list_runs()
    with open(summary.path / "observations.csv", newline="") as handle:
        before = [row["experiment_id"] for row in csv.DictReader(handle)]
    assert 6 <= len(before) < 8  # what was measured before the cut is on disk

    result = resume(summary.run_id, RunOptions(llm="offline", literature=False, time_scale=0.001))

    assert len(result.observations) == 12
    assert all(o.status == "ok" for o in result.observations), [
        (o.experiment_id, o.status, o.note) for o in result.observations if o.status != "ok"
    ]
    with open(summary.path / "observations.csv", newline="") as handle:
        ids = [row["experiment_id"] for row in csv.DictReader(handle)]
    assert ids[: len(before)] == before and sorted(ids) == [f"E{i:04d}" for i in range(1, 13)]
    instruments = [i.name for i in virtual_lab_description(["A", "B", "C"]).instruments]
    assert sorted((tmp_path / "ledgers").glob("*.sqlite")) == sorted(
        ledger_file(tmp_path / "ledgers", name) for name in instruments
    )  # every instrument of the run kept its ledger on disk
    for ledger_path in (tmp_path / "ledgers").glob("*.sqlite"):
        entries = Ledger(ledger_path).history(summary.run_id)
        assert entries and all(e.attempts == 1 and e.state == "done" for e in entries), [
            (e.key, e.state, e.attempts) for e in entries if e.attempts != 1 or e.state != "done"
        ]


SLOW_TO_START = {
    "title": "killed while starting",
    "components": [{"name": "PEO"}, {"name": "LiTFSI"}, {"name": "SiO2"}],
    "objectives": [{"name": "conductivity", "unit": "mS/cm"}],
    "budget": {"experiments": 6, "batch_size": 3},
    "seed": 11,
}


def _kill_before_first_checkpoint(home: Path, campaign: Path) -> Path:
    """Start ``athanor run`` in a child process and SIGKILL it (and its Ray) once its spec is recorded."""
    command = athanor_command("run", str(campaign), "--no-literature", "--time-scale", "0.001")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    child = subprocess.Popen(
        command, cwd=ROOT, env=athanor_environment(home), start_new_session=True, **quiet
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            logs = list((home / "runs").glob("*/events.jsonl"))
            if logs and '"kind":"lab"' in logs[0].read_text(encoding="utf-8").replace(" ", ""):
                break
            assert child.poll() is None, "the campaign ended before it could be killed"
            time.sleep(0.02)
        else:
            pytest.fail("the run never recorded its lab")
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # the power cut takes Ray's processes with it
        child.wait(timeout=30)
    return logs[0].parent


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_resumes_from_its_spec(ray_local, tmp_path, monkeypatch):
    home = tmp_path / "home"
    campaign = tmp_path / "campaign.yaml"
    campaign.write_text(yaml.safe_dump(SLOW_TO_START), encoding="utf-8")
    run_dir = _kill_before_first_checkpoint(home, campaign)
    checkpoints = run_dir / "checkpoints.sqlite"
    if checkpoints.exists():  # the kill came before the graph wrote anything
        with closing(sqlite3.connect(checkpoints)) as connection:
            assert SqliteSaver(connection).get_tuple({"configurable": {"thread_id": run_dir.name}}) is None
    monkeypatch.setenv("ATHANOR_HOME", str(home))
    (summary,) = list_runs()
    assert summary.status == "stopped" and summary.experiments_done == 0

    result = resume(summary.run_id, RunOptions(literature=False, time_scale=0.001))

    assert len(result.observations) == 6 and all(o.status == "ok" for o in result.observations)
    assert "No experiment succeeded" not in result.report.read_text(encoding="utf-8")
    kinds = [e["kind"] for e in read_events(run_dir / "events.jsonl")]
    assert kinds.count("run_started") == 1 and kinds.count("run_resumed") == 1
    assert kinds[-1] == "run_finished" and kinds.count("observation") == 6
    assert verify_log(run_dir / "events.jsonl").ok
    assert list_runs()[0].status == "finished"


@pytest.mark.slow
def test_a_copied_or_renamed_run_folder_is_refused_and_the_original_keeps_its_files(
    ray_local, tmp_path, monkeypatch
):
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path))
    script = {"parse_request": [SPEC], "decide": [LLMError("endpoint down")]}
    options = RunOptions(llm="mock", llm_script=script, literature=False, time_scale=0.001)
    with pytest.raises(LLMError):
        run("scripted", options)
    (summary,) = list_runs()
    original = summary.path
    before = {p.name: p.read_bytes() for p in original.iterdir() if p.is_file()}

    copy = original.with_name(original.name + "-copy")
    shutil.copytree(original, copy)
    with pytest.raises(AthanorError, match=f"holds run {original.name}.*rename it back"):
        resume(copy.name, RunOptions(literature=False, time_scale=0.001))

    # a checkpoint file brought in from another run is not this run's history
    stranger = tmp_path / "stranger.sqlite"
    with closing(sqlite3.connect(stranger, check_same_thread=False)) as connection:
        saver = SqliteSaver(connection)
        saver.put(
            {"configurable": {"thread_id": "another-run", "checkpoint_ns": ""}},
            empty_checkpoint(),
            {"source": "input", "step": -1},
            {},
        )
    shutil.copyfile(stranger, original / "checkpoints.sqlite")
    with pytest.raises(AthanorError, match="holds the checkpoints of run another-run"):
        resume(original.name, RunOptions(literature=False, time_scale=0.001))
    kept = {p.name: p.read_bytes() for p in original.iterdir() if p.is_file()}
    kept.pop("checkpoints.sqlite")
    assert kept == {k: v for k, v in before.items() if k != "checkpoints.sqlite"}  # nothing written


@pytest.mark.slow
def test_ctrl_c_names_the_run_to_resume_and_the_resumed_bar_counts_what_was_done(
    ray_local, tmp_path, monkeypatch
):
    import athanor.app as app_module

    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path))
    campaign = tmp_path / "overnight.yaml"
    campaign.write_text(yaml.safe_dump({**SPEC, "title": "blend interrupted at the bench"}))
    runner = CliRunner()
    monkeypatch.setattr(app_module, "RecordingInstruments", ctrl_c_after(5))
    stopped = runner.invoke(app, ["run", str(campaign), "--no-literature", "--time-scale", "0.001"])
    monkeypatch.undo()
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path))

    assert stopped.exit_code == 130, stopped.output
    (summary,) = list_runs()
    assert summary.status == "stopped"
    assert f"continue with `athanor resume {summary.run_id}`" in stopped.output
    with open(summary.path / "observations.csv", newline="") as handle:
        done = list(csv.DictReader(handle))
    assert 4 <= len(done) < 12  # the first batch was analysed before the fifth measurement

    resumed = runner.invoke(app, ["resume", summary.run_id, "--no-literature"])

    assert resumed.exit_code == 0, resumed.output
    assert f"resumed with {len(done)} of 12 experiments done" in resumed.output
    with open(summary.path / "observations.csv", newline="") as handle:
        values = [float(row["conductivity"]) for row in csv.DictReader(handle) if row["status"] == "ok"]
    bar = next(line for line in resumed.output.splitlines() if line.startswith("experiments "))
    assert "12/12" in bar  # the bar counts the experiments done before the interruption too
    assert bar.endswith(f"best {max(values):.4g} S/cm")  # the run's best, wherever it was measured
