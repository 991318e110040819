"""Replay ports answer from a hand-written log and refuse any request the recorded run did not make."""

from __future__ import annotations

import pytest

from athanor.errors import InstrumentError, LLMError
from athanor.models import Command, Decision, Protocol, Reading
from athanor.ports import InstrumentsPort, KnowledgePort, LLMPort, SimulatorPort
from runs.replay import (
    ReplayContext,
    ReplayDivergence,
    ReplayInstruments,
    ReplayKnowledge,
    ReplayLLM,
    ReplaySimulator,
)

RUN = "run-1"
SYSTEM = {"role": "system", "content": "decide"}


def log(*items):
    """Events numbered in order, as the event log writes them."""
    return [{"seq": seq, "kind": kind, "payload": payload} for seq, (kind, payload) in enumerate(items)]


def decide(n):
    return [SYSTEM, {"role": "user", "content": f'{{"iteration": {n}}}'}]


def protocol(experiment_id, well, volume):
    commands = [
        Command(instrument="liquid_handler", action="dispense", params={"well": well, "volume_ul": volume}),
        Command(instrument="meter", action="measure", params={"well": well}),
    ]
    keyed = [c.model_copy(update={"key": f"{RUN}/{experiment_id}/{i}"}) for i, c in enumerate(commands)]
    return Protocol(
        experiment_id=experiment_id,
        well=well,
        volumes_ul={"A": volume},
        composition={"A": 1.0},
        commands=keyed,
    )


def reading(experiment_id, step, value=None, ok=True):
    action = "measure" if step == 1 else "dispense"
    instrument = "meter" if step == 1 else "liquid_handler"
    values = {"conductivity": value} if value is not None else {}
    return Reading(
        instrument=instrument,
        action=action,
        key=f"{RUN}/{experiment_id}/{step}",
        values=values,
        ok=ok,
        error=None if ok else "jammed",
    ).model_dump(mode="json")


def dump(p):
    return p.model_dump(mode="json")


P1, P2 = protocol("E0001", "A1", 100.0), protocol("E0002", "A2", 50.0)
# E0002 finishes first although it was submitted second.
LAB_EVENTS = log(
    ("protocol_submitted", dump(P1)),
    ("protocol_submitted", dump(P2)),
    ("reading", reading("E0001", 0)),
    ("reading", reading("E0002", 0)),
    ("reading", reading("E0002", 1, 7.5)),
    ("observation", {"experiment_id": "E0002"}),
    ("reading", reading("E0001", 1, 3.25)),
    ("observation", {"experiment_id": "E0001"}),
)


# -- LLM ---------------------------------------------------------------------------------------------


def llm_events():
    return log(
        ("llm_request", {"call": 1, "task": "decide", "messages": decide(1)}),
        ("llm_reply", {"call": 1, "task": "decide", "reply": {"action": "continue", "reason": "more"}}),
        ("llm_request", {"call": 2, "task": "decide", "messages": decide(2)}),
        ("llm_error", {"call": 2, "task": "decide", "error": "endpoint down", "error_type": "LLMError"}),
    )


def test_llm_answers_each_task_with_its_next_recorded_reply_then_its_recorded_error():
    llm = ReplayLLM(llm_events())
    assert isinstance(llm, LLMPort)
    answer = llm.structured("decide", decide(1), Decision)
    assert answer == Decision(action="continue", reason="more")
    with pytest.raises(LLMError, match="endpoint down"):
        llm.structured("decide", decide(2), Decision)
    with pytest.raises(ReplayDivergence, match="decide answer #3; the recorded run got only 2") as info:
        llm.structured("decide", decide(3), Decision)
    assert info.value.end_of_record and info.value.seq == 3


def test_llm_request_with_other_messages_names_the_recorded_request():
    llm = ReplayLLM(llm_events())
    with pytest.raises(ReplayDivergence) as info:
        llm.structured("decide", decide(9), Decision)
    assert info.value.seq == 0 and info.value.kind == "llm_request" and not info.value.end_of_record
    assert "seq 0" in str(info.value) and "iteration" in str(info.value)


def test_llm_reply_that_no_longer_fits_the_schema_is_a_divergence():
    events = log(
        ("llm_request", {"call": 1, "task": "decide", "messages": decide(1)}),
        ("llm_reply", {"call": 1, "task": "decide", "reply": {"action": "pause", "reason": "?"}}),
    )
    with pytest.raises(ReplayDivergence, match="seq 1 is not a valid Decision"):
        ReplayLLM(events).structured("decide", decide(1), Decision)


# -- literature --------------------------------------------------------------------------------------


def test_knowledge_serves_recorded_chunks_with_the_cited_source_and_checks_the_query():
    query = "conductivity of A"
    events = log(
        ("retrieval", {"query": query, "k": 2, "chunk_ids": ["c1", "c2"], "scores": [0.9, 0.5]}),
        ("grounding", {"query": query, "passages": [{"chunk_id": "c1", "citation": "Doe 2020"}]}),
    )
    knowledge = ReplayKnowledge(events)
    assert isinstance(knowledge, KnowledgePort)
    passages = knowledge.search("conductivity of A", k=2)
    assert [(p.chunk_id, p.citation, p.score, p.text) for p in passages] == [
        ("c1", "Doe 2020", 0.9, ""),
        ("c2", "", 0.5, ""),
    ]
    with pytest.raises(ReplayDivergence, match="made no more searches"):
        knowledge.search("conductivity of A", k=2)
    with pytest.raises(ReplayDivergence, match="recorded 'conductivity of A'") as info:
        ReplayKnowledge(events).search("hardness of A", k=2)
    assert info.value.seq == 0


# -- instruments -------------------------------------------------------------------------------------


def test_wait_passes_readings_on_in_the_recorded_order_and_returns_what_finished():
    lab = ReplayInstruments(LAB_EVENTS)
    assert isinstance(lab, InstrumentsPort)
    seen = []
    lab.submit([P1, P2], lambda r: seen.append(r.key))
    assert lab.running() == ["E0001", "E0002"]

    first = lab.wait(1)  # E0002 finished first although it was submitted second
    assert list(first) == ["E0002"]
    assert [r.values for r in first["E0002"]] == [{}, {"conductivity": 7.5}]
    assert seen == [f"{RUN}/E0001/0", f"{RUN}/E0002/0", f"{RUN}/E0002/1"]
    assert lab.running() == ["E0001"]
    rest = lab.wait(None)
    assert rest["E0001"][1].values == {"conductivity": 3.25}
    assert lab.running() == [] and lab.wait(None) == {}


def test_batch_wait_returns_in_submission_order_but_calls_back_in_recorded_order():
    lab = ReplayInstruments(LAB_EVENTS)
    seen = []
    results = lab.run([P1, P2], lambda r: seen.append(r.key.split("/")[1]))
    assert list(results) == ["E0001", "E0002"]  # as the Ray lab returns them
    assert seen == ["E0001", "E0002", "E0002", "E0001"]


def test_a_command_the_recorded_run_never_sent_is_a_divergence_naming_the_instrument():
    finished = [*LAB_EVENTS, {"seq": len(LAB_EVENTS), "kind": "run_finished", "payload": {}}]
    lab = ReplayInstruments(finished)
    stranger = protocol("E0003", "A3", 10.0)
    with pytest.raises(ReplayDivergence, match="asked instrument liquid_handler for dispense") as info:
        lab.submit([stranger], lambda r: None)
    assert "which the recorded run never did" in str(info.value) and info.value.seq is None
    assert not info.value.end_of_record and lab.running() == []
    # a run that stopped part-way may simply have stopped before sending it
    with pytest.raises(ReplayDivergence, match="stopped before it sent experiment E0003") as info:
        ReplayInstruments(LAB_EVENTS).submit([stranger], lambda r: None)
    assert info.value.end_of_record


def test_a_command_sent_with_other_parameters_names_the_recorded_submission():
    changed = protocol("E0001", "A1", 120.0)
    with pytest.raises(ReplayDivergence, match=r"volume_ul: recorded 100\.0, replayed 120\.0") as info:
        ReplayInstruments(LAB_EVENTS).submit([changed], lambda r: None)
    assert info.value.seq == 0 and info.value.kind == "protocol_submitted"


def test_an_experiment_the_recorded_run_never_finished_ends_the_replay_there():
    cut = LAB_EVENTS[:5]  # E0002 measured, E0001 still waiting for its meter
    lab = ReplayInstruments(cut)
    lab.submit([P1, P2], lambda r: None)
    assert list(lab.wait(1)) == ["E0002"]
    with pytest.raises(ReplayDivergence, match="E0001 never finished") as info:
        lab.wait(1)
    assert info.value.end_of_record and info.value.seq == 4


def test_a_recorded_instrument_failure_is_raised_again_after_what_finished_before_it():
    events = [
        *LAB_EVENTS[:6],
        {
            "seq": 6,
            "kind": "instruments_error",
            "payload": {"experiment_ids": ["E0001"], "error": "dispatcher failed: power cut"},
        },
    ]
    lab = ReplayInstruments(events)
    seen = []
    lab.submit([P1, P2], lambda r: seen.append(r.key))
    with pytest.raises(InstrumentError, match="power cut"):
        lab.wait(None)
    assert seen == [f"{RUN}/E0001/0", f"{RUN}/E0002/0", f"{RUN}/E0002/1"]  # what arrived before it


def test_a_wait_that_failed_in_the_record_fails_though_an_experiment_had_finished():
    # The power went while E0002 was being measured; the recorded wait then failed at once.
    events = log(
        ("node", {"name": "experimenter.experiment"}),
        *[(e["kind"], e["payload"]) for e in LAB_EVENTS[:6]],
        ("instruments_error", {"experiment_ids": ["E0001", "E0002"], "error": "power cut"}),
    )
    lab = ReplayInstruments(events)
    seen = []
    lab.submit([P1, P2], lambda r: seen.append(r.key))
    with pytest.raises(InstrumentError, match="power cut"):
        lab.wait(1)
    assert seen == [f"{RUN}/E0001/0", f"{RUN}/E0002/0", f"{RUN}/E0002/1"]


def test_an_experiment_with_a_failed_step_finishes_only_once_its_skipped_steps_report():
    # E0001's dispense fails first, but its skipped measure reports after E0002 has finished.
    events = log(
        ("protocol_submitted", dump(P1)),
        ("protocol_submitted", dump(P2)),
        ("reading", reading("E0001", 0, ok=False)),
        ("observation", {"experiment_id": "E0001"}),
        ("reading", reading("E0002", 0)),
        ("reading", reading("E0002", 1, 7.5)),
        ("observation", {"experiment_id": "E0002"}),
        ("reading", reading("E0001", 1, ok=False)),
    )
    lab = ReplayInstruments(events)
    seen = []
    lab.submit([P1, P2], lambda r: seen.append((r.key, r.ok)))
    assert list(lab.wait(1)) == ["E0002"]
    assert seen[0] == (f"{RUN}/E0001/0", False)  # the failure was passed on first, as recorded
    assert [r.ok for r in lab.wait(1)["E0001"]] == [False, False]


def test_async_wait_returns_as_many_experiments_as_the_recorded_wait_did():
    # The analyst counted 2 observations after the first wait: both experiments had finished.
    events = log(
        *[(e["kind"], e["payload"]) for e in LAB_EVENTS[:2]],
        ("node", {"name": "experimenter.experiment"}),
        *[(e["kind"], e["payload"]) for e in LAB_EVENTS[2:]],
        ("node", {"name": "analyst.analyse"}),
        ("analysis", {"experiments": 2}),
    )
    lab = ReplayInstruments(events)
    lab.submit([P1, P2], lambda r: None)
    assert list(lab.wait(1)) == ["E0001", "E0002"]


def test_safe_state_touches_nothing_and_fails_only_where_the_recorded_one_failed():
    events = log(("safe_state", {"ok": True, "error": None}), ("safe_state", {"ok": False, "error": "stuck"}))
    lab = ReplayInstruments(events)
    lab.safe_state()
    with pytest.raises(InstrumentError, match="stuck"):
        lab.safe_state()
    lab.safe_state()


# -- context ---------------------------------------------------------------------------------------------


def test_context_refuses_to_record_past_what_the_recorded_attempt_did(tmp_path):
    with ReplayContext(tmp_path, seed=1, run_id=RUN, limits={"decision": 1}) as context:
        assert context.run_id == RUN
        context.record("decision", {"iteration": 1, "action": "continue", "reason": "improving"})
        context.record("experiment_id", {"experiment_id": "E0006"})
        with pytest.raises(ReplayDivergence, match="stopped after 1 decision") as info:
            context.record("decision", {"iteration": 2, "action": "stop", "reason": "budget used"})
        assert info.value.end_of_record
    assert (tmp_path / "events.jsonl").read_text().count('"decision"') == 1


def test_simulator_serves_recorded_values_and_failures_and_names_a_different_request():
    events = log(
        ("simulation", {"fidelity": "screen", "composition": {"A": 0.25, "B": 0.75}, "value": 12.5}),
        ("simulation", {"fidelity": "screen", "composition": {"A": 0.5, "B": 0.5}, "value": None,
                        "error": "ValueError: diverged"}),
        ("simulation", {"fidelity": "screen", "composition": {"A": 0.75, "B": 0.25}, "value": 3.0}),
    )
    simulator = ReplaySimulator(events)
    assert isinstance(simulator, SimulatorPort)
    first = simulator.evaluate(None, "screen", {"A": 0.25, "B": 0.75})
    assert (first.value, first.error) == (12.5, None)
    failed = simulator.evaluate(None, "screen", {"A": 0.5, "B": 0.5})
    assert (failed.value, failed.error) == (None, "ValueError: diverged")
    with pytest.raises(ReplayDivergence, match=r"seq 2: payload.composition.A: recorded 0.75, replayed 0.7"):
        simulator.evaluate(None, "screen", {"A": 0.7, "B": 0.3})
    with pytest.raises(ReplayDivergence, match="made no more simulations"):
        simulator.evaluate(None, "screen", {"A": 0.75, "B": 0.25})
