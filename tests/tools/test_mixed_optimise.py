"""Proposals on the mixed space: at most k components, on the grid, exact sums, valid choices."""

from __future__ import annotations

import math

import pytest
from support.hardness import observe

from athanor.errors import SpecError
from athanor.models import Observation
from athanor.spec import CampaignSpec
from tools.grid import grid_steps
from tools.mixed_space import MixedPoint, mixed_initial_design, mixed_space
from tools.optimiser import DUPLICATE_DISTANCE, propose

ELEMENTS = ["Cu", "Ag", "Zr", "Ni", "Co"]
ANNEALING = {"name": "annealing", "choices": ["none", "150C", "200C"]}
#: Faster settings for the loops; the defaults are exercised by the other tests.
QUICK = {"num_restarts": 2, "mc_samples": 64}


def make(components=None, **fields):
    return CampaignSpec(
        components=components or [{"name": n} for n in ELEMENTS],
        objectives=[{"name": "hardness", "unit": "HV"}],
        budget={"experiments": 40, "batch_size": 4},
        **fields,
    )


SPECS = {
    "k2_grid_choices": make(max_active_components=2, resolution=0.05, categories=[ANNEALING]),
    "k3_constrained_grid": make(
        components=[{"name": "Cu", "lower": 0.1}] + [{"name": n, "upper": 0.7} for n in ELEMENTS[1:]],
        constraints=[{"coefficients": {"Ag": 1, "Zr": 1}, "operator": "<=", "rhs": 0.45}],
        max_active_components=3,
        resolution=0.01,
    ),
    "percent_grid": make(
        components=[{"name": n, "upper": 100} for n in ELEMENTS[:4]], sum_rule={"total": 100}, resolution=5
    ),
    "choices_only": make(categories=[ANNEALING, {"name": "atmosphere", "choices": ["air", "N2"]}]),
}





def assert_admissible(spec, suggestion):
    composition, choices = suggestion.composition, suggestion.choices
    assert spec.violations(composition, tol=1e-9, choices=choices) == []
    present = [n for n in spec.component_names if composition[n] > 0]
    assert suggestion.active_components == present
    if spec.max_active_components is not None:
        assert len(present) <= spec.max_active_components
    if spec.resolution is not None:
        steps = grid_steps(spec, composition)
        for name, count in zip(spec.component_names, steps, strict=True):
            assert abs(composition[name] - count * spec.resolution) < 1e-9
        if spec.sum_rule is not None:
            assert sum(steps) == round(spec.sum_rule.total / spec.resolution)
    assert set(choices) == {v.name for v in spec.categories}
    for variable in spec.categories:
        assert choices[variable.name] in variable.choices


def far_apart(spec, suggestions, others):
    """No suggestion within DUPLICATE_DISTANCE (per component range) of another point with its choices."""
    mixed = mixed_space(spec)
    points = [MixedPoint(composition=s.composition, choices=s.choices) for s in suggestions]
    x = mixed.encode(points)
    every = mixed.encode(list(others) + points)
    for i in range(len(points)):
        j_self = len(others) + i
        for j in range(every.shape[0]):
            if j == j_self:
                continue
            same = bool((every[j, mixed.dim :] == x[i, mixed.dim :]).all())
            gap = (
                mixed.space.normalise(every[j, : mixed.dim]) - mixed.space.normalise(x[i, : mixed.dim])
            ).abs()
            if same and float(gap.max()) < DUPLICATE_DISTANCE:
                return False
    return True


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("seed", [0, 3])
def test_model_proposals_obey_every_rule(name, seed):
    spec = SPECS[name]
    points = mixed_initial_design(spec, 10, seed)
    observations = observe(spec, points)
    suggestions = propose(spec, observations, 3, seed, **QUICK)
    assert len(suggestions) == 3
    for s in suggestions:
        assert s.source == "model"
        assert s.predicted_mean is not None and s.acquisition_value is not None
        assert_admissible(spec, s)
    assert far_apart(spec, suggestions, points)


def test_the_rationale_and_active_constraints_say_what_was_chosen():
    spec = SPECS["k2_grid_choices"]
    observations = observe(spec, mixed_initial_design(spec, 8, 2))
    (s,) = propose(spec, observations, 1, 2, **QUICK)
    assert (
        f"components {', '.join(s.active_components)} ({len(s.active_components)} of at most 2)"
        in s.rationale
    )
    assert f"annealing={s.choices['annealing']}" in s.rationale
    assert "on the 0.05 grid" in s.rationale
    assert "over 10 subsets of components x 3 combinations of choices" in s.rationale
    if len(s.active_components) == 2:
        assert "max_active_components = 2" in s.active_constraints
    # an absent element sits on its zero bound by choice; that is not reported as a constraint
    absent = set(ELEMENTS) - set(s.active_components)
    assert not any(label.split(" ")[0] in absent for label in s.active_constraints)


def test_a_bound_of_a_present_component_is_reported():
    spec = SPECS["k3_constrained_grid"]
    # the best measured points have Cu at its lower bound 0.1: the model proposes near there
    points = [
        MixedPoint(composition={"Cu": 0.1, "Ag": 0.2, "Zr": 0.0, "Ni": 0.7, "Co": 0.0}),
        MixedPoint(composition={"Cu": 0.1, "Ag": 0.25, "Zr": 0.0, "Ni": 0.65, "Co": 0.0}),
        MixedPoint(composition={"Cu": 0.9, "Ag": 0.0, "Zr": 0.0, "Ni": 0.0, "Co": 0.1}),
        MixedPoint(composition={"Cu": 0.6, "Ag": 0.0, "Zr": 0.4, "Ni": 0.0, "Co": 0.0}),
        MixedPoint(composition={"Cu": 0.3, "Ag": 0.0, "Zr": 0.0, "Ni": 0.0, "Co": 0.7}),
    ]
    assert all(spec.violations(p.composition) == [] for p in points)
    observations = observe(spec, points)
    suggestions = propose(spec, observations, 2, 0, **QUICK)
    labels = [label for s in suggestions for label in s.active_constraints]
    assert "Cu >= 0.1" in labels
    assert any("Cu at its lower bound" in s.rationale for s in suggestions)


def test_pending_points_are_avoided_and_need_their_choices():
    spec = SPECS["k2_grid_choices"]
    points = mixed_initial_design(spec, 10, 5)
    observations = observe(spec, points[:8])
    pending = points[8:]
    with pytest.raises(SpecError, match="give the choices"):
        propose(spec, observations, 2, 1, [p.composition for p in pending], **QUICK)
    suggestions = propose(
        spec,
        observations,
        2,
        1,
        [p.composition for p in pending],
        pending_choices=[p.choices for p in pending],
        **QUICK,
    )
    assert far_apart(spec, suggestions, points)


def test_without_a_model_the_points_are_space_filling_and_admissible():
    spec = SPECS["k3_constrained_grid"]
    one = observe(spec, mixed_initial_design(spec, 1, 0))
    suggestions = propose(spec, one, 4, 9)
    assert all(s.source == "initial" for s in suggestions)
    assert all("too few to fit a model" in s.rationale for s in suggestions)
    for s in suggestions:
        assert_admissible(spec, s)


def test_one_element_at_a_time_proposes_pure_components_and_flags_repeats_once_all_are_taken():
    spec = make(
        components=[{"name": n} for n in "ABC"],
        max_active_components=1,
        categories=[{"name": "route", "choices": ["x", "y"]}],
    )
    points = mixed_initial_design(spec, 4, 0)
    observations = [
        Observation(
            experiment_id=f"E{i}",
            iteration=0,
            composition=p.composition,
            choices=p.choices,
            values={"hardness": i},
        )
        for i, p in enumerate(points)
    ]
    suggestions = propose(spec, observations, 3, 0, **QUICK)
    for s in suggestions:
        assert_admissible(spec, s)
        assert sorted(s.composition.values()) == [0.0, 0.0, 1.0]
    made = {(tuple(p.composition.values()), p.choices["route"]) for p in points}
    new = [(tuple(s.composition.values()), s.choices["route"]) for s in suggestions]
    # 3 elements x 2 routes = 6 points: 4 measured, so two new ones and then a flagged repeat
    assert len(set(new[:2]) | made) == 6
    assert new[2] in made | set(new[:2])
    assert suggestions[2].rationale.startswith("repeats a measured or pending point")


def test_lazy_re_screening_re_scores_only_the_samples_that_can_still_decide_the_pick():
    import torch

    from tools.optimiser.cell_search import rescore, score, screen

    spec = SPECS["k2_grid_choices"]
    mixed = mixed_space(spec)
    cells = mixed.cells(0)
    samples, owners = screen(mixed, cells, 64, 0)
    d = mixed.dim
    smooth = -((samples[:, :d] - 0.3) ** 2).sum(-1) + 0.1 * samples[:, d]
    best = samples[int(smooth.argmax())]
    calls = []

    def falling(dip: float):
        """A fixed score minus a dip around the best sample: a pending point there can only lower it."""

        def acqf(x):
            x = x.squeeze(-2)
            calls.append(x.shape[0])
            score = -((x[:, :d] - 0.3) ** 2).sum(-1) + 0.1 * x[:, d]
            return score - dip * torch.exp(-((x - best) ** 2).sum(-1) / 0.05)

        return acqf

    bound = score(falling(0.0), samples)
    calls.clear()
    values = rescore(falling(5.0), samples, owners, bound, 3, 2)
    fresh = score(falling(5.0), samples)
    rescored = sum(calls) - len(samples)

    assert 0 < rescored < len(samples)  # lazy: fewer evaluations than a full re-screen
    assert bool((values >= fresh - 1e-12).all())  # the others keep upper bounds
    top = torch.argsort(fresh, descending=True)[:16]
    assert torch.equal(torch.argsort(values, descending=True)[:16], top)
    assert torch.equal(values[top], fresh[top])

    def best_cells(v):
        per_cell = torch.full((len(cells),), -math.inf, dtype=v.dtype).scatter_reduce(0, owners, v, "amax")
        return torch.argsort(per_cell, descending=True)[:3].tolist()

    assert best_cells(values) == best_cells(fresh)  # the cells optimised are those of a full re-screen
