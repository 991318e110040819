"""The offline back end (request parsing, decisions, task dispatch) and the make_llm factory."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from agents.llm import KINDS, MockLLM, OfflineLLM, make_llm
from agents.llm.reader import EXAMPLE_REQUEST
from athanor.errors import LLMError, RequestNotUnderstood, SpecError, format_validation_error
from athanor.models import Decision
from athanor.ports import LLMPort
from athanor.spec import CampaignSpec

SYSTEM = {"role": "system", "content": "You are the PI."}


def ask(task: str, content: str, schema: type) -> object:
    return OfflineLLM().structured(task, [SYSTEM, {"role": "user", "content": content}], schema)


def progress(**overrides: object) -> str:
    data = {
        "iteration": 2,
        "experiments_done": 10,
        "experiments_budget": 30,
        "best_value": 120.0,
        "best_before": 100.0,
        "objective": "conductivity",
        "direction": "maximise",
        "target": None,
        "target_reached": False,
    }
    data.update(overrides)
    return json.dumps(data)


def test_offline_is_an_llm_port_named_offline():
    llm = OfflineLLM()
    assert isinstance(llm, LLMPort)
    assert llm.name == "offline"


def test_parse_request_returns_a_campaign_spec_from_the_last_user_message():
    messages = [
        SYSTEM,
        {"role": "user", "content": "Minimise the band gap of A and B, 5 experiments"},
        {"role": "assistant", "content": "..."},
        {"role": "user", "content": EXAMPLE_REQUEST},
    ]
    spec = OfflineLLM().structured("parse_request", messages, CampaignSpec)
    assert isinstance(spec, CampaignSpec)
    assert spec.component_names == ["P3HT", "D1", "D2"]
    assert spec.request == EXAMPLE_REQUEST
    assert spec.primary_objective.direction == "maximise"


def test_parse_request_refusal_propagates():
    with pytest.raises(RequestNotUnderstood, match="no budget"):
        ask("parse_request", "Maximise the conductivity of A and B", CampaignSpec)


def test_parse_request_invalid_spec_raises_spec_error_naming_fields():
    request = "Maximise the conductivity of A and B, 10 experiments in batches of 20"
    with pytest.raises(SpecError) as info:
        ask("parse_request", request, CampaignSpec)
    assert "budget" in str(info.value) and "batch_size (20)" in str(info.value)

    request = "Maximise the yield of A and B, A at least 0.6, B at least 0.6, 8 runs"
    with pytest.raises(SpecError) as info:
        ask("parse_request", request, CampaignSpec)
    assert "sum_rule: the lower bounds add up to 1.2" in str(info.value)


def spec_file_errors(budget: dict[str, int]) -> str:
    """The field lines a campaign file with ``budget`` is refused with (the rule every path shares)."""
    data = {
        "title": "t",
        "components": [{"name": "A"}, {"name": "B"}],
        "objectives": [{"name": "conductivity", "direction": "maximise"}],
        "budget": budget,
    }
    with pytest.raises(ValidationError) as info:
        CampaignSpec.model_validate(data)
    return format_validation_error(info.value)


@pytest.mark.parametrize(
    ("request_text", "budget"),
    [
        ("Raise the conductivity of A and B, 12 runs in batches of 0", {"experiments": 12, "batch_size": 0}),
        ("Maximise conductivity of A and B, batch size 0, budget 9", {"experiments": 9, "batch_size": 0}),
        ("Maximise the yield of A and B, 0 per batch, 20 experiments", {"experiments": 20, "batch_size": 0}),
        ("Boost the conductivity of A and B, 0 experiments", {"experiments": 0}),
        (
            "Maximise the yield of A and B, 15 runs, initial design of 0 samples",
            {"experiments": 15, "initial_experiments": 0},
        ),
    ],
)
def test_a_stated_zero_is_refused_like_the_same_value_in_a_campaign_file(request_text, budget):
    with pytest.raises(SpecError) as info:
        ask("parse_request", request_text, CampaignSpec)
    expected = spec_file_errors(budget)
    assert expected.startswith("budget.")
    assert str(info.value).endswith(expected)


def test_decide_stops_when_budget_is_spent():
    decision = ask("decide", progress(experiments_done=30), Decision)
    assert decision.action == "stop"
    assert "30 experiments" in decision.reason and "120" in decision.reason


def test_decide_stops_when_target_is_reached():
    decision = ask("decide", progress(target=110.0, target_reached=True), Decision)
    assert decision.action == "stop"
    assert "target" in decision.reason and "110" in decision.reason


def test_decide_continues_and_says_whether_it_improved():
    improved = ask("decide", progress(), Decision)
    assert improved.action == "continue"
    assert "improved" in improved.reason and "from 100 to 120" in improved.reason
    assert "20 of 30 experiments left" in improved.reason

    flat = ask("decide", progress(best_value=100.0), Decision)
    assert flat.action == "continue" and "did not improve" in flat.reason


def test_decide_improvement_follows_the_direction():
    lower = ask("decide", progress(direction="minimise", best_value=0.8, best_before=1.0), Decision)
    assert "improved" in lower.reason and "did not" not in lower.reason
    higher = ask("decide", progress(direction="minimise", best_value=1.0, best_before=1.0), Decision)
    assert "did not improve" in higher.reason


def test_decide_first_iteration_and_no_measurement_yet():
    first = ask("decide", progress(best_before=None), Decision)
    assert first.action == "continue" and "first results" in first.reason
    none = ask("decide", progress(best_value=None, best_before=None), Decision)
    assert none.action == "continue" and "No successful measurement" in none.reason


def test_decide_is_deterministic():
    assert ask("decide", progress(), Decision) == ask("decide", progress(), Decision)


def test_decide_rejects_a_message_that_is_not_progress_json():
    with pytest.raises(LLMError, match="JSON object with keys"):
        ask("decide", "please decide", Decision)
    with pytest.raises(LLMError, match="experiments_budget must be a finite number"):
        ask("decide", progress(experiments_budget="thirty"), Decision)


def test_unknown_task_and_missing_user_message():
    with pytest.raises(LLMError) as info:
        ask("summarise", "text", Decision)
    assert "'summarise'" in str(info.value) and "parse_request, decide" in str(info.value)
    with pytest.raises(LLMError, match="no user message"):
        OfflineLLM().structured("decide", [SYSTEM], Decision)


def test_make_llm_builds_each_kind():
    assert KINDS == ("offline", "openai", "mock")
    assert isinstance(make_llm("offline"), OfflineLLM)
    assert isinstance(make_llm(" Offline "), OfflineLLM)
    mock = make_llm("mock", script={"decide": [{"action": "stop", "reason": "x"}]}, fallback="error")
    assert isinstance(mock, MockLLM) and mock.fallback == "error"
    assert isinstance(make_llm("mock", script=None), MockLLM)


def test_make_llm_refuses_unknown_kind_and_settings():
    with pytest.raises(LLMError) as info:
        make_llm("claude")
    assert "'claude'" in str(info.value) and "offline, openai, mock" in str(info.value)
    with pytest.raises(LLMError, match="no setting"):
        make_llm("offline", model="x")
