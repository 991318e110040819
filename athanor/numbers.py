"""Numbers in the files a user writes (campaign files, lab files): a number must be written as one.

YAML reads ``true``, ``yes`` and ``on`` as booleans and ``"20"`` as text; pydantic's lax mode would
take them as 1 and 20, so that ``experiments: true`` became one experiment. :data:`Integer` and
:data:`Number` refuse both with what was written and the fix; :data:`Number` takes a whole number
too (``lower: 0``), :data:`Integer` takes no fraction (``20.0`` is refused, ``20`` is not).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Strict

__all__ = ["Integer", "Number", "refuse_non_numbers"]


def refuse_non_numbers(value: Any) -> Any:
    """Pass ``value`` on unless it is a boolean or text, which a number field never takes.

    Raises:
        ValueError: ``value`` is a boolean or a string, with the fix.
    """
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is a yes/no value, not a number; write a number")
    if isinstance(value, str):
        raise ValueError(f"{value!r} is text, not a number; write the number without quotes")
    return value


#: A whole number, written as one (never a boolean, text or a fraction).
Integer = Annotated[int, Strict(), BeforeValidator(refuse_non_numbers)]
#: A number, written as one (a whole number is fine; never a boolean or text).
Number = Annotated[float, Strict(), BeforeValidator(refuse_non_numbers)]
