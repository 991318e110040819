"""Campaign specs of four shapes that the optimiser tests share."""

from __future__ import annotations

from athanor.spec import CampaignSpec


def make_spec(components, *, total=1.0, constraints=(), direction="maximise", sum_rule=True) -> CampaignSpec:
    """A conductivity campaign over ``components`` (30 experiments in batches of 5)."""
    return CampaignSpec(
        components=components,
        sum_rule={"total": total} if sum_rule else None,
        constraints=list(constraints),
        objectives=[{"name": "conductivity", "direction": direction, "unit": "S/cm"}],
        budget={"experiments": 30, "batch_size": 5},
    )


FIVE_COMPONENTS = [
    {"name": "P3HT", "lower": 0.3},
    {"name": "CNT"},
    {"name": "D1"},
    {"name": "D2"},
    {"name": "D3"},
]
#: Five components summing to 1, one with a lower bound.
FIVE = make_spec(FIVE_COMPONENTS)
#: Percent (sum 100) with an upper bound.
PERCENT = make_spec(
    [{"name": "Cu", "upper": 100}, {"name": "Ag", "upper": 10}, {"name": "Zn", "upper": 100}], total=100.0
)
#: Six components with two linear constraints.
LINEAR = make_spec(
    [{"name": f"D{i}"} for i in range(1, 7)],
    constraints=[
        {"coefficients": {"D1": 1, "D2": 1}, "operator": "<=", "rhs": 0.4},
        {"coefficients": {"D6": 1}, "operator": ">=", "rhs": 0.05},
    ],
)
#: Independent amounts, no sum rule.
FREE = make_spec(
    [{"name": "A", "upper": 2.0}, {"name": "B", "lower": 0.5, "upper": 1.5}, {"name": "C"}], sum_rule=False
)
SPECS = {"five": FIVE, "percent": PERCENT, "linear": LINEAR, "no_sum_rule": FREE}
