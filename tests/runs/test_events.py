"""The event kinds are a registry of typed payloads: what does not match its kind is never written."""

from __future__ import annotations

import pytest

from athanor.models import Observation
from runs.context import RunContext
from runs.eventlog import read_events, verify_log
from runs.events import EVENT_PAYLOADS, GRAPH_NODES, EventPayloadError, node_name, payload_problem


def test_a_payload_that_does_not_match_its_kind_is_refused_naming_the_field(tmp_path):
    with RunContext(tmp_path / "run", seed=4) as context:
        context.record("instrument_fault", {"instrument": "hotplate", "reason": "no heartbeat for 30 s"})
        with pytest.raises(EventPayloadError, match=r"'reading'.*payload\.key: Field required"):
            context.record("reading", {"instrument": "meter", "action": "measure", "values": {"sigma": 3.1}})
        with pytest.raises(EventPayloadError, match=r"payload\.values\.conductivity"):
            unreadable = {"experiment_id": "E0003", "iteration": 1, "composition": {}}
            context.record("observation", {**unreadable, "values": {"conductivity": "高"}})
        with pytest.raises(EventPayloadError, match=r"payload\.colour: Extra inputs are not permitted"):
            verdict = {"iteration": 2, "action": "stop", "reason": "budget", "colour": "red"}
            context.record("decision", verdict)
        with pytest.raises(EventPayloadError, match="'measurement' is not registered"):
            context.record("measurement", {"value": 1.0})
        observation = Observation(experiment_id="E0004", iteration=1, composition={"A": 0.4, "B": 0.6})
        context.record("observation", observation)
    events = read_events(tmp_path / "run" / "events.jsonl")
    assert [e["kind"] for e in events] == ["instrument_fault", "observation"]  # nothing else was written
    assert verify_log(tmp_path / "run" / "events.jsonl").ok


def test_old_logs_still_read():
    # a node event of a log recorded when nodes were named after the role's module and function
    assert node_name({"name": "experimenter.experiment"}) == "experimenter"
    assert node_name({"name": "pi.decide"}) == "pi_decide" and node_name({"name": "coder"}) == "coder"
    assert {node_name({"name": n}) for n in GRAPH_NODES} == set(GRAPH_NODES)
    # payloads written before fields were added still match their kinds
    assert payload_problem("run_resumed", {"llm_backend": "offline", "observations_on_disk": 8}) == ""
    assert payload_problem("run_failed", {"error": "LLMError: endpoint down"}) == ""
    assert payload_problem("safe_state", {"ok": True, "error": None}) == ""


def test_every_kind_the_campaign_records_is_registered():
    # the ones a run, a resume and the recorder write
    for kind in (
        "run_started", "request", "llm_request", "llm_reply", "spec", "lab", "time_scale", "node",
        "experiment_id", "optimiser_call", "protocol", "protocol_submitted", "reading", "observation",
        "analysis", "decision", "safe_state", "run_resumed", "run_finished", "run_failed", "run_stopped",
        "stock_refilled", "log_repaired",
    ):  # fmt: skip
        assert kind in EVENT_PAYLOADS
