"""Instruments in Ray actors: pipelined, streamed, exactly-once, failing cleanly; and the in-process twin."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from athanor.errors import InstrumentError, SpecError
from athanor.lab import LabDescription
from athanor.models import Command, Proposal, Protocol, Reading
from athanor.ports import InstrumentsPort
from athanor.spec import CampaignSpec
from instruments.actors import SKIPPED, InstrumentHost, lab_fingerprint
from instruments.emulator import emulator_for
from instruments.ray_runtime import ensure_ray
from instruments.virtual_lab import TEMPLATE, LocalLab, RayLab, virtual_lab_description
from instruments.virtual_world import VirtualWorld
from tools.protocols import compile_protocol

NAMES = ["P3HT", "D1", "D2", "D6", "D8"]
SEED = 11
TIME_SCALE = 0.005  # dispense 0.04 s, mix 0.05 s, measure 0.3 s
SPEC = CampaignSpec.model_validate(
    {
        "components": [{"name": n} for n in NAMES],
        "objectives": [{"name": "conductivity"}],
        "budget": {"experiments": 8, "batch_size": 4},
    }
)


def make_lab() -> LabDescription:
    """The virtual lab with pipetting noise, no meter noise, and a liquid handler that cannot mix H12."""
    data = virtual_lab_description(NAMES, time_scale=TIME_SCALE).model_dump()
    handler, meter = data["instruments"]
    handler["options"].update(noise_rel=0.05, fail_rate=1.0, fail_actions=["mix"], fail_wells=["H12"])
    meter["options"]["noise_rel"] = 0.0
    return LabDescription.model_validate(data)


def protocols_for(lab: LabDescription, wells: list[str], first: int = 1) -> list[Protocol]:
    rng = np.random.default_rng(first)
    protocols = []
    for offset, well in enumerate(wells):
        eid = f"E{first + offset:04d}"
        values = rng.dirichlet(np.ones(len(NAMES)))
        proposal = Proposal(experiment_id=eid, composition=dict(zip(NAMES, values, strict=True)))
        protocol = compile_protocol(proposal, SPEC, lab, well)
        commands = [c.model_copy(update={"key": f"run/{eid}/{i}"}) for i, c in enumerate(protocol.commands)]
        protocols.append(protocol.model_copy(update={"commands": commands}))
    return protocols


@pytest.fixture(scope="module")
def ray_lab(ray_local):
    lab = RayLab(make_lab(), seed=SEED)
    lab.start()
    yield lab
    lab.close()


@pytest.fixture(scope="module")
def pipelined(ray_lab):
    protocols = protocols_for(ray_lab.lab, ["A1", "A2", "A3", "A4"])
    arrivals: list[tuple[float, Reading]] = []
    start = time.monotonic()
    results = ray_lab.run(protocols, lambda r: arrivals.append((time.monotonic() - start, r)))
    return protocols, results, arrivals, time.monotonic() - start


def test_every_reading_arrives_in_order_and_streams(pipelined):
    protocols, results, arrivals, elapsed = pipelined
    assert list(results) == [p.experiment_id for p in protocols]
    for protocol in protocols:
        readings = results[protocol.experiment_id]
        assert [r.key for r in readings] == [c.key for c in protocol.commands]
        assert all(r.ok for r in readings), [r.error for r in readings]
        assert readings[-1].values["conductivity"] > 0
    delivered = [r for _, r in arrivals]
    assert sorted(r.key for r in delivered) == sorted(c.key for p in protocols for c in p.commands)
    # Readings reached the callback while the run went on, not all at the end.
    first_arrival = arrivals[0][0]
    assert first_arrival < elapsed / 2


def test_handler_prepares_the_next_sample_while_the_meter_measures(pipelined):
    protocols, results, _, elapsed = pipelined
    for current, following in itertools.pairwise(protocols):
        measured = results[current.experiment_id][-1]
        next_start = results[following.experiment_id][0]
        assert measured.instrument == "conductivity_meter"
        assert next_start.started < measured.finished  # overlap
    sequential = sum(r.finished - r.started for readings in results.values() for r in readings)
    assert elapsed < 0.9 * sequential


def test_meter_measures_the_composition_the_handler_actually_made(ray_lab, pipelined):
    protocols, results, _, _ = pipelined
    emulator = emulator_for(NAMES, SEED)
    for protocol in protocols:
        contents = ray_lab.world.contents(protocol.well)
        assert sum(contents.values()) == pytest.approx(200.0, rel=0.2)  # 5 % pipetting noise
        measured = results[protocol.experiment_id][-1].values["conductivity"]
        assert measured == pytest.approx(emulator.true_value(contents), rel=1e-9)
        assert measured != pytest.approx(emulator.true_value(protocol.composition), rel=1e-6)


def test_same_seed_same_results_in_process(pipelined):
    protocols, results, _, _ = pipelined
    local = LocalLab(make_lab(), seed=SEED).run(protocols, lambda r: None)
    for protocol in protocols:
        ray_values = [r.values for r in results[protocol.experiment_id]]
        assert [r.values for r in local[protocol.experiment_id]] == ray_values


def test_re_executing_a_key_returns_the_recorded_reading_without_acting(ray_lab, pipelined):
    import ray

    protocols, results, _, _ = pipelined
    handler = ray_lab.actor("liquid_handler")
    command = protocols[0].commands[0]
    before = ray.get(handler.status.remote())
    world_before = ray_lab.world.snapshot()
    again = ray.get(handler.execute.remote(command.model_dump(mode="json"), None))
    assert Reading.model_validate(again) == results[protocols[0].experiment_id][0]
    assert ray.get(handler.status.remote()) == before  # stock volume unchanged
    assert ray_lab.world.snapshot() == world_before
    changed = command.model_copy(update={"params": {**command.params, "volume_ul": 5.0}})
    clash = ray.get(handler.execute.remote(changed.model_dump(mode="json"), None))
    assert not clash["ok"] and "already used for a different command" in clash["error"]


def test_a_fault_fails_its_step_and_skips_the_rest_of_that_experiment(ray_lab):
    doomed, fine = protocols_for(ray_lab.lab, ["H12", "A5"], first=20)
    results = ray_lab.run([doomed, fine], lambda r: None)
    readings = results[doomed.experiment_id]
    actions = [r.action for r in readings]
    mix = actions.index("mix")
    assert all(r.ok for r in readings[:mix])
    assert not readings[mix].ok and "injected fault in mix on well H12" in readings[mix].error
    assert [r.error for r in readings[mix + 1 :]] == [SKIPPED]
    assert [r.instrument for r in readings[mix + 1 :]] == ["conductivity_meter"]
    assert all(r.ok for r in results[fine.experiment_id])


def test_safe_state_and_port_conformance(ray_lab):
    ray_lab.safe_state()
    assert isinstance(ray_lab, InstrumentsPort)
    assert isinstance(LocalLab(make_lab(), seed=0), InstrumentsPort)


def heated_lab(**plate_options) -> LabDescription:
    """The virtual lab (no waiting) with a simulated hot plate ``anneal_plate`` at 22 °C ambient."""
    data = virtual_lab_description(["PEDOT", "PSS"], time_scale=0.0).model_dump(mode="json")
    plate = {
        "name": "anneal_plate",
        "kind": "hotplate",
        "options": {"ambient_c": 22.0, "noise_c": 0.0, **plate_options},
        "envelope": {
            "allowed_actions": ["set_temperature", "read_temperature", "safe_state"],
            "max_temperature_c": 150.0,
        },
    }
    data["instruments"].append(plate)
    return LabDescription.model_validate(data)


def plate_command(action: str, key: str, **params: float) -> dict:
    return Command(instrument="anneal_plate", action=action, params=params, key=key).model_dump(mode="json")


def statuses(lab: RayLab) -> dict[str, dict]:
    """Each instrument's status (front-end bookkeeping, fault, safe states entered)."""
    import ray

    return {i.name: ray.get(lab.actor(i.name).status.remote()) for i in lab.lab.instruments}


def test_safe_state_puts_every_instrument_of_a_ray_lab_in_its_safe_state(ray_local):
    import ray

    with RayLab(heated_lab(), seed=4) as lab:
        plate = lab.actor("anneal_plate")
        heat = ray.get(plate.execute.remote(plate_command("set_temperature", "anneal/E0001/0", celsius=95.0)))
        assert heat["ok"], heat["error"]
        assert ray.get(plate.status.remote())["setpoint_c"] == 95.0
        hot = ray.get(plate.execute.remote(plate_command("read_temperature", "anneal/E0001/1")))
        assert hot["values"]["temperature"] == pytest.approx(95.0)
        before = statuses(lab)

        lab.safe_state()

        after = statuses(lab)
        assert sorted(after) == ["anneal_plate", "conductivity_meter", "liquid_handler"]
        for name, status in after.items():
            assert status["safe_states"] == before[name]["safe_states"] + 1, name
            assert status["fault"] is None
        assert after["anneal_plate"]["setpoint_c"] is None  # the heater is off
        cooled = ray.get(plate.execute.remote(plate_command("read_temperature", "anneal/E0001/2")))
        assert cooled["values"]["temperature"] == pytest.approx(22.0)  # ambient (time_scale 0)
        assert after["liquid_handler"]["stocks"] == before["liquid_handler"]["stocks"]  # moved nothing


def test_an_instrument_that_fails_to_reach_its_safe_state_is_named_and_the_others_still_reach_theirs(
    ray_local,
):
    import ray

    with RayLab(heated_lab(fail_rate=1.0, fail_actions=["safe_state"]), seed=4) as lab:
        plate = lab.actor("anneal_plate")
        heat = plate_command("set_temperature", "stuck/E0001/0", celsius=60.0)
        assert ray.get(plate.execute.remote(heat))["ok"]
        with pytest.raises(InstrumentError, match=r"^safe state not reached: anneal_plate: ") as failed:
            lab.safe_state()
        assert "injected fault in safe_state" in str(failed.value)
        assert "liquid_handler" not in str(failed.value) and "conductivity_meter" not in str(failed.value)
        assert ray.get(plate.status.remote())["setpoint_c"] == 60.0  # still heating: nothing hides that
        after = statuses(lab)
        assert after["liquid_handler"]["safe_states"] == after["conductivity_meter"]["safe_states"] == 1


def test_unknown_instrument_is_refused_before_anything_runs(ray_lab):
    import ray

    bad = protocols_for(ray_lab.lab, ["B1"], first=30)[0]
    commands = [*bad.commands[:-1], bad.commands[-1].model_copy(update={"instrument": "xrd"})]
    with pytest.raises(InstrumentError, match="unknown instrument 'xrd'"):
        ray_lab.run([bad.model_copy(update={"commands": commands})], lambda r: None)
    assert "B1" not in ray.get(ray_lab.actor("liquid_handler").status.remote())["wells"]


def test_runs_get_their_own_namespace_and_close_kills_only_their_actors(ray_lab):
    import ray

    assert not ensure_ray(None, None)  # already running: nothing started
    other = RayLab(virtual_lab_description(["A", "B"], time_scale=0.0), seed=1)
    other.start()
    handle = other.actor("liquid_handler")
    assert other.namespace != ray_lab.namespace
    assert (
        ray.get(ray.get_actor("liquid_handler", namespace=other.namespace).ping.remote()) == "liquid_handler"
    )
    other.close()
    # Ray kills asynchronously: under load a call sent right after the kill may still be answered,
    # but within a few seconds every call fails because the actor is gone.
    deadline = time.monotonic() + 30
    with pytest.raises(ray.exceptions.RayActorError):
        while time.monotonic() < deadline:
            ray.get(handle.ping.remote(), timeout=30)
            time.sleep(0.2)
    assert ray.is_initialized()
    assert ray.get(ray_lab.actor("liquid_handler").ping.remote()) == "liquid_handler"


# In-process pieces (no Ray).


def test_local_lab_skips_after_a_failure_and_reports_in_order():
    lab = LocalLab(make_lab(), seed=3)
    protocols = protocols_for(lab.lab, ["H12", "A1"])
    seen: list[Reading] = []
    results = lab.run(protocols, seen.append)
    assert len(seen) == sum(len(p.commands) for p in protocols)
    doomed = results[protocols[0].experiment_id]
    assert [r.ok for r in doomed][-2:] == [False, False] and doomed[-1].error == SKIPPED
    assert all(r.ok for r in results[protocols[1].experiment_id])
    assert lab.world.contents("H12")  # the dispenses before the fault happened


def test_host_ledger_is_exactly_once_and_refusals_are_readings():
    world = VirtualWorld()
    lab = virtual_lab_description(["P3HT", "D1"], time_scale=0.0)
    host = InstrumentHost(lab.model_dump(mode="json"), "liquid_handler", world, seed=0)
    command = Command(
        instrument="liquid_handler",
        action="dispense",
        params={"stock": "P3HT_stock", "well": "A1", "volume_ul": 100.0},
        key="run/E0001/0",
    ).model_dump()
    first = host.execute(command)
    assert host.execute(command) == first
    assert world.contents("A1") == {"P3HT": pytest.approx(100.0, rel=0.05)}
    assert host.status()["stocks"]["P3HT_stock"] == pytest.approx(19_900.0)
    too_big = {**command, "key": "run/E0001/1", "params": {**command["params"], "volume_ul": 500.0}}
    refused = host.execute(too_big)
    assert (
        not refused["ok"] and refused["error"].startswith("refused: ") and "max_volume_ul" in refused["error"]
    )
    assert host.execute({"instrument": "liquid_handler"})["ok"] is False
    skipped = host.execute({**command, "key": "run/E0001/2"}, after=refused)
    assert skipped["error"] == SKIPPED
    assert host.status()["stocks"]["P3HT_stock"] == pytest.approx(19_900.0)


def test_host_rejects_an_instrument_the_lab_lacks():
    with pytest.raises(InstrumentError, match="unknown instrument 'xrd'"):
        InstrumentHost(virtual_lab_description(["A", "B"]), "xrd", VirtualWorld(), seed=0)


def test_virtual_lab_description_from_the_template():
    lab = virtual_lab_description(["Ni", "Co", "Mn"], time_scale=0.5)
    assert LabDescription.from_file(TEMPLATE).stocks == []  # the template itself is a valid lab
    assert len(lab.wells) == 96 and lab.wells[0] == "A1" and lab.wells[-1] == "H12"
    assert [(s.name, s.component, s.volume_ul) for s in lab.stocks] == [
        ("Ni_stock", "Ni", 20_000.0),
        ("Co_stock", "Co", 20_000.0),
        ("Mn_stock", "Mn", 20_000.0),
    ]
    assert lab.time_scale == 0.5
    handler = lab.first_of_kind("liquid_handler")
    assert (handler.envelope.min_volume_ul, handler.envelope.max_volume_ul) == (1.0, 300.0)
    assert lab.first_of_kind("conductivity_meter").duration_s == 60.0
    with pytest.raises(SpecError, match="Ni listed more than once"):
        virtual_lab_description(["Ni", "Ni"])
    with pytest.raises(SpecError, match="time_scale"):
        virtual_lab_description(["Ni", "Co"], time_scale=-1.0)


# Shared instruments: several labs (campaigns) on the same actors.


def with_run(protocols: list[Protocol], run_id: str) -> list[Protocol]:
    return [
        p.model_copy(
            update={
                "commands": [
                    c.model_copy(update={"key": c.key.replace("run/", f"{run_id}/", 1)}) for c in p.commands
                ]
            }
        )
        for p in protocols
    ]


def _hand_over(namespace, labels, fingerprint, old, new):
    """Attach holder ``new`` to the shared actors and detach ``old``, as if ``new`` had started them."""
    import ray

    for label in labels:
        handle = ray.get_actor(label, namespace=namespace)
        ray.get(handle.attach.remote(new, fingerprint))
        ray.get(handle.detach.remote(old))


def test_a_crashed_labs_hold_on_shared_instruments_is_dropped_by_the_next_lab(ray_local, tmp_path):
    import socket
    import subprocess
    import sys
    import uuid

    import ray

    namespace = f"athanor-crash-test-{uuid.uuid4().hex[:8]}"
    description = make_lab()
    labels = ["athanor-virtual-world", *(i.name for i in description.instruments)]
    first = RayLab(description, seed=SEED, namespace=namespace, ledger_dir=tmp_path)
    first.start()
    # the lab's process dies without detaching: its actors are held by a pid that no longer exists
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    crashed = f"{socket.gethostname()}:{int(ended.stdout)}:crashed0"
    _hand_over(namespace, labels, lab_fingerprint(description), first._holder, crashed)
    first._watchdog.stop()
    first._actors, first._world, first._watchdog = {}, None, None  # what a dead process leaves behind

    # a lab on another host cannot be checked from here, so its hold stands, and a changed lab is refused
    elsewhere = "another-host:1:remote00"
    _hand_over(namespace, labels, lab_fingerprint(description), crashed, elsewhere)
    other = virtual_lab_description(["X", "Y"], time_scale=0.0)
    with pytest.raises(InstrumentError, match="different lab description"):
        RayLab(other, seed=0, namespace=namespace).start()
    _hand_over(namespace, labels, lab_fingerprint(description), elsewhere, crashed)

    # the dead local holder is dropped: the changed lab starts on fresh actors, and only it holds them
    second = RayLab(other, seed=0, namespace=namespace, ledger_dir=tmp_path)
    second.start()
    try:
        handler = ray.get_actor("liquid_handler", namespace=namespace)
        assert ray.get(handler.holders.remote()) == [second._holder]
        assert ray.get(handler.ping.remote()) == "liquid_handler"
    finally:
        second.close()
    for name in labels:
        with pytest.raises(ValueError):
            ray.get_actor(name, namespace=namespace)


def test_labs_in_a_shared_namespace_share_instruments_and_the_last_close_removes_them(ray_local, tmp_path):
    import threading
    import uuid

    import ray

    namespace = f"athanor-shared-test-{uuid.uuid4().hex[:8]}"
    description = make_lab()
    epoch = time.time()
    first = RayLab(description, seed=SEED, namespace=namespace, epoch=epoch, ledger_dir=tmp_path)
    second = RayLab(description, seed=SEED, namespace=namespace, epoch=epoch, ledger_dir=tmp_path)
    first.start()
    second.start()
    try:
        handler = first.actor("liquid_handler")
        assert second.actor("liquid_handler")._actor_id == handler._actor_id
        assert len(ray.get(handler.holders.remote())) == 2

        other = virtual_lab_description(["X", "Y"], time_scale=0.0)
        with pytest.raises(InstrumentError, match="different lab description"):
            RayLab(other, seed=0, namespace=namespace).start()
        assert len(ray.get(handler.holders.remote())) == 2  # the refused lab left them alone

        batch_a = with_run(protocols_for(description, ["C1", "C2"], first=40), "runA")
        batch_b = with_run(protocols_for(description, ["C3", "C4"], first=50), "runB")
        outcome: dict[str, dict[str, list[Reading]]] = {}
        workers = [
            threading.Thread(target=lambda: outcome.__setitem__("a", first.run(batch_a, lambda r: None))),
            threading.Thread(target=lambda: outcome.__setitem__("b", second.run(batch_b, lambda r: None))),
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert set(outcome) == {"a", "b"}
        readings = [r for results in outcome.values() for rs in results.values() for r in rs]
        assert all(r.ok for r in readings), [r.error for r in readings if not r.ok]
        # One instrument never runs two commands at once, whichever run they belong to.
        for name in ("liquid_handler", "conductivity_meter"):
            spans = sorted((r.started, r.finished) for r in readings if r.instrument == name)
            assert all(end <= start + 1e-6 for (_, end), (start, _) in itertools.pairwise(spans))
        # Both runs wrote into the one shared world; each run's ledger entries stay apart.
        assert {"C1", "C2", "C3", "C4"} <= set(second.world.snapshot())
        assert set(second.completed("runA")) == {c.key for p in batch_a for c in p.commands}
        assert set(first.completed("runB")) == {c.key for p in batch_b for c in p.commands}

        first.close()
        assert len(ray.get(handler.holders.remote())) == 1
        later = with_run(protocols_for(description, ["C5"], first=60), "runB")
        assert all(r.ok for r in second.run(later, lambda r: None)["E0060"])
        assert second.world.contents("C1")  # the world outlived the lab that created it
    finally:
        first.close()
        second.close()
    for name in ("liquid_handler", "conductivity_meter", "athanor-virtual-world"):
        with pytest.raises(ValueError):
            ray.get_actor(name, namespace=namespace)
