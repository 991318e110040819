"""LLM back ends behind :class:`athanor.ports.LLMPort`, and :func:`make_llm` to pick one.

- ``offline`` (default): no model; a controlled-English request grammar and fixed decision rules.
- ``openai``: any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp, ...).
- ``mock``: scripted replies per task, for tests and fault injection.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from agents.llm.mock import MockLLM
from agents.llm.offline import KNOWN_TASKS, OfflineLLM
from agents.llm.reader import EXAMPLE_REQUEST, read_request
from athanor.errors import LLMError
from athanor.ports import LLMPort

if TYPE_CHECKING:
    from agents.llm.openai_backend import OpenAIBackend

__all__ = [
    "EXAMPLE_REQUEST",
    "KINDS",
    "KNOWN_TASKS",
    "MODEL_BACKENDS",
    "MockLLM",
    "OfflineLLM",
    "OpenAIBackend",
    "make_llm",
    "read_request",
]

#: Back-end kinds :func:`make_llm` knows.
KINDS: tuple[str, ...] = ("offline", "openai", "mock")
#: Back ends whose reading of a request comes from a language model, and is checked against the
#: request's words before anything runs (the offline reader is the check; the mock is scripted).
MODEL_BACKENDS: tuple[str, ...] = ("openai",)

_SETTINGS: dict[str, tuple[str, ...]] = {
    "offline": (),
    "openai": ("model", "base_url", "api_key", "timeout_s", "max_retries"),
    "mock": ("script", "fallback"),
}


def __getattr__(name: str) -> Any:
    # The openai client takes a while to import; load it only when asked for.
    if name == "OpenAIBackend":
        from agents.llm.openai_backend import OpenAIBackend

        return OpenAIBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_llm(kind: str = "offline", **settings: Any) -> LLMPort:
    """Create an LLM back end.

    Args:
        kind: ``offline``, ``openai`` or ``mock`` (case-insensitive).
        **settings: Back-end settings; a setting given as None counts as not given.
            ``openai``: ``model``, ``base_url``, ``api_key``, ``timeout_s``, ``max_retries``; the first
            three default to ``ATHANOR_LLM_MODEL``, ``ATHANOR_LLM_BASE_URL`` and
            ``ATHANOR_LLM_API_KEY`` (then ``OPENAI_API_KEY``). ``mock``: ``script``, ``fallback``.

    Raises:
        athanor.errors.LLMError: Unknown kind or setting, or a setting the back end rejects.
    """
    key = (kind or "").strip().lower()
    if key not in _SETTINGS:
        raise LLMError(f"unknown LLM back end {kind!r}; choose one of {', '.join(KINDS)}")
    given = {k: v for k, v in settings.items() if v is not None}
    unknown = sorted(set(given) - set(_SETTINGS[key]))
    if unknown:
        accepted = ", ".join(_SETTINGS[key]) or "none"
        raise LLMError(f"the {key} back end has no setting(s) {', '.join(unknown)}; it accepts: {accepted}")
    if key == "offline":
        return OfflineLLM()
    if key == "mock":
        return MockLLM(**given)
    from agents.llm.openai_backend import OpenAIBackend

    env = os.environ
    given.setdefault("model", env.get("ATHANOR_LLM_MODEL") or "")
    if env.get("ATHANOR_LLM_BASE_URL"):
        given.setdefault("base_url", env["ATHANOR_LLM_BASE_URL"])
    api_key = env.get("ATHANOR_LLM_API_KEY") or env.get("OPENAI_API_KEY")
    if api_key:
        given.setdefault("api_key", api_key)
    return OpenAIBackend(**given)
