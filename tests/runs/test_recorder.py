from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from athanor.errors import InstrumentError, LLMError
from athanor.models import Command, Decision, Protocol, Reading
from athanor.ports import InstrumentsPort, KnowledgePort, LLMPort, Passage
from runs.context import RunContext
from runs.eventlog import read_events, verify_log
from runs.recorder import RecordingInstruments, RecordingKnowledge, RecordingLLM

T = TypeVar("T", bound=BaseModel)


class FakeLLM:
    name = "fake"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def structured(self, task: str, messages: list[dict[str, str]], schema: type[T]) -> T:
        if self.fail:
            raise LLMError("the endpoint timed out")
        return schema.model_validate({"action": "stop", "reason": "enough"})


class FakeKnowledge:
    def search(self, query: str, k: int = 4) -> list[Passage]:
        return [
            Passage(chunk_id=f"paper-{i}", text="...", citation=f"Ref {i}", score=1.0 - 0.1 * i)
            for i in range(k)
        ]


class FakeLab:
    """Delivers each experiment's readings from its own thread, like the real engine's callbacks."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.safe_calls = 0
        self.queued: list[tuple[list[Protocol], Callable[[Reading], None]]] = []

    def run(
        self, protocols: list[Protocol], on_reading: Callable[[Reading], None]
    ) -> dict[str, list[Reading]]:
        self.submit(protocols, on_reading)
        return self.wait(None)

    def submit(self, protocols: list[Protocol], on_reading: Callable[[Reading], None]) -> None:
        self.queued.append((protocols, on_reading))

    def running(self) -> list[str]:
        return [p.experiment_id for protocols, _ in self.queued for p in protocols]

    def wait(self, min_finished: int | None = 1) -> dict[str, list[Reading]]:
        results: dict[str, list[Reading]] = {}
        while self.queued:
            protocols, on_reading = self.queued[0]
            results.update(self._work(protocols, on_reading))
            self.queued.pop(0)
        return results

    def _work(
        self, protocols: list[Protocol], on_reading: Callable[[Reading], None]
    ) -> dict[str, list[Reading]]:
        if self.fail_on and any(p.experiment_id == self.fail_on for p in protocols):
            raise InstrumentError("liquid handler not homed")
        results: dict[str, list[Reading]] = {}

        def work(protocol: Protocol) -> None:
            readings = []
            for step, command in enumerate(protocol.commands):
                reading = Reading(
                    instrument=command.instrument,
                    action=command.action,
                    key=f"r/{protocol.experiment_id}/{step}",
                    values={"conductivity": 10.0 * step},
                )
                readings.append(reading)
                on_reading(reading)
            results[protocol.experiment_id] = readings

        threads = [threading.Thread(target=work, args=(p,)) for p in protocols]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    def safe_state(self) -> None:
        self.safe_calls += 1


def _protocol(experiment_id: str) -> Protocol:
    commands = [
        Command(instrument="handler", action="dispense", params={"volume_ul": 50.0}),
        Command(instrument="meter", action="measure"),
    ]
    return Protocol(
        experiment_id=experiment_id,
        well="A1",
        volumes_ul={"P3HT_stock": 50.0},
        composition={"P3HT": 1.0},
        commands=commands,
    )


@pytest.fixture
def ctx(tmp_path: Path):
    with RunContext(tmp_path / "run", seed=0) as context:
        yield context


def _events(ctx: RunContext, kind: str | None = None) -> list[dict[str, Any]]:
    return read_events(ctx.log.path, kinds=kind)


def test_wrappers_implement_the_ports(ctx: RunContext) -> None:
    assert isinstance(RecordingLLM(FakeLLM(), ctx), LLMPort)
    assert isinstance(RecordingKnowledge(FakeKnowledge(), ctx), KnowledgePort)
    assert isinstance(RecordingInstruments(FakeLab(), ctx), InstrumentsPort)


def test_llm_request_and_reply_are_recorded(ctx: RunContext) -> None:
    llm = RecordingLLM(FakeLLM(), ctx)
    assert llm.name == "fake"
    messages = [{"role": "user", "content": "{}"}]
    answer = llm.structured("decide", messages, Decision)
    assert answer == Decision(action="stop", reason="enough")
    request, reply = _events(ctx)
    assert request["kind"] == "llm_request"
    assert request["payload"] == {
        "call": 1,
        "task": "decide",
        "messages": messages,
        "schema": "Decision",
        "backend": "fake",
    }
    assert reply["kind"] == "llm_reply"
    assert reply["payload"]["call"] == 1
    assert reply["payload"]["reply"] == {"action": "stop", "reason": "enough"}
    assert reply["payload"]["seconds"] >= 0


def test_llm_error_is_recorded_and_raised(ctx: RunContext) -> None:
    llm = RecordingLLM(FakeLLM(fail=True), ctx)
    with pytest.raises(LLMError, match="timed out"):
        llm.structured("decide", [], Decision)
    kinds = [e["kind"] for e in _events(ctx)]
    assert kinds == ["llm_request", "llm_error"]
    error = _events(ctx, "llm_error")[0]["payload"]
    assert error["task"] == "decide"
    assert error["error"] == "the endpoint timed out"
    assert error["error_type"] == "LLMError"


def test_retrieval_is_recorded(ctx: RunContext) -> None:
    knowledge = RecordingKnowledge(FakeKnowledge(), ctx)
    passages = knowledge.search("CNT percolation", k=3)
    assert len(passages) == 3
    (event,) = _events(ctx)
    assert event["kind"] == "retrieval"
    assert event["payload"] == {
        "query": "CNT percolation",
        "k": 3,
        "chunk_ids": ["paper-0", "paper-1", "paper-2"],
        "scores": [1.0, 0.9, 0.8],
    }


def test_protocols_and_readings_from_threads_are_recorded(ctx: RunContext) -> None:
    lab = RecordingInstruments(FakeLab(), ctx)
    delivered: list[str] = []
    protocols = [_protocol(f"E000{i}") for i in range(1, 5)]
    results = lab.run(protocols, lambda reading: delivered.append(reading.key))
    assert set(results) == {"E0001", "E0002", "E0003", "E0004"}
    submitted = _events(ctx, "protocol_submitted")
    assert [e["payload"]["experiment_id"] for e in submitted] == ["E0001", "E0002", "E0003", "E0004"]
    assert Protocol.model_validate(submitted[0]["payload"]) == protocols[0]
    readings = _events(ctx, "reading")
    assert len(readings) == 8
    assert sorted(e["payload"]["key"] for e in readings) == sorted(delivered)
    # Every reading is in the log before the callback sees it, and in per-experiment order.
    for experiment in results:
        keys = [e["payload"]["key"] for e in readings if f"/{experiment}/" in e["payload"]["key"]]
        assert keys == [f"r/{experiment}/0", f"r/{experiment}/1"]
    assert max(e["seq"] for e in submitted) < min(e["seq"] for e in readings)
    assert verify_log(ctx.log.path).ok


def test_instrument_failure_and_safe_state_are_recorded(ctx: RunContext) -> None:
    inner = FakeLab(fail_on="E0002")
    lab = RecordingInstruments(inner, ctx)
    with pytest.raises(InstrumentError):
        lab.run([_protocol("E0001"), _protocol("E0002")], lambda reading: None)
    lab.safe_state()
    assert inner.safe_calls == 1
    kinds = [e["kind"] for e in _events(ctx)]
    assert kinds == ["protocol_submitted", "protocol_submitted", "instruments_error", "safe_state"]
    error = _events(ctx, "instruments_error")[0]["payload"]
    assert error["experiment_ids"] == ["E0001", "E0002"]
    assert "not homed" in error["error"]
    assert _events(ctx, "safe_state")[0]["payload"]["ok"] is True
