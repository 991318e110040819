"""SIGTERM and Ctrl-C stop a campaign cleanly: running commands finish, safe state, run_stopped, exit 0."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from support.cli_process import ROOT, athanor_command, athanor_environment

from athanor.errors import StopRequested
from athanor.stopping import StopControl
from instruments.ledger import Ledger
from runs.eventlog import read_events, verify_log

CAMPAIGN = {
    "title": "stopped by the service manager",
    "components": [{"name": "PVDF"}, {"name": "BaTiO3"}, {"name": "CNT"}],
    "objectives": [{"name": "conductivity", "unit": "S/m"}],
    "budget": {"experiments": 9, "batch_size": 3},
    "seed": 5,
}


def test_the_first_signal_stops_by_policy_and_a_second_aborts():
    notices: list[str] = []
    control = StopControl("finish", grace_s=30, on_notice=notices.append)
    with pytest.raises(StopRequested) as first:
        control.handle(signal.SIGTERM)
    assert (first.value.signal_name, first.value.abort) == ("SIGTERM", False)
    assert control.requested.is_set() and not control.aborted
    assert "running ones finish (up to 30 s" in notices[-1]
    with pytest.raises(StopRequested) as second:
        control.handle(signal.SIGINT)
    assert second.value.abort and control.aborted and control.signal_name == "SIGTERM"
    with control.settling():
        control.handle(signal.SIGTERM)  # while reaching the safe state, a third signal only says so
    assert "already stopping" in notices[-1]


def test_the_abort_policy_aborts_at_the_first_signal_and_then_lets_the_safe_state_finish():
    control = StopControl("abort")
    with pytest.raises(StopRequested) as first:
        control.handle(signal.SIGINT)
    assert first.value.abort and control.aborted
    control.handle(signal.SIGINT)  # nothing is raised into the safe state


def test_between_campaigns_a_signal_only_asks_the_worker_to_stop():
    control = StopControl(raising=False)
    control.handle(signal.SIGTERM)
    assert control.requested.is_set() and control.signal_name == "SIGTERM"


@pytest.mark.parametrize(("policy", "grace"), [("pause", 10.0), ("finish", -1.0)])
def test_a_bad_policy_or_grace_time_is_refused(policy, grace):
    with pytest.raises(ValueError, match="stop"):
        StopControl(policy, grace)  # type: ignore[arg-type]


def _start(home: Path, campaign: Path, *extra: str) -> subprocess.Popen[str]:
    command = athanor_command("run", str(campaign), "--no-literature", "--time-scale", "0.02", *extra)
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen(command, cwd=ROOT, env=athanor_environment(home), **pipes)


def _wait_for(home: Path, kind: str, child: subprocess.Popen[str], timeout_s: float = 180) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for log in (home / "runs").glob("*/events.jsonl"):
            if any(json.loads(line)["kind"] == kind for line in log.read_text().splitlines() if line):
                return log.parent
        assert child.poll() is None, child.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no {kind} event within {timeout_s} s")


@pytest.mark.slow
def test_sigterm_mid_batch_lets_running_commands_finish_and_exits_0_with_the_run_stopped(tmp_path):
    home = tmp_path / "home"
    campaign = tmp_path / "campaign.yaml"
    campaign.write_text(yaml.safe_dump(CAMPAIGN), encoding="utf-8")
    child = _start(home, campaign)
    try:
        run_dir = _wait_for(home, "reading", child)  # the first batch is on the instruments
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 0, err
    assert "stopped by SIGTERM" in err and f"athanor resume {run_dir.name}" in err
    for crash in ("Traceback", "Stack trace", "SIGABRT", "Aborted", "*** "):
        assert crash not in err, err
    events = read_events(run_dir / "events.jsonl")
    stopped = events[-1]
    assert stopped["kind"] == "run_stopped" and stopped["payload"]["signal"] == "SIGTERM", stopped
    assert not stopped["payload"]["aborted"]
    assert [e["payload"]["ok"] for e in events if e["kind"] == "safe_state"] == [True]
    assert verify_log(run_dir / "events.jsonl").ok
    # the commands that were running finished: the ledgers hold no command in doubt
    ledgers = sorted((home / "ledgers").glob("*.sqlite"))
    assert ledgers
    entries = [e for path in ledgers for e in Ledger(path).history(run_dir.name)]
    assert entries and all(e.state == "done" for e in entries), [(e.key, e.state) for e in entries]
    readings = {e["payload"]["key"] for e in events if e["kind"] == "reading"}
    assert {e.key for e in entries} == readings  # every finished command reached the record
    assert sum(e["kind"] == "observation" for e in events) < CAMPAIGN["budget"]["experiments"]


@pytest.mark.slow
def test_sigterm_to_the_schedule_worker_stops_the_job_and_says_so_in_the_schedule_log(tmp_path):
    home = tmp_path / "home"
    campaign = tmp_path / "campaign.yaml"
    campaign.write_text(yaml.safe_dump(CAMPAIGN), encoding="utf-8")
    env = athanor_environment(home)
    add = athanor_command("schedule", "add", str(campaign), "--no-literature", "--time-scale", "0.02")
    added = subprocess.run(add, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    worker = subprocess.Popen(athanor_command("schedule", "work", "--once"), cwd=ROOT, env=env, **pipes)
    try:
        run_dir = _wait_for(home, "reading", worker)
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=120)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    for crash in ("Traceback", "Stack trace", "SIGABRT", "*** "):
        assert crash not in err, err
    listed = subprocess.run(
        athanor_command("schedule", "list"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert "stopped" in listed.stdout and "interrupted" not in listed.stdout, listed.stdout
    log = (home / "schedule.log").read_text(encoding="utf-8")
    said = "stopped by SIGTERM: instruments in their safe state; the next worker resumes run"
    assert f"{said} {run_dir.name}" in log
    assert "worker stopped by SIGTERM" in log
    assert read_events(run_dir / "events.jsonl")[-1]["kind"] == "run_stopped"
