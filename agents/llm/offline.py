"""The offline LLM back end: deterministic answers without a model.

``parse_request`` reads the request with the controlled-English reader of :mod:`agents.llm.reader`;
``decide`` applies fixed rules (stop on target or budget, otherwise continue). This module also holds
:func:`validate_answer`, which every back end uses to turn a raw answer into the requested schema.
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agents.llm.reader import read_request
from athanor.errors import LLMError, SpecError, format_validation_error
from athanor.spec import CampaignSpec, Objective

__all__ = [
    "KNOWN_TASKS",
    "OfflineLLM",
    "answer_error",
    "last_user_message",
    "offline_decision",
    "validate_answer",
]

#: Tasks the offline back end can answer.
KNOWN_TASKS: tuple[str, ...] = ("parse_request", "decide")

T = TypeVar("T", bound=BaseModel)

_DECIDE_KEYS = (
    "iteration",
    "experiments_done",
    "experiments_budget",
    "best_value",
    "best_before",
    "objective",
    "direction",
    "target",
    "target_reached",
)


def last_user_message(messages: list[dict[str, str]], task: str) -> str:
    """The content of the last ``user`` message.

    Raises:
        athanor.errors.LLMError: There is no user message, or its content is not text.
    """
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if not isinstance(content, str):
                kind = type(content).__name__
                raise LLMError(f"task {task!r}: the last user message must hold text, got {kind}")
            return content
    raise LLMError(f"task {task!r}: no user message; add {{'role': 'user', 'content': ...}} to the messages")


def validate_answer(schema: type[T], answer: object, source: str) -> T:
    """Turn an answer (a dict, a JSON string or a pydantic object) into an instance of ``schema``.

    Args:
        schema: The pydantic model the answer must fit.
        answer: The raw answer.
        source: Who answered, for error messages (e.g. ``"model gpt-4o at http://..."``).

    Raises:
        athanor.errors.SpecError: ``schema`` is a campaign spec and the answer breaks its rules; the
            message lists each problem with its field.
        athanor.errors.LLMError: The answer is not JSON, or does not fit any other schema.
    """
    if isinstance(answer, schema):
        return answer
    try:
        if isinstance(answer, BaseModel):
            return schema.model_validate(answer.model_dump())
        if isinstance(answer, str | bytes):
            return schema.model_validate_json(answer)
        return schema.model_validate(answer)
    except ValidationError as error:
        raise answer_error(schema, error, source) from None


def answer_error(schema: type[BaseModel], error: ValidationError, source: str) -> LLMError | SpecError:
    """The error to raise when an answer failed to validate against ``schema``.

    Returns:
        ``SpecError`` listing each field's problem for a campaign spec; ``LLMError`` otherwise, quoting
        the start of the answer when it was not JSON at all.
    """
    for item in error.errors():
        if item["type"] == "json_invalid":
            raw = item.get("input")
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            return LLMError(f"{source} answered text that is not valid JSON: {text[:200]!r}")
    if issubclass(schema, CampaignSpec):
        return SpecError(f"the campaign spec from {source} is invalid:\n{format_validation_error(error)}")
    problems = format_validation_error(error)
    return LLMError(f"the answer from {source} does not fit {schema.__name__}:\n{problems}")


def _number(payload: dict[str, Any], key: str, *, optional: bool) -> float | None:
    value = payload.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LLMError(f"task 'decide': {key} must be a finite number, got {value!r}")
    return float(value)


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"


def offline_decision(payload: dict[str, Any]) -> tuple[str, str]:
    """The offline verdict on a campaign's progress.

    Args:
        payload: The progress object described in :mod:`athanor.ports` (``experiments_done``,
            ``experiments_budget``, ``best_value``, ``best_before``, ``target_reached``, ...).

    Returns:
        ``(action, reason)``: ``"stop"`` when the target is reached or the budget is spent,
        ``"continue"`` otherwise; the reason states the best value and whether it improved. With
        several ``objectives`` (each with ``name``, ``direction``, ``unit`` and ``best_on_front``)
        the reason names every objective with its aim and unit and gives the Pareto front's size
        (``pareto_front_size``, and ``pareto_front_size_before``) instead.
    """
    done = _number(payload, "experiments_done", optional=False)
    budget = _number(payload, "experiments_budget", optional=False)
    best = _number(payload, "best_value", optional=True)
    before = _number(payload, "best_before", optional=True)
    target = _number(payload, "target", optional=True)
    assert done is not None and budget is not None
    objective = str(payload.get("objective") or "objective")
    direction = payload.get("direction") or "maximise"
    if direction not in ("maximise", "minimise"):
        raise LLMError(f"task 'decide': direction must be 'maximise' or 'minimise', got {direction!r}")
    iteration = payload.get("iteration")
    label = f"iteration {iteration}" if iteration is not None else "the last iteration"
    several = payload.get("objectives")
    if isinstance(several, list) and len(several) > 1:
        return _pareto_decision(payload, _objectives(several), done, budget, label)

    if payload.get("target_reached"):
        reason = f"the best {objective} so far, {_fmt(best)}, reached the target"
        reason += f" of {_fmt(target)}" if target is not None else ""
        return "stop", f"{reason} after {done:g} of {budget:g} experiments."
    if done >= budget:
        return "stop", f"all {budget:g} experiments of the budget are done; best {objective} {_fmt(best)}."
    left = f"{budget - done:g} of {budget:g} experiments left"
    if best is None:
        return "continue", f"no successful measurement of {objective} yet; {left}."
    if before is None:
        return "continue", f"the best {objective} so far is {_fmt(best)} (first results); {left}."
    improved = best > before if direction == "maximise" else best < before
    if improved:
        change = f"from {_fmt(before)} to {_fmt(best)}"
        return "continue", f"{label} improved the best {objective} {change}; {left}."
    return "continue", f"{label} did not improve on the best {objective} of {_fmt(best)}; {left}."


def _objectives(entries: list[Any]) -> list[tuple[Objective, float | None]]:
    """The objectives of a several-objective progress object, each with its best value on the front.

    Raises:
        athanor.errors.LLMError: An entry is not an objective (``name``, ``direction``, ``unit``).
    """
    found = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise LLMError(
                f"task 'decide': objectives[{index}] must be an object with name, direction and unit,"
                f" got {entry!r}"
            )
        try:
            objective = Objective.model_validate(
                {key: entry[key] for key in ("name", "direction", "unit") if key in entry}
            )
        except ValidationError as error:
            problems = format_validation_error(error).replace("\n", "; ")
            raise LLMError(f"task 'decide': objectives[{index}]: {problems}") from None
        best = entry.get("best_on_front")
        found.append((objective, None if best is None else _number(entry, "best_on_front", optional=False)))
    return found


def _pareto_decision(
    payload: dict[str, Any],
    objectives: list[tuple[Objective, float | None]],
    done: float,
    budget: float,
    label: str,
) -> tuple[str, str]:
    """The offline verdict on a campaign with several objectives, naming each with its aim and unit."""
    named = [objective.describe() for objective, _ in objectives]
    aims = f"{', '.join(named[:-1])} and {named[-1]}"
    size = int(_number(payload, "pareto_front_size", optional=True) or 0)
    before = _number(payload, "pareto_front_size_before", optional=True)
    front = f"the Pareto front of {aims} holds {size} experiment{'s' if size != 1 else ''}"
    if done >= budget:
        return "stop", f"all {budget:g} experiments of the budget are done; {front}."
    left = f"{budget - done:g} of {budget:g} experiments left"
    if size == 0:
        return "continue", f"no experiment counts for every objective yet ({aims}); {left}."
    ends = ", ".join(
        f"{objective.name} {_fmt(best)} {objective.unit}".rstrip()
        for objective, best in objectives
        if best is not None
    )
    was = f" ({before:g} before it)" if before else ""
    return "continue", f"after {label}, {front}{was}; best on the front: {ends}; {left}."


class OfflineLLM:
    """The default back end: the request grammar and fixed decision rules, no model.

    Attributes:
        name: ``"offline"``.
    """

    name = "offline"

    def structured(self, task: str, messages: list[dict[str, str]], schema: type[T]) -> T:
        """Answer a known task deterministically.

        Args:
            task: ``"parse_request"`` or ``"decide"``.
            messages: Chat messages; the last user message holds the request or the progress JSON.
            schema: The answer's model (``CampaignSpec`` or ``Decision``).

        Raises:
            athanor.errors.RequestNotUnderstood: (``parse_request``) the request cannot be read.
            athanor.errors.SpecError: (``parse_request``) what was read is not a valid spec.
            athanor.errors.LLMError: Unknown task, or a malformed ``decide`` message.
        """
        if task == "parse_request":
            data = read_request(last_user_message(messages, task))
            try:
                return schema.model_validate(data)
            except ValidationError as error:
                raise SpecError(
                    f"the request was read, but the campaign it describes is invalid:\n"
                    f"{format_validation_error(error)}"
                ) from None
        if task == "decide":
            text = last_user_message(messages, task)
            try:
                payload = json.loads(text)
            except json.JSONDecodeError:
                payload = None
            if not isinstance(payload, dict):
                raise LLMError(
                    f"task 'decide': the last user message must be a JSON object with keys"
                    f" {', '.join(_DECIDE_KEYS)}; got {text[:120]!r}"
                )
            action, reason = offline_decision(payload)
            answer = {"action": action, "reason": reason[0].upper() + reason[1:]}
            return validate_answer(schema, answer, "the offline back end")
        raise LLMError(f"the offline back end has no task {task!r}; known tasks: {', '.join(KNOWN_TASKS)}")
