"""Numbers in the files a user writes (campaign files, lab files): a number must be written as one.

YAML reads ``true``, ``yes`` and ``on`` as booleans and ``"20"`` as text; pydantic's lax mode would
take them as 1 and 20, so that ``experiments: true`` became one experiment. :data:`Integer` and
:data:`Number` are strict: they refuse both (and :data:`Integer` a fraction such as ``20.5`` or
``20.0``), while :data:`Number` still takes a whole number (``lower: 0``). :func:`not_a_number` says
what was written and the fix; the error formatters use it for these fields' errors.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Strict

__all__ = ["Integer", "Number", "not_a_number", "refuse_non_numbers"]

#: A whole number, written as one (never a boolean, text or a fraction).
Integer = Annotated[int, Strict()]
#: A number, written as one (a whole number is fine; never a boolean or text).
Number = Annotated[float, Strict()]


def not_a_number(value: Any) -> str | None:
    """What is wrong with ``value`` written where a number belongs, or None when it is no boolean or text.

    Returns:
        E.g. ``"true is a yes/no value, not a number; write a number"``.
    """
    if isinstance(value, bool):
        return f"{str(value).lower()} is a yes/no value, not a number; write a number"
    if isinstance(value, str):
        return f"{value!r} is text, not a number; write the number without quotes"
    return None


def refuse_non_numbers(value: Any) -> Any:
    """Refuse a boolean or text, pass anything else on.

    For a number field that cannot be strict (a ``Literal`` of numbers).

    Raises:
        ValueError: ``value`` is a boolean or a string, with the fix.
    """
    problem = not_a_number(value)
    if problem is not None:
        raise ValueError(problem)
    return value
