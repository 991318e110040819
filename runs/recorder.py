"""Wrappers that record what crosses each port into the run's event log.

Each wrapper takes the inner port and the run context and implements the same protocol from
:mod:`athanor.ports`, so the roles cannot tell it is there. Events:

- LLM: ``llm_request`` {call, task, messages, schema, backend}, then ``llm_reply`` {call, task, reply,
  seconds} or ``llm_error`` {call, task, error, error_type, seconds}. ``call`` pairs a request with
  its answer.
- Knowledge: ``retrieval`` {query, k, chunk_ids, scores}, or ``retrieval_error`` {query, k, error,
  error_type}.
- Instruments: ``protocol_submitted`` (the protocol's dump) per protocol, ``reading`` (the reading's
  dump) per reading as it arrives, ``instruments_error`` {experiment_ids, error, error_type} when a
  run fails, ``safe_state`` {ok, error}.

Errors are recorded and then raised again unchanged.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel

from athanor.models import Protocol as LabProtocol
from athanor.models import Reading
from athanor.ports import InstrumentsPort, KnowledgePort, LLMPort, Passage, RunContextPort

__all__ = ["RecordingInstruments", "RecordingKnowledge", "RecordingLLM"]

T = TypeVar("T", bound=BaseModel)


def _error(exc: BaseException) -> dict[str, str]:
    return {"error": str(exc), "error_type": type(exc).__name__}


class RecordingLLM:
    """An :class:`~athanor.ports.LLMPort` that records each request and its reply or error.

    Args:
        inner: The back end that answers.
        context: The run context whose log receives the events.
    """

    def __init__(self, inner: LLMPort, context: RunContextPort) -> None:
        self.inner = inner
        self.context = context
        self.name = inner.name
        self._calls = itertools.count(1)
        self._lock = threading.Lock()

    def structured(self, task: str, messages: list[dict[str, str]], schema: type[T]) -> T:
        """Ask the inner back end, recording the request, then the reply or the error."""
        with self._lock:
            call = next(self._calls)
        self.context.record(
            "llm_request",
            {
                "call": call,
                "task": task,
                "messages": messages,
                "schema": schema.__name__,
                "backend": self.name,
            },
        )
        started = time.perf_counter()
        try:
            reply = self.inner.structured(task, messages, schema)
        except Exception as exc:
            seconds = round(time.perf_counter() - started, 3)
            self.context.record("llm_error", {"call": call, "task": task, **_error(exc), "seconds": seconds})
            raise
        seconds = round(time.perf_counter() - started, 3)
        self.context.record(
            "llm_reply",
            {"call": call, "task": task, "reply": reply.model_dump(mode="json"), "seconds": seconds},
        )
        return reply


class RecordingKnowledge:
    """A :class:`~athanor.ports.KnowledgePort` that records each retrieval.

    Args:
        inner: The literature store.
        context: The run context whose log receives the events.
    """

    def __init__(self, inner: KnowledgePort, context: RunContextPort) -> None:
        self.inner = inner
        self.context = context

    def search(self, query: str, k: int = 4) -> list[Passage]:
        """Search the inner store and record the query, the chunk ids and their scores."""
        try:
            passages = self.inner.search(query, k)
        except Exception as exc:
            self.context.record("retrieval_error", {"query": query, "k": k, **_error(exc)})
            raise
        self.context.record(
            "retrieval",
            {
                "query": query,
                "k": k,
                "chunk_ids": [p.chunk_id for p in passages],
                "scores": [p.score for p in passages],
            },
        )
        return passages


class RecordingInstruments:
    """An :class:`~athanor.ports.InstrumentsPort` that records protocols, readings and safe states.

    Each reading is recorded before it is passed on, from whichever thread delivers it.

    Args:
        inner: The lab.
        context: The run context whose log receives the events.
    """

    def __init__(self, inner: InstrumentsPort, context: RunContextPort) -> None:
        self.inner = inner
        self.context = context

    def run(
        self, protocols: list[LabProtocol], on_reading: Callable[[Reading], None]
    ) -> dict[str, list[Reading]]:
        """Record each protocol, run them on the inner lab and record each reading as it arrives."""
        self.submit(protocols, on_reading)
        return self.wait(None)

    def submit(self, protocols: list[LabProtocol], on_reading: Callable[[Reading], None]) -> None:
        """Record each protocol and queue it on the inner lab; readings are recorded as they arrive."""
        for protocol in protocols:
            self.context.record("protocol_submitted", protocol.model_dump(mode="json"))

        def recorded(reading: Reading) -> None:
            self.context.record("reading", reading.model_dump(mode="json"))
            on_reading(reading)

        try:
            self.inner.submit(protocols, recorded)
        except Exception as exc:
            ids = [p.experiment_id for p in protocols]
            self.context.record("instruments_error", {"experiment_ids": ids, **_error(exc)})
            raise

    def running(self) -> list[str]:
        """Experiment ids queued on the inner lab and not yet returned."""
        return self.inner.running()

    def wait(self, min_finished: int | None = 1) -> dict[str, list[Reading]]:
        """Wait on the inner lab; a failure is recorded before it propagates."""
        try:
            return self.inner.wait(min_finished)
        except Exception as exc:
            self.context.record("instruments_error", {"experiment_ids": self.inner.running(), **_error(exc)})
            raise

    def safe_state(self) -> None:
        """Put the inner lab in its safe state and record whether that worked."""
        try:
            self.inner.safe_state()
        except Exception as exc:
            self.context.record("safe_state", {"ok": False, **_error(exc)})
            raise
        self.context.record("safe_state", {"ok": True, "error": None})
