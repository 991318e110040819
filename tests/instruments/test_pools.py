"""Measuring steps addressed to an instrument kind go to whichever instrument of that kind is free."""

from __future__ import annotations

import numpy as np

from agents.coder import pooled
from athanor.lab import LabDescription
from athanor.models import Proposal, Protocol
from athanor.spec import CampaignSpec
from bench.utilisation import bench_lab, utilisation_from_events
from instruments.virtual_lab import LocalLab, RayLab
from tools.protocols import compile_protocol

SPEC = CampaignSpec.model_validate(
    {
        "components": [{"name": n} for n in ("A", "B", "C")],
        "objectives": [{"name": "conductivity"}],
        "budget": {"experiments": 8, "batch_size": 4},
    }
)


def protocols(lab: LabDescription, n: int) -> list[Protocol]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        eid = f"E{i + 1:04d}"
        proposal = Proposal(
            experiment_id=eid, composition=dict(zip("ABC", rng.dirichlet(np.ones(3)), strict=True))
        )
        protocol = pooled(compile_protocol(proposal, SPEC, lab, lab.wells[i]), lab)
        commands = [c.model_copy(update={"key": f"run/{eid}/{k}"}) for k, c in enumerate(protocol.commands)]
        out.append(protocol.model_copy(update={"commands": commands}))
    return out


def test_coder_pools_measurements_only_when_the_lab_has_several_meters():
    two = bench_lab((1.0, 3.0), time_scale=0.1)
    protocol = protocols(two, 1)[0]
    assert protocol.commands[-1].instrument == "conductivity_meter"
    assert {c.instrument for c in protocol.commands[:-1]} == {"liquid_handler"}
    one = bench_lab((1.0,), time_scale=0.1)
    assert protocols(one, 1)[0].commands[-1].instrument == "meter_1"


def test_free_meters_take_the_queue_and_the_fast_one_takes_more(ray_local):
    lab = bench_lab((1.0, 4.0), time_scale=0.1)  # 0.1 s and 0.4 s per measurement
    events = []

    def on_reading(reading):
        events.append({"kind": "reading", "payload": reading.model_dump(mode="json")})

    with RayLab(lab, seed=1) as ray_lab:
        ray_lab.submit(protocols(lab, 8), on_reading)
        first = ray_lab.wait(1)
        assert len(first) == 1 and len(ray_lab.running()) == 7
        rest = ray_lab.wait(None)
    assert len(first) + len(rest) == 8 and ray_lab.running() == []
    measured_by = [e["payload"]["instrument"] for e in events if e["payload"]["action"] == "measure"]
    assert all(e["payload"]["ok"] for e in events)
    assert measured_by.count("meter_1") > measured_by.count("meter_2") >= 1
    figures = utilisation_from_events(events, ["meter_1", "meter_2"])
    assert 0.5 < figures["utilisation"] <= 1.0


def test_local_lab_sends_a_pooled_step_to_an_instrument_of_that_kind():
    lab = bench_lab((1.0, 2.0), time_scale=0.01)
    with LocalLab(lab, seed=1) as local:
        results = local.run(protocols(lab, 2), lambda reading: None)
    assert [r[-1].instrument for r in results.values()] == ["meter_1", "meter_1"]
    assert all(r[-1].ok and r[-1].values["conductivity"] > 0 for r in results.values())
