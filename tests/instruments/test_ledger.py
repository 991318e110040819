"""The persistent idempotency ledger: exactly-once across restarts, in-doubt actions after a crash."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from athanor.errors import InstrumentError
from athanor.models import Command, Proposal
from athanor.spec import CampaignSpec
from instruments.actors import InstrumentHost, ledger_file
from instruments.ledger import DONE, FAILED, STARTED, Ledger, run_of
from instruments.virtual_lab import LocalLab, virtual_lab_description
from instruments.virtual_world import VirtualWorld
from tools.protocols import compile_protocol

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["P3HT", "D1"]


def lab_data(**handler_options):
    data = virtual_lab_description(NAMES, time_scale=0.0).model_dump(mode="json")
    data["instruments"][0]["options"].update(handler_options)
    return data


def dispense(key: str, volume: float = 100.0, well: str = "A1") -> dict:
    return Command(
        instrument="liquid_handler",
        action="dispense",
        params={"stock": "P3HT_stock", "well": well, "volume_ul": volume},
        key=key,
    ).model_dump(mode="json")


def test_states_go_started_then_done_or_failed(tmp_path):
    ledger = Ledger(tmp_path / "lh.sqlite")
    command = dispense("r1/E0001/0")
    assert ledger.lookup("r1/E0001/0") is None
    begun = ledger.begin("r1/E0001/0", command)
    assert (begun.state, begun.attempts, begun.run_id) == (STARTED, 1, "r1")
    assert [e.key for e in ledger.in_doubt("r1")] == ["r1/E0001/0"]
    done = ledger.finish("r1/E0001/0", {"ok": True, "key": "r1/E0001/0", "values": {"volume_ul": 100.0}})
    assert done.state == DONE and done.reading["values"] == {"volume_ul": 100.0}
    assert ledger.in_doubt("r1") == []
    with pytest.raises(InstrumentError, match="already done"):
        ledger.begin("r1/E0001/0", command)

    ledger.begin("r1/E0001/1", dispense("r1/E0001/1"))
    assert ledger.finish("r1/E0001/1", {"ok": False, "error": "clogged"}).state == FAILED
    retry = ledger.begin("r1/E0001/1", dispense("r1/E0001/1"))
    assert (retry.state, retry.attempts, retry.reading) == (STARTED, 2, None)

    with pytest.raises(InstrumentError, match="different command"):
        ledger.begin("r1/E0001/0", dispense("r1/E0001/0", volume=5.0))
    with pytest.raises(InstrumentError, match="different command"):
        ledger.lookup("r1/E0001/0", dispense("r1/E0001/0", volume=5.0))
    with pytest.raises(InstrumentError, match="never begun"):
        ledger.finish("r1/E0009/0", {"ok": True})


BEGIN_AND_DIE = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {root!r})
    from instruments.ledger import Ledger

    ledger = Ledger({path!r})
    ledger.begin("nightly-7/E0003/2", {command!r})
    os._exit(3)  # the host dies while the back end acts: no finish(), no close()
    """
)


def test_a_key_begun_and_not_finished_is_refused_again_even_after_a_crash(tmp_path):
    path = tmp_path / "ledgers" / "hotplate.sqlite"
    heat = Command(
        instrument="hotplate", action="set_temperature", params={"celsius": 85.0}, key="nightly-7/E0003/2"
    ).model_dump(mode="json")
    ledger = Ledger(path)
    first = ledger.begin("nightly-7/E0003/2", heat)
    with pytest.raises(InstrumentError, match=r"'nightly-7/E0003/2' is already started"):
        ledger.begin("nightly-7/E0003/2", heat)
    assert ledger.lookup("nightly-7/E0003/2") == first  # no second attempt was counted
    ledger.close()

    script = BEGIN_AND_DIE.format(root=str(ROOT), path=str(tmp_path / "crashed.sqlite"), command=heat)
    crashed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=60)
    assert crashed.returncode == 3, crashed.stderr.decode()[-2000:]
    for reopened in (Ledger(path), Ledger(tmp_path / "crashed.sqlite")):
        (doubtful,) = reopened.in_doubt("nightly-7")
        assert (doubtful.key, doubtful.state, doubtful.attempts) == ("nightly-7/E0003/2", STARTED, 1)
        with pytest.raises(InstrumentError, match="already started; a key may begin again only after"):
            reopened.begin("nightly-7/E0003/2", heat)
        assert reopened.lookup("nightly-7/E0003/2") == doubtful
        reopened.resolve("nightly-7/E0003/2")  # checked: the plate never heated; let it run again
        assert reopened.begin("nightly-7/E0003/2", heat).attempts == 2
        reopened.close()


def test_a_done_key_is_refused_and_keeps_its_recorded_reading_after_reopening(tmp_path):
    path = tmp_path / "conductivity_meter.sqlite"
    measure = Command(
        instrument="conductivity_meter", action="measure", params={"well": "C7"}, key="run-β/E0012/4"
    ).model_dump(mode="json")
    reading = {"ok": True, "key": "run-β/E0012/4", "values": {"conductivity": 412.5}}
    ledger = Ledger(path)
    ledger.begin("run-β/E0012/4", measure)
    done = ledger.finish("run-β/E0012/4", reading)
    ledger.close()

    reopened = Ledger(path)
    with pytest.raises(InstrumentError, match=r"'run-β/E0012/4' is already done"):
        reopened.begin("run-β/E0012/4", measure)
    answer = reopened.lookup("run-β/E0012/4", measure)
    assert answer == done and answer.reading == reading and answer.attempts == 1
    assert reopened.in_doubt() == []


def test_history_is_per_run_in_order_and_survives_reopening(tmp_path):
    path = tmp_path / "ledgers" / "lh.sqlite"
    ledger = Ledger(path)
    for key in ["runA/E0001/0", "runB/E0001/0", "runA/E0001/1"]:
        ledger.begin(key, dispense(key))
        ledger.finish(key, {"ok": True, "key": key})
    ledger.close()
    reopened = Ledger(path)
    assert [e.key for e in reopened.history("runA")] == ["runA/E0001/0", "runA/E0001/1"]
    assert [e.key for e in reopened.history("runB")] == ["runB/E0001/0"]
    assert len(reopened) == 3
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert run_of("2024-01-01-x/E0001/3") == "2024-01-01-x"
    assert run_of("a/b/E0001/3") == "a/b"
    assert run_of("loose-key") == ""


def test_resolve_settles_in_doubt_keys_only(tmp_path):
    ledger = Ledger(tmp_path / "m.sqlite")
    ledger.begin("r/E1/0", dispense("r/E1/0"))
    ledger.begin("r/E1/1", dispense("r/E1/1"))
    rerun = ledger.resolve("r/E1/0")
    assert rerun.state == FAILED and "resolved to run again" in rerun.reading["error"]
    found = ledger.resolve("r/E1/1", {"ok": True, "key": "r/E1/1", "values": {"volume_ul": 100.0}})
    assert found.state == DONE
    with pytest.raises(InstrumentError, match="not in doubt"):
        ledger.resolve("r/E1/1")
    with pytest.raises(InstrumentError, match="unknown"):
        ledger.resolve("r/E9/0")


def test_unusable_ledger_file_is_reported(tmp_path):
    bad = tmp_path / "lh.sqlite"
    bad.write_text("this is not a database" * 100)
    with pytest.raises(InstrumentError, match="ledger"):
        Ledger(bad)


def test_a_new_host_on_the_same_file_answers_recorded_readings_without_acting(tmp_path):
    path = ledger_file(tmp_path, "liquid_handler")
    first_world = VirtualWorld()
    first = InstrumentHost(lab_data(), "liquid_handler", first_world, seed=0, ledger_path=path)
    recorded = first.execute(dispense("run1/E0001/0"))
    assert recorded["ok"]
    first.ledger.close()

    fresh_world = VirtualWorld()
    second = InstrumentHost(lab_data(), "liquid_handler", fresh_world, seed=0, ledger_path=path)
    assert second.execute(dispense("run1/E0001/0")) == recorded
    assert fresh_world.snapshot() == {}  # it did not act
    assert second.status()["stocks"]["P3HT_stock"] == pytest.approx(20_000.0)
    clash = second.execute(dispense("run1/E0001/0", volume=7.0))
    assert not clash["ok"] and "different command" in clash["error"]
    assert [e["key"] for e in second.history("run1")] == ["run1/E0001/0"]


CRASH = textwrap.dedent(
    """
    import os, sys, threading, time
    sys.path.insert(0, {root!r})
    from instruments.actors import InstrumentHost
    from instruments.virtual_lab import virtual_lab_description
    from instruments.virtual_world import VirtualWorld

    lab = virtual_lab_description(["P3HT", "D1"], time_scale=0.0).model_dump(mode="json")
    lab["instruments"][0]["options"].update(stall_rate=1.0, stall_actions=["mix"], stall_s=60.0)
    host = InstrumentHost(lab, "liquid_handler", VirtualWorld(), seed=0, ledger_path={path!r})
    dispense = {{
        "instrument": "liquid_handler", "action": "dispense", "key": "run1/E0001/0",
        "params": {{"stock": "P3HT_stock", "well": "A1", "volume_ul": 100.0}},
    }}
    assert host.execute(dispense)["ok"]
    mix = {{"instrument": "liquid_handler", "action": "mix", "key": "run1/E0001/1"}}
    mix["params"] = {{"well": "A1"}}
    threading.Thread(target=host.execute, args=(mix,), daemon=True).start()
    while not host.heartbeat()["busy"]:
        time.sleep(0.01)
    os._exit(3)  # the process dies mid-mix: no finish(), no close()
    """
)


def test_a_crash_mid_action_leaves_it_in_doubt_and_it_is_not_silently_rerun(tmp_path):
    path = ledger_file(tmp_path, "liquid_handler")
    script = CRASH.format(root=str(ROOT), path=str(path))
    crashed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=120)
    assert crashed.returncode == 3, crashed.stderr.decode()[-2000:]

    world = VirtualWorld()
    # a simulated instrument repeats its actions in doubt by default (see the next tests); this one
    # says that none of them may be, as a real liquid handler would
    host = InstrumentHost(lab_data(retry_in_doubt=[]), "liquid_handler", world, seed=0, ledger_path=path)
    doubtful = host.in_doubt("run1")
    assert [(e["key"], e["state"]) for e in doubtful] == [("run1/E0001/1", STARTED)]
    assert host.execute(dispense("run1/E0001/0"))["ok"]  # the finished dispense was synced to disk
    assert world.snapshot() == {}

    mix = {"instrument": "liquid_handler", "action": "mix", "params": {"well": "A1"}, "key": "run1/E0001/1"}
    refused = host.execute(mix)
    assert not refused["ok"] and refused["error"].startswith("in doubt:")
    assert world.mixes("A1") == 0
    host.resolve("run1/E0001/1")  # checked: it never mixed; let it run again
    assert host.execute(mix)["ok"]
    assert world.mixes("A1") == 1
    assert host.in_doubt("run1") == []
    assert [e["attempts"] for e in host.history("run1")] == [1, 2]


def test_read_only_actions_in_doubt_are_retried_by_default(tmp_path):
    path = ledger_file(tmp_path, "conductivity_meter")
    world = VirtualWorld()
    world.add("A1", "P3HT", 100.0)
    world.add("A1", "D1", 100.0)
    measure = {
        "instrument": "conductivity_meter",
        "action": "measure",
        "params": {"well": "A1"},
        "key": "run1/E0001/5",
    }
    Ledger(path).begin("run1/E0001/5", Command.model_validate(measure).model_dump(mode="json"))
    meter = InstrumentHost(lab_data(), "conductivity_meter", world, seed=0, ledger_path=path)
    reading = meter.execute(measure)
    assert reading["ok"] and reading["values"]["conductivity"] > 0
    assert meter.history("run1")[0]["attempts"] == 2


def test_a_simulated_dispense_in_doubt_runs_again_without_dispensing_twice(tmp_path):
    ledger_path = ledger_file(tmp_path, "liquid_handler")
    world_path = tmp_path / "virtual_world.json"
    lab = lab_data(noise_rel=0.02)
    first = InstrumentHost(lab, "liquid_handler", VirtualWorld(world_path), 5, None, ledger_path)
    assert first.execute(dispense("run7/E0003/0", volume=120.0, well="B4"))["ok"]
    made = VirtualWorld(world_path).contents("B4")
    # the process died after the plate got the liquid and before the ledger heard of it
    command = dispense("run7/E0003/0", volume=120.0, well="B4")
    with sqlite3.connect(ledger_path) as db:
        db.execute("UPDATE actions SET state = 'started', reading = NULL, finished_at = NULL")
    first.ledger.close()

    world = VirtualWorld(world_path)
    again = InstrumentHost(lab, "liquid_handler", world, 5, None, ledger_path)
    assert [e["key"] for e in again.in_doubt("run7")] == ["run7/E0003/0"]
    reading = again.execute(command)
    assert reading["ok"], reading
    assert world.contents("B4") == made  # 120 µL (with its noise) once, not twice
    assert again.history("run7")[0]["attempts"] == 2
    assert VirtualWorld(world_path).contents("B4") == made


def test_a_simulated_reading_is_a_function_of_the_seed_and_the_key():
    def meter(seed: int) -> InstrumentHost:
        world = VirtualWorld()
        for well in ("C1", "C2"):
            world.add(well, "P3HT", 70.0)
            world.add(well, "D1", 130.0)
        return InstrumentHost(lab_data(), "conductivity_meter", world, seed=seed)

    def measure(host: InstrumentHost, key: str, well: str = "C1") -> float:
        command = {"instrument": "conductivity_meter", "action": "measure", "params": {"well": well}}
        reading = host.execute({**command, "key": key})
        assert reading["ok"], reading
        return reading["values"]["conductivity"]

    one, other = meter(seed=21), meter(seed=21)
    first = [measure(one, "r/E0001/4"), measure(one, "r/E0002/4")]
    # another process, the commands in the other order, an unkeyed reading in between
    later = measure(other, "r/E0002/4")
    measure(other, "", "C2")
    assert [measure(other, "r/E0001/4"), later] == first
    assert first[0] != first[1]  # two samples of one composition: each reading has its own noise
    assert measure(meter(seed=22), "r/E0001/4") != first[0]


def test_bad_host_options_are_refused():
    with pytest.raises(InstrumentError, match="stall_timeout_s"):
        InstrumentHost(lab_data(stall_timeout_s=-1), "liquid_handler", VirtualWorld(), seed=0)
    with pytest.raises(InstrumentError, match="retry_in_doubt"):
        InstrumentHost(lab_data(retry_in_doubt=["teleport"]), "liquid_handler", VirtualWorld(), seed=0)


def test_local_lab_resumes_a_run_from_its_ledgers(tmp_path):
    spec = CampaignSpec.model_validate(
        {
            "components": [{"name": n} for n in NAMES],
            "objectives": [{"name": "conductivity"}],
            "budget": {"experiments": 2},
        }
    )
    lab = virtual_lab_description(NAMES, time_scale=0.0)
    protocols = []
    for eid, well in [("E0001", "A1"), ("E0002", "A2")]:
        proposal = Proposal(experiment_id=eid, composition={"P3HT": 0.7, "D1": 0.3})
        protocol = compile_protocol(proposal, spec, lab, well)
        keyed = [c.model_copy(update={"key": f"runR/{eid}/{i}"}) for i, c in enumerate(protocol.commands)]
        protocols.append(protocol.model_copy(update={"commands": keyed}))
    with LocalLab(lab, seed=1, ledger_dir=tmp_path) as first:
        results = first.run(protocols, lambda r: None)
    with LocalLab(lab, seed=1, ledger_dir=tmp_path) as resumed:
        done = resumed.completed("runR")
        assert set(done) == {c.key for p in protocols for c in p.commands}
        assert resumed.in_doubt("runR") == []
        again = resumed.run(protocols, lambda r: None)
        assert again == results
        assert resumed.world.snapshot() == {}  # nothing acted twice
    assert done["runR/E0001/0"] == results["E0001"][0]
