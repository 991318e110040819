"""Several objectives and outcome constraints on the mixed space: at most k, on the grid, choices."""

from __future__ import annotations

import math
import re

import pytest

from athanor.errors import SpecError
from athanor.models import Observation
from athanor.pareto import hypervolume, pareto_front
from athanor.spec import CampaignSpec
from tools.grid import grid_steps
from tools.mixed_space import MixedPoint, mixed_initial_design, mixed_space
from tools.optimiser import DUPLICATE_DISTANCE, propose, propose_pareto, propose_pareto_mixed

ELEMENTS = ["Cu", "Ag", "Ni", "Co"]
ROUTE = {"name": "route", "choices": ["A", "B", "C"]}
#: Per unit fraction: what each element adds to the conductivity and the transmittance.
CONDUCTIVE = {"Ag": 1.0, "Ni": 0.5}
CLEAR = {"Cu": 1.0, "Co": 0.5}
#: Faster settings; the defaults are exercised by the dispatch test.
QUICK = {"mc_samples": 64, "raw_samples": 32}


def make(objectives=("conductivity", "transmittance"), **fields) -> CampaignSpec:
    units = {"conductivity": "S/cm", "transmittance": "%"}
    data = {
        "components": [{"name": n} for n in ELEMENTS],
        "objectives": [{"name": o, "unit": units[o]} for o in objectives],
        "budget": {"experiments": 40, "batch_size": 4},
        "max_active_components": 2,
        "resolution": 0.05,
        "categories": [ROUTE],
    }
    return CampaignSpec.model_validate(data | fields)


def share(spec: CampaignSpec, point: MixedPoint, weights: dict[str, float]) -> float:
    fractions = spec.to_unit_fractions(point.composition)
    return sum(w * fractions[n] for n, w in weights.items())


def truth(spec: CampaignSpec, point: MixedPoint) -> dict[str, float]:
    """Ag-rich is conductive, Cu-rich is clear; route A helps the first, B the second, C neither."""
    route = point.choices["route"]
    return {
        "conductivity": (10 + 90 * share(spec, point, CONDUCTIVE)) * (1.5 if route == "A" else 1.0),
        "transmittance": (20 + 60 * share(spec, point, CLEAR)) * (1.2 if route == "B" else 1.0),
    }


def observe(spec: CampaignSpec, points: list[MixedPoint], start: int = 0, iteration: int = 0):
    return [
        Observation(
            experiment_id=f"E{start + i:04d}",
            iteration=iteration,
            composition=p.composition,
            choices=p.choices,
            values={k: v for k, v in truth(spec, p).items() if k in spec.measured_names},
        )
        for i, p in enumerate(points)
    ]


def as_point(suggestion) -> MixedPoint:
    return MixedPoint(composition=suggestion.composition, choices=suggestion.choices)


def assert_admissible(spec: CampaignSpec, suggestion) -> None:
    composition, choices = suggestion.composition, suggestion.choices
    assert spec.violations(composition, tol=1e-9, choices=choices) == []
    present = [n for n in spec.component_names if composition[n] > 0]
    assert suggestion.active_components == present
    assert len(present) <= spec.max_active_components
    steps = grid_steps(spec, composition)
    for name, count in zip(spec.component_names, steps, strict=True):
        assert abs(composition[name] - count * spec.resolution) < 1e-9
    assert sum(steps) == round(spec.sum_rule.total / spec.resolution)
    assert choices["route"] in ROUTE["choices"] and set(choices) == {"route"}


def min_gap(spec: CampaignSpec, suggestions, others: list[MixedPoint]) -> float:
    """Smallest distance (per component range) from a suggestion to another point with the same choices."""
    mixed = mixed_space(spec)
    mine = [as_point(s) for s in suggestions]
    x, every = mixed.encode(mine), mixed.encode(others + mine)
    gaps = [math.inf]
    for i in range(len(mine)):
        for j in range(every.shape[0]):
            if j != len(others) + i and bool((every[j, mixed.dim :] == x[i, mixed.dim :]).all()):
                gap = mixed.space.normalise(every[j, : mixed.dim]) - mixed.space.normalise(x[i, : mixed.dim])
                gaps.append(float(gap.abs().max()))
    return min(gaps)


def test_proposals_obey_every_rule_avoid_pending_points_and_explain_themselves():
    spec = make(
        components=[{"name": "Cu", "upper": 0.8}] + [{"name": n} for n in ELEMENTS[1:]],
        constraints=[{"coefficients": {"Ag": 1, "Ni": 1}, "operator": "<=", "rhs": 0.9}],
        outcome_constraints=[{"name": "conductivity", "operator": ">=", "value": 20, "unit": "S/cm"}],
    )
    points = mixed_initial_design(spec, 12, 4)
    observations, pending = observe(spec, points[:10]), points[10:]
    with pytest.raises(SpecError, match="give the choices"):
        propose(spec, observations, 3, 2, [p.composition for p in pending])
    args = (spec, observations, 3, 2, [p.composition for p in pending])
    suggestions = propose_pareto_mixed(*args, pending_choices=[p.choices for p in pending], **QUICK)

    assert len(suggestions) == 3
    assert min_gap(spec, suggestions, points) >= DUPLICATE_DISTANCE  # measured, pending and each other
    for s in suggestions:
        assert_admissible(spec, s)
        assert s.source == "model" and s.acquisition_value is not None
        assert s.predicted_mean is not None and s.predicted_mean > 0 and s.predicted_std is not None
        assert "greedy picks by expected hypervolume improvement over 6 subsets of components" in s.rationale
        assert re.search(r"predicted conductivity \S+ ± \S+ S/cm, transmittance \S+ ± \S+ %", s.rationale)
        assert re.search(r"probability of meeting conductivity >= 20 S/cm [01]\.\d\d", s.rationale)
        assert "reference point conductivity" in s.rationale
        assert f"components {', '.join(s.active_components)} (" in s.rationale
        assert f"route={s.choices['route']}" in s.rationale and "on the 0.05 grid" in s.rationale
    again = propose_pareto_mixed(*args, pending_choices=[p.choices for p in pending], **QUICK)
    assert again == suggestions  # reproducible


def test_an_outcome_constraint_steers_the_mixed_search_to_where_it_is_predicted_to_hold():
    floor = 50.0  # %: only Cu-rich compositions are this clear, far from the most conductive (pure Ag)
    free = make(objectives=("conductivity",))
    held = make(
        objectives=("conductivity",),
        outcome_constraints=[{"name": "transmittance", "operator": ">=", "value": floor, "unit": "%"}],
    )
    points = mixed_initial_design(held, 12, 1)
    data = observe(held, points)

    (unconstrained,) = propose(free, data, 1, 3)
    (constrained,) = propose(held, data, 1, 3, **QUICK)
    assert truth(free, as_point(unconstrained))["transmittance"] < floor  # conductivity alone ignores it
    probability = float(re.search(r"transmittance >= 50 % ([01]\.\d\d)", constrained.rationale).group(1))
    assert probability >= 0.5, constrained.rationale
    assert "feasibility-weighted expected improvement" in constrained.rationale
    reached = truth(held, as_point(constrained))
    assert reached["transmittance"] >= 0.9 * floor
    best_measured = max(o.values["conductivity"] for o in data if o.values["transmittance"] >= floor)
    assert reached["conductivity"] > best_measured


def test_the_front_spans_both_options_when_the_objectives_favour_different_ones():
    spec = make()
    reference = {"conductivity": 10.0, "transmittance": 20.0}
    observations = observe(spec, mixed_initial_design(spec, 9, 0))
    start = hypervolume(spec, observations, reference)
    chosen = []
    for iteration in range(1, 4):
        suggestions = propose_pareto_mixed(spec, observations, 3, iteration, **QUICK)
        assert all(s.source == "model" for s in suggestions)
        chosen += [s.choices["route"] for s in suggestions]
        points = [as_point(s) for s in suggestions]
        observations += observe(spec, points, len(observations), iteration)

    assert {"A", "B"} <= set(chosen)  # each objective's favourite option is proposed
    assert chosen.count("C") <= 1  # and the option that helps neither hardly ever
    front = pareto_front(spec, observations)
    assert {o.choices["route"] for o in front} == {"A", "B"}  # route C is dominated at every composition
    assert hypervolume(spec, observations, reference) > 1.5 * start


def test_propose_and_propose_pareto_dispatch_to_the_mixed_pareto_optimiser():
    spec = make()
    observations = observe(spec, mixed_initial_design(spec, 8, 5))
    direct = propose_pareto_mixed(spec, observations, 1, 6)
    assert propose(spec, observations, 1, 6) == direct
    assert propose_pareto(spec, observations, 1, 6) == direct
    assert all(s.choices and s.active_components for s in direct)


def test_without_a_model_the_points_are_space_filling_and_admissible():
    spec = make()
    one = observe(spec, mixed_initial_design(spec, 1, 0))
    suggestions = propose_pareto_mixed(spec, one, 3, 9)
    assert [s.source for s in suggestions] == ["initial"] * 3
    assert all("too few to fit a model" in s.rationale for s in suggestions)
    for s in suggestions:
        assert_admissible(spec, s)
    assert min_gap(spec, suggestions, [as_point(o) for o in one]) >= DUPLICATE_DISTANCE


def test_the_spec_accepts_several_objectives_on_a_mixed_space_and_still_refuses_what_cannot_work():
    for fields in ({"max_active_components": 2}, {"resolution": 0.05}, {"categories": [ROUTE]}):
        spec = make(**({"max_active_components": None, "resolution": None, "categories": []} | fields))
        assert spec.objectives[1].name == "transmittance"
    held = make(
        objectives=("conductivity",),
        outcome_constraints=[{"name": "transmittance", "operator": ">=", "value": 60}],
    )
    assert held.measured_names == ["conductivity", "transmittance"]
    data = held.model_dump()
    with pytest.raises(ValueError, match="at most 4 are supported"):
        CampaignSpec.model_validate(data | {"objectives": [{"name": f"q{i}"} for i in range(5)]})
    with pytest.raises(ValueError, match="no value of transmittance is both"):
        make(
            outcome_constraints=[
                {"name": "transmittance", "operator": ">=", "value": 60},
                {"name": "transmittance", "operator": "<=", "value": 50},
            ]
        )
    with pytest.raises(ValueError, match="a threshold is the reference point of a campaign with several"):
        CampaignSpec.model_validate(data | {"objectives": [{"name": "conductivity", "threshold": 5}]})

