"""A campaign with a cheap simulated source: mock LLM, real graph, virtual lab in Ray actors, and replay."""

from __future__ import annotations

from typing import Any

import pytest

from agents.experimenter import simulate_proposals
from agents.llm.mock import MockLLM
from agents.pi import best_value, decide, route
from agents.state import Ports
from athanor.app import RunOptions, replay, run
from athanor.errors import AthanorError
from athanor.models import Observation, Proposal
from athanor.spec import CampaignSpec
from instruments import virtual_world
from runs.eventlog import read_events
from tools.budget import budget_spent

SPEC = {
    "title": "multi-fidelity test",
    "components": [{"name": n} for n in ["A", "B", "C", "D"]],
    "sum_rule": {"total": 1.0},
    "objectives": [{"name": "conductivity", "direction": "maximise", "unit": "S/cm"}],
    "budget": {"experiments": 8, "batch_size": 3},
    "fidelities": [
        {"name": "experiment", "cost": 1},
        {"name": "screen", "cost": 0.05, "simulator": "instruments.virtual_world:screen"},
    ],
    "seed": 2,
}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path))
    return tmp_path


@pytest.mark.slow
def test_a_cheap_screen_stays_in_budget_and_the_campaign_says_whether_it_pays(ray_local, home, monkeypatch):
    options = RunOptions(llm="mock", llm_script={"parse_request": [SPEC]}, literature=False, time_scale=0.001)
    result = run("scripted: the mock answers with the spec", options)
    spec = result.spec

    experiments = [o for o in result.observations if o.fidelity is None]
    screened = [o for o in result.observations if o.fidelity == "screen"]
    assert all(o.status == "ok" for o in result.observations), [o.note for o in result.observations]
    # experiments keep the plate's numbering; simulated evaluations take no well
    assert [o.experiment_id for o in experiments] == [f"E{i:04d}" for i in range(1, len(experiments) + 1)]
    assert screened and all(o.experiment_id.startswith("S") for o in screened)
    spent = budget_spent(spec, result.observations)
    assert spec.budget.experiments - 1 < spent <= spec.budget.experiments + 1e-9  # never overspends
    assert result.summary["best_experiment"] in {o.experiment_id for o in experiments}
    assert result.summary["experiments"] == len(experiments)
    assert result.summary["simulated"] == len(screened)

    events = read_events(result.run_dir / "events.jsonl")
    simulations = [e["payload"] for e in events if e["kind"] == "simulation"]
    assert [s["experiment_id"] for s in simulations] == [o.experiment_id for o in screened]
    # the initial design is simulated too, so the advice can be given
    calls = [e["payload"] for e in events if e["kind"] == "optimiser_call"]
    assert calls[0]["method"] == "initial_design" and len(calls[0]["simulated"]) == 3
    assert all(c["method"] == "propose_multifidelity" for c in calls[1:])
    advice = [e["payload"]["fidelity_advice"] for e in events if e["kind"] == "decision"]
    assert advice[0]["verdict"] == "too_few_pairs"
    assert advice[-1]["pairs"] >= 5 and advice[-1]["verdict"] == "pays"  # the screen costs 0.05, R² > 0.8
    assert any(e["kind"] == "fidelity_warning" for e in events)
    report = result.report.read_text()
    assert "## Cheap source" in report and "it pays here" in report

    audit = replay(str(result.run_dir), write=False)
    assert audit.ok, audit.divergence

    # the replay answers from the record: a simulator that changed since is never called
    def changed(composition, seed=0):
        raise AssertionError("the replay called the simulator")

    monkeypatch.setattr(virtual_world, "screen", changed)
    assert replay(str(result.run_dir), write=False).ok


class Context:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def record(self, kind: str, payload: dict[str, Any]) -> None:
        self.events.append((kind, payload))


def test_the_pi_counts_only_experiments_as_best_and_stops_when_no_experiment_is_affordable():
    spec = CampaignSpec.model_validate({**SPEC, "budget": {"experiments": 4}})
    composition = {"A": 0.25, "B": 0.25, "C": 0.25, "D": 0.25}

    def obs(name: str, value: float, fidelity: str | None = None) -> Observation:
        return Observation(
            experiment_id=name,
            iteration=1,
            composition=composition,
            values={"conductivity": value},
            fidelity=fidelity,
        )

    observations = [obs("E0001", 10.0), obs("E0002", 20.0), obs("E0003", 30.0)]
    observations += [obs(f"S{i:04d}", 900.0, "screen") for i in range(1, 11)]  # 0.5 of an experiment
    assert best_value(spec, observations) == 30.0
    state = {
        "spec": spec.model_dump(mode="json"),
        "iteration": 2,
        "observations": [o.model_dump() for o in observations],
    }
    context = Context()
    ports = Ports(llm=MockLLM(fallback="error"), knowledge=None, instruments=None, context=context, lab=None)
    decision = decide(state, ports)["decision"]
    assert decision["action"] == "stop" and "budget" in decision["reason"]  # 3.5 spent, 0.5 left
    assert context.events[-1][1]["fidelity_advice"]["fidelity"] == "screen"
    assert route({**state, "decision": {"action": "continue"}}) == "stop"
    assert route(
        {**state, "observations": state["observations"][:-10], "decision": {"action": "continue"}}
    ) == ("continue")


def test_a_simulated_source_without_a_simulator_port_is_refused_naming_the_port():
    spec = CampaignSpec.model_validate(SPEC)
    ports = Ports(llm=None, knowledge=None, instruments=None, context=Context(), lab=None)
    proposal = Proposal(
        experiment_id="S0001",
        composition={"A": 0.1, "B": 0.2, "C": 0.3, "D": 0.4},
        rationale="cheap look first",
        fidelity="screen",
    )
    with pytest.raises(AthanorError, match=r"no simulator port; pass Ports\(simulator=\.\.\.\)"):
        simulate_proposals(spec, [proposal], ports, 1)
    assert ports.context.events == []  # nothing was recorded as simulated
