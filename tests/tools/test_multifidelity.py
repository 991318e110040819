"""Cost-aware multi-fidelity proposals, the advice on whether the cheap source pays, and the spec rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from athanor.errors import SpecError
from athanor.models import Observation
from athanor.spec import CampaignSpec
from tools.budget import MIN_PAIRS, advise, budget_spent, check_fidelities, cost_of
from tools.optimiser import propose_multifidelity
from tools.simulators import simulate

NAMES = ["A", "B", "C", "D"]
PEAK = np.array([0.4, 0.3, 0.2, 0.1])
ELSEWHERE = np.array([0.05, 0.15, 0.3, 0.5])


def make_spec(
    cost: float = 0.05, simulator: str = "instruments.virtual_world:screen", **changes
) -> CampaignSpec:
    data = {
        "components": [{"name": n} for n in NAMES],
        "constraints": [{"coefficients": {"A": 1, "B": 1}, "operator": "<=", "rhs": 0.8}],
        "objectives": [{"name": "y"}],
        "budget": {"experiments": 30, "batch_size": 4},
        "fidelities": [{"name": "exp", "cost": 1}, {"name": "sim", "cost": cost, "simulator": simulator}],
    }
    return CampaignSpec.model_validate({**data, **changes})


def bump(x: np.ndarray, centre: np.ndarray) -> float:
    return 1.0 + 3.0 * math.exp(-float(((x - centre) ** 2).sum()) / 0.08)


def campaign_data(seed: int, correlated: bool) -> list[Observation]:
    """15 experiments and 21 cheap evaluations (6 at the same compositions) on a synthetic landscape."""
    rng = np.random.default_rng(seed)
    points = rng.dirichlet(np.ones(4), 30)
    points = points[points[:, 0] + points[:, 1] <= 0.8]
    out = []
    for i, x in enumerate(points[:15]):
        value = bump(x, PEAK) + 0.02 * rng.standard_normal()
        out.append(
            Observation(
                experiment_id=f"E{i}",
                iteration=0,
                composition=dict(zip(NAMES, x, strict=True)),
                values={"y": value},
            )
        )
    for i, x in enumerate([*points[:6], *points[15:]]):
        truth = bump(x, PEAK) + 0.3 * x[0] if correlated else bump(x, ELSEWHERE)
        value = truth + 0.05 * rng.standard_normal()
        out.append(
            Observation(
                experiment_id=f"S{i}",
                iteration=0,
                composition=dict(zip(NAMES, x, strict=True)),
                values={"y": value},
                fidelity="sim",
            )
        )
    return out


def cheap_picks(cost: float, correlated: bool) -> list[int]:
    counts = []
    for seed in (0, 1):
        spec = make_spec(cost)
        picks = propose_multifidelity(spec, campaign_data(seed, correlated), 4, seed, cheap_budget=1.0)
        assert len(picks) == 4
        for pick in picks:
            assert spec.violations(pick.composition) == []  # bounds, sum rule and the linear constraint
            assert pick.cost == cost_of(spec, pick.fidelity)
        counts.append(sum(p.fidelity == "sim" for p in picks))
    return counts


def test_a_cheap_well_correlated_source_is_picked_for_most_of_the_batch():
    assert all(n >= 3 for n in cheap_picks(0.05, correlated=True))


def test_the_cheap_source_is_not_picked_when_it_is_expensive_or_unrelated():
    assert all(n <= 1 for n in cheap_picks(0.9, correlated=True))
    assert all(n <= 1 for n in cheap_picks(0.05, correlated=False))


def test_cheap_budget_and_min_target_bound_the_picks():
    spec = make_spec(0.05)
    data = campaign_data(0, correlated=True)
    picks = propose_multifidelity(spec, data, 4, 0, cheap_budget=0.1)
    assert sum(p.fidelity == "sim" for p in picks) <= 2
    assert sum(p.cost for p in picks if p.fidelity == "sim") <= 0.1 + 1e-9
    forced = propose_multifidelity(spec, data, 3, 0, cheap_budget=1.0, min_target=3)
    assert [p.fidelity for p in forced] == ["exp"] * 3


def test_without_cheap_data_every_pick_is_an_experiment():
    spec = make_spec(0.05)
    experiments = [o for o in campaign_data(0, correlated=True) if o.fidelity is None]
    picks = propose_multifidelity(spec, experiments, 2, 0)
    assert [p.fidelity for p in picks] == ["exp", "exp"]
    assert all("too few evaluations" in p.rationale for p in picks)


def pairs(cheap: list[float], target: list[float], *, jitter: float = 1e-3) -> list[Observation]:
    out = []
    for i, (c, t) in enumerate(zip(cheap, target, strict=True)):
        composition = {"A": 0.1 + 0.05 * i, "B": 0.2, "C": 0.3, "D": 0.4 - 0.05 * i}
        made = {
            **composition,
            "A": composition["A"] + jitter,
            "D": composition["D"] - jitter,
        }  # pipette rounding
        out.append(Observation(experiment_id=f"E{i}", iteration=0, composition=made, values={"y": t}))
        out.append(
            Observation(
                experiment_id=f"S{i}", iteration=0, composition=composition, values={"y": c}, fidelity="sim"
            )
        )
    return out


def test_advice_reports_the_hand_computed_r2_and_the_verdict():
    cheap = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    target = [1.2, 1.9, 3.4, 3.8, 5.5, 5.9]
    r = np.corrcoef(cheap, target)[0, 1]
    advice = advise(make_spec(0.05), pairs(cheap, target))
    assert advice.pairs == 6 and not advice.log_scale
    assert advice.r2 == pytest.approx(r**2, rel=1e-9)
    assert advice.verdict == "pays"

    noisy = [3.0, 1.0, 6.0, 2.0, 5.0, 4.0]
    advice = advise(make_spec(0.05), pairs(noisy, target))
    assert advice.r2 == pytest.approx(np.corrcoef(noisy, target)[0, 1] ** 2, rel=1e-9)
    assert advice.verdict == "does_not_pay" and "consider dropping it" in advice.message

    dear = advise(make_spec(0.25), pairs(cheap, target))
    assert dear.verdict == "does_not_pay"
    assert "costs 0.25 of an experiment" in dear.message and f"explains {100 * r**2:.0f} %" in dear.message


def test_advice_uses_log_values_when_they_span_decades():
    cheap = [1.0, 10.0, 100.0, 1000.0, 30.0]
    target = [2.0, 15.0, 90.0, 2000.0, 20.0]
    advice = advise(make_spec(0.05), pairs(cheap, target))
    assert advice.log_scale
    assert advice.r2 == pytest.approx(np.corrcoef(np.log(cheap), np.log(target))[0, 1] ** 2, rel=1e-9)


def test_advice_says_when_too_few_compositions_are_measured_at_both():
    advice = advise(make_spec(0.05), pairs([1.0, 2.0, 3.0], [1.0, 2.0, 3.1]))
    assert advice.verdict == "too_few_pairs" and advice.r2 is None and advice.pairs == 3
    assert f"3 of the {MIN_PAIRS} compositions" in advice.message
    far = pairs([1.0] * 6, [2.0] * 6, jitter=0.03)  # made compositions too far from the simulated ones
    assert advise(make_spec(0.05), far).pairs == 0


def test_budget_counts_a_cheap_evaluation_as_its_cost():
    spec = make_spec(0.05)
    observations = pairs([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert budget_spent(spec, observations) == pytest.approx(3 * 1.0 + 3 * 0.05)
    assert budget_spent(spec, observations, running=2) == pytest.approx(5.15)
    plain = CampaignSpec(
        components=[{"name": "A"}, {"name": "B"}], objectives=[{"name": "y"}], budget={"experiments": 5}
    )
    assert budget_spent(plain, [o for o in observations if o.fidelity is None]) == 3
    with pytest.raises(SpecError, match="not a source"):
        cost_of(spec, "oracle")


@pytest.mark.parametrize(
    ("fidelities", "message"),
    [
        (
            [{"name": "exp", "cost": 0.5}, {"name": "sim", "cost": 0.1, "simulator": "a.b:c"}],
            "exactly one source must cost 1",
        ),
        ([{"name": "exp", "cost": 1}], "only the target is listed"),
        ([{"name": "exp", "cost": 1}, {"name": "sim", "cost": 0.05}], "no simulator"),
        (
            [{"name": "exp", "cost": 1}, {"name": "sim", "cost": 0.05, "simulator": "no_colon"}],
            "not an entry point",
        ),
        (
            [
                {"name": "exp", "cost": 1, "simulator": "a.b:c"},
                {"name": "sim", "cost": 0.1, "simulator": "a.b:c"},
            ],
            "drop its",
        ),
        (
            [
                {"name": "exp", "cost": 1},
                {"name": "s1", "cost": 0.05, "simulator": "a.b:c"},
                {"name": "s2", "cost": 0.1, "simulator": "a.b:d"},
            ],
            "one cheap source beside the target",
        ),
        (
            [{"name": "exp", "cost": 1}, {"name": "exp", "cost": 0.1, "simulator": "a.b:c"}],
            "listed more than once",
        ),
        ([{"name": "exp", "cost": 1}, {"name": "sim", "cost": 0, "simulator": "a.b:c"}], "greater than 0"),
    ],
)
def test_the_spec_refuses_sources_it_cannot_use(fidelities, message):
    with pytest.raises(ValidationError, match=message):
        make_spec(fidelities=fidelities)


def test_the_spec_refuses_fidelities_with_features_the_optimiser_lacks():
    with pytest.raises(ValidationError, match="cannot be combined with categories"):
        make_spec(categories=[{"name": "anneal", "choices": ["no", "yes"]}])


def test_plan_time_check_refuses_an_unimportable_simulator_and_warns_about_cost():
    with pytest.raises(SpecError, match="cannot be imported"):
        check_fidelities(make_spec(simulator="no_such_package.module:screen"))
    with pytest.raises(SpecError, match="has no function"):
        check_fidelities(make_spec(simulator="instruments.virtual_world:no_such_function"))
    warnings = check_fidelities(make_spec(cost=0.25))
    assert any("costs 0.25" in w and "~0.1" in w for w in warnings)
    assert not any("costs" in w for w in check_fidelities(make_spec(cost=0.05)))


def test_the_shipped_screen_is_deterministic_and_follows_the_virtual_meter():
    from instruments.emulator import emulator_for

    spec = make_spec(seed=4)
    composition = {"A": 0.4, "B": 0.3, "C": 0.2, "D": 0.1}
    value = simulate(spec, "sim", composition)
    assert value == simulate(spec, "sim", dict(composition))
    truth = emulator_for(NAMES, 4).true_value(composition)
    assert abs(math.log(value / truth)) < 1.0  # bias at most 0.3 in log, noise 0.15


def test_observations_without_a_fidelity_still_load_and_serialise_as_before():
    old = '{"experiment_id": "E1", "iteration": 0, "composition": {"A": 1.0}, "values": {"y": 2.0}}'
    observation = Observation.model_validate_json(old)
    assert observation.fidelity is None
    assert "fidelity" not in observation.model_dump(mode="json")
    assert (
        Observation(experiment_id="S1", iteration=0, composition={}, fidelity="sim").model_dump()["fidelity"]
        == "sim"
    )
