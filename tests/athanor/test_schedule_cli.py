"""``athanor schedule``: queue campaigns now, and a worker that runs them unattended."""

from __future__ import annotations

import csv
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from zoneinfo import ZoneInfo

import pytest
import yaml
from support.power import power_cut_after
from typer.testing import CliRunner

from athanor.cli import app
from athanor.errors import AthanorError
from athanor.schedule_cli import parse_when
from instruments.ledger import Ledger
from instruments.virtual_lab import virtual_lab_description
from runs.eventlog import read_events, verify_log
from runs.scheduler import Schedule, Worker, WorkerLock, materialise

runner = CliRunner()
PARIS = ZoneInfo("Europe/Paris")
#: 23:10 in Paris on a winter evening (UTC+1).
EVENING = dt.datetime(2026, 11, 27, 23, 10, tzinfo=PARIS)


def campaign(title: str, experiments: int = 4, seed: int = 2) -> dict:
    return {
        "title": title,
        "components": [{"name": "A"}, {"name": "B"}],
        "objectives": [{"name": "conductivity", "unit": "S/cm"}],
        "budget": {"experiments": experiments, "batch_size": 2},
        "seed": seed,
    }


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def write(path, data) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def schedule_add(*args: str):
    return runner.invoke(app, ["schedule", "add", *args, "--no-literature", "--time-scale", "0.001"])


# --at


def test_a_clock_time_is_the_next_such_local_time():
    assert parse_when("23:30", now=EVENING) == dt.datetime(2026, 11, 27, 22, 30, tzinfo=dt.UTC)
    # 02:00 has passed today: tomorrow at 02:00 Paris time
    assert parse_when("02:00", now=EVENING) == dt.datetime(2026, 11, 28, 1, 0, tzinfo=dt.UTC)
    assert parse_when("23:10", now=EVENING) == dt.datetime(2026, 11, 28, 22, 10, tzinfo=dt.UTC)


def test_iso_times_and_delays_are_read():
    # naive: local time; with a zone: that zone
    assert parse_when("2026-11-28T06:00", now=EVENING) == dt.datetime(2026, 11, 28, 5, 0, tzinfo=dt.UTC)
    assert parse_when("2026-11-28 06:00+00:00", now=EVENING) == dt.datetime(2026, 11, 28, 6, tzinfo=dt.UTC)
    assert parse_when("+2h", now=EVENING) == EVENING + dt.timedelta(hours=2)
    assert parse_when("+30m", now=EVENING) == EVENING + dt.timedelta(minutes=30)
    assert parse_when("+1h30m", now=EVENING) == EVENING + dt.timedelta(minutes=90)
    assert parse_when("now", now=EVENING) == EVENING


@pytest.mark.parametrize("text", ["tomorrow", "2h", "+", "+2x", "25:00", "12:75", "28/11/2026 02:00"])
def test_a_time_it_cannot_read_is_refused_with_the_accepted_forms(text):
    with pytest.raises(AthanorError) as refused:
        parse_when(text, now=EVENING, option="--at")
    message = str(refused.value)
    assert message.startswith(f"--at {text!r}")
    assert "HH:MM" in message or "00:00–23:59" in message
    if ":" not in text or "/" in text:
        assert "+2h" in message and "ISO" in message


def test_a_start_time_in_the_past_is_refused_unless_it_is_the_minute_just_gone():
    from athanor.schedule_cli import start_time

    just_gone = start_time("2026-11-27T23:09:30", now=EVENING)  # as the minute turns: now
    assert just_gone == dt.datetime(2026, 11, 27, 22, 9, 30, tzinfo=dt.UTC)
    assert start_time(None, now=EVENING) == EVENING
    with pytest.raises(AthanorError) as refused:
        start_time("2026-11-27T21:55", now=EVENING)
    message = str(refused.value)
    assert message.startswith("--at '2026-11-27T21:55' is 1 h 15 min in the past")
    assert "it is now " + EVENING.astimezone().strftime("%Y-%m-%d %H:%M %Z") in message
    assert "--at now to start as soon as a worker is free" in message
    with pytest.raises(AthanorError, match="is 3 days in the past"):
        start_time("2026-11-24 23:10+01:00", now=EVENING)
    with pytest.raises(AthanorError, match="is 1 day 5 h in the past"):
        start_time("2026-11-26 18:10", now=EVENING)


def test_schedule_add_refuses_a_start_in_the_past_and_queues_nothing(home, tmp_path):
    path = write(tmp_path / "campaign.yaml", campaign("last week's blend"))
    result = schedule_add(path, "--at", "2026-03-02T09:00")
    assert result.exit_code == 2
    assert "--at '2026-03-02T09:00' is" in result.output and "in the past" in result.output
    assert "it is now" in result.output and "--at now" in result.output
    assert Schedule().list() == []
    assert schedule_add(path, "--at", "now").exit_code == 0


def test_schedule_add_keeps_the_lab_files_time_scale_unless_told_otherwise(home, tmp_path):
    lab = virtual_lab_description(["A", "B"], time_scale=0.5).model_dump(mode="json")
    lab_path = write(tmp_path / "lab.yaml", lab)
    path = write(tmp_path / "campaign.yaml", campaign("slow lab"))
    kept = runner.invoke(app, ["schedule", "add", path, "--lab", lab_path, "--no-literature"])
    assert kept.exit_code == 0, kept.output
    assert "time scale 0.5 (lab file): a simulated 60 s measurement takes 30 s" in kept.output
    given = runner.invoke(
        app, ["schedule", "add", path, "--lab", lab_path, "--no-literature", "--time-scale", "0.002"]
    )
    assert given.exit_code == 0, given.output
    assert "time scale 0.002 (--time-scale, over the lab file's 0.5)" in given.output
    virtual = runner.invoke(app, ["schedule", "add", path, "--no-literature"])
    assert "time scale 0.01 (virtual lab default)" in virtual.output
    assert [job.time_scale for job in Schedule().list()] == [0.5, 0.002, 0.01]


# add, list, cancel


def test_add_checks_the_campaign_now_and_lists_it(home, tmp_path):
    path = write(tmp_path / "campaign.yaml", campaign("overnight blend"))
    result = schedule_add(path, "--at", "+2h", "--seed", "9")
    assert result.exit_code == 0, result.output
    assert "scheduled S0001: overnight blend" in result.output
    assert "in 2 h 00 min" in result.output or "in 1 h 59 min" in result.output
    assert "4 experiments, batches of 2; seed 9" in result.output
    assert "start one with `athanor schedule work`" in result.output  # no worker is running
    (job,) = Schedule().list()
    assert job.status == "queued" and job.spec.seed == 9 and job.llm == "offline" and not job.literature
    assert (
        dt.timedelta(hours=1, minutes=59) < job.not_before - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=2)
    )

    listing = runner.invoke(app, ["schedule", "list"])
    assert listing.exit_code == 0
    assert "S0001" in listing.output and "queued" in listing.output
    cancelled = runner.invoke(app, ["schedule", "cancel", "S0001"])
    assert cancelled.exit_code == 0 and "cancelled S0001" in cancelled.output
    assert Schedule().get("S0001").status == "cancelled"


def test_a_bad_request_spec_lab_or_time_is_refused_now_and_no_job_is_created(home, tmp_path):
    unreadable = schedule_add("Maximise the conductivity of P3HT and D1 very quickly, 10 experiments")
    assert unreadable.exit_code == 2 and "very quickly" in unreadable.output

    bad = campaign("bad")
    bad["budget"]["batch_size"] = 0
    spec = schedule_add(write(tmp_path / "bad.yaml", bad))
    assert spec.exit_code == 2 and "budget.batch_size" in spec.output

    lab = virtual_lab_description(["A"]).model_dump(mode="json")  # no stock of B
    no_stock = schedule_add(
        write(tmp_path / "ok.yaml", campaign("ok")), "--lab", write(tmp_path / "lab.yaml", lab)
    )
    assert no_stock.exit_code == 2
    assert "components: no stock supplies 'B'; add one under stocks in the lab file" in no_stock.output

    when = schedule_add(str(tmp_path / "ok.yaml"), "--at", "tonight")
    assert when.exit_code == 2 and "--at 'tonight'" in when.output

    assert "Traceback" not in unreadable.output + spec.output + no_stock.output + when.output
    assert Schedule().list() == []
    assert "no scheduled campaigns" in runner.invoke(app, ["schedule", "list"]).output


def test_a_request_is_refused_by_the_same_rules_as_a_campaign_file_and_no_job_is_created(home):
    described = schedule_add("Maximise the conductivity of a carbon-filled composite, 6 experiments")
    assert described.exit_code == 2
    assert 'no components: "carbon-filled composite"' in described.output

    zero = schedule_add("Maximise the conductivity of A and B, 6 experiments in batches of 0")
    assert zero.exit_code == 2 and "budget.batch_size" in zero.output

    assert "Traceback" not in described.output + zero.output
    assert Schedule().list() == []


def test_a_second_worker_refuses_to_start_and_takes_no_job(home, tmp_path):
    schedule_add(write(tmp_path / "campaign.yaml", campaign("waiting")))
    with WorkerLock():
        result = runner.invoke(app, ["schedule", "work", "--once"])
    assert result.exit_code == 2
    assert f"another schedule worker (pid {os.getpid()} on" in result.output
    assert Schedule().get("S0001").status == "queued"


def test_a_running_job_beats_its_heartbeat_with_its_latest_message(home, tmp_path):
    from athanor.schedule_cli import _Heartbeat

    schedule_add(write(tmp_path / "campaign.yaml", campaign("beating")))
    schedule, me = Schedule(), Worker.current()
    claimed = schedule.claim(me)
    with _Heartbeat(schedule, claimed.id, me, interval_s=0.05) as heartbeat:
        heartbeat.message = "running: 3 experiments done this attempt, of 4"
        time.sleep(0.5)
    job = schedule.get(claimed.id)
    assert job.heartbeat > claimed.heartbeat and job.message == heartbeat.message
    assert schedule.interrupted(stale_after_s=5) == []  # a fresh heartbeat and a live pid


# the worker, on the virtual lab


def faulty_lab(tmp_path) -> dict:
    """The virtual lab for A and B, whose conductivity meter is on a serial port that was unplugged.

    The lab file is valid (it is accepted when the job is added); only opening the port, when the
    campaign starts, fails.
    """
    lab = virtual_lab_description(["A", "B"], time_scale=0.001).model_dump(mode="json")
    meter = next(i for i in lab["instruments"] if i["kind"] == "conductivity_meter")
    meter.update(
        backend="serial",
        options={},
        serial={"port": str(tmp_path / "ttyUSB-unplugged"), "profile": "four_point_probe", "timeout_s": 0.2},
    )
    return lab


@pytest.mark.slow
def test_the_worker_runs_due_jobs_in_order_and_a_failing_one_does_not_stop_the_queue(
    ray_local, home, tmp_path
):
    first = tmp_path / "first.yaml"
    write(first, campaign("first", seed=1))
    assert schedule_add(str(first)).exit_code == 0
    first.unlink()  # the snapshot runs, not the file
    faulty = schedule_add(
        write(tmp_path / "second.yaml", campaign("second")),
        "--lab",
        write(tmp_path / "lab.yaml", faulty_lab(tmp_path)),
    )
    assert faulty.exit_code == 0, faulty.output
    assert schedule_add(write(tmp_path / "third.yaml", campaign("third", seed=3))).exit_code == 0
    later = schedule_add(str(tmp_path / "third.yaml"), "--at", "+3h")
    assert later.exit_code == 0

    result = runner.invoke(app, ["schedule", "work", "--once"])

    assert result.exit_code == 0, result.output
    jobs = Schedule().list()
    assert [job.status for job in jobs] == ["finished", "failed", "finished", "queued"]
    assert "ttyUSB-unplugged" in jobs[1].message and "\n" not in jobs[1].message
    log = (home / "schedule.log").read_text()
    assert log.splitlines()[-1].endswith(
        "nothing due; next: S0004 at "
        + jobs[3].not_before.astimezone().strftime("%Y-%m-%d %H:%M %Z")
        + "; worker exits (--once)"
    )
    steps = [line.split(" ")[2:4] for line in log.splitlines()]  # after the date and time
    assert [words for words in steps if words[1] in {"started:", "finished:", "failed:"}] == [
        ["S0001", "started:"],
        ["S0001", "finished:"],
        ["S0002", "started:"],
        ["S0002", "failed:"],
        ["S0003", "started:"],
        ["S0003", "finished:"],
    ]
    assert all(line in result.output for line in log.splitlines())  # printed as well as logged
    for job, title in ((jobs[0], "first"), (jobs[2], "third")):
        events = read_events(home / "runs" / job.run_id / "events.jsonl")
        spec = next(e["payload"] for e in events if e["kind"] == "spec")
        assert spec["title"] == title and events[-1]["kind"] == "run_finished"
        assert sum(e["kind"] == "observation" for e in events) == 4
    failed = read_events(home / "runs" / jobs[1].run_id / "events.jsonl")
    assert failed[-1]["kind"] == "run_failed"


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.slow
def test_an_interrupted_job_is_resumed_to_completion_with_no_experiment_twice(
    ray_local, home, tmp_path, monkeypatch
):
    import athanor.app as app_module

    assert (
        schedule_add(write(tmp_path / "campaign.yaml", campaign("power cut", experiments=6))).exit_code == 0
    )
    schedule = Schedule()
    # a worker took the job, ran it and died with the power after the third measurement
    gone = Worker(host=socket.gethostname(), pid=dead_pid(), token="gone")
    job = schedule.claim(gone)

    monkeypatch.setattr(app_module, "RecordingInstruments", power_cut_after(3))
    file, _ = materialise(job)
    options = app_module.RunOptions(llm="offline", literature=False, time_scale=0.001)
    with pytest.raises(AthanorError, match="power cut"):
        app_module.run(
            str(file), options, on_start=lambda run_dir, spec: schedule.started(job.id, gone, run_dir.name)
        )
    monkeypatch.undo()
    monkeypatch.setenv("ATHANOR_HOME", str(home))
    run_dir = home / "runs" / schedule.get(job.id).run_id
    with open(run_dir / "observations.csv", newline="") as handle:
        before = [row["experiment_id"] for row in csv.DictReader(handle)]
    assert 2 <= len(before) < 6
    assert [j.id for j in schedule.interrupted()] == [job.id]

    result = runner.invoke(app, ["schedule", "work", "--once"])

    assert result.exit_code == 0, result.output
    assert (
        f"S0001 was interrupted (pid {gone.pid} on {gone.host} gone): resuming run {run_dir.name}"
        in result.output
    )
    done = schedule.get(job.id)
    assert done.status == "finished" and done.attempts == 2 and done.run_id == run_dir.name
    with open(run_dir / "observations.csv", newline="") as handle:
        ids = [row["experiment_id"] for row in csv.DictReader(handle)]
    assert ids[: len(before)] == before and sorted(ids) == [f"E{i:04d}" for i in range(1, 7)]
    events = read_events(run_dir / "events.jsonl")
    kinds = [e["kind"] for e in events]
    assert kinds.count("run_resumed") == 1 and kinds[-1] == "run_finished"
    assert verify_log(run_dir / "events.jsonl").ok
    # the steps done before the cut answered from the instruments' ledgers: none was done twice
    ledgers = list((home / "ledgers").glob("*.sqlite"))
    assert ledgers
    for ledger_path in ledgers:
        entries = Ledger(ledger_path).history(run_dir.name)
        assert entries and all(e.attempts == 1 and e.state == "done" for e in entries), [
            (e.key, e.state, e.attempts) for e in entries if e.attempts != 1 or e.state != "done"
        ]


@pytest.mark.slow
def test_sigterm_stops_the_campaign_resumably_and_the_worker_exits(ray_local, home, tmp_path, monkeypatch):
    import athanor.app as app_module

    path = write(tmp_path / "campaign.yaml", campaign("stopped at night", experiments=6))
    assert schedule_add(path).exit_code == 0 and schedule_add(path).exit_code == 0
    real_run = app_module.run

    def run_then_sigterm(request, options, on_event=None, on_start=None):
        def on_event_then_stop(event):
            on_event(event)
            if event["kind"] == "observation":
                os.kill(os.getpid(), signal.SIGTERM)

        return real_run(request, options, on_event=on_event_then_stop, on_start=on_start)

    monkeypatch.setattr(app_module, "run", run_then_sigterm)
    previous = signal.getsignal(signal.SIGTERM)

    result = runner.invoke(app, ["schedule", "work", "--once"])

    assert result.exit_code == 0, result.output
    assert signal.getsignal(signal.SIGTERM) is previous  # the worker put the handler back
    stopped, waiting = Schedule().list()
    assert stopped.status == "stopped" and waiting.status == "queued"  # the worker took no new job
    assert stopped.message == (
        "stopped by SIGTERM: instruments in their safe state;"
        f" the next worker resumes run {stopped.run_id}"
        f" (`athanor schedule cancel {stopped.id}` keeps it stopped)"
    )
    assert "worker stopped by SIGTERM" in result.output
    events = read_events(home / "runs" / stopped.run_id / "events.jsonl")
    assert events[-1]["kind"] == "run_stopped"
    assert sum(e["kind"] == "observation" for e in events) < 6

    # after the shutdown, the next worker resumes the stopped campaign first, then runs the queue
    monkeypatch.setattr(app_module, "run", real_run)
    result = runner.invoke(app, ["schedule", "work", "--once"])
    assert result.exit_code == 0, result.output
    resumed, ran = Schedule().list()
    assert (resumed.status, ran.status) == ("finished", "finished"), result.output
    assert resumed.run_id == stopped.run_id and resumed.attempts == 2
    events = read_events(home / "runs" / stopped.run_id / "events.jsonl")
    ids = [e["payload"]["experiment_id"] for e in events if e["kind"] == "observation"]
    assert sorted(set(ids)) == [f"E{i:04d}" for i in range(1, 7)]
    assert events[-1]["kind"] == "run_finished"


def test_prior_data_is_kept_as_it_was_when_scheduled(home, tmp_path):
    from athanor.app import read_prior

    prior = tmp_path / "earlier.csv"
    prior.write_text("A,B,conductivity\n0.2,0.8,10\n0.7,0.3,30\n", encoding="utf-8")
    path = write(tmp_path / "campaign.yaml", campaign("with prior data"))
    result = schedule_add(path, "--prior", str(prior))
    assert result.exit_code == 0, result.output
    prior.write_text("A,B,conductivity\n0.5,0.5,999\n", encoding="utf-8")  # edited after scheduling

    (job,) = Schedule().list()
    campaign_file, _ = materialise(job)
    spec, data = read_prior(job.spec, str(campaign_file))
    assert spec.prior_data == "prior.csv"
    assert [o.values["conductivity"] for o in data.observations] == [10.0, 30.0]


def test_bad_prior_data_is_refused_when_scheduling(home, tmp_path):
    prior = tmp_path / "earlier.csv"
    prior.write_text("A,B,conductivity\n0.2,0.8,ten\n", encoding="utf-8")
    result = schedule_add(write(tmp_path / "campaign.yaml", campaign("bad prior")), "--prior", str(prior))
    assert result.exit_code == 2
    assert "earlier.csv:2" in result.output and "conductivity" in result.output
    assert Schedule().list() == []
