"""Requests the reader must refuse rather than misread, each with what its refusal says.

Every refusal names the words it could not place (or the problem they cause), says what it did read
and suggests the nearest phrasing of *this* request that reads; the shared ``refusal`` helper checks
that the suggestion reads once its stand-ins (``<how many>``, ``<A>``) are filled in.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from support.refusals import refusal, suggested


def problem_lines(message: str) -> list[str]:
    return [line.removeprefix("  - ") for line in message.splitlines() if line.startswith("  - ")]


REFUSED = [
    # a hyphenated word that is not a chemical system
    (
        "Maximise the hardness of a Fe-based alloy, 20 runs",
        'no components: "Fe-based alloy" does not say what is in it ("based" is not a component)',
        "Maximise the hardness of a Fe-based alloy of Fe and <another component>, 20 runs",
    ),
    (
        "Raise the conductivity of a Cu-rich film, 12 experiments",
        'no components: "Cu-rich film" does not say what is in it ("rich" is not a component)',
        "Raise the conductivity of a Cu-rich film of Cu and <another component>, 12 experiments",
    ),
    (
        "Maximise the hardness of Ti-6Al-4V, 20 runs",
        '"Ti-6Al-4V" is an alloy designation; the reader does not read amounts inside a name',
        "Maximise the hardness of Ti, Al and V, 20 runs",
    ),
    # a number, a unit or a word that no phrase places
    (
        "Maximise the hardness of Cu, Ag and Zr at 300 K, 20 runs",
        'could not read "at 300 K"',
        "Maximise the hardness of Cu, Ag and Zr, 20 runs",
    ),
    (
        "Maximise the hardness of Cu, Ag and Zr, annealed at 500 C, 20 runs",
        'could not read "annealed at 500 C"',
        "Maximise the hardness of Cu, Ag and Zr, 20 runs",
    ),
    (
        "Minimise the wear of Cu, Ag and Zr, 20 runs, 3 replicates",
        'could not read "3 replicates"',
        "Minimise the wear of Cu, Ag and Zr, 20 runs",
    ),
    (
        "最大化 Cu、Ag 和 Zr 的硬度，20 次实验，在 500 度退火",
        'could not read "在 500 度退火"',
        "最大化 Cu、Ag 和 Zr 的硬度, 20 次实验",
    ),
    (
        "Maximise the capacity of LiNi0.8Co0.1Mn0.1O2 and LiFePO4, 16 runs",
        'could not read "LiNi0.8Co0.1Mn0.1O2 and LiFePO4" (a component name cannot hold "."',
        "Maximise the capacity of <A>, <B> and <C>, 16 runs",
    ),
    # a component named in a bound but not in the system
    (
        "Maximise the hardness of Cu, Ag and Zr, Ni at most 0.2, 20 runs",
        '"Ni at most 0.2" bounds Ni, which is not a component; the components are Cu, Ag, Zr',
        "Maximise the hardness of Cu, Ag and Zr, 20 runs",
    ),
    (
        "Minimise the density of Cu, Ag and Zr, Zn below 0.1, 16 runs",
        '"Zn below 0.1" bounds Zn, which is not a component (did you mean Zr?)',
        "Minimise the density of Cu, Ag and Zr, Zr below 0.1, 16 runs",
    ),
    (
        "最大化 Cu、Ag 和 Zr 的硬度，Ni 不超过 0.2，20 次实验",
        '"Ni 不超过 0.2" bounds Ni, which is not a component; the components are Cu, Ag, Zr',
        "最大化 Cu、Ag 和 Zr 的硬度, 20 次实验",
    ),
    (
        "Maximise the hardness of Cu, Ag and Zr, Ti the balance, 10 runs",
        '"Ti the balance": Ti is not a component; the components are Cu, Ag, Zr',
        "Maximise the hardness of Cu, Ag and Zr, 10 runs",
    ),
    # a property the reader is unsure of
    (
        "最大化 Cu、Ag 和 Zr 的韧脆转变温度，20 次实验",
        '"韧脆转变温度" is not a property the reader knows in Chinese; name it in English after 的',
        "最大化 Cu、Ag 和 Zr 的<property>, 20 次实验",
    ),
    (
        "What ratio of Fe, Co and Ni gives the best coercivity? 20 runs",
        '"best" does not say whether the coercivity should be high or low',
        "What ratio of Fe, Co and Ni gives the <highest or lowest> coercivity, 20 runs",
    ),
    (
        "Optimise the band gap of TiO2 and ZnO, 12 runs",
        '"Optimise the band gap" does not say whether the band gap should be high or low',
        "<Maximise or minimise> the band gap of TiO2 and ZnO, 12 runs",
    ),
    (
        "Find the most stable composition of A and B, 10 runs",
        '"stable" describes, it does not name a property to measure',
        "Find the highest <property> of A and B, 10 runs",
    ),
    (
        "Minimise the band gap of CsSnI3 and CsPbI3 for maximum efficiency, 10 runs",
        '"for maximum efficiency" after "Minimise the band gap": is efficiency a second objective?',
        "Minimise the band gap of CsSnI3 and CsPbI3, 10 runs",
    ),
    # a value the reader would have to change to use
    (
        "Maximise the hardness of Cu, Ag and Zr, Ag between 0.4 and 0.1, 20 runs",
        '"Ag between 0.4 and 0.1": the lower end (0.4) is above the upper end (0.1)',
        "Maximise the hardness of Cu, Ag and Zr, Ag between 0.1 and 0.4, 20 runs",
    ),
    (
        "最大化 Cu 和 Ag 的硬度，Ag 介于 0.4 和 0.1 之间，12 次实验",
        '"Ag 介于 0.4 和 0.1": the lower end (0.4) is above the upper end (0.1)',
        "最大化 Cu 和 Ag 的硬度, Ag between 0.1 and 0.4, 12 次实验",
    ),
    (
        "Maximise the hardness of Cu, Ag and Zr, fractions sum to 1, Ag at least 1.2, 10 experiments",
        '"Ag at least 1.2": 1.2 is more than the total of 1 the amounts add up to',
        "Maximise the hardness of Cu, Ag and Zr, fractions sum to 1, 10 experiments",
    ),
    (
        "Maximise the hardness of Cu, Ag and Zr, Ag at least 0.6, Ag at most 0.3, 10 experiments",
        '"Ag at least 0.6" and "Ag at most 0.3" leave Ag no room',
        "Maximise the hardness of Cu, Ag and Zr, Ag at least 0.6, 10 experiments",
    ),
    (
        "Maximise the hardness of Cu, Ag and Zr, Ag at least -0.1, 10 experiments",
        'could not read "Ag at least -0.1" (-0.1 is negative: no amount, count or step can be)',
        "Maximise the hardness of Cu, Ag and Zr, 10 experiments",
    ),
    # two things that cannot both hold
    (
        "Minimise the cost of A and B, 30 experiments, 40 experiments",
        'the budget is given more than once ("30 experiments" and "40 experiments")',
        "Minimise the cost of A and B, 30 experiments",
    ),
    (
        "Maximise the hardness of Cu, Ag and Zr, Cu the balance, Zr the balance, 10 runs",
        'only one component can be the balance ("Cu the balance" and "Zr the balance")',
        "Maximise the hardness of Cu, Ag and Zr, Cu the balance, 10 runs",
    ),
    (
        "Maximise the hardness of Cu, Ag and Zr, no sum rule, Cu the balance, 10 runs",
        '"Cu the balance" means the amounts add up to a total, but the request says they do not',
        "Maximise the hardness of Cu, Ag and Zr, no sum rule, 10 runs",
    ),
    (
        "Maximise the hardness of Cu, Ag and Zr by mass, Ag at most 5 at.%, 10 runs",
        'the request names at.% amounts (mole) and "by mass" (mass); name one',
        "Maximise the hardness of Cu, Ag and Zr, Ag at most 5 at.%, 10 runs",
    ),
    (
        "Maximise the hardness of Cu, Ag and Zr, Ag at most 10 %, Zr at least 0.2, 10 runs",
        "some amounts are in percent and some have no unit",
        "Maximise the hardness of Cu, Ag and Zr, 10 experiments",
    ),
    (
        "最大化 Cu、Ag 和 Zr 的硬度，Cu 和 Ag 不超过 0.5，20 次实验",
        '"Cu 和 Ag 不超过 0.5" is ambiguous: write "Cu and Ag each ..." to bound each one',
        "最大化 Cu、Ag 和 Zr 的硬度, Cu and Ag each at most 0.5, 20 次实验",
    ),
    # nothing to optimise, or nothing to mix
    (
        "Make A and B better, 20 runs",
        'could not read "Make A and B better"',
        "Maximise the <property> of <A>, <B> and <C>, 20 runs",
    ),
    # what a question settles, asked in the message
    (
        "Maximise the hardness of Cu, Ag and Zr in batches of 4",
        "no budget: how many experiments may the campaign run in all?",
        "Maximise the hardness of Cu, Ag and Zr, in batches of 4, <how many> experiments",
    ),
    (
        "最小化 TiO2 和 ZnO 的带隙，每批 4 个",
        "no budget: how many experiments may the campaign run in all?",
        "最小化 TiO2 和 ZnO 的带隙, 每批 4, <how many> experiments",
    ),
    (
        "Maximise the hardness of Cu, Ag and Zr, Ag at most 30, 20 runs",
        '30 in "Ag at most 30" has no unit and is more than 1: do the amounts add up to 1 (fractions)'
        " or to 100 (percent)?",
        "Maximise the hardness of Cu, Ag and Zr, Ag at most 30, 20 runs, <fractions sum to 1, or summing"
        " to 100 %>",
    ),
]


@pytest.mark.parametrize(("request_text", "problem", "phrasing"), REFUSED, ids=[r[0][:50] for r in REFUSED])
def test_a_request_that_cannot_be_read_right_is_refused_saying_why(request_text, problem, phrasing):
    message = refusal(request_text)
    assert any(problem in line for line in problem_lines(message)), message
    assert suggested(message) == phrasing


def test_there_are_enough_refusals():
    assert len(REFUSED) >= 25
    assert sum(any("\u4e00" <= c <= "\u9fff" for c in r[0]) for r in REFUSED) >= 5


def test_a_refusal_says_what_it_did_read():
    message = refusal("Minimise the density of Cu, Ag and Zr, Zn below 0.1, 16 runs")
    read = 'Read so far: minimise density; components Cu, Ag, Zr; bound "Zn below 0.1"; 16 experiments.'
    assert read in message


def test_the_suggestion_is_this_requests_own_not_a_fixed_example():
    first = suggested(refusal("Maximise the hardness of Cu, Ag and Zr at 300 K, 20 runs"))
    second = suggested(refusal("Reduce the wear of TiN and CrN, 9 runs, 2 replicates"))
    assert first != second
    assert second == "Reduce the wear of TiN and CrN, 9 runs"


def test_no_request_here_is_copied_from_the_readme_or_the_grammar_document():
    here = Path(__file__).resolve()
    path = here.with_name("test_reader_phrasings.py")
    spec = importlib.util.spec_from_file_location("reader_phrasings", path)
    assert spec is not None and spec.loader is not None
    phrasings = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(phrasings)
    root = here.parents[3]
    texts = [(root / name).read_text(encoding="utf-8") for name in ("README.md", "docs/request-grammar.md")]
    published = " ".join(" ".join(text.split()) for text in texts)
    requests = [p.values[0] for p in phrasings.ENGLISH + phrasings.CHINESE] + [r[0] for r in REFUSED]
    copied = [r for r in requests if " ".join(r.split()) in published]
    assert copied == []
