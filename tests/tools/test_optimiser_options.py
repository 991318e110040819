"""The optimiser's options: what a campaign records, what each strategy takes, and what it refuses."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError
from support.specs import FIVE, make_spec

from athanor.errors import SpecError
from athanor.models import Observation
from athanor.spec import CampaignSpec
from tools.initial_design import initial_design
from tools.optimiser import OptimiserOptions, propose, propose_from_pool


def observe(spec, n, seed):
    compositions = initial_design(spec, n, seed=seed)
    return [
        Observation(
            experiment_id=f"E{i + 1:04d}",
            iteration=0,
            composition=c,
            values={"conductivity": 3.0 + 40.0 * math.exp(-8 * sum((v - 0.25) ** 2 for v in c.values()))},
        )
        for i, c in enumerate(compositions)
    ]


def test_the_defaults_record_nothing_so_older_records_still_replay():
    assert OptimiserOptions().recorded() == {}
    assert OptimiserOptions(kernel="rbf", warp=False, acquisition="qlognei").recorded() == {}


def test_only_what_differs_from_the_defaults_is_recorded_and_reads_back():
    options = OptimiserOptions(warp=True, acquisition="ucb", beta=9.0)
    recorded = options.recorded()
    assert recorded == {"warp": True, "acquisition": "ucb", "beta": 9.0}
    assert OptimiserOptions.model_validate(recorded) == options


def test_a_replaced_botorch_function_cannot_be_recorded():
    options = OptimiserOptions(optimize_acqf=lambda *a, **k: None)
    with pytest.raises(ValueError, match="optimize_acqf replace BoTorch functions and cannot be recorded"):
        options.recorded()


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"acquisition": "ucb", "beta": -1.0}, "beta=-1.0 must be a finite number >= 0"),
        ({"acquisition": "ucb", "beta": math.inf}, "beta=inf must be a finite number"),
        ({"beta": 4.0}, "set acquisition='ucb' or drop beta"),
        ({"kernel": "periodic"}, "kernel"),
        ({"acquisition": "thompson"}, "acquisition"),
        ({"warps": True}, "warps"),
    ],
)
def test_bad_options_are_refused_naming_the_option(given, field):
    with pytest.raises(ValidationError, match=field):
        OptimiserOptions(**given)


def test_the_upper_confidence_bound_option_is_what_the_rationale_names():
    observations = observe(FIVE, 8, seed=2)
    ucb = propose(FIVE, observations, 2, seed=1, options=OptimiserOptions(acquisition="ucb", beta=4.0))
    plain = propose(FIVE, observations, 2, seed=1)
    assert all(s.source == "model" and "upper confidence bound" in s.rationale for s in ucb)
    assert all("expected improvement" in s.rationale for s in plain)
    assert all(FIVE.violations(s.composition) == [] for s in ucb)


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"objectives": [{"name": "conductivity"}, {"name": "transmittance"}]}, "several objectives"),
        ({"resolution": 0.05}, "mixed space"),
        ({"surrogate": "random_forest"}, "surrogate: random_forest"),
    ],
)
def test_a_strategy_that_cannot_honour_a_model_option_refuses_it(changes, path):
    base = make_spec([{"name": "A"}, {"name": "B"}, {"name": "C"}]).model_dump(exclude_defaults=True)
    spec = CampaignSpec.model_validate({**base, **changes})
    observations = [
        o.model_copy(update={"values": {**o.values, "transmittance": 80.0 - 20 * o.composition["A"]}})
        for o in observe(CampaignSpec.model_validate(base), 6, seed=4)
    ]
    with pytest.raises(SpecError, match=rf"options warp=True apply to .*{path}.*drop them"):
        propose(spec, observations, 1, seed=0, options=OptimiserOptions(warp=True))


def test_another_kernel_cannot_take_the_descriptors():
    spec = CampaignSpec.model_validate(
        {
            "components": [{"name": "Cu"}, {"name": "Ag"}, {"name": "Ni"}],
            "objectives": [{"name": "conductivity"}],
            "descriptors": ["electronegativity_mean"],
            "budget": {"experiments": 10, "batch_size": 2},
        }
    )
    with pytest.raises(SpecError, match="kernel='matern' cannot be combined with the spec's descriptors"):
        propose(spec, observe(spec, 6, seed=1), 1, seed=0, options=OptimiserOptions(kernel="matern"))


def test_pool_mode_takes_another_kernel_and_winsorised_targets_for_the_gp_only():
    candidates = [[i / 19, (i * 7 % 20) / 19] for i in range(20)]
    measured = candidates[:5]
    values = [1.0, 2.0, 8.0, 3.0, -40.0]  # one very bad reading
    for kernel, winsorise in (("matern", False), ("rbf", True)):
        picks = propose_from_pool(
            None, measured, values, candidates, 2, seed=0, kernel=kernel, winsorise=winsorise
        )
        assert [p.source for p in picks] == ["model", "model"]
        assert {p.index for p in picks}.isdisjoint(range(5))
    with pytest.raises(SpecError, match="kernel='matern' and winsorise=False shape the GP"):
        propose_from_pool(None, measured, values, candidates, 1, 0, model="random_forest", kernel="matern")
    with pytest.raises(SpecError, match="kernel='periodic' is not available; use 'rbf' or 'matern'"):
        propose_from_pool(None, measured, values, candidates, 1, seed=0, kernel="periodic")
