"""The four narrow interfaces through which the graph reaches the outside world.

The roles see only these protocols. The recorder wraps each one and writes what crossed it to the
event log; tests swap in mocks; replay swaps in ports that answer from a log.

LLM tasks (the ``task`` argument of :meth:`LLMPort.structured`) and what the last user message holds:

- ``"parse_request"``: the raw request text; answer schema :class:`athanor.spec.CampaignSpec`.
- ``"decide"``: a JSON object with ``iteration``, ``experiments_done``, ``experiments_budget``,
  ``best_value``, ``best_before``, ``objective``, ``direction``, ``target`` and ``target_reached``;
  answer schema :class:`athanor.models.Decision`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from pydantic import BaseModel

from athanor.models import Protocol as LabProtocol
from athanor.models import Reading

if TYPE_CHECKING:
    from athanor.spec import CampaignSpec

__all__ = [
    "InstrumentsPort",
    "KnowledgePort",
    "LLMPort",
    "Passage",
    "RunContextPort",
    "SimulationResult",
    "SimulatorPort",
]

T = TypeVar("T", bound=BaseModel)


@runtime_checkable
class LLMPort(Protocol):
    """A language model that answers with a validated pydantic object."""

    name: str

    def structured(self, task: str, messages: list[dict[str, str]], schema: type[T]) -> T:
        """Answer ``messages`` with an instance of ``schema``.

        Args:
            task: Which task this is (see the module docstring); back ends without a model use it.
            messages: OpenAI-style chat messages, ``[{"role": "system"|"user", "content": str}]``.
            schema: The pydantic model the answer must validate against.

        Raises:
            athanor.errors.LLMError: The back end failed or its answer did not validate.
            athanor.errors.RequestNotUnderstood: (``parse_request``) the request cannot be read.
        """
        ...


class Passage(BaseModel):
    """A retrieved chunk of literature with its citation."""

    chunk_id: str
    text: str
    citation: str
    score: float


@runtime_checkable
class KnowledgePort(Protocol):
    """The literature store."""

    def search(self, query: str, k: int = 4) -> list[Passage]:
        """The ``k`` passages nearest in meaning to ``query``, best first."""
        ...


class SimulationResult(BaseModel):
    """What a simulated (cheap) source gave for one composition.

    Attributes:
        value: The primary objective's value, in its unit; None when the simulator failed.
        error: Why it failed (``"ValueError: ..."``); None when it gave a value.
    """

    value: float | None = None
    error: str | None = None


@runtime_checkable
class SimulatorPort(Protocol):
    """The campaign's simulated sources (``CampaignSpec.fidelities`` with a ``simulator``)."""

    def evaluate(self, spec: CampaignSpec, fidelity: str, composition: dict[str, float]) -> SimulationResult:
        """Evaluate ``composition`` (spec unit) with the simulator of source ``fidelity``.

        The simulator's own failures come back as ``error``; they are not raised.
        """
        ...


@runtime_checkable
class InstrumentsPort(Protocol):
    """The lab, as the experimenter's engine sees it."""

    def run(
        self, protocols: list[LabProtocol], on_reading: Callable[[Reading], None]
    ) -> dict[str, list[Reading]]:
        """Run protocols to the end (``submit`` then ``wait(None)``).

        Returns:
            Experiment id to its readings, in command order. A failed command gives a reading
            with ``ok=False`` and the experiment's remaining commands are skipped.
        """
        ...

    def submit(self, protocols: list[LabProtocol], on_reading: Callable[[Reading], None]) -> None:
        """Queue protocols behind those already running, keeping instruments busy.

        ``on_reading`` is called as each reading arrives. A command may name an instrument kind
        instead of an instrument: whichever instrument of that kind is free first takes it.
        """
        ...

    def running(self) -> list[str]:
        """Experiment ids submitted and not yet returned by ``wait``."""
        ...

    def wait(self, min_finished: int | None = 1) -> dict[str, list[Reading]]:
        """Drive the queue until ``min_finished`` experiments are complete (None: all).

        Returns:
            Experiment id to its readings for each experiment completed since the last call.
        """
        ...

    def safe_state(self) -> None:
        """Put every instrument in its safe state (abort, or end of run)."""
        ...


@runtime_checkable
class RunContextPort(Protocol):
    """Clock, random streams, ids and the event log of one run."""

    run_id: str

    def now(self) -> float:
        """Seconds since the run started."""
        ...

    def seed_for(self, stream: str) -> int:
        """A seed derived from the run seed for a named random stream."""
        ...

    def rng(self, stream: str) -> np.random.Generator:
        """A generator for a named random stream, reproducible from the run seed."""
        ...

    def next_experiment_id(self) -> str:
        """A new run-unique experiment id, e.g. ``E0007``."""
        ...

    def continue_ids_after(self, number: int) -> None:
        """Hand out ``E<number + 1>`` next (a resume continues after the ids its checkpoint knows)."""
        ...

    def record(self, kind: str, payload: dict[str, Any]) -> None:
        """Append an event to the run's log."""
        ...
