"""The mock LLM back end: scripted replies per task, for tests and fault injection."""

from __future__ import annotations

import copy
from collections import deque
from typing import Literal, TypeVar

from pydantic import BaseModel

from agents.llm.offline import OfflineLLM, validate_answer
from athanor.errors import LLMError

__all__ = ["MockLLM"]

T = TypeVar("T", bound=BaseModel)


class MockLLM:
    """Answers each task from a script, in order; then falls back to the offline back end or fails.

    Each script item is one reply: a dict or a JSON string (validated into the requested schema), a
    pydantic object, or an exception instance, which is raised (e.g. ``LLMError("timeout")``).

    Attributes:
        name: ``"mock"``.
        calls: ``(task, messages)`` for every call, in order; the messages are copies.
    """

    name = "mock"

    def __init__(
        self,
        script: dict[str, list[object]] | None = None,
        fallback: Literal["offline", "error"] = "offline",
    ) -> None:
        """Create a mock.

        Args:
            script: Task name to its replies, in the order they are given.
            fallback: What to do once a task's replies run out: ``"offline"`` answers with the
                offline back end, ``"error"`` raises ``LLMError``.

        Raises:
            athanor.errors.LLMError: Unknown fallback, or a script item of an unsupported type.
        """
        if fallback not in ("offline", "error"):
            raise LLMError(f"mock fallback must be 'offline' or 'error', got {fallback!r}")
        self.fallback = fallback
        self.calls: list[tuple[str, list[dict[str, str]]]] = []
        self._script: dict[str, deque[object]] = {}
        self._used: dict[str, int] = {}
        for task, replies in (script or {}).items():
            for i, reply in enumerate(replies):
                if not isinstance(reply, dict | str | bytes | BaseModel | BaseException):
                    raise LLMError(
                        f"mock script[{task!r}][{i}] is a {type(reply).__name__}; use a dict, a JSON"
                        " string, a pydantic object or an exception instance"
                    )
            self._script[task] = deque(replies)
        self._offline = OfflineLLM()

    def remaining(self, task: str) -> int:
        """How many scripted replies are left for ``task``."""
        return len(self._script.get(task, ()))

    def structured(self, task: str, messages: list[dict[str, str]], schema: type[T]) -> T:
        """Give the next scripted reply for ``task`` as a ``schema`` instance.

        Raises:
            BaseException: The scripted exception, when the next reply is one.
            athanor.errors.SpecError: A scripted campaign spec breaks the spec's rules.
            athanor.errors.LLMError: A scripted reply does not fit ``schema``, or the script ran out
                with ``fallback="error"``.
        """
        self.calls.append((task, copy.deepcopy(messages)))
        queue = self._script.get(task)
        if queue:
            reply = queue.popleft()
            self._used[task] = self._used.get(task, 0) + 1
            if isinstance(reply, BaseException):
                raise reply
            return validate_answer(schema, reply, f"mock script[{task!r}][{self._used[task] - 1}]")
        if self.fallback == "error":
            given = self._used.get(task, 0)
            raise LLMError(
                f"the mock has no reply left for task {task!r} ({given} scripted replies used); add more to"
                " its script or use fallback='offline'"
            )
        return self._offline.structured(task, messages, schema)
