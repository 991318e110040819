"""The coder keeps count of the stocks and stops the campaign before a stock runs dry."""

from __future__ import annotations

import re

import pytest

from agents.coder import code
from agents.graph import run_campaign
from agents.llm.mock import MockLLM
from agents.state import Ports
from athanor.errors import SafetyError
from athanor.lab import LabDescription
from athanor.models import Proposal
from athanor.spec import CampaignSpec
from instruments.virtual_lab import virtual_lab_description
from runs.context import RunContext
from runs.eventlog import read_events
from runs.refill import REFILLED, apply_refills, refill_payloads

SPEC = CampaignSpec.model_validate(
    {
        "components": [{"name": "A", "lower": 0.3, "upper": 0.7}, {"name": "B", "lower": 0.3, "upper": 0.7}],
        "objectives": [{"name": "conductivity"}],
        "budget": {"experiments": 6, "batch_size": 3},
        "seed": 5,
    }
)


class NoInstruments:
    """An instruments port that records every call; the tests expect none."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def run(self, protocols, on_reading):
        self.calls.append("run")
        return {}

    def submit(self, protocols, on_reading):
        self.calls.append("submit")

    def running(self):
        self.calls.append("running")
        return []

    def wait(self, min_finished=1):
        self.calls.append("wait")
        return {}

    def safe_state(self):
        self.calls.append("safe_state")


def tiny_lab(volume_ul: float) -> LabDescription:
    data = virtual_lab_description(["A", "B"], time_scale=0.0).model_dump()
    for stock in data["stocks"]:
        stock["volume_ul"] = volume_ul
    return LabDescription.model_validate(data)


def ports_for(lab: LabDescription, run_dir) -> Ports:
    run_dir.mkdir()
    return Ports(
        llm=MockLLM(fallback="error"),
        knowledge=None,
        instruments=NoInstruments(),
        context=RunContext(run_dir, SPEC.seed),
        lab=lab,
    )


def batch(*rows):
    return [
        Proposal(experiment_id=eid, composition={"A": a, "B": 1 - a}, source="initial").model_dump(
            mode="json"
        )
        for eid, a in rows
    ]


def kinds(ports):
    return [e["kind"] for e in read_events(ports.context.log.path)]


def test_the_coder_counts_stock_use_and_refuses_the_batch_that_would_run_dry(tmp_path):
    ports = ports_for(tiny_lab(300.0), tmp_path / "run")
    state = {"spec": SPEC.model_dump(mode="json"), "iteration": 1}
    first = code({**state, "proposals": batch(("E0001", 0.5), ("E0002", 0.5))}, ports)
    assert first["stock_used_ul"] == {"A_stock": 200.0, "B_stock": 200.0}
    assert len(first["protocols"]) == 2

    second = {**state, "stock_used_ul": first["stock_used_ul"], "proposals": batch(("E0003", 0.7))}
    with pytest.raises(SafetyError) as caught:
        code(second, ports)
    message = (
        "stock A_stock has 100 µL left; E0003 needs 140 µL: refill it and resume"
        " with `athanor resume RUN --refill A_stock=<µL>`"
    )
    assert str(caught.value) == message
    events = read_events(ports.context.log.path)
    low = [e for e in events if e["kind"] == "stock_low"]
    assert len(low) == 1 and low[0]["payload"]["problems"] == [message]
    assert low[0]["payload"]["left_ul"] == {"A_stock": 100.0, "B_stock": 100.0}
    protocols = [e["payload"]["experiment_id"] for e in events if e["kind"] == "protocol"]
    assert protocols == ["E0001", "E0002"]  # E0003 was never handed on
    assert ports.instruments.calls == []


def test_the_coder_warns_when_a_stock_falls_below_a_tenth_of_its_start(tmp_path):
    ports = ports_for(tiny_lab(1000.0), tmp_path / "run")
    state = {"spec": SPEC.model_dump(mode="json"), "iteration": 1, "stock_used_ul": {"A_stock": 800.0}}
    result = code({**state, "proposals": batch(("E0005", 0.6))}, ports)
    assert result["stock_used_ul"] == {"A_stock": 920.0, "B_stock": 80.0}
    warnings = [
        e["payload"]["message"] for e in read_events(ports.context.log.path) if e["kind"] == "stock_warning"
    ]
    assert warnings == ["stock A_stock is running low: 80 µL left of 1000 µL (below 10%); refill it soon"]


@pytest.mark.parametrize(
    ("refill_ul", "expected"),
    [
        (200.0, []),  # 80 µL left of the 200 refilled: above a tenth of the refill, no warning
        (130.0, ["stock A_stock is running low: 10 µL left of 130 µL (below 10%); refill it soon"]),
    ],
)
def test_after_a_refill_the_warning_is_a_tenth_of_the_refilled_volume(tmp_path, refill_ul, expected):
    # 800 µL drawn, then A_stock refilled; the next sample draws 120 µL of it
    payloads = refill_payloads({"A_stock": refill_ul}, {"A_stock": 800.0})
    lab = apply_refills(tiny_lab(1000.0), [{"kind": REFILLED, "payload": p} for p in payloads])
    ports = ports_for(lab, tmp_path / "run")
    state = {"spec": SPEC.model_dump(mode="json"), "iteration": 1, "stock_used_ul": {"A_stock": 800.0}}
    code({**state, "proposals": batch(("E0005", 0.6))}, ports)
    warnings = [
        e["payload"]["message"] for e in read_events(ports.context.log.path) if e["kind"] == "stock_warning"
    ]
    assert warnings == expected


def test_a_campaign_with_tiny_stocks_stops_before_any_instrument_command(tmp_path):
    # every sample draws 60 to 140 µL of each stock, so 150 µL cannot make a batch of three
    ports = ports_for(tiny_lab(150.0), tmp_path / "run")
    with pytest.raises(SafetyError, match="refill it and resume"):
        run_campaign(SPEC, ports, tmp_path / "checkpoints.sqlite")
    assert ports.instruments.calls == []
    events = read_events(ports.context.log.path)
    low = [e for e in events if e["kind"] == "stock_low"]
    assert len(low) == 1
    problems = low[0]["payload"]["problems"]
    assert 1 <= len(problems) <= 2
    pattern = (
        r"stock ([AB]_stock) has [\d.]+ µL left after E000[12]; E000[23] needs [\d.]+ µL: refill it"
        r" and resume with `athanor resume RUN --refill \1=<µL>`"
    )
    assert all(re.fullmatch(pattern, problem) for problem in problems), problems
    assert "reading" not in kinds(ports)
