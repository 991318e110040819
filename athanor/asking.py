"""Questions about a request that leaves something open, and the answers that complete it.

A request that states everything but, say, its budget is not guessed at: on a terminal the user is
asked (the command line answers with a prompt), and the answer joins the request as words the reader
reads (``30 experiments``), so that the recorded request says everything the campaign ran with.
Without a terminal there is no one to ask, and the request is refused with the same question.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Answer", "Ask", "Question", "completed"]


@dataclass(frozen=True)
class Question:
    """One question about a request.

    Attributes:
        field: The spec field it settles, e.g. ``"budget.experiments"``.
        text: The question as the user reads it.
        words: The words added to the request for an answer; ``{answer}`` stands for the answer.
        choices: The answers allowed (``("1", "100")``); empty for a whole number.
        default: The answer taken when the user just presses Enter, if any.
        phrases: Words added for each choice, when they differ per choice (else ``words``).
    """

    field: str
    text: str
    words: str = "{answer}"
    choices: tuple[str, ...] = ()
    default: str | None = None
    phrases: dict[str, str] = field(default_factory=dict)

    def words_for(self, answer: str) -> str:
        """The words that join the request for ``answer``."""
        return self.phrases.get(answer, self.words.format(answer=answer))


@dataclass(frozen=True)
class Answer:
    """A question and how it was answered, as the run's log records it."""

    question: Question
    answer: str

    def payload(self) -> dict[str, str]:
        """The answer as an event payload: the field, the question, the answer and the words added."""
        return {
            "field": self.question.field,
            "question": self.question.text,
            "answer": self.answer,
            "added": self.question.words_for(self.answer),
        }


#: Answers one question (a terminal prompt); what it returns is the answer as typed.
Ask = Callable[[Question], str]


def completed(request: str, answers: list[Answer]) -> str:
    """The request with the words of every answer added at its end, separated by semicolons."""
    added = [a.question.words_for(a.answer) for a in answers]
    return "; ".join([request.rstrip().rstrip(".;,"), *added]) if added else request
