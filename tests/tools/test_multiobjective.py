"""Pareto optimisation: feasible proposals, a better front, outcome constraints, fallbacks."""

from __future__ import annotations

import math

import botorch.acquisition.multi_objective.logei as logei
import numpy as np
import pytest
import torch

from athanor.models import Observation
from athanor.pareto import hypervolume, pareto_front
from athanor.spec import CampaignSpec
from tools.design_space import design_space
from tools.initial_design import initial_design
from tools.optimiser import OptimiserOptions, needs_pareto, propose, propose_pareto
from tools.optimiser.acquisitions import fused_kernel_build

NAMES = ("A", "B", "C")
PEAK = np.array([0.2, 0.5, 0.3])
ABSORBANCE = np.array([0.1, 1.2, 0.6])


def conductivity(x: np.ndarray) -> np.ndarray:
    """A smooth peak at PEAK spanning two decades (S/cm)."""
    d2 = ((np.atleast_2d(x) - PEAK) ** 2).sum(-1)
    return 10 ** (1.0 + 2.0 * np.exp(-d2 / 0.2))


def transmittance(x: np.ndarray) -> np.ndarray:
    """Additive absorbances: best at pure A (%)."""
    return 100.0 * 10 ** (-(np.atleast_2d(x) @ ABSORBANCE))


def make_spec(**changes: object) -> CampaignSpec:
    data = {
        "components": [{"name": n} for n in NAMES],
        "objectives": [
            {"name": "conductivity", "unit": "S/cm"},
            {"name": "transmittance", "unit": "%"},
        ],
        "budget": {"experiments": 40, "batch_size": 4},
    }
    data.update(changes)
    return CampaignSpec.model_validate(data)


def measure(
    spec: CampaignSpec, compositions: list[dict[str, float]], start: int, iteration: int
) -> list[Observation]:
    """Noise-free observations of the synthetic problem (minimised objectives get the negated value)."""
    out = []
    for i, composition in enumerate(compositions):
        x = np.array([composition[n] for n in NAMES])
        truth = {"conductivity": float(conductivity(x)[0]), "transmittance": float(transmittance(x)[0])}
        values = {}
        for name in spec.measured_names:
            base = name.removeprefix("negative_")
            values[name] = -truth[base] if name.startswith("negative_") else truth[base]
        out.append(
            Observation(
                experiment_id=f"E{start + i:04d}", iteration=iteration, composition=composition, values=values
            )
        )
    return out


def initial(spec: CampaignSpec, n: int = 8, seed: int = 1) -> list[Observation]:
    return measure(spec, initial_design(spec, n, seed), 1, 0)


def true_front_hypervolume(spec: CampaignSpec, reference: dict[str, float]) -> float:
    """Hypervolume of the true front, from a 1 % grid of the simplex."""
    grid = np.array([(a, b, 100 - a - b) for a in range(101) for b in range(101 - a)]) / 100.0
    f1, f2 = conductivity(grid), transmittance(grid)
    order = np.argsort(-f1)
    keep, best = [], -math.inf
    for i in order:  # a point is on the 2-D front when it beats every point of higher f1 in f2
        if f2[i] > best:
            keep.append(i)
            best = f2[i]
    front = [
        Observation(
            experiment_id=f"G{i}",
            iteration=0,
            composition={},
            values={"conductivity": f1[i], "transmittance": f2[i]},
        )
        for i in keep
    ]
    return hypervolume(spec, front, reference)


def test_needs_pareto_for_several_objectives_or_outcome_constraints():
    assert needs_pareto(make_spec())
    single = make_spec(objectives=[{"name": "conductivity"}])
    assert not needs_pareto(single)
    constrained = make_spec(
        objectives=[{"name": "conductivity"}],
        outcome_constraints=[{"name": "transmittance", "operator": ">=", "value": 50}],
    )
    assert needs_pareto(constrained)


def test_proposals_are_feasible_distinct_and_explained():
    spec = make_spec(
        components=[
            {"name": "A", "lower": 0.1, "upper": 0.8},
            {"name": "B", "upper": 0.6},
            {"name": "C", "upper": 0.5},
            {"name": "D", "upper": 0.3},
        ],
        constraints=[{"coefficients": {"B": 1, "D": 1}, "operator": "<=", "rhs": 0.6}],
    )
    observations = []
    for i, composition in enumerate(initial_design(spec, 10, 3)):
        x = np.array([composition[n] for n in NAMES]) + composition["D"] / 3
        observations.append(
            Observation(
                experiment_id=f"E{i:04d}",
                iteration=0,
                composition=composition,
                values={
                    "conductivity": float(conductivity(x)[0]),
                    "transmittance": float(transmittance(x)[0]),
                },
            )
        )
    pending = [observations[0].composition | {"A": 0.5, "B": 0.3, "C": 0.1, "D": 0.1}]
    suggestions = propose_pareto(spec, observations, 4, seed=7, pending=pending)

    assert len(suggestions) == 4
    space = design_space(spec)
    points = space.to_tensor([s.composition for s in suggestions])
    taken = space.to_tensor([o.composition for o in observations] + pending)
    for s in suggestions:
        assert spec.violations(s.composition) == [], s.composition
        assert s.source == "model"
        assert "expected hypervolume improvement" in s.rationale
        assert (
            "reference point conductivity" in s.rationale
            and "inferred from the measured values" in s.rationale
        )
        assert s.predicted_mean is not None and s.predicted_mean > 0 and s.predicted_std is not None
        assert s.acquisition_value is not None and math.isfinite(s.acquisition_value)
    gap = (space.normalise(points)[:, None, :] - space.normalise(taken)[None, :, :]).abs().amax(-1)
    assert float(gap.min()) >= 0.02  # no proposal repeats a measured or pending composition
    pairwise = (space.normalise(points)[:, None, :] - space.normalise(points)[None, :, :]).abs().amax(-1)
    assert float((pairwise + 9 * torch.eye(4, dtype=pairwise.dtype)).min()) >= 0.02
    assert propose_pareto(spec, observations, 4, seed=7, pending=pending) == suggestions  # reproducible


def test_propose_dispatches_to_pareto_for_several_objectives():
    spec = make_spec()
    observations = initial(spec)
    via_propose = propose(spec, observations, 1, seed=5)
    direct = propose_pareto(spec, observations, 1, seed=5)
    assert [s.composition for s in via_propose] == [s.composition for s in direct]
    assert "hypervolume" in via_propose[0].rationale


def test_a_short_loop_gets_close_to_the_true_front():
    spec = make_spec()
    reference = {"conductivity": 10.0, "transmittance": 5.0}
    observations = initial(spec, n=8)
    start = hypervolume(spec, observations, reference)
    for iteration in range(1, 4):
        suggestions = propose_pareto(spec, observations, 4, seed=iteration)
        observations += measure(spec, [s.composition for s in suggestions], len(observations) + 1, iteration)
    guided = hypervolume(spec, observations, reference)
    filler = initial(spec, n=20)  # the same budget spent on a space-filling design
    best = true_front_hypervolume(spec, reference)

    assert start < guided
    assert guided > hypervolume(spec, filler, reference)
    assert guided >= 0.85 * best, (start / best, guided / best)
    assert len(pareto_front(spec, observations)) >= 4


def test_thresholds_are_the_reference_point():
    spec = make_spec(
        objectives=[
            {"name": "conductivity", "unit": "S/cm", "threshold": 50},
            {"name": "transmittance", "unit": "%", "threshold": 20},
        ]
    )
    suggestions = propose_pareto(spec, initial(spec), 1, seed=2)
    assert (
        "reference point conductivity 50 S/cm (threshold), transmittance 20 % (threshold)"
        in suggestions[0].rationale
    )

    mixed = make_spec(
        objectives=[
            {"name": "conductivity", "unit": "S/cm", "threshold": 50},
            {"name": "transmittance", "unit": "%"},
        ]
    )
    rationale = propose_pareto(mixed, initial(mixed), 1, seed=2)[0].rationale
    assert "conductivity 50 S/cm (threshold)" in rationale
    assert (
        "transmittance" in rationale.split("reference point")[1]
        and "(inferred from the measured values)" in rationale
    )


def test_minimising_the_negative_is_maximising():
    maximise = make_spec()
    mixed = make_spec(
        objectives=[
            {"name": "conductivity", "unit": "S/cm"},
            {"name": "negative_transmittance", "direction": "minimise", "unit": "%"},
        ]
    )
    up = propose_pareto(maximise, initial(maximise), 2, seed=4)
    down = propose_pareto(mixed, initial(mixed), 2, seed=4)
    for a, b in zip(up, down, strict=True):
        assert a.composition == pytest.approx(b.composition, abs=1e-6)
    front_up = [o.experiment_id for o in pareto_front(maximise, initial(maximise))]
    front_down = [o.experiment_id for o in pareto_front(mixed, initial(mixed))]
    assert front_up == front_down


def test_an_outcome_constraint_steers_proposals_into_the_feasible_region():
    floor = 100.0  # S/cm: only compositions near the conductivity peak qualify, far from clear pure A
    both = make_spec(
        objectives=[{"name": "transmittance", "unit": "%"}, {"name": "conductivity", "unit": "S/cm"}]
    )
    constrained = make_spec(
        objectives=[{"name": "transmittance", "unit": "%"}],
        outcome_constraints=[{"name": "conductivity", "operator": ">=", "value": floor, "unit": "S/cm"}],
    )
    unconstrained = make_spec(objectives=[{"name": "transmittance", "unit": "%"}])
    data = initial(both, n=12)

    def truth(spec: CampaignSpec) -> tuple[np.ndarray, np.ndarray]:
        suggestions = propose(spec, data, 4, seed=3)  # best first
        x = np.array([[s.composition[n] for n in NAMES] for s in suggestions])
        return conductivity(x), transmittance(x)

    free, _ = truth(unconstrained)
    steered, clarity = truth(constrained)
    assert free[0] < 0.5 * floor  # transparency alone pulls towards pure A
    # the most transparent composition that qualifies lies on the constraint: the proposals probe it
    assert (steered >= 0.5 * floor).all() and steered[0] >= floor, steered
    best_feasible = max(o.values["transmittance"] for o in data if o.values["conductivity"] >= floor)
    assert clarity[steered >= floor].max() > best_feasible
    suggestion = propose(constrained, data, 1, seed=3)[0]
    assert "feasibility-weighted expected improvement" in suggestion.rationale
    assert "probability of meeting conductivity >= 100 S/cm" in suggestion.rationale


def test_too_few_observations_fall_back_to_space_filling():
    spec = make_spec()
    one = initial(spec, n=1)
    suggestions = propose_pareto(spec, one, 3, seed=0)
    assert len(suggestions) == 3
    assert all(s.source == "initial" and "too few to fit a model" in s.rationale for s in suggestions)
    assert all(spec.violations(s.composition) == [] for s in suggestions)


def test_a_constant_objective_falls_back_and_names_it():
    spec = make_spec()
    flat = [o.model_copy(update={"values": {**o.values, "transmittance": 50.0}}) for o in initial(spec)]
    suggestions = propose_pareto(spec, flat, 2, seed=0)
    assert all(s.source == "initial" for s in suggestions)
    assert "the same transmittance" in suggestions[0].rationale


def test_a_numerical_failure_falls_back_without_crashing():
    spec = make_spec()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cholesky failed")

    options = OptimiserOptions(fit_gpytorch_mll=broken)
    suggestions = propose_pareto(spec, initial(spec), 2, seed=0, options=options)
    assert [s.source for s in suggestions] == ["initial", "initial"]
    assert "the model failed (RuntimeError)" in suggestions[0].rationale


def test_the_fused_kernel_is_not_compiled_during_a_proposal(monkeypatch):
    import torch.utils.cpp_extension

    monkeypatch.setattr(logei, "_C", None)  # BoTorch's state before its kernel is built
    monkeypatch.setattr(logei, "_load_attempted", False)
    builds = []
    monkeypatch.setattr(torch.utils.cpp_extension, "load", lambda *a, **k: builds.append(k) or None)

    spec = make_spec()
    assert propose_pareto(spec, initial(spec), 1, seed=0)[0].source == "model"
    assert builds == []
    assert logei._load_attempted is False  # left for a later caller that allows the build
    with fused_kernel_build(True):
        logei._try_load_fused_kernel()
    assert len(builds) == 1
