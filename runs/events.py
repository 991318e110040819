"""The event kinds of a run's log and the payload each one holds: the record format as a contract.

Every kind has a pydantic model (:data:`EVENT_PAYLOADS`). :class:`runs.context.RunContext` checks
each payload against its kind's model before it is written (:func:`check_payload`): a kind that is
not registered, a missing field, an unknown field or a value of the wrong type is refused with the
kind and the field named, and nothing is written. The payload written is the JSON given, not the
model's dump, so a check never changes what is recorded.

Old logs still read. Fields added later have defaults, so a payload recorded before them still
matches; the ``node`` event, once named after the role's module and function
(``experimenter.experiment``), is named after the graph's node (``experimenter``), and
:func:`node_name` reads both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from athanor.errors import AthanorError, format_validation_error
from athanor.lab import LabDescription
from athanor.models import Observation, Proposal, Protocol, Reading
from athanor.spec import CampaignSpec
from runs.prior import PriorData

__all__ = [
    "END_KINDS",
    "EVENT_PAYLOADS",
    "GRAPH_NODES",
    "EventPayloadError",
    "check_payload",
    "node_name",
    "payload_problem",
]

#: The campaign graph's nodes, as ``node`` events name them.
GRAPH_NODES = ("pi_plan", "designer", "coder", "experimenter", "analyst", "pi_decide")
#: ``node`` names of logs recorded before the graph's names were used: module.function.
_LEGACY_NODE_NAMES = {
    "pi.plan": "pi_plan",
    "designer.design": "designer",
    "coder.code": "coder",
    "experimenter.experiment": "experimenter",
    "analyst.analyse": "analyst",
    "pi.decide": "pi_decide",
}


class EventPayloadError(AthanorError, ValueError):
    """A payload does not match its event kind (or the kind is not registered); nothing was written."""


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _Message(_Payload):
    message: str


class _Error(_Payload):
    error: str
    error_type: str


class RunStarted(_Payload):
    """``run_started``: the run's id and where its lab came from (``virtual``, ``file``, ``given``)."""

    run_id: str
    lab_source: Literal["virtual", "file", "given"] = "virtual"


class Answer(_Payload):
    """One question the reader asked about the request, and the operator's answer."""

    field: str
    question: str
    answer: str
    added: str  # the words the answer added to the request


class Request(_Payload):
    """``request``: the request as typed (or the campaign file's path), and the LLM back end.

    ``answers`` holds the questions asked about the request and their answers (see
    :mod:`athanor.asking`).
    """

    text: str
    llm_backend: str
    answers: list[Answer] | None = None


class LLMRequest(_Payload):
    """``llm_request``: one question to the LLM (``call`` pairs it with its answer)."""

    task: str
    messages: list[dict[str, str]]
    schema_name: str = Field(alias="schema")
    call: int | None = None  # the request parse, buffered before the run folder exists, has none
    backend: str | None = None


class LLMReply(_Payload):
    """``llm_reply``: the LLM's structured answer."""

    task: str
    reply: dict[str, Any]
    call: int | None = None
    seconds: float | None = None


class LLMError(_Error):
    """``llm_error``: a question the LLM did not answer."""

    call: int
    task: str
    seconds: float


class Retrieval(_Payload):
    """``retrieval``: a literature search and the chunks it found, with their scores."""

    query: str
    k: int
    chunk_ids: list[str]
    scores: list[float]


class RetrievalError(_Error):
    """``retrieval_error``: a literature search that failed."""

    query: str
    k: int


class CitedPassage(_Payload):
    """One passage the PI grounded the campaign in."""

    chunk_id: str
    citation: str


class Grounding(_Payload):
    """``grounding``: the passages cited, and the ones found but below ``min_score``."""

    query: str
    passages: list[CitedPassage]
    min_score: float
    not_cited: list[str] = Field(default_factory=list)


class TimeScale(_Payload):
    """``time_scale``: the multiplier on simulated durations (None: no simulated instrument) and why."""

    time_scale: float | None
    source: str
    message: str


class Node(_Payload):
    """``node``: a node of the campaign graph starts (see :data:`GRAPH_NODES`)."""

    name: str


class ExperimentId(_Payload):
    """``experiment_id``: an experiment id handed out."""

    experiment_id: str


class InnerModelCall(_Payload):
    """The model-based part of an initial design that had prior data."""

    n: int
    seed: int


class OptimiserCall(_Payload):
    """``optimiser_call``: what the designer asked the optimiser, with its seed and inputs, and got."""

    method: Literal["initial_design", "propose", "propose_multifidelity"]
    n: int
    seed: int
    iteration: int
    proposals: list[Proposal]
    observations: int | None = None  # observations the model was fitted to (model-based calls)
    pending: list[dict[str, float]] | None = None
    pending_choices: list[dict[str, str]] | None = None
    prior: int | None = None  # usable prior rows it learned from
    model: InnerModelCall | None = None
    rounds: list[dict[str, Any]] | None = None
    simulated: list[str] | None = None
    options: dict[str, Any] | None = None  # optimiser options that differ from the defaults


class Simulation(_Payload):
    """``simulation``: one evaluation of a cheap source."""

    experiment_id: str
    fidelity: str
    simulator: str | None
    composition: dict[str, float]
    value: float | None
    error: str | None


class ProtocolRejected(_Payload):
    """``protocol_rejected``: a proposal whose protocol failed the dry run."""

    experiment_id: str
    problems: list[str]


class StockLow(_Payload):
    """``stock_low``: protocols refused because a stock would run dry, µL left per stock."""

    problems: list[str]
    left_ul: dict[str, float]


class StockRefilled(_Payload):
    """``stock_refilled``: a stock refilled before a resume, µL it holds and µL drawn before."""

    stock: str
    volume_ul: float
    used_ul: float


class InstrumentsError(_Error):
    """``instruments_error``: the instruments port failed for these experiments."""

    experiment_ids: list[str]


class SafeState(_Payload):
    """``safe_state``: whether every instrument reached its safe state."""

    ok: bool
    error: str | None = None
    error_type: str | None = None


class InstrumentFault(_Payload):
    """``instrument_fault``: the watchdog found an instrument stalled, silent or dead."""

    instrument: str
    reason: str


class Summary(_Payload):
    """The analyst's summary of the campaign so far (``analysis`` and ``run_finished``)."""

    objective: str
    unit: str
    experiments: int
    failed: int
    best_value: float | None
    best_experiment: str | None
    best_composition: dict[str, float] | None
    best_initial_value: float | None
    feasible: int | None = None
    simulated: int | None = None
    budget_spent: float | None = None
    fidelity_advice: dict[str, Any] | None = None
    pareto_front: list[dict[str, Any]] | None = None
    prior: dict[str, Any] | None = None


class Analysis(Summary):
    """``analysis``: the summary after an iteration."""

    iteration: int


class DecisionMade(_Payload):
    """``decision``: the PI's verdict after an iteration."""

    iteration: int
    action: Literal["continue", "stop"]
    reason: str
    fidelity_advice: dict[str, Any] | None = None


class RunResumed(_Payload):
    """``run_resumed``: a stopped run continues; how many observations it had, and if its table was redone."""

    llm_backend: str
    observations_on_disk: int
    observations_rebuilt: bool = False


class RunEnded(_Payload):
    """What every end of an attempt records: the SHA-256 of each file of the run folder then.

    ``files`` maps a file's name in the run folder to its hex SHA-256 (``manifest.json``: of its
    content without its ``final`` member; see :mod:`runs.seal`). Logs from before it have none.
    """

    files: dict[str, str] | None = None


class RunFinished(RunEnded):
    """``run_finished``: the campaign's summary, the PI's last decision and the report's file name."""

    summary: Summary
    decision: dict[str, Any]
    report: str


class RunStopped(RunEnded):
    """``run_failed`` / ``run_stopped``: why the attempt ended; the signal and policy of a stop."""

    error: str
    signal: str | None = None
    aborted: bool | None = None


class LogRepaired(_Payload):
    """``log_repaired``: a torn last line cut off when the log was reopened (written by the log)."""

    reason: str
    dropped_bytes: int
    dropped_text: str


#: Every event kind and the model its payload must match.
EVENT_PAYLOADS: dict[str, type[BaseModel]] = {
    "run_started": RunStarted,
    "request": Request,
    "llm_request": LLMRequest,
    "llm_reply": LLMReply,
    "llm_error": LLMError,
    "spec": CampaignSpec,
    "lab": LabDescription,
    "time_scale": TimeScale,
    "notice": _Message,
    "prior_data": PriorData,
    "retrieval": Retrieval,
    "retrieval_error": RetrievalError,
    "grounding": Grounding,
    "fidelity_warning": _Message,
    "node": Node,
    "experiment_id": ExperimentId,
    "optimiser_call": OptimiserCall,
    "simulation": Simulation,
    "protocol": Protocol,
    "protocol_rejected": ProtocolRejected,
    "protocol_submitted": Protocol,
    "stock_low": StockLow,
    "stock_warning": _Message,
    "stock_refilled": StockRefilled,
    "reading": Reading,
    "observation": Observation,
    "instruments_error": InstrumentsError,
    "instrument_fault": InstrumentFault,
    "safe_state": SafeState,
    "analysis": Analysis,
    "decision": DecisionMade,
    "run_resumed": RunResumed,
    "run_finished": RunFinished,
    "run_failed": RunStopped,
    "run_stopped": RunStopped,
    "log_repaired": LogRepaired,
}
#: Kinds that end an attempt; each records the digests of the run folder's files (``files``).
END_KINDS = ("run_finished", "run_failed", "run_stopped")


def payload_problem(kind: str, payload: Mapping[str, Any]) -> str:
    """What is wrong with a JSON payload for ``kind``, in one line; "" when it matches.

    Args:
        kind: The event kind.
        payload: The payload as JSON data (what the log holds).
    """
    model = EVENT_PAYLOADS.get(kind)
    if model is None:
        return f"event kind {kind!r} is not registered; known kinds: {', '.join(sorted(EVENT_PAYLOADS))}"
    try:
        model.model_validate(dict(payload))
    except ValidationError as error:
        return format_validation_error(error, prefix="payload.").replace("\n", "; ")
    return ""


def check_payload(kind: str, payload: Mapping[str, Any]) -> None:
    """Refuse a payload that does not match its kind (see :data:`EVENT_PAYLOADS`).

    Raises:
        EventPayloadError: The kind is not registered or the payload does not match its model; the
            message names the kind and each field at fault.
    """
    problem = payload_problem(kind, payload)
    if problem:
        raise EventPayloadError(f"a {kind!r} event was not written: {problem}")


def node_name(payload: Mapping[str, Any]) -> str:
    """The graph node a ``node`` event names, in old logs (``experimenter.experiment``) and new."""
    name = str(payload.get("name", ""))
    return _LEGACY_NODE_NAMES.get(name, name)
