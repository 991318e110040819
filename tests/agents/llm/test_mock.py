"""The mock back end: scripted replies, fault injection, fallback and call recording."""

from __future__ import annotations

import json

import pytest

from agents.llm import MockLLM
from agents.llm.reader import EXAMPLE_REQUEST
from athanor.errors import LLMError, SpecError
from athanor.models import Decision
from athanor.ports import LLMPort
from athanor.spec import CampaignSpec

SPEC = {
    "title": "scripted",
    "components": [{"name": "A"}, {"name": "B"}],
    "objectives": [{"name": "yield"}],
    "budget": {"experiments": 4},
}


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_mock_is_an_llm_port_named_mock():
    assert isinstance(MockLLM(), LLMPort)
    assert MockLLM().name == "mock"


def test_scripted_replies_come_in_order_in_every_form():
    llm = MockLLM(
        script={
            "decide": [
                {"action": "continue", "reason": "dict"},
                json.dumps({"action": "continue", "reason": "json"}),
                Decision(action="stop", reason="model"),
            ]
        },
        fallback="error",
    )
    reasons = [llm.structured("decide", user("{}"), Decision).reason for _ in range(3)]
    assert reasons == ["dict", "json", "model"]
    assert llm.remaining("decide") == 0


def test_scripted_spec_is_validated_into_the_schema():
    llm = MockLLM(script={"parse_request": [SPEC]})
    spec = llm.structured("parse_request", user("anything"), CampaignSpec)
    assert isinstance(spec, CampaignSpec)
    assert spec.component_names == ["A", "B"] and spec.budget.experiments == 4


def test_scripted_exception_is_raised_then_the_script_goes_on():
    llm = MockLLM(script={"decide": [LLMError("timeout"), {"action": "stop", "reason": "after fault"}]})
    with pytest.raises(LLMError, match="timeout"):
        llm.structured("decide", user("{}"), Decision)
    assert llm.structured("decide", user("{}"), Decision).reason == "after fault"


def test_scripted_reply_that_does_not_fit_raises():
    script = {"decide": [{"action": "pause", "reason": "?"}], "parse_request": [{**SPEC, "budget": {}}]}
    llm = MockLLM(script=script)
    with pytest.raises(LLMError, match="does not fit Decision"):
        llm.structured("decide", user("{}"), Decision)
    with pytest.raises(SpecError, match=r"budget\.experiments"):
        llm.structured("parse_request", user("x"), CampaignSpec)


def test_fallback_offline_answers_unscripted_tasks():
    llm = MockLLM(script={"decide": [{"action": "stop", "reason": "scripted"}]})
    spec = llm.structured("parse_request", user(EXAMPLE_REQUEST), CampaignSpec)
    assert spec.component_names == ["P3HT", "D1", "D2"]
    assert llm.structured("decide", user("{}"), Decision).reason == "scripted"
    progress = {"experiments_done": 30, "experiments_budget": 30, "best_value": 1.0, "objective": "yield"}
    assert llm.structured("decide", user(json.dumps(progress)), Decision).action == "stop"


def test_fallback_error_when_the_script_runs_out():
    llm = MockLLM(script={"decide": [{"action": "stop", "reason": "once"}]}, fallback="error")
    llm.structured("decide", user("{}"), Decision)
    with pytest.raises(LLMError, match="no reply left for task 'decide'"):
        llm.structured("decide", user("{}"), Decision)
    with pytest.raises(LLMError, match="no reply left for task 'parse_request'"):
        llm.structured("parse_request", user(EXAMPLE_REQUEST), CampaignSpec)


def test_calls_are_recorded_as_copies():
    llm = MockLLM(script={"decide": [{"action": "stop", "reason": "x"}]})
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "{}"}]
    llm.structured("decide", messages, Decision)
    messages[1]["content"] = "changed later"
    llm.structured("parse_request", user(EXAMPLE_REQUEST), CampaignSpec)
    assert [task for task, _ in llm.calls] == ["decide", "parse_request"]
    assert llm.calls[0][1] == [{"role": "system", "content": "s"}, {"role": "user", "content": "{}"}]


def test_bad_script_items_and_fallback_are_refused():
    with pytest.raises(LLMError, match=r"script\['decide'\]\[1\] is a int"):
        MockLLM(script={"decide": [{"action": "stop", "reason": "x"}, 42]})
    with pytest.raises(LLMError, match="fallback"):
        MockLLM(fallback="silence")  # type: ignore[arg-type]
