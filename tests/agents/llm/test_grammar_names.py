"""Component names in requests: what becomes a component, what stays one name, what is refused."""

from __future__ import annotations

import pytest

from agents.llm.grammar import read_request
from athanor.errors import RequestNotUnderstood


def refusal(request: str) -> str:
    with pytest.raises(RequestNotUnderstood) as info:
        read_request(request)
    return str(info.value)


@pytest.mark.parametrize(
    ("request_text", "line"),
    [
        (
            "Minimise the density of a blend of Ti, Al and V with Ti + 2*Mo <= 0.8, 25 experiments",
            '"Ti + 2*Mo <= 0.8" bounds Mo, which is not a component; the components are Ti, Al, V',
        ),
        (
            "Maximise the hardness of Cu, Ag and Zr, the sum of Ag and Zn is at most 0.4, 20 runs",
            '"the sum of Ag and Zn is at most 0.4" bounds Zn, which is not a component (did you mean Zr?);'
            " the components are Cu, Ag, Zr",
        ),
        (
            "Raise the yield of X1, X2 and X3, X1 and Y7 together no more than 0.6, 18 experiments",
            '"X1 and Y7 together no more than 0.6" bounds Y7, which is not a component; the components are'
            " X1, X2, X3",
        ),
    ],
)
def test_the_reader_refuses_a_constraint_on_an_unknown_component_in_its_own_words(request_text, line):
    # the spec would refuse it too, later and in its own terms; the reader says it in the request's words
    assert f"  - {line}\n" in refusal(request_text)
