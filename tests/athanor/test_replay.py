"""Replaying a recorded run re-makes its decisions from the record, and names the first one that differs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil

import pytest
from support.power import power_cut_after
from typer.testing import CliRunner

import athanor.app as app_module
from athanor.app import RunOptions, replay, resume, run
from athanor.cli import app as cli_app
from athanor.errors import AthanorError, LLMError
from runs.eventlog import GENESIS_HASH, _line_of, event_hash, read_events

SPEC = {
    "title": "replay test",
    "components": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
    "objectives": [{"name": "conductivity", "unit": "S/cm"}],
    "budget": {"experiments": 8, "batch_size": 4},
    "seed": 5,
}


def record(home, spec=SPEC, decide=()):
    """Run a campaign with the mock LLM on the virtual lab and return its folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATHANOR_HOME", str(home))
        script = {"parse_request": [spec], "decide": list(decide)}
        options = RunOptions(llm="mock", llm_script=script, literature=False, time_scale=0.001)
        return run("scripted", options).run_dir


@pytest.fixture(scope="module")
def recorded(ray_local, tmp_path_factory):
    return record(tmp_path_factory.mktemp("home"))


class NoLab:
    def __init__(self, *args, **kwargs):
        raise AssertionError("a replay created an instrument")


@contextlib.contextmanager
def lab_forbidden():
    """Within it, creating an instrument or starting Ray fails the test."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_module, "RayLab", NoLab)
        patch.setattr(app_module, "ensure_ray", lambda *a, **k: pytest.fail("a replay started Ray"))
        yield


@pytest.fixture
def no_lab(monkeypatch, tmp_path):
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path / "home"))
    with lab_forbidden():
        yield


def snapshot(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def first(events, kind, **fields):
    return next(
        e for e in events if e["kind"] == kind and all(e["payload"].get(k) == v for k, v in fields.items())
    )


def rewrite(run_dir, edit, rechain=True):
    """Edit the events of a copied run's log in place; with ``rechain`` the hash chain is made whole."""
    path = run_dir / "events.jsonl"
    events = read_events(path)
    edit(events)
    previous = GENESIS_HASH
    with open(path, "wb") as handle:
        for event in events:
            if rechain:
                event["prev_hash"] = previous
                event["hash"] = previous = event_hash(event)
            handle.write(_line_of(event))


def set_conductivity(events, experiment_id, value):
    reading = next(
        e for e in events if e["kind"] == "reading" and e["payload"]["key"].endswith(f"/{experiment_id}/4")
    )
    reading["payload"]["values"]["conductivity"] = value


@pytest.mark.slow
def test_a_recorded_campaign_replays_with_every_decision_matched_and_no_instrument(recorded, no_lab):
    before = snapshot(recorded)

    report = replay(str(recorded))

    assert report.ok, report.divergence.describe()
    counts = {t.kind: (t.recorded, t.replayed, t.matched) for t in report.tallies}
    assert counts["optimiser_call"] == (2, 2, 2)
    assert counts["protocol"] == (8, 8, 8)
    assert counts["observation"] == (8, 8, 8)
    assert counts["decision"] == (2, 2, 2)
    assert report.matched == 20 and "the whole run" in report.scope
    after = snapshot(recorded)
    (written,) = set(after) - set(before)
    assert {name: after[name] for name in before} == before  # nothing in the run was touched
    assert written == report.report_path.name and written.startswith("replay-")
    saved = json.loads(report.report_path.read_text())
    assert saved["ok"] is True and saved["run_id"] == recorded.name


@pytest.mark.slow
def test_a_changed_optimiser_is_named_at_its_first_call(recorded, no_lab, tmp_path):
    # a record whose first model-based proposal the optimiser no longer makes: its composition moved
    copy = shutil.copytree(recorded, tmp_path / "copy")

    def shift_first_proposal(events):
        point = first(events, "optimiser_call", method="propose")["payload"]["proposals"][0]["composition"]
        point["A"], point["B"] = point["A"] + 0.05, point["B"] - 0.05

    rewrite(copy, shift_first_proposal)
    reports = set(copy.glob("replay-*.json"))

    report = replay(str(copy), write=False)

    call = first(read_events(copy / "events.jsonl"), "optimiser_call", method="propose")
    assert not report.ok
    assert (report.divergence.seq, report.divergence.kind) == (call["seq"], "optimiser_call")
    assert any(line.startswith("payload.proposals[0].composition.A") for line in report.divergence.diff)
    assert report.report_path is None and set(copy.glob("replay-*.json")) == reports


@pytest.mark.slow
def test_an_edited_reading_makes_its_observation_diverge(recorded, no_lab, tmp_path):
    copy = shutil.copytree(recorded, tmp_path / "copy")
    rewrite(copy, lambda events: set_conductivity(events, "E0002", 999.0))

    report = replay(str(copy), write=False)

    observation = first(read_events(copy / "events.jsonl"), "observation", experiment_id="E0002")
    assert (report.divergence.seq, report.divergence.kind) == (observation["seq"], "observation")
    assert any("values.conductivity" in line and "999.0" in line for line in report.divergence.diff)


@pytest.mark.slow
def test_a_log_that_fails_verification_is_refused_with_the_reason(recorded, no_lab, tmp_path):
    copy = shutil.copytree(recorded, tmp_path / "copy")
    rewrite(copy, lambda events: set_conductivity(events, "E0002", 999.0), rechain=False)
    reading = next(
        e for e in read_events(copy / "events.jsonl") if e["payload"].get("key", "").endswith("/E0002/4")
    )
    before = snapshot(copy)

    with pytest.raises(AthanorError, match=f"fails verification at seq {reading['seq']}") as info:
        replay(str(copy))

    assert "hash" in str(info.value)
    assert snapshot(copy) == before


@pytest.mark.slow
def test_cli_replay_prints_the_table_and_exits_1_at_a_divergence(recorded, no_lab, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(cli_app, ["replay", str(recorded), "--no-report"])
    assert ok.exit_code == 0, ok.output
    assert "every decision matched (20 events)" in ok.output and "optimiser_call" in ok.output

    copy = shutil.copytree(recorded, tmp_path / "copy")
    rewrite(copy, lambda events: set_conductivity(events, "E0002", 999.0))
    bad = runner.invoke(cli_app, ["replay", str(copy), "--no-report"])
    assert bad.exit_code == 1
    assert "diverged" in bad.output and "(observation)" in bad.output


@pytest.mark.slow
def test_a_failed_run_replays_up_to_its_failure_and_after_a_resume_to_its_end(ray_local, tmp_path):
    home = tmp_path / "home"
    decide = [{"action": "continue", "reason": "first batch looks fine"}, LLMError("endpoint down")]
    with pytest.raises(LLMError):
        record(home, {**SPEC, "budget": {"experiments": 8, "batch_size": 3}}, decide)
    (run_dir,) = (home / "runs").iterdir()

    with lab_forbidden():
        report = replay(str(run_dir), write=False)
    assert report.ok, report.divergence.describe()
    assert "where the recorded run failed" in report.scope and "failed the same way" in report.notes[0]
    counts = {t.kind: (t.recorded, t.replayed, t.matched) for t in report.tallies}
    assert counts["observation"] == (6, 6, 6) and counts["decision"] == (1, 1, 1)

    resume_run(home, run_dir)
    with lab_forbidden():
        report = replay(str(run_dir), write=False)
    assert report.ok, report.divergence.describe()
    assert "2 attempts (resumed at seq" in report.scope
    counts = {t.kind: (t.recorded, t.replayed, t.matched) for t in report.tallies}
    assert counts["observation"] == (8, 8, 8) and counts["optimiser_call"] == (3, 3, 3)
    assert counts["decision"] == (3, 3, 3)


@pytest.mark.slow
def test_an_async_run_cut_mid_flow_replays_in_its_recorded_order_before_and_after_its_resume(
    ray_local, tmp_path
):
    home = tmp_path / "home"
    with pytest.MonkeyPatch.context() as patch, pytest.raises(AthanorError, match="power cut"):
        patch.setattr(app_module, "RecordingInstruments", power_cut_after(5))
        record(home, {**SPEC, "budget": {"experiments": 8, "batch_size": 3, "mode": "async"}})
    (run_dir,) = (home / "runs").iterdir()

    with lab_forbidden():
        report = replay(str(run_dir), write=False)
    assert report.ok, report.divergence.describe()
    assert "failed the same way" in report.notes[0]
    counts = {t.kind: (t.recorded, t.replayed, t.matched) for t in report.tallies}
    assert counts["observation"] == (5, 5, 5)
    assert counts["optimiser_call"][0] > 2 and counts["optimiser_call"][2] == counts["optimiser_call"][0]

    resume_run(home, run_dir)
    with lab_forbidden():
        report = replay(str(run_dir), write=False)
    assert report.ok, report.divergence.describe()
    counts = {t.kind: (t.recorded, t.replayed, t.matched) for t in report.tallies}
    assert counts["observation"] == (8, 8, 8)
    assert counts["decision"][0] > 3 and counts["decision"][2] == counts["decision"][0]


def resume_run(home, run_dir):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATHANOR_HOME", str(home))
        resume(run_dir.name, RunOptions(llm="offline", literature=False, time_scale=0.001))
