"""Errors a user can act on. Each message names what was wrong and how to fix it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from athanor.asking import Question
from athanor.numbers import not_a_number

__all__ = [
    "AthanorError",
    "InstrumentError",
    "LLMError",
    "ReadingsDisagree",
    "RequestNotUnderstood",
    "SafetyError",
    "SpecError",
    "StopRequested",
    "format_validation_error",
    "validation_message",
]


class AthanorError(Exception):
    """Base of every error athanor reports to the user without a traceback."""


class SpecError(AthanorError):
    """A campaign spec (from a file, a request or an LLM) is invalid or infeasible."""


class RequestNotUnderstood(AthanorError):
    """A plain-language request could not be read; the message shows a phrasing that works.

    Attributes:
        questions: When all the request lacks is something a question settles (the budget, whether
            the amounts add up to 1 or to 100), those questions; the message asks them too. Empty
            when the request has other problems.
    """

    def __init__(self, message: str, questions: Sequence[Question] = ()) -> None:
        super().__init__(message)
        self.questions: tuple[Question, ...] = tuple(questions)


class ReadingsDisagree(AthanorError):
    """A language model's reading of a request says what the request's words do not.

    The message lists each disagreement and shows both readings.

    Attributes:
        disagreements: One line per disagreement (an invented number, a component not named, ...).
    """

    def __init__(self, message: str, disagreements: Sequence[str]) -> None:
        super().__init__(message)
        self.disagreements: tuple[str, ...] = tuple(disagreements)


class LLMError(AthanorError):
    """An LLM back end failed or answered something unusable."""


class SafetyError(AthanorError):
    """A protocol or command would leave an instrument's safety envelope; nothing was sent."""


class InstrumentError(AthanorError):
    """An instrument reported a fault, or an unknown instrument or command was asked for."""


class StopRequested(KeyboardInterrupt):
    """The operator asked the campaign to stop (SIGTERM, Ctrl-C): it stops resumably, not as a failure.

    A subclass of ``KeyboardInterrupt``, so that whatever stops on Ctrl-C stops on it too.

    Attributes:
        signal_name: The signal that asked, e.g. ``"SIGTERM"``.
        abort: Abort the instruments' running commands now, instead of letting them finish.
    """

    def __init__(self, signal_name: str, *, abort: bool = False) -> None:
        self.signal_name = signal_name
        self.abort = abort
        how = "aborting the running commands" if abort else "letting the running commands finish"
        super().__init__(f"stopped by {signal_name}, {how}")


def format_validation_error(error: ValidationError, prefix: str = "") -> str:
    """Turn a pydantic ``ValidationError`` into one line per problem, each naming its field.

    Args:
        error: The validation error.
        prefix: Prepended to every field path (e.g. ``"spec."``).

    Returns:
        Lines like ``budget.batch_size: Input should be greater than or equal to 1``.
    """
    lines = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"]) or "spec"
        lines.append(f"{prefix}{loc}: {validation_message(item)}")
    return "\n".join(lines)


def validation_message(item: Any) -> str:
    """One pydantic error (an item of ``ValidationError.errors()``) in words, without the field.

    A boolean or text where a strict number belongs (see :mod:`athanor.numbers`) is named as such
    with the fix; any other error keeps pydantic's message.
    """
    if item["type"] in ("int_type", "float_type"):
        problem = not_a_number(item.get("input"))
        if problem is not None:
            return problem
    return str(item["msg"]).removeprefix("Value error, ")
