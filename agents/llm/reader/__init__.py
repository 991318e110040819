"""The offline request reader: a campaign request in controlled English read without a language model.

A request in English or Chinese (简体) such as::

    Maximise the conductivity of a P3HT/CNT blend of P3HT, D1, D2, D6 and D8
    (fractions sum to 1, P3HT at least 0.3), 30 experiments in batches of 5

becomes the fields of a :class:`athanor.spec.CampaignSpec`. Each kind of phrase (objectives,
thresholds and outcome constraints, components, sum rule, bounds, linear constraints, budget, batch
size, seed, target, how many components may be present, grid step, categorical choices) is matched by
its own patterns, and every match marks the characters it used. Whatever is left at the end must be
filler (articles, "and", "please", punctuation, ...); anything else makes the request refused with
:class:`athanor.errors.RequestNotUnderstood`, quoting the unread words, saying what was read and
showing a phrasing that works. The user-facing description is ``docs/request-grammar.md``.

The modules, one job each: :mod:`~agents.llm.reader.words` (vocabulary), :mod:`~.chinese` (Chinese
keywords rewritten into the words the patterns read), :mod:`~.text` (the working text and where its
characters came from), :mod:`~.patterns` (the phrase patterns), :mod:`~.scanner` (running them),
:mod:`~.assemble` (from phrases to spec fields, and the questions a request leaves open),
:mod:`~.refusal` (what a refusal says, and the nearest phrasing that works), :mod:`~.explain` (which
words became which field) and :mod:`~.crosscheck` (a language model's reading checked against the
request's words).
"""

from __future__ import annotations

from typing import Any

from agents.llm.reader.assemble import BATCH_QUESTION, assemble
from agents.llm.reader.explain import Explanation, explain
from agents.llm.reader.refusal import EXAMPLE_REQUEST, message, suggestion, summary, unread_problem
from agents.llm.reader.scanner import Scanner
from agents.llm.reader.words import PROPERTY_UNITS
from athanor.asking import Question
from athanor.errors import RequestNotUnderstood

__all__ = ["EXAMPLE_REQUEST", "PROPERTY_UNITS", "Explanation", "explain", "open_questions", "read_request"]


def read_request(text: str) -> dict[str, Any]:
    """Read a controlled-English campaign request into the fields of a ``CampaignSpec``.

    Args:
        text: The request, e.g. ``"Maximise the conductivity of a blend of P3HT, D1 and D2,
            30 experiments in batches of 5"``.

    Returns:
        A dict for ``CampaignSpec.model_validate``: title, request, components (bounds in the spec's
        unit), sum_rule, constraints, objectives, budget and, when given, seed,
        max_active_components, resolution (in the spec's unit) and categories. Not yet validated:
        infeasible bounds are left for the spec's validators to report.

    Raises:
        athanor.errors.RequestNotUnderstood: A part of the request was not read, or something the
            spec needs (objective, two components, budget) is missing or contradictory. The message
            quotes the unread words, says what was read and shows a phrasing that works.
    """
    if not text or not text.strip():
        raise RequestNotUnderstood(message(["the request is empty"], "nothing"))
    scanner = Scanner(text)
    scanner.run()
    unread = scanner.unread()
    data = assemble(scanner)
    problems = [unread_problem(u) for u in unread] + scanner.problems
    if problems:
        questions = scanner.questions if scanner.only_questions else []
        works = suggestion(scanner)
        raise RequestNotUnderstood(message(problems, summary(scanner.found), works), questions)
    return data


def open_questions(text: str) -> list[Question]:
    """What a terminal may ask before ``text`` is read, so that nothing is guessed.

    Returns:
        The questions that settle all the request lacks (its budget, whether its amounts add up to
        1 or to 100) and, when it states no batch size, the batch size (without an answer: one at a
        time). Empty when the request has a problem no question settles: it is refused as it
        stands, and asking would not help.
    """
    if not text or not text.strip():
        return []
    scanner = Scanner(text)
    scanner.run()
    assemble(scanner)
    if scanner.problems and not scanner.only_questions:
        return []
    if scanner.unread():
        return []
    questions = list(scanner.questions)
    if not scanner.found.batches:
        questions.append(BATCH_QUESTION)
    return questions
