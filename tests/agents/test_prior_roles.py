"""The designer and the PI with prior data: the model learns from it, the budget and the stop rules don't."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from agents.designer import design
from agents.llm.mock import MockLLM
from agents.pi import decide, plan
from agents.state import Ports
from athanor.models import Observation
from athanor.spec import CampaignSpec
from runs.prior import PRIOR_ITERATION


class Context:
    """The part of the run context the designer and the PI use, in memory."""

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


def make_spec(batch: int, experiments: int = 8, target: float | None = None) -> CampaignSpec:
    return CampaignSpec(
        components=[{"name": "A"}, {"name": "B"}, {"name": "C"}],
        objectives=[{"name": "conductivity", "unit": "S/cm", "target": target}],
        budget={"experiments": experiments, "batch_size": batch},
    )


def prior_rows(n_usable: int, n_failed: int = 0) -> list[Observation]:
    rows = []
    for i in range(n_usable + n_failed):
        a = 0.1 + 0.8 * i / max(n_usable + n_failed - 1, 1)
        rows.append(
            Observation(
                experiment_id=f"P{i + 1:04d}",
                iteration=PRIOR_ITERATION,
                composition={"A": a, "B": (1 - a) / 2, "C": (1 - a) / 2},
                values={"conductivity": 10.0 + 100.0 * a * (1 - a)} if i < n_usable else {},
                status="ok" if i < n_usable else "failed",
            )
        )
    return rows


def campaign(n: int) -> list[Observation]:
    return [
        Observation(
            experiment_id=f"E{i + 1:04d}",
            iteration=0,
            composition={"A": 0.2, "B": 0.3 + 0.1 * i, "C": 0.5 - 0.1 * i},
            values={"conductivity": 20.0 + i},
        )
        for i in range(n)
    ]


def run_design(spec, prior, observations=(), iteration=0):
    context = Context()
    ports = Ports(llm=None, knowledge=None, instruments=None, context=context, lab=None, prior=list(prior))
    state = {
        "spec": spec.model_dump(mode="json"),
        "iteration": iteration,
        "observations": [o.model_dump(mode="json") for o in observations],
    }
    state |= plan(state, ports)  # the PI's plan puts the prior data in the state
    state["iteration"] = iteration
    update = design(state, ports)
    (call,) = [payload for kind, payload in context.events if kind == "optimiser_call"]
    return update["proposals"], call, state


def test_with_enough_prior_rows_the_first_batch_is_model_based():
    proposals, call, state = run_design(make_spec(batch=2), prior_rows(4))

    assert [p["experiment_id"] for p in proposals] == ["E0001", "E0002"]  # campaign ids, from E0001
    assert [p["source"] for p in proposals] == ["model", "model"]
    assert all(p["predicted_mean"] is not None for p in proposals)
    assert (call["method"], call["iteration"], call["prior"], call["observations"]) == ("propose", 0, 4, 0)
    assert [o["experiment_id"] for o in state["prior"]] == ["P0001", "P0002", "P0003", "P0004"]


def test_each_usable_prior_row_replaces_one_initial_point_and_the_model_fills_the_freed_slots():
    # two usable rows and a failed one: of a first batch of 4, 2 are space-filling and 2 from the model
    proposals, call, _ = run_design(make_spec(batch=4), prior_rows(2, n_failed=1))

    assert [p["source"] for p in proposals] == ["initial", "initial", "model", "model"]
    assert (call["method"], call["n"], call["prior"], call["model"]["n"]) == ("initial_design", 2, 2, 2)
    assert len({json.dumps(p["composition"], sort_keys=True) for p in proposals}) == 4


def test_without_prior_data_the_initial_design_is_unchanged():
    proposals, call, state = run_design(make_spec(batch=3), [])

    assert [p["source"] for p in proposals] == ["initial"] * 3
    assert set(call) == {"method", "n", "seed", "iteration", "proposals"} and call["n"] == 3
    assert "prior" not in state


def test_prior_rows_never_count_toward_the_budget():
    spec = make_spec(batch=4, experiments=6)
    proposals, call, _ = run_design(spec, prior_rows(5), campaign(5), iteration=2)

    assert len(proposals) == 1 and call["n"] == 1  # 6 budgeted, 5 done: one left, whatever the prior


def verdict(spec, observations, prior):
    llm, context = MockLLM(), Context()
    ports = Ports(llm=llm, knowledge=None, instruments=None, context=context, lab=None)
    state = {
        "spec": spec.model_dump(mode="json"),
        "iteration": 2,
        "observations": [o.model_dump(mode="json") for o in observations],
        "prior": [o.model_dump(mode="json") for o in prior],
    }
    return decide(state, ports)["decision"], llm


def test_a_target_met_only_by_prior_data_does_not_stop_the_campaign():
    spec = make_spec(batch=2, target=30.0)
    prior = prior_rows(3)  # the middle row reaches 35 S/cm
    decision, llm = verdict(spec, campaign(2), prior)

    assert decision["action"] == "continue"  # the offline verdict: the engine did not stop it
    ((task, messages),) = llm.calls
    progress = json.loads(messages[-1]["content"])
    assert task == "decide" and progress["target_reached"] is False
    assert progress["best_value"] == 21.0  # the campaign's own best, not the prior's
    assert progress["prior_rows"] == 3 and progress["prior_best_value"] == 35.0

    reached = campaign(3)[2].model_copy(update={"values": {"conductivity": 31.0}})
    decision, llm = verdict(spec, [*campaign(2), reached], prior)
    assert decision == {"action": "stop", "reason": "target 30 S/cm reached"} and not llm.calls


def test_the_mixed_and_pareto_optimisers_learn_from_prior_rows_too():
    mixed = CampaignSpec.model_validate(
        {
            **make_spec(batch=2).model_dump(),
            "categories": [{"name": "annealing", "choices": ["none", "150C"]}],
        }
    )
    prior = [o.model_copy(update={"choices": {"annealing": "150C"}}) for o in prior_rows(4)]
    proposals, call, _ = run_design(mixed, prior)
    assert call["method"] == "propose" and [p["source"] for p in proposals] == ["model", "model"]
    assert all(p["choices"]["annealing"] in ("none", "150C") for p in proposals)

    pareto = CampaignSpec.model_validate(
        {
            **make_spec(batch=2).model_dump(),
            "objectives": [{"name": "conductivity"}, {"name": "transmittance", "direction": "maximise"}],
        }
    )
    prior = [
        o.model_copy(update={"values": {**o.values, "transmittance": 90.0 - 50.0 * o.composition["A"]}})
        for o in prior_rows(4)
    ]
    proposals, call, _ = run_design(pareto, prior)
    assert call["method"] == "propose" and [p["source"] for p in proposals] == ["model", "model"]
