"""The request as the phrase patterns read it, and where each of its characters came from.

Before any pattern runs, the request is rewritten into the words the patterns know: dashes and
quotes made plain, and Chinese keywords (see :mod:`agents.llm.reader.chinese`) replaced by their
English counterparts. Every character of the working text remembers the span of the request it came
from, so that a refusal quotes the user's own words, whatever the patterns matched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

__all__ = ["USED", "Rewrite", "WorkingText"]

#: What a character of the working text becomes once a phrase has used it.
USED = "\x00"

#: A rewrite rule: every match of the pattern is replaced by the text (or by what the function returns).
Rewrite = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]

# One character for one, so that the working text keeps the request's offsets.
_SAME_LENGTH = str.maketrans({"–": "-", "—": "-", "−": "-", "’": "'", "\u00a0": " ", "\t": " ", "\n": " "})


class WorkingText:
    """The working text of one request.

    Attributes:
        original: The request as the user wrote it.
        text: The working text; characters a phrase used are :data:`USED`.
    """

    def __init__(self, original: str, rewrites: Iterable[Rewrite] = ()) -> None:
        """Rewrite ``original`` for the patterns.

        Args:
            original: The request.
            rewrites: Rules applied in order, each to the text the ones before it left.
        """
        self.original = original
        self.text = original.translate(_SAME_LENGTH)
        # the span of the request each working character came from
        self._starts = list(range(len(original)))
        self._ends = list(range(1, len(original) + 1))
        for pattern, replacement in rewrites:
            self._rewrite(pattern, replacement)

    def _rewrite(self, pattern: re.Pattern[str], replacement: str | Callable[[re.Match[str]], str]) -> None:
        text, starts, ends = [], [], []
        at = 0
        for match in pattern.finditer(self.text):
            start, end = match.span()
            if start == end:
                continue
            text.append(self.text[at:start])
            starts += self._starts[at:start]
            ends += self._ends[at:start]
            origin = (self._starts[start], self._ends[end - 1])
            words = replacement if isinstance(replacement, str) else replacement(match)
            text.append(words)
            starts += [origin[0]] * len(words)
            ends += [origin[1]] * len(words)
            at = end
        text.append(self.text[at:])
        starts += self._starts[at:]
        ends += self._ends[at:]
        self.text = "".join(text)
        self._starts, self._ends = starts, ends

    def mark_used(self, start: int, end: int) -> None:
        """Mark the working characters ``[start, end)`` as used by a phrase."""
        self.text = self.text[:start] + USED * (end - start) + self.text[end:]

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the request that the working characters ``[start, end)`` came from."""
        if start >= end:
            at = self._starts[start] if start < len(self._starts) else len(self.original)
            return at, at
        return self._starts[start], self._ends[end - 1]

    def source(self, start: int, end: int) -> str:
        """The request's own words for the working characters ``[start, end)``."""
        begin, finish = self.source_span(start, end)
        return self.original[begin:finish]
