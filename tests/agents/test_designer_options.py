"""The designer passes the run's optimiser options and records only those that differ from the defaults."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from agents.designer import design
from agents.state import Ports
from athanor.errors import SpecError
from athanor.models import Observation
from athanor.spec import CampaignSpec
from tools.optimiser import OptimiserOptions


class Context:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.experiments = 0

    def seed_for(self, stream: str) -> int:
        return int.from_bytes(hashlib.sha256(stream.encode()).digest()[:4], "big")

    def next_experiment_id(self) -> str:
        self.experiments += 1
        return f"E{self.experiments:04d}"

    def record(self, kind: str, payload: dict[str, Any]) -> None:
        self.events.append((kind, payload))


SPEC = CampaignSpec(
    components=[{"name": "Ag"}, {"name": "Cu"}, {"name": "Ni"}],
    sum_rule={"total": 1.0},
    objectives=[{"name": "hardness", "unit": "HV"}],
    budget={"experiments": 10, "batch_size": 2},
)


def measured(n: int) -> list[Observation]:
    return [
        Observation(
            experiment_id=f"E{i + 1:04d}",
            iteration=0,
            composition={"Ag": 0.1 + 0.15 * i, "Cu": 0.6 - 0.1 * i, "Ni": 0.3 - 0.05 * i},
            values={"hardness": 80.0 + 30.0 * i - 6.0 * i * i},
        )
        for i in range(n)
    ]


def call_of(spec: CampaignSpec, options: OptimiserOptions | None) -> dict[str, Any]:
    context = Context()
    ports = Ports(llm=None, knowledge=None, instruments=None, context=context, lab=None, optimiser=options)
    state = {
        "spec": spec.model_dump(mode="json"),
        "iteration": 1,
        "observations": [o.model_dump(mode="json") for o in measured(4)],
    }
    design(state, ports)
    (call,) = [payload for kind, payload in context.events if kind == "optimiser_call"]
    return call


@pytest.mark.parametrize("options", [None, OptimiserOptions(), OptimiserOptions(kernel="rbf")])
def test_the_default_options_leave_the_record_as_it_was(options):
    call = call_of(SPEC, options)
    assert set(call) == {"method", "n", "seed", "observations", "pending", "iteration", "proposals"}
    assert all("expected improvement" in p["rationale"] for p in call["proposals"])


def test_other_options_are_used_and_recorded_with_the_call():
    call = call_of(SPEC, OptimiserOptions(acquisition="ucb", beta=4.0))
    assert call["options"] == {"acquisition": "ucb", "beta": 4.0}
    assert [p["source"] for p in call["proposals"]] == ["model", "model"]
    assert all("upper confidence bound" in p["rationale"] for p in call["proposals"])


def test_a_campaign_refuses_options_it_could_not_record():
    with pytest.raises(ValueError, match="cannot be recorded"):
        call_of(SPEC, OptimiserOptions(fit_gpytorch_mll=lambda *a, **k: None))


def test_a_cheap_source_campaign_refuses_model_options_it_does_not_use():
    sources = [
        {"name": "lab", "cost": 1},
        {"name": "screen", "cost": 0.05, "simulator": "instruments.virtual_world:screen"},
    ]
    spec = CampaignSpec.model_validate({**SPEC.model_dump(exclude_defaults=True), "fidelities": sources})
    with pytest.raises(SpecError, match=r"options warp=True .* a campaign with a cheap source"):
        call_of(spec, OptimiserOptions(warp=True))
