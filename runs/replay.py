"""Ports that answer from a recorded event log, so that a run's decisions can be re-made and audited.

Each port implements its protocol from :mod:`athanor.ports` and serves what the recorder wrote at
that port (see :mod:`runs.recorder`), checking on the way that the replayed run asks exactly what
the recorded one asked. Anything else raises :class:`ReplayDivergence` naming the recorded event:

- :class:`ReplayLLM` answers each task with its next recorded reply (or recorded error).
- :class:`ReplayKnowledge` serves the recorded retrievals (chunk ids and scores; no text).
- :class:`ReplayInstruments` serves each command's recorded reading by idempotency key and finishes
  experiments in the order the recorded run finished them. It never reaches an instrument.
- :class:`ReplayContext` is a run context that can refuse to go past where a recorded attempt stopped.

A log holds one attempt per start or resume (:func:`runs.replay_audit.split_attempts`); each port is
given the events of one attempt.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel, ValidationError

from athanor.errors import AthanorError, InstrumentError, LLMError
from athanor.models import Protocol as LabProtocol
from athanor.models import Reading
from athanor.ports import Passage, SimulationResult
from runs.context import RunContext
from runs.events import node_name
from runs.replay_audit import payload_diff, shorten

__all__ = [
    "ReplayContext",
    "ReplayDivergence",
    "ReplayInstruments",
    "ReplayKnowledge",
    "ReplayLLM",
    "ReplaySimulator",
]

T = TypeVar("T", bound=BaseModel)

_EXPERIMENTER_NODE = "experimenter"


class ReplayDivergence(AthanorError):
    """The replayed run asked a port for something the recorded run did not.

    Attributes:
        seq: ``seq`` of the recorded event the request differs from (None when there is none).
        kind: Kind of that event, or of what was asked (``llm_request``, ``protocol_submitted``, ...).
        end_of_record: True when the replay asked for more than the record holds: for a run that
            stopped part-way that is where the replay ends, for a finished one it is a divergence.
    """

    def __init__(self, message: str, *, seq: int | None, kind: str, end_of_record: bool = False) -> None:
        super().__init__(message)
        self.seq = seq
        self.kind = kind
        self.end_of_record = end_of_record


def _last_seq(events: Sequence[dict[str, Any]]) -> int | None:
    return events[-1]["seq"] if events else None


@dataclass
class _Exchange:
    request: dict[str, Any]
    outcome: dict[str, Any] | None = None


class ReplayLLM:
    """An :class:`~athanor.ports.LLMPort` that gives the recorded replies, task by task.

    Each ``structured(task, ...)`` call takes the next recorded exchange of that task, checks that
    the messages equal the recorded ``llm_request``'s, and returns the recorded ``llm_reply``
    validated into the schema, or raises the recorded ``llm_error`` as :class:`LLMError`.

    Args:
        events: The events of one attempt (other kinds are ignored).
        name: The back-end name the recorder writes.
    """

    def __init__(self, events: Sequence[dict[str, Any]], name: str = "replay") -> None:
        self.name = name
        self._end = _last_seq(events)
        self._queues: dict[str, deque[_Exchange]] = {}
        self._recorded: Counter[str] = Counter()
        self._asked: Counter[str] = Counter()
        waiting: dict[Any, _Exchange] = {}
        for event in events:
            payload = event["payload"]
            pair = (payload.get("task"), payload.get("call"))
            if event["kind"] == "llm_request":
                exchange = _Exchange(event)
                waiting[pair] = exchange
                self._queues.setdefault(str(payload.get("task")), deque()).append(exchange)
                self._recorded[str(payload.get("task"))] += 1
            elif event["kind"] in ("llm_reply", "llm_error") and pair in waiting:
                waiting.pop(pair).outcome = event
        self._lock = threading.Lock()

    def structured(self, task: str, messages: list[dict[str, str]], schema: type[T]) -> T:
        """The recorded answer to the next ``task`` request.

        Raises:
            ReplayDivergence: The messages differ from the recorded request's, the record has no
                more ``task`` exchanges, or the recorded reply does not fit ``schema``.
            athanor.errors.LLMError: The recorded call failed; the message is the recorded one.
        """
        with self._lock:
            self._asked[task] += 1
            number = self._asked[task]
            queue = self._queues.get(task)
            exchange = queue.popleft() if queue else None
        if exchange is None:
            raise ReplayDivergence(
                f"the replayed run asked the LLM for {task} answer #{number}; the recorded run got"
                f" only {self._recorded[task]}",
                seq=self._end,
                kind="llm_request",
                end_of_record=True,
            )
        request = exchange.request
        recorded = request["payload"].get("messages")
        if recorded != messages:
            diff = "; ".join(payload_diff(recorded, messages, "messages", limit=2))
            raise ReplayDivergence(
                f"the LLM request for {task} (#{number}) differs from the recorded one at seq"
                f" {request['seq']}: {diff}",
                seq=request["seq"],
                kind="llm_request",
            )
        outcome = exchange.outcome
        if outcome is None:
            raise ReplayDivergence(
                f"the recorded run stopped while waiting for the LLM's {task} answer (seq {request['seq']})",
                seq=request["seq"],
                kind="llm_request",
                end_of_record=True,
            )
        if outcome["kind"] == "llm_error":
            raise LLMError(str(outcome["payload"].get("error", "")))
        try:
            return schema.model_validate(outcome["payload"].get("reply"))
        except ValidationError as error:
            raise ReplayDivergence(
                f"the recorded {task} reply at seq {outcome['seq']} is not a valid {schema.__name__}"
                f" any more: {shorten(str(error))}",
                seq=outcome["seq"],
                kind="llm_reply",
            ) from None


class ReplayKnowledge:
    """A :class:`~athanor.ports.KnowledgePort` that serves the recorded retrievals, in order.

    Passages carry the recorded chunk ids and scores, and the citation the PI recorded for each
    chunk in the ``grounding`` event that followed; their text is empty (the log holds none).

    Args:
        events: The events of one attempt (other kinds are ignored).
    """

    def __init__(self, events: Sequence[dict[str, Any]]) -> None:
        self._end = _last_seq(events)
        self._queue: deque[dict[str, Any]] = deque(
            e for e in events if e["kind"] in ("retrieval", "retrieval_error")
        )
        self._citations: dict[str, dict[str, str]] = {}
        for event in events:
            if event["kind"] == "grounding":
                cited = {p["chunk_id"]: p.get("citation", "") for p in event["payload"].get("passages", [])}
                self._citations.setdefault(str(event["payload"].get("query")), {}).update(cited)
        self._lock = threading.Lock()

    def search(self, query: str, k: int = 4) -> list[Passage]:
        """The passages the recorded run got for this query.

        Raises:
            ReplayDivergence: The query or ``k`` differs from the recorded one, or the record holds
                no more retrievals.
            athanor.errors.AthanorError: The recorded retrieval failed; the message is the recorded one.
        """
        with self._lock:
            event = self._queue.popleft() if self._queue else None
        if event is None:
            raise ReplayDivergence(
                f"the replayed run searched the literature for {query!r}; the recorded run made no"
                " more searches",
                seq=self._end,
                kind="retrieval",
                end_of_record=True,
            )
        payload = event["payload"]
        if payload.get("query") != query or payload.get("k") != k:
            raise ReplayDivergence(
                f"the literature search differs from the recorded one at seq {event['seq']}: asked"
                f" {query!r} (k={k}), recorded {payload.get('query')!r} (k={payload.get('k')})",
                seq=event["seq"],
                kind=event["kind"],
            )
        if event["kind"] == "retrieval_error":
            raise AthanorError(str(payload.get("error", "")))
        citations = self._citations.get(query, {})
        return [
            Passage(chunk_id=chunk_id, text="", citation=citations.get(chunk_id, ""), score=float(score))
            for chunk_id, score in zip(payload.get("chunk_ids", []), payload.get("scores", []), strict=False)
        ]


class ReplaySimulator:
    """A :class:`~athanor.ports.SimulatorPort` that serves the recorded simulations, in order.

    No simulator is imported or called: a simulator that changed since (or is slow, or gone) does
    not change the replay; a different request does, and is named.

    Args:
        events: The events of one attempt (other kinds are ignored).
    """

    def __init__(self, events: Sequence[dict[str, Any]]) -> None:
        self._end = _last_seq(events)
        self._queue: deque[dict[str, Any]] = deque(e for e in events if e["kind"] == "simulation")
        self._lock = threading.Lock()

    def evaluate(self, spec: Any, fidelity: str, composition: dict[str, float]) -> SimulationResult:
        """The recorded value (or failure) of this simulation.

        Raises:
            ReplayDivergence: The source or the composition differs from the recorded one, or the
                record holds no more simulations.
        """
        with self._lock:
            event = self._queue.popleft() if self._queue else None
        if event is None:
            raise ReplayDivergence(
                f"the replayed run simulated {composition} with {fidelity!r}; the recorded run made no"
                " more simulations",
                seq=self._end,
                kind="simulation",
                end_of_record=True,
            )
        payload = event["payload"]
        asked = {"fidelity": fidelity, "composition": dict(composition)}
        recorded = {"fidelity": payload.get("fidelity"), "composition": payload.get("composition")}
        difference = "; ".join(payload_diff(recorded, asked))
        if difference:
            raise ReplayDivergence(
                f"the simulation differs from the recorded one at seq {event['seq']}: {difference}",
                seq=event["seq"],
                kind="simulation",
            )
        return SimulationResult(value=payload.get("value"), error=payload.get("error"))


@dataclass
class _RecordedWait:
    """One ``wait`` of the recorded run.

    Attributes:
        size: How many experiments it returned; None when unknown (at the start of a resume).
        until_seq: It had returned, or failed, before this recorded event.
        error: The ``instruments_error`` it failed with, if it failed.
    """

    size: int | None
    until_seq: int
    error: dict[str, Any] | None = None


@dataclass
class _Experiment:
    protocol: LabProtocol
    on_reading: Callable[[Reading], None]
    readings: list[Reading] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.readings) >= len(self.protocol.commands)


class ReplayInstruments:
    """An :class:`~athanor.ports.InstrumentsPort` that serves the recorded readings; no instrument is used.

    ``submit`` checks every command against the recorded ``protocol_submitted`` command with the same
    idempotency key. ``wait`` passes the running experiments' recorded readings to their callbacks
    in the order the recorded run received them, so experiments finish, and their observations are
    made, in the recorded order, asynchronous runs included; an experiment is finished when each of
    its commands has its reading, as in the Ray lab. Each ``wait`` returns as many experiments as
    the recorded one did (read from the ``analysis`` that followed it), in submission order. A
    recorded ``instruments_error`` is raised again, as :class:`InstrumentError`, where the recorded
    run raised it.

    Args:
        events: The events of one attempt (other kinds are ignored).
        observations_before: For a resumed attempt, the observations in the state it resumes from
            (they make the sizes of its first waits exact); None: not known.
    """

    def __init__(self, events: Sequence[dict[str, Any]], observations_before: int | None = None) -> None:
        self._end = _last_seq(events)
        self._finished = any(e["kind"] == "run_finished" for e in events)
        self._commands: dict[str, tuple[int, dict[str, Any]]] = {}
        self._readings: dict[str, tuple[int, Reading]] = {}
        self._submitted_ids: set[str] = set()
        self._errors: list[dict[str, Any]] = []
        self._safe_states: deque[dict[str, Any]] = deque()
        for event in events:
            kind, payload = event["kind"], event["payload"]
            if kind == "protocol_submitted":
                self._submitted_ids.add(str(payload.get("experiment_id")))
                for command in payload.get("commands", []):
                    self._commands.setdefault(str(command.get("key")), (event["seq"], command))
            elif kind == "reading" and payload.get("key") not in self._readings:
                self._readings[str(payload.get("key"))] = (event["seq"], Reading.model_validate(payload))
            elif kind == "instruments_error":
                self._errors.append(event)
            elif kind == "safe_state":
                self._safe_states.append(event)
        self._waits = _recorded_waits(events, observations_before)
        self._running: dict[str, _Experiment] = {}
        self._calls = 0
        self._lock = threading.RLock()

    # -- the port ----------------------------------------------------------------------------------

    def run(
        self, protocols: list[LabProtocol], on_reading: Callable[[Reading], None]
    ) -> dict[str, list[Reading]]:
        """``submit`` then ``wait(None)``."""
        self.submit(protocols, on_reading)
        return self.wait(None)

    def submit(self, protocols: list[LabProtocol], on_reading: Callable[[Reading], None]) -> None:
        """Check each command against the recorded one with its key, then queue the protocols.

        Raises:
            ReplayDivergence: A command was never sent in the recorded run, or was sent differently.
            athanor.errors.InstrumentError: An experiment id is already queued, or the recorded run's
                submit of these protocols failed (the recorded message).
        """
        with self._lock:
            clash = [p.experiment_id for p in protocols if p.experiment_id in self._running]
            if clash:
                raise InstrumentError(
                    f"experiments {', '.join(clash)} are already queued; give each its own id"
                )
            for protocol in protocols:
                for command in protocol.commands:
                    self._check_command(protocol, command.model_dump(mode="json"))
            error = self._submit_error(protocols)
            if error is not None:
                raise InstrumentError(str(error["payload"].get("error", "")))
            for protocol in protocols:
                self._running[protocol.experiment_id] = _Experiment(protocol, on_reading)

    def running(self) -> list[str]:
        """Experiment ids submitted and not yet returned by ``wait``, in submission order."""
        with self._lock:
            return list(self._running)

    def wait(self, min_finished: int | None = 1) -> dict[str, list[Reading]]:
        """Deliver recorded readings in recorded order until as many experiments finished as recorded.

        Returns:
            Experiment id to its readings for every finished experiment, in submission order.

        Raises:
            ReplayDivergence: The record holds no more readings for the running experiments
                (``end_of_record``: the recorded run stopped before they finished).
            athanor.errors.InstrumentError: The recorded run's wait failed at this point.
        """
        with self._lock:
            if not self._running:
                return {}
            recorded = self._waits[self._calls] if self._calls < len(self._waits) else None
            self._calls += 1
            if recorded is not None and recorded.error is not None and recorded.error in self._errors:
                self._fail(recorded.error)
            want = self._how_many(min_finished, recorded)
            while len(self._complete()) < want:
                if not self._step():
                    if self._errors:
                        self._fail(self._errors[0])
                    waiting = ", ".join(e for e in self._running if e not in self._complete())
                    raise ReplayDivergence(
                        f"experiments {waiting} never finished in the recorded run (it stopped at seq"
                        f" {self._end}); the replay cannot go past that",
                        seq=self._end,
                        kind="reading",
                        end_of_record=True,
                    )
            return {e: self._running.pop(e).readings for e in self._complete()}

    def safe_state(self) -> None:
        """Nothing to make safe; a safe state the recorded run failed to reach fails again.

        Raises:
            athanor.errors.InstrumentError: The recorded run's matching safe state failed.
        """
        with self._lock:
            event = self._safe_states.popleft() if self._safe_states else None
        if event is not None and not event["payload"].get("ok", True):
            raise InstrumentError(str(event["payload"].get("error", "")))

    # -- helpers -----------------------------------------------------------------------------------

    def _check_command(self, protocol: LabProtocol, asked: dict[str, Any]) -> None:
        key = str(asked.get("key"))
        recorded = self._commands.get(key)
        what = f"{asked.get('action')} {shorten(asked.get('params'))} (key {key})"
        if recorded is None:
            if not self._finished and protocol.experiment_id not in self._submitted_ids:
                raise ReplayDivergence(
                    f"the recorded run stopped before it sent experiment {protocol.experiment_id} to"
                    f" the instruments (its last event is seq {self._end})",
                    seq=self._end,
                    kind="protocol_submitted",
                    end_of_record=True,
                )
            raise ReplayDivergence(
                f"the replayed run asked instrument {asked.get('instrument')} for {what}, which the"
                " recorded run never did",
                seq=None,
                kind="protocol_submitted",
            )
        seq, command = recorded
        diff = payload_diff(command, asked, "command")
        if diff:
            raise ReplayDivergence(
                f"the replayed run asked instrument {asked.get('instrument')} for {what}; the recorded"
                f" run asked {command.get('instrument')} for {command.get('action')}"
                f" {shorten(command.get('params'))} (seq {seq}): {'; '.join(diff)}",
                seq=seq,
                kind="protocol_submitted",
            )

    def _submit_error(self, protocols: list[LabProtocol]) -> dict[str, Any] | None:
        """The recorded ``instruments_error`` of submitting exactly these protocols, if any."""
        ids = [p.experiment_id for p in protocols]
        keys = {c.key for p in protocols for c in p.commands}
        for error in self._errors:
            if error["payload"].get("experiment_ids") == ids and not any(
                seq < error["seq"] for key, (seq, _) in self._readings.items() if key in keys
            ):
                self._errors.remove(error)
                return error
        return None

    def _complete(self) -> list[str]:
        return [e for e, experiment in self._running.items() if experiment.complete]

    def _next(self) -> tuple[int, _Experiment, Reading] | None:
        """The running experiments' next recorded reading, the earliest recorded first."""
        found = None
        for experiment in self._running.values():
            if experiment.complete:
                continue
            recorded = self._readings.get(experiment.protocol.commands[len(experiment.readings)].key)
            if recorded is not None and (found is None or recorded[0] < found[0]):
                found = (recorded[0], experiment, recorded[1])
        return found

    def _step(self, before: float = float("inf")) -> bool:
        """Deliver the next recorded reading if it came before seq ``before``; False if none did.

        Raises:
            athanor.errors.InstrumentError: A recorded wait failure came before that reading.
        """
        found = self._next()
        upto = min(before, float(found[0]) if found else float("inf"))
        earlier = [e for e in self._errors if e["seq"] < upto]
        if earlier:
            self._fail(earlier[0])
        if found is None or found[0] >= before:
            return False
        _, experiment, reading = found
        experiment.readings.append(reading)
        experiment.on_reading(reading)
        return True

    def _fail(self, error: dict[str, Any]) -> NoReturn:
        """Raise a recorded wait failure, after the readings the recorded run received before it."""
        self._errors.remove(error)
        while self._step(before=error["seq"]):
            pass
        raise InstrumentError(str(error["payload"].get("error", "")))

    def _how_many(self, min_finished: int | None, recorded: _RecordedWait | None) -> int:
        """How many experiments this wait returns: as many as the recorded one did."""
        total = len(self._running)
        if min_finished is None:
            return total
        least = min(max(min_finished, 1), total)
        if recorded is None:
            return least
        if recorded.size is not None:
            return max(least, min(recorded.size, total))
        while self._step(before=recorded.until_seq):
            pass
        return max(least, len(self._complete()))


def _recorded_waits(events: Sequence[dict[str, Any]], resumed_with: int | None) -> list[_RecordedWait]:
    """Each ``wait`` of the recorded attempt, in order, read from what the experimenter's node left.

    ``analysis.experiments`` counts every observation in the state: those before, the coder's
    rejections since, and what the wait returned. A resumed attempt starts with ``resumed_with``
    observations; when that is not known, only "finished before the analyst started" is, which a
    wait that returned just before other experiments finished does not match. A wait that failed
    left an ``instruments_error`` instead of an analysis.
    """
    waits: list[_RecordedWait] = []
    resumed = bool(events) and events[0]["kind"] == "run_resumed"
    before: int | None = resumed_with if resumed else 0
    rejected = 0
    start: tuple[int | None, int] | None = None
    for event in events:
        kind, payload = event["kind"], event["payload"]
        if kind == "protocol_rejected":
            rejected += 1
        elif kind == "node" and node_name(payload) == _EXPERIMENTER_NODE:
            start = (before, rejected)
        elif kind == "instruments_error" and start is not None:
            waits.append(_RecordedWait(None, event["seq"], event))
            start = None
        elif kind == "analysis" and start is not None:
            count = int(payload.get("experiments", 0))
            known, rejected_then = start
            size = None if known is None else count - known - rejected_then
            if size is None or size > 0:
                waits.append(_RecordedWait(size, event["seq"]))
            before, rejected, start = count, 0, None
    return waits


class ReplayContext(RunContext):
    """A run context that stops the replay where a recorded attempt stopped.

    With ``limits``, recording one more event of a limited kind than the recorded attempt holds
    raises :class:`ReplayDivergence` with ``end_of_record`` instead: the graph stops at the same
    node, leaving the same checkpoint a resume continues from.

    Args:
        run_dir: The replay's scratch run folder (never the recorded run's).
        seed: The recorded run's seed.
        run_id: The recorded run's id, so that idempotency keys match.
        limits: Kind to the most events of that kind this attempt may record; None: no limit.
    """

    def __init__(
        self, run_dir: Path, seed: int, run_id: str, limits: Mapping[str, int] | None = None
    ) -> None:
        super().__init__(run_dir, seed, run_id)
        self.limits = dict(limits or {})
        self._counts: Counter[str] = Counter()
        self._limit_lock = threading.Lock()

    def record(self, kind: str, payload: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
        """Append an event, unless the recorded attempt stopped before one more of this kind."""
        if kind in self.limits:
            with self._limit_lock:
                if self._counts[kind] >= self.limits[kind]:
                    raise ReplayDivergence(
                        f"the recorded attempt stopped after {self.limits[kind]} {kind} event(s)",
                        seq=None,
                        kind=kind,
                        end_of_record=True,
                    )
                self._counts[kind] += 1
        return super().record(kind, payload)
