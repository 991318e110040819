"""The OpenAI-compatible LLM back end: OpenAI itself, vLLM, Ollama, llama.cpp and the like.

Answers are asked for as structured output. A schema that fits OpenAI's strict JSON-schema mode
(every object closed, every field required, no free-form maps) is sent as a strict ``json_schema``
response format and read from ``message.parsed``. A schema that does not fit, such as
:class:`athanor.spec.CampaignSpec` with its ``coefficients`` map, is sent as
``{"type": "json_object"}`` with the JSON schema in the system message, and the answer is validated
here. A server that rejects the strict format with HTTP 400 is asked again the second way.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from typing import Any, TypeVar
from urllib.parse import urlsplit

import openai
from pydantic import BaseModel, ValidationError

from agents.llm.offline import answer_error, validate_answer
from athanor.errors import LLMError

__all__ = ["OpenAIBackend", "fits_strict_mode"]

T = TypeVar("T", bound=BaseModel)

_DEFAULT_URL = "https://api.openai.com/v1"
#: Sent as the key to a local server that needs none (the client refuses to run without one).
_PLACEHOLDER_KEY = "no-key-needed"
# Keywords OpenAI's strict mode rejects.
_UNSUPPORTED = frozenset(
    {
        "minProperties",
        "maxProperties",
        "patternProperties",
        "propertyNames",
        "unevaluatedProperties",
        "unevaluatedItems",
        "contains",
        "minContains",
        "maxContains",
        "uniqueItems",
        "allOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
        "dependentRequired",
        "dependentSchemas",
    }
)
_VALUE_KEYS = frozenset({"default", "enum", "const", "examples", "description", "title"})
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)


def _closed(node: Any) -> bool:
    if isinstance(node, list):
        return all(_closed(item) for item in node)
    if not isinstance(node, dict):
        return True
    if _UNSUPPORTED & node.keys():
        return False
    if node.get("type") == "object":
        properties = node.get("properties", {})
        if node.get("additionalProperties") is not False or set(node.get("required", [])) != set(properties):
            return False
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions"):
            if not all(_closed(v) for v in value.values()):
                return False
        elif key not in _VALUE_KEYS and not _closed(value):
            return False
    return True


def fits_strict_mode(schema: type[BaseModel]) -> bool:
    """Whether OpenAI's strict structured-output mode can express ``schema``.

    The check runs on the schema the ``openai`` client would send (all fields required, objects
    closed); free-form maps such as ``dict[str, float]`` and keywords like ``minProperties`` fail it.
    """
    try:
        from openai.lib._pydantic import to_strict_json_schema

        return _closed(to_strict_json_schema(schema))
    except Exception:  # an unexpected client version or schema: take the portable route
        return False


def _is_local(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith((".local", ".localhost", ".internal")):
        return True
    if host and "." not in host and ":" not in host:  # a bare machine name on the local network
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def _display_url(url: str) -> str:
    """The URL without any user:password part."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


class OpenAIBackend:
    """An LLM behind any OpenAI-compatible chat-completions endpoint.

    Attributes:
        name: ``"openai"``.
        model: Model name sent with each request.
        base_url: Endpoint URL as shown in messages (without credentials).
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60,
        max_retries: int = 2,
    ) -> None:
        """Create a client; nothing is sent until the first call.

        Args:
            model: Model name, e.g. ``gpt-4o-mini`` or ``qwen2.5:7b-instruct``.
            base_url: Endpoint, e.g. ``http://localhost:11434/v1``; None means OpenAI
                (or ``OPENAI_BASE_URL``).
            api_key: Key for the endpoint; defaults to ``ATHANOR_LLM_API_KEY``, then
                ``OPENAI_API_KEY``. A local endpoint needs none.
            timeout_s: Seconds to wait for one answer.
            max_retries: Retries of failed requests (connection errors, 408/409/429/5xx).

        Raises:
            athanor.errors.LLMError: No model, a bad timeout or retry count, or no key for a
                remote endpoint.
        """
        if not model or not model.strip():
            raise LLMError("the openai back end needs a model name: pass model= or set ATHANOR_LLM_MODEL")
        if not timeout_s > 0:
            raise LLMError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        if max_retries < 0:
            raise LLMError(f"max_retries must be 0 or more, got {max_retries!r}")
        url = base_url or os.environ.get("OPENAI_BASE_URL") or _DEFAULT_URL
        key = api_key or os.environ.get("ATHANOR_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if not key:
            if not _is_local(url):
                raise LLMError(
                    f"no API key for {_display_url(url)}: set ATHANOR_LLM_API_KEY or OPENAI_API_KEY,"
                    " or pass api_key="
                )
            key = _PLACEHOLDER_KEY
        self.model = model.strip()
        self.base_url = _display_url(url)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self._key = key
        self._client = openai.OpenAI(
            base_url=url, api_key=key, timeout=self.timeout_s, max_retries=self.max_retries
        )
        self._strict: dict[type[BaseModel], bool] = {}

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r})"

    @property
    def _source(self) -> str:
        return f"model {self.model!r} at {self.base_url}"

    def structured(self, task: str, messages: list[dict[str, str]], schema: type[T]) -> T:
        """Ask the model and return its answer as a ``schema`` instance.

        Args:
            task: The task name (the model reads the messages, not this).
            messages: Chat messages, sent as given (plus the schema for non-strict schemas).
            schema: The answer's model.

        Raises:
            athanor.errors.SpecError: A campaign spec that breaks the spec's rules; lists each field.
            athanor.errors.LLMError: The endpoint failed, timed out, refused, or answered something
                that is not a valid ``schema``.
        """
        if schema not in self._strict:
            self._strict[schema] = fits_strict_mode(schema)
        try:
            if self._strict[schema]:
                try:
                    return self._ask(messages, schema, strict=True)
                except openai.BadRequestError as error:
                    if not _about_response_format(error):
                        raise
                    self._strict[schema] = False  # this server has no strict mode: use JSON mode from now on
            return self._ask(messages, schema, strict=False)
        except openai.OpenAIError as error:
            raise self._failure(error, task) from None
        except ValidationError as error:
            raise answer_error(schema, error, self._source) from None

    def _ask(self, messages: list[dict[str, str]], schema: type[T], strict: bool) -> T:
        request: dict[str, Any] = {"model": self.model, "messages": messages, "response_format": schema}
        if not strict:
            request.update(messages=_with_schema(messages, schema), response_format={"type": "json_object"})
        completion = self._client.chat.completions.parse(**request)
        choices = getattr(completion, "choices", None)
        if not choices:
            raise LLMError(f"{self._source} returned no answer (no choices in the response)")
        message = choices[0].message
        if getattr(message, "refusal", None):
            raise LLMError(f"{self._source} refused to answer: {message.refusal}")
        parsed = getattr(message, "parsed", None)
        if isinstance(parsed, schema):
            return parsed
        content = message.content
        if not content or not content.strip():
            raise LLMError(f"{self._source} gave an empty answer; check that the model supports JSON output")
        fenced = _FENCE.match(content)
        return validate_answer(schema, fenced.group(1) if fenced else content, self._source)

    def _failure(self, error: openai.OpenAIError, task: str) -> LLMError:
        where = f"{self._source} (task {task!r})"
        if isinstance(error, openai.APITimeoutError):
            text = f"{where} did not answer within {self.timeout_s:g} s; raise timeout_s or check the server"
        elif isinstance(error, openai.APIConnectionError):
            cause = error.__cause__ or error
            text = f"could not connect to {where}: {cause}; is the server running and the URL right?"
        elif isinstance(error, openai.RateLimitError):
            text = f"{where} is rate-limited (HTTP 429): {_detail(error)}; wait, or raise max_retries"
        elif isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
            text = (
                f"{where} rejected the API key (HTTP {error.status_code}): {_detail(error)};"
                " check ATHANOR_LLM_API_KEY or OPENAI_API_KEY"
            )
        elif isinstance(error, openai.NotFoundError):
            text = f"{where} was not found (HTTP 404): {_detail(error)}; check the model name and base URL"
        elif isinstance(error, openai.APIStatusError):
            text = f"{where} failed with HTTP {error.status_code}: {_detail(error)}"
        elif isinstance(error, openai.LengthFinishReasonError):
            text = f"{where} stopped before finishing its answer (length limit); allow more output tokens"
        elif isinstance(error, openai.ContentFilterFinishReasonError):
            text = f"{where} refused to answer (content filter)"
        else:
            text = f"{where} failed: {error}"
        return LLMError(text.replace(self._key, "***") if self._key else text)


def _detail(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return str(error.message)


def _about_response_format(error: openai.BadRequestError) -> bool:
    text = f"{error.message} {error.body}".lower()
    return any(word in text for word in ("response_format", "json_schema", "schema", "strict"))


def _with_schema(messages: list[dict[str, str]], schema: type[BaseModel]) -> list[dict[str, str]]:
    """The messages with an instruction to answer in JSON that fits ``schema``."""
    instruction = (
        "Answer with one JSON object and nothing else (no prose, no code fences). It must validate"
        f" against this JSON schema:\n{json.dumps(schema.model_json_schema(), separators=(',', ':'))}"
    )
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system":
        out[0]["content"] = f"{out[0].get('content', '')}\n\n{instruction}"
    else:
        out.insert(0, {"role": "system", "content": instruction})
    return out
