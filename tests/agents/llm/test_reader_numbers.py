"""A stated number is never changed: every numeric field tried with 0, a negative number, a number above
the total (or the budget) and a lower end above the upper end.

Each one is either read exactly as written or refused, by the reader or by the spec, with a message
that names the field or quotes the words. Nothing is rounded, clipped, swapped or defaulted.
"""

from __future__ import annotations

import pytest

from agents.llm import OfflineLLM
from agents.pi import understand
from athanor.errors import RequestNotUnderstood, SpecError
from athanor.spec import CampaignSpec

SYSTEM = "Maximise the hardness of Cu, Ag and Zr"


def outcome(request: str) -> CampaignSpec | str:
    """The spec a request becomes, or the message it is refused with."""
    try:
        return understand(request, OfflineLLM())
    except (RequestNotUnderstood, SpecError) as error:
        return str(error)


REFUSED = [
    # the budget
    (f"{SYSTEM}, 0 experiments", "budget.experiments: Input should be greater than or equal to 1"),
    (f"{SYSTEM}, -5 experiments", 'could not read "-5 experiments" (-5 is negative'),
    (
        "最大化 Cu、Ag 和 Zr 的硬度，0 次实验",
        "budget.experiments: Input should be greater than or equal to 1",
    ),
    # the batch size: 0, negative, above the budget
    (
        f"{SYSTEM}, 10 experiments in batches of 0",
        "budget.batch_size: Input should be greater than or equal to 1",
    ),
    (f"{SYSTEM}, 10 experiments in batches of -2", 'could not read "batches of -2" (-2 is negative'),
    (
        f"{SYSTEM}, 10 experiments in batches of 20",
        "batch_size (20) is larger than the budget of 10 experiments",
    ),
    (
        "最大化 Cu、Ag 和 Zr 的硬度，10 次实验，每批 0 个",
        "budget.batch_size: Input should be greater than or equal to 1",
    ),
    # the initial design
    (
        f"{SYSTEM}, 10 experiments with an initial design of 0 samples",
        "budget.initial_experiments: Input should be greater than or equal to 1",
    ),
    (
        f"{SYSTEM}, 10 experiments with an initial design of 12 samples",
        "initial_experiments (12) exceeds the budget",
    ),
    # the seed
    (f"{SYSTEM}, 10 experiments, seed -1", 'could not read "seed -1" (-1 is negative'),
    (f"{SYSTEM}, 10 experiments, seed 99999999999", "seed: Input should be less than or equal to 4294967295"),
    # a bound: negative, above the total, lower end above the upper end
    (f"{SYSTEM}, Ag at least -0.1, 10 experiments", 'could not read "Ag at least -0.1" (-0.1 is negative'),
    (
        f"{SYSTEM}, fractions sum to 1, Ag at most 1.5, 10 experiments",
        '"Ag at most 1.5": 1.5 is more than the total of 1 the amounts add up to',
    ),
    (
        f"{SYSTEM}, Ag at most 150 at.%, 10 experiments",
        '"Ag at most 150 at.%": 150 is more than the total of 100',
    ),
    (f"{SYSTEM}, Ag between 0.5 and 0.2, 10 experiments", "the lower end (0.5) is above the upper end (0.2)"),
    (
        f"{SYSTEM}, Ag at least 0.6, Ag at most 0.3, 10 experiments",
        "leave Ag no room: at least 0.6 and at most 0.3",
    ),
    (
        f"{SYSTEM}, each component at least 0.5, 10 experiments",
        "sum_rule: the lower bounds add up to 1.5, more than the total 1",
    ),
    # a linear constraint
    (
        f"{SYSTEM}, Cu + Ag at most -0.2, 10 experiments",
        'could not read "Cu + Ag at most -0.2" (-0.2 is negative',
    ),
    (
        f"{SYSTEM}, fractions sum to 1, Cu + Ag at least 1.5, 10 experiments",
        "constraints: no composition within the bounds and the sum rule satisfies all of",
    ),
    # how many components may be present
    (
        f"{SYSTEM}, choose at most 0 of them, 10 experiments",
        "max_active_components is 0; it must be at least 1",
    ),
    (
        f"{SYSTEM}, using at most 4 of them, 10 experiments",
        "max_active_components (4) exceeds the number of components",
    ),
    # the grid step
    (f"{SYSTEM}, in steps of 0, 10 experiments", "resolution is 0.0; give a positive grid step"),
    (f"{SYSTEM}, in steps of -0.1, 10 experiments", 'could not read "steps of -0.1" (-0.1 is negative'),
    (
        f"{SYSTEM}, fractions sum to 1, in steps of 2, 10 experiments",
        "resolution 2 does not divide the sum-rule total 1",
    ),
    # the sum rule
    (
        f"{SYSTEM}, fractions sum to 0, 10 experiments",
        '"fractions sum to 0": amounts must sum to 1 (fractions) or to',
    ),
    (
        f"{SYSTEM}, fractions sum to -1, 10 experiments",
        'could not read "fractions sum to -1" (-1 is negative',
    ),
    (
        f"{SYSTEM}, summing to 50 %, 10 experiments",
        '"summing to 50 %": amounts must sum to 1 (fractions) or to 100 %',
    ),
    # a threshold on the wrong side of a maximised objective
    (
        "Maximise the conductivity and the yield of Cu, Ag and Zr, conductivity at most 0, 10 experiments",
        "a threshold is the worst acceptable value",
    ),
]


@pytest.mark.parametrize(("request_text", "said"), REFUSED, ids=[r[0][-50:] for r in REFUSED])
def test_a_number_that_cannot_hold_is_refused_not_changed(request_text, said):
    result = outcome(request_text)
    assert isinstance(result, str), f"read as {result!r}"
    assert said in result


def test_a_zero_bound_is_read_as_zero():
    spec = outcome(f"{SYSTEM}, Ag at most 0, Cu at least 0, 10 experiments")
    assert isinstance(spec, CampaignSpec)
    assert {c.name: (c.lower, c.upper) for c in spec.components} == {
        "Cu": (0.0, 1.0),
        "Ag": (0.0, 0.0),
        "Zr": (0.0, 1.0),
    }


def test_a_bound_at_the_total_is_read_as_the_total():
    spec = outcome(f"{SYSTEM}, Cu at most 100 %, 10 experiments")
    assert isinstance(spec, CampaignSpec)
    assert spec.components[0].upper == 100.0 and spec.sum_rule is not None and spec.sum_rule.total == 100.0


@pytest.mark.parametrize(("words", "target"), [("until it reaches 0", 0.0), ("target -5", -5.0)])
def test_a_target_of_zero_or_below_is_kept_as_stated(words, target):
    spec = outcome(f"Minimise the formation energy of Cu, Ag and Zr {words}, 10 experiments")
    assert isinstance(spec, CampaignSpec)
    assert spec.primary_objective.target == target


def test_a_seed_of_zero_is_kept():
    spec = outcome(f"{SYSTEM}, 10 experiments, seed 0")
    assert isinstance(spec, CampaignSpec) and spec.seed == 0


def test_a_batch_as_large_as_the_budget_is_kept():
    spec = outcome(f"{SYSTEM}, 6 experiments, 6 at a time")
    assert isinstance(spec, CampaignSpec)
    assert (spec.budget.experiments, spec.budget.batch_size) == (6, 6)
