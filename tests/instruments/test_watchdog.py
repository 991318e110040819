"""Heartbeats and stall detection: a stalled instrument is made safe, reported, and the run returns."""

from __future__ import annotations

import threading
import time

import pytest

from athanor.lab import LabDescription
from athanor.models import Command, Proposal, Reading
from athanor.spec import CampaignSpec
from instruments.actors import SKIPPED, InstrumentHost
from instruments.virtual_lab import RayLab, virtual_lab_description
from instruments.virtual_world import VirtualWorld
from instruments.watchdog import Watchdog, stall_limit, stall_reason
from tools.protocols import compile_protocol

NAMES = ["P3HT", "D1"]


def beat(**fields):
    base = {
        "name": "lh",
        "busy": False,
        "key": None,
        "action": None,
        "elapsed_s": 0.0,
        "expected_s": 0.0,
        "stall_timeout_s": None,
        "fault": None,
    }
    return {**base, **fields}


def test_stall_limit_is_three_times_expected_plus_slack_unless_set():
    assert stall_limit(2.0, None, 10.0) == pytest.approx(16.0)
    assert stall_limit(2.0, 0.5, 10.0) == 0.5
    busy = beat(busy=True, key="r/E1/0", action="mix", expected_s=1.0)
    assert stall_reason({**busy, "elapsed_s": 4.9}, slack_s=2.0) is None
    reason = stall_reason({**busy, "elapsed_s": 5.1}, slack_s=2.0)
    assert reason.startswith("stalled: lh.mix") and "'r/E1/0'" in reason and "5.0 s" in reason
    assert stall_reason(beat(elapsed_s=100.0), slack_s=0.0) is None  # idle
    assert stall_reason(beat(fault="stalled: earlier"), slack_s=0.0) == "stalled: earlier"


class FakeProbe:
    """Answers heartbeats from a script: name -> heartbeat dict, None (silence) or an exception."""

    def __init__(self, answers):
        self.answers = answers
        self.asked: list[list[str]] = []

    def __call__(self, names, timeout_s):
        self.asked.append(list(names))
        return {n: self.answers.get(n) for n in names}


def test_watchdog_reports_each_fault_once_and_rearms_after_clear():
    probe = FakeProbe(
        {
            "lh": beat(busy=True, key="r/E1/2", action="mix", elapsed_s=9.0, stall_timeout_s=1.0),
            "meter": beat(name="meter"),
            "plate": None,
            "dead": RuntimeError("actor died"),
        }
    )
    faults: list[tuple[str, str]] = []
    dog = Watchdog(
        ["lh", "meter", "plate", "dead"], probe, lambda n, r: faults.append((n, r)), misses=2, heartbeat_s=0.5
    )
    first = dog.check()
    assert set(first) == {"lh", "dead"}
    assert first["lh"].startswith("stalled:") and first["dead"].startswith("unresponsive:")
    second = dog.check()
    assert set(second) == {"plate"} and "missed 2 heartbeats" in second["plate"]
    assert dog.check() == {}
    assert probe.asked[-1] == ["meter"]  # faulty instruments are no longer probed
    assert [n for n, _ in faults] == ["lh", "dead", "plate"]
    probe.answers["lh"] = beat()
    dog.clear("lh")
    assert dog.check() == {} and "lh" not in dog.faults
    assert set(dog.faults) == {"dead", "plate"}


def test_a_missed_beat_followed_by_an_answer_is_not_a_fault():
    probe = FakeProbe({"lh": None})
    dog = Watchdog(["lh"], probe, lambda n, r: None, misses=2)
    assert dog.check() == {}
    probe.answers["lh"] = beat()
    assert dog.check() == {}
    probe.answers["lh"] = None
    assert dog.check() == {}  # the count started again


def test_watchdog_thread_calls_the_handler_and_stops():
    reported = threading.Event()
    probe = FakeProbe({"lh": beat(busy=True, action="dispense", elapsed_s=3.0, stall_timeout_s=1.0)})
    dog = Watchdog(["lh"], probe, lambda n, r: reported.set(), heartbeat_s=0.02)
    dog.start()
    try:
        assert reported.wait(5.0)
    finally:
        dog.stop()
    count = len(probe.asked)
    time.sleep(0.1)
    assert len(probe.asked) == count


def lab_with_stalling_mix(timeout_s: float) -> LabDescription:
    data = virtual_lab_description(NAMES, time_scale=0.001).model_dump(mode="json")
    data["instruments"][0]["options"].update(
        stall_rate=1.0, stall_actions=["mix"], stall_s=120.0, stall_timeout_s=timeout_s
    )
    return LabDescription.model_validate(data)


def test_host_heartbeat_abort_and_reset_without_ray():
    world = VirtualWorld()
    host = InstrumentHost(lab_with_stalling_mix(0.5), "liquid_handler", world, seed=0)
    mix = Command(instrument="liquid_handler", action="mix", params={"well": "A1"}, key="r/E1/1")
    answers: list[dict] = []
    worker = threading.Thread(target=lambda: answers.append(host.execute(mix.model_dump(mode="json"))))
    worker.start()
    deadline = time.monotonic() + 5
    while not host.heartbeat()["busy"] and time.monotonic() < deadline:
        time.sleep(0.01)
    beat_now = host.heartbeat()
    assert (beat_now["key"], beat_now["action"], beat_now["stall_timeout_s"]) == ("r/E1/1", "mix", 0.5)
    assert host.abort("stalled: test")["ok"]
    worker.join(5)
    assert not worker.is_alive()  # the safe state aborted the hung action
    assert not answers[0]["ok"] and "aborted by safe_state" in answers[0]["error"]
    assert host.ledger.lookup("r/E1/1").state == "failed"
    dispense = Command(
        instrument="liquid_handler",
        action="dispense",
        params={"stock": "P3HT_stock", "well": "A1", "volume_ul": 50.0},
        key="r/E1/0",
    ).model_dump(mode="json")
    refused = host.execute(dispense)
    assert not refused["ok"] and "is faulted (stalled: test)" in refused["error"]
    assert world.snapshot() == {}
    host.reset()
    assert host.execute(dispense)["ok"]
    assert host.status()["safe_states"] == 1 and host.status()["fault"] is None


def protocols(lab: LabDescription, wells: list[str]):
    spec = CampaignSpec.model_validate(
        {
            "components": [{"name": n} for n in NAMES],
            "objectives": [{"name": "conductivity"}],
            "budget": {"experiments": len(wells)},
        }
    )
    out = []
    for i, well in enumerate(wells, start=1):
        eid = f"E{i:04d}"
        protocol = compile_protocol(
            Proposal(experiment_id=eid, composition={"P3HT": 0.6, "D1": 0.4}), spec, lab, well
        )
        keyed = [c.model_copy(update={"key": f"stall/{eid}/{j}"}) for j, c in enumerate(protocol.commands)]
        out.append(protocol.model_copy(update={"commands": keyed}))
    return out


def test_a_stalled_instrument_is_made_safe_reported_and_the_run_returns(ray_local):
    import ray

    faults: list[tuple[str, str]] = []
    lab = RayLab(
        lab_with_stalling_mix(0.5), seed=0, heartbeat_s=0.1, on_fault=lambda n, r: faults.append((n, r))
    )
    lab.start()
    try:
        batch = protocols(lab.lab, ["A1", "A2"])
        seen: list[Reading] = []
        began = time.monotonic()
        results = lab.run(batch, seen.append)
        elapsed = time.monotonic() - began
        assert elapsed < 15.0
        assert len(seen) == sum(len(p.commands) for p in batch)

        first = results["E0001"]
        mix = next(i for i, r in enumerate(first) if r.action == "mix")
        assert all(r.ok for r in first[:mix])
        assert not first[mix].ok and first[mix].error.startswith("stalled: liquid_handler.mix")
        assert [r.error for r in first[mix + 1 :]] == [SKIPPED]
        second = results["E0002"]
        assert second[0].error.startswith("not run: liquid_handler is faulted (stalled:")
        assert all(r.error == SKIPPED for r in second[1:])

        assert [n for n, _ in faults] == ["liquid_handler"] and faults[0][1].startswith("stalled:")
        assert set(lab.faults) == {"liquid_handler"}
        handler = lab.actor("liquid_handler")
        status = ray.get(handler.status.remote())
        assert status["safe_states"] >= 1 and status["fault"].startswith("stalled:")
        assert "A2" not in status["wells"]  # the queued experiment never reached the robot
        # The hung mix was aborted by the safe state, so the actor is free again and its key failed.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = {e["key"]: e["state"] for e in ray.get(handler.history.remote("stall"))}
            if states.get(first[mix].key) == "failed":
                break
            time.sleep(0.05)
        assert states[first[mix].key] == "failed"

        lab.reset("liquid_handler")
        assert lab.faults == {}
        again = ray.get(handler.execute.remote(batch[1].commands[0].model_dump(mode="json"), None))
        assert again["ok"]
    finally:
        lab.close()
