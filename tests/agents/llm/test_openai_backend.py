"""The OpenAI-compatible back end against a local fake server: good answers and every kind of fault."""

from __future__ import annotations

import json
import socket
import time

import pytest
from support import fake_openai_server as fake

from agents.llm import make_llm
from agents.llm.openai_backend import OpenAIBackend, fits_strict_mode
from athanor.errors import LLMError, SpecError
from athanor.models import Decision
from athanor.ports import LLMPort
from athanor.spec import CampaignSpec

KEY = "sk-test-secret-123"
MESSAGES = [
    {"role": "system", "content": "You are the PI."},
    {"role": "user", "content": "progress"},
]
SPEC = {
    "title": "t",
    "components": [{"name": "A", "lower": 0.0, "upper": 1.0}, {"name": "B", "lower": 0.0, "upper": 1.0}],
    "objectives": [{"name": "conductivity", "direction": "maximise", "unit": "S/cm"}],
    "budget": {"experiments": 10, "batch_size": 2},
}


@pytest.fixture
def server():
    with fake.FakeOpenAIServer() as srv:
        yield srv


ENV_SETTINGS = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ATHANOR_LLM_API_KEY",
    "ATHANOR_LLM_MODEL",
    "ATHANOR_LLM_BASE_URL",
)


@pytest.fixture(autouse=True)
def no_env_settings(monkeypatch):
    for name in ENV_SETTINGS:
        monkeypatch.delenv(name, raising=False)


def backend(server, **overrides) -> OpenAIBackend:
    settings = {"model": "fake-model", "base_url": server.base_url, "api_key": KEY, "timeout_s": 5}
    settings["max_retries"] = 0
    settings.update(overrides)
    return OpenAIBackend(**settings)


def llm_error(server, reply, schema=Decision, **overrides) -> str:
    server.script(reply)
    with pytest.raises(LLMError) as info:
        backend(server, **overrides).structured("decide", MESSAGES, schema)
    message = str(info.value)
    assert KEY not in message
    return message


def test_strict_schema_check():
    assert fits_strict_mode(Decision)
    assert not fits_strict_mode(CampaignSpec)  # LinearConstraint.coefficients is a free-form map


def test_decision_is_asked_for_as_strict_json_schema(server):
    server.script(fake.answer({"action": "stop", "reason": "target reached"}))
    llm = backend(server)
    assert isinstance(llm, LLMPort) and llm.name == "openai"
    decision = llm.structured("decide", MESSAGES, Decision)
    assert decision == Decision(action="stop", reason="target reached")

    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    body = request["body"]
    assert body["model"] == "fake-model"
    assert body["messages"] == MESSAGES
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == "Decision"
    assert body["response_format"]["json_schema"]["strict"] is True


def test_campaign_spec_is_asked_for_in_json_mode_with_the_schema(server):
    server.script(fake.answer(SPEC))
    spec = backend(server).structured("parse_request", MESSAGES, CampaignSpec)
    assert isinstance(spec, CampaignSpec)
    assert spec.component_names == ["A", "B"] and spec.budget.batch_size == 2

    body = server.requests[0]["body"]
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system["role"] == "system" and system["content"].startswith("You are the PI.")
    assert "JSON schema" in system["content"] and '"LinearConstraint"' in system["content"]
    assert user == MESSAGES[1]


def test_answer_in_a_code_fence_is_read(server):
    server.script(fake.answer("```json\n" + json.dumps(SPEC) + "\n```"))
    spec = backend(server).structured("parse_request", MESSAGES, CampaignSpec)
    assert spec.budget.experiments == 10


def test_spec_that_breaks_the_rules_raises_spec_error_naming_fields(server):
    server.script(fake.answer({**SPEC, "budget": {"experiments": 2, "batch_size": 5}}))
    with pytest.raises(SpecError) as info:
        backend(server).structured("parse_request", MESSAGES, CampaignSpec)
    assert "budget: batch_size (5) is larger than the budget" in str(info.value)
    assert "fake-model" in str(info.value)


def test_refusal(server):
    message = llm_error(server, fake.refusal("I cannot help with that."))
    assert "refused" in message and "I cannot help with that." in message
    assert "'fake-model'" in message and server.base_url in message


def test_invalid_json_in_strict_and_json_modes(server):
    assert "not valid JSON" in llm_error(server, fake.answer("{not json"))
    assert "not valid JSON" in llm_error(server, fake.answer("sure! here it is"), schema=CampaignSpec)


def test_answer_that_does_not_fit_the_schema(server):
    message = llm_error(server, fake.answer({"action": "pause", "reason": "?"}))
    assert "does not fit Decision" in message and "action" in message


def test_empty_answer(server):
    assert "empty answer" in llm_error(server, fake.answer(""), schema=CampaignSpec)


def test_cut_off_answer(server):
    assert "length limit" in llm_error(server, fake.answer('{"action": "st', finish_reason="length"))


def test_http_500_is_reported_once_without_retry(server):
    message = llm_error(server, fake.http_error(500, "the GPU caught fire"))
    assert "HTTP 500" in message and "the GPU caught fire" in message
    assert "'fake-model'" in message and server.base_url in message
    assert len(server.requests) == 1


def test_http_429_rate_limit(server):
    message = llm_error(server, fake.http_error(429, "slow down"))
    assert "rate-limited (HTTP 429)" in message and "slow down" in message


def test_slow_reply_times_out(server):
    start = time.monotonic()
    late = fake.Reply(body=fake.completion('{"action": "stop", "reason": "late"}'), delay_s=3)
    message = llm_error(server, late, timeout_s=0.3)
    assert time.monotonic() - start < 2.5
    assert "did not answer within 0.3 s" in message


def test_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    llm = OpenAIBackend("fake-model", f"http://127.0.0.1:{port}/v1", KEY, timeout_s=2, max_retries=0)
    with pytest.raises(LLMError) as info:
        llm.structured("decide", MESSAGES, Decision)
    assert "could not connect" in str(info.value) and f"127.0.0.1:{port}" in str(info.value)


def test_api_key_never_appears_in_errors(server):
    message = llm_error(server, fake.http_error(401, f"Incorrect API key provided: {KEY}"))
    assert "rejected the API key (HTTP 401)" in message
    assert "***" in message  # the echoed key was masked


def test_server_without_strict_mode_is_asked_again_in_json_mode(server):
    server.script(
        fake.http_error(400, "response_format type json_schema is not supported"),
        fake.answer({"action": "continue", "reason": "json mode"}),
        fake.answer({"action": "stop", "reason": "json mode again"}),
    )
    llm = backend(server)
    assert llm.structured("decide", MESSAGES, Decision).reason == "json mode"
    assert llm.structured("decide", MESSAGES, Decision).reason == "json mode again"
    formats = [r["body"]["response_format"]["type"] for r in server.requests]
    assert formats == ["json_schema", "json_object", "json_object"]


def test_other_bad_requests_are_not_retried(server):
    message = llm_error(server, fake.http_error(400, "messages must not be empty"))
    assert "HTTP 400" in message and len(server.requests) == 1


def test_local_server_needs_no_key(server):
    server.script(fake.answer({"action": "stop", "reason": "ok"}))
    llm = OpenAIBackend("fake-model", server.base_url, None, timeout_s=5, max_retries=0)
    assert llm.structured("decide", MESSAGES, Decision).action == "stop"
    assert server.requests[0]["headers"]["authorization"].startswith("Bearer ")


def test_remote_server_without_key_is_refused_up_front():
    with pytest.raises(LLMError) as info:
        OpenAIBackend("gpt-4o-mini", "https://llm.example.com/v1", None)
    assert "ATHANOR_LLM_API_KEY" in str(info.value) and "OPENAI_API_KEY" in str(info.value)


def test_credentials_in_the_url_are_not_shown(server):
    url = server.base_url.replace("http://", "http://user:hunter2@")
    llm = OpenAIBackend("fake-model", url, KEY, timeout_s=5, max_retries=0)
    assert "hunter2" not in llm.base_url and "hunter2" not in repr(llm)


def test_make_llm_reads_settings_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("ATHANOR_LLM_MODEL", "env-model")
    monkeypatch.setenv("ATHANOR_LLM_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server.script(fake.answer({"action": "stop", "reason": "env"}))
    llm = make_llm("openai", model=None, base_url=None, api_key=None, max_retries=0)
    assert llm.structured("decide", MESSAGES, Decision).reason == "env"
    request = server.requests[0]
    assert request["body"]["model"] == "env-model"
    assert request["headers"]["authorization"] == f"Bearer {KEY}"


def test_make_llm_openai_without_a_model():
    with pytest.raises(LLMError, match="ATHANOR_LLM_MODEL"):
        make_llm("openai", base_url="http://127.0.0.1:9/v1")
