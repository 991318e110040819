"""Checks of the reader's refusals shared by the reader's tests."""

from __future__ import annotations

import re

import pytest

from agents.llm.reader import read_request
from agents.llm.reader.refusal import filled, reads
from athanor.errors import RequestNotUnderstood

__all__ = ["refusal", "suggested"]


def suggested(message: str) -> str:
    """The phrasing a refusal suggests (the text after "A phrasing that works: ")."""
    line = next(line for line in message.splitlines() if line.startswith("A phrasing that works: "))
    return line.removeprefix("A phrasing that works: ")


def refusal(request: str) -> str:
    """The message the reader refuses ``request`` with; its suggested phrasing must read.

    A suggestion holds stand-ins such as ``<how many>`` for what the request does not say; with them
    filled in, the reader must read it whole and the spec accept it.
    """
    with pytest.raises(RequestNotUnderstood) as info:
        read_request(request)
    message = str(info.value)
    phrasing = suggested(message)
    if not re.search(r"… \(\d+ characters\)$", phrasing):  # a suggestion cut for length cannot be read
        assert reads(filled(phrasing)), f"the suggested phrasing does not read: {phrasing}"
    return message
