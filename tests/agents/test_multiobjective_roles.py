"""The analyst's summary and the PI's verdict with several objectives and outcome constraints."""

from __future__ import annotations

import json
from typing import Any

from agents.analyst import summarise
from agents.llm.mock import MockLLM
from agents.pi import best_value, decide
from agents.state import Ports
from athanor.models import Observation
from athanor.spec import CampaignSpec


class Context:
    """Records events in memory (the part of the run context the PI uses)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def record(self, kind: str, payload: dict[str, Any]) -> None:
        self.events.append((kind, payload))


def make_spec(**changes: Any) -> CampaignSpec:
    data = {
        "components": [{"name": "A"}, {"name": "B"}],
        "objectives": [
            {"name": "conductivity", "unit": "S/cm", "target": 500},
            {"name": "transmittance", "unit": "%", "target": 70},
        ],
        "budget": {"experiments": 20},
    }
    return CampaignSpec.model_validate({**data, **changes})


def obs(name: str, iteration: int, conductivity: float, transmittance: float) -> Observation:
    return Observation(
        experiment_id=name,
        iteration=iteration,
        composition={"A": 0.5, "B": 0.5},
        values={"conductivity": conductivity, "transmittance": transmittance},
    )


def verdict(spec: CampaignSpec, observations: list[Observation]) -> tuple[dict[str, Any], MockLLM, Context]:
    llm, context = MockLLM(), Context()
    ports = Ports(llm=llm, knowledge=None, instruments=None, context=context, lab=None)
    state = {
        "spec": spec.model_dump(mode="json"),
        "iteration": 2,
        "observations": [o.model_dump(mode="json") for o in observations],
    }
    return decide(state, ports)["decision"], llm, context


def test_summary_lists_the_pareto_front():
    spec = make_spec()
    observations = [obs("E1", 0, 100, 80), obs("E2", 0, 400, 40), obs("E3", 1, 300, 30), obs("E4", 1, 50, 90)]
    summary = summarise(spec, observations)
    assert [p["experiment_id"] for p in summary["pareto_front"]] == ["E2", "E1", "E4"]
    assert summary["pareto_front"][0]["values"] == {"conductivity": 400, "transmittance": 40}
    assert summary["best_value"] == 400 and summary["best_experiment"] == "E2"  # the primary objective
    assert "pareto_front" not in summarise(make_spec(objectives=[{"name": "conductivity"}]), observations)


def test_with_outcome_constraints_only_feasible_experiments_count_as_best():
    spec = make_spec(
        objectives=[{"name": "conductivity"}],
        outcome_constraints=[{"name": "transmittance", "operator": ">=", "value": 50}],
    )
    observations = [obs("E1", 0, 100, 80), obs("E2", 0, 400, 40)]
    summary = summarise(spec, observations)
    assert (summary["best_value"], summary["best_experiment"], summary["feasible"]) == (100, "E1", 1)
    assert best_value(spec, observations) == 100


def test_the_pi_stops_only_when_one_experiment_reaches_every_target():
    spec = make_spec()
    apart = [obs("E1", 0, 600, 40), obs("E2", 1, 100, 90)]  # each target reached, but not by one experiment
    decision, llm, context = verdict(spec, apart)
    assert decision["action"] == "continue"
    progress = json.loads(llm.calls[-1][1][-1]["content"])
    assert progress["target_reached"] is False
    assert [o["name"] for o in progress["objectives"]] == ["conductivity", "transmittance"]
    assert progress["pareto_front_size"] == 2
    assert context.events[-1][0] == "decision"

    decision, _, _ = verdict(spec, [*apart, obs("E3", 1, 550, 75)])
    assert decision["action"] == "stop"
    assert decision["reason"] == "every target reached by E3 (conductivity 550 S/cm, transmittance 75 %)"


def test_the_pi_does_not_stop_on_an_infeasible_experiment_or_without_targets():
    constrained = make_spec(outcome_constraints=[{"name": "conductivity", "operator": "<=", "value": 560}])
    decision, _, _ = verdict(constrained, [obs("E1", 1, 600, 80)])
    assert decision["action"] == "continue"
    untargeted = make_spec(objectives=[{"name": "conductivity"}, {"name": "transmittance"}])
    decision, _, _ = verdict(untargeted, [obs("E1", 1, 1e6, 100)])
    assert decision["action"] == "continue"


def test_the_pis_verdict_names_every_objective_with_its_aim_and_unit():
    spec = make_spec(
        objectives=[
            {"name": "conductivity", "unit": "S/cm"},
            {"name": "haze", "direction": "minimise", "unit": "%"},
            {"name": "cost", "direction": "minimise", "unit": "元/g"},
        ]
    )
    observations = [
        Observation(
            experiment_id=name,
            iteration=iteration,
            composition={"A": 0.5, "B": 0.5},
            values={"conductivity": c, "haze": h, "cost": y},
        )
        for name, iteration, c, h, y in [
            ("E1", 0, 120.0, 8.0, 3.5),
            ("E2", 0, 90.0, 12.0, 4.0),  # dominated by E1
            ("E3", 1, 310.0, 15.0, 6.25),
            ("E4", 1, 45.0, 2.5, 1.75),
        ]
    ]
    decision, llm, _ = verdict(spec, observations)
    progress = json.loads(llm.calls[-1][1][-1]["content"])
    assert progress["objectives"][2] == {
        "name": "cost",
        "direction": "minimise",
        "unit": "元/g",
        "target": None,
        "best_on_front": 1.75,
    }
    assert (progress["pareto_front_size"], progress["pareto_front_size_before"]) == (3, 1)
    assert decision["action"] == "continue"
    reason = decision["reason"]
    assert "maximise conductivity (S/cm), minimise haze (%) and minimise cost (元/g)" in reason
    assert "holds 3 experiments (1 before it)" in reason
    assert "best on the front: conductivity 310 S/cm, haze 2.5 %, cost 1.75 元/g" in reason
