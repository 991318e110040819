"""Errors a user can act on. Each message names what was wrong and how to fix it."""

from __future__ import annotations

from pydantic import ValidationError

__all__ = [
    "AthanorError",
    "InstrumentError",
    "LLMError",
    "RequestNotUnderstood",
    "SafetyError",
    "SpecError",
    "format_validation_error",
]


class AthanorError(Exception):
    """Base of every error athanor reports to the user without a traceback."""


class SpecError(AthanorError):
    """A campaign spec (from a file, a request or an LLM) is invalid or infeasible."""


class RequestNotUnderstood(AthanorError):
    """A plain-language request could not be read; the message shows a phrasing that works."""


class LLMError(AthanorError):
    """An LLM back end failed or answered something unusable."""


class SafetyError(AthanorError):
    """A protocol or command would leave an instrument's safety envelope; nothing was sent."""


class InstrumentError(AthanorError):
    """An instrument reported a fault, or an unknown instrument or command was asked for."""


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
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{prefix}{loc}: {message}")
    return "\n".join(lines)
