"""The analyst: turns raw readings into observations and summarises each batch.

A reading that failed, a missing quantity or a non-finite value makes the experiment ``failed`` with
the reason; nothing is dropped silently. The summary (best so far, best of the initial design, failures)
goes to the event log for the PI and the report.
"""

from __future__ import annotations

import math
from typing import Any

from agents.state import CampaignState, Ports, observations_of, spec_of
from athanor.lab import match_quantity
from athanor.models import Observation, Protocol, Reading
from athanor.pareto import counts, pareto_front
from athanor.spec import CampaignSpec
from tools.budget import advise, budget_spent, is_target

__all__ = ["analyse", "observation_from_readings", "summarise"]


def observation_from_readings(
    spec: CampaignSpec, protocol: Protocol, readings: list[Reading], iteration: int
) -> Observation:
    """One observation from an experiment's readings.

    Args:
        spec: The campaign spec (objectives name what to read).
        protocol: The protocol that ran; its composition is what was actually made.
        readings: The readings that arrived, in command order.
        iteration: The design iteration that proposed the experiment.
    """

    def failed(note: str) -> Observation:
        return Observation(
            experiment_id=protocol.experiment_id,
            iteration=iteration,
            composition=protocol.composition,
            status="failed",
            note=note,
            choices=protocol.choices,
        )

    faults = [r for r in readings if not r.ok]
    if faults:
        first = faults[0]
        return failed(f"{first.instrument}.{first.action} failed: {first.error}")
    if len(readings) < len(protocol.commands):
        return failed(f"only {len(readings)} of {len(protocol.commands)} steps reported")
    measured: dict[str, float] = {}
    for reading in readings:
        measured.update(reading.values)
    values: dict[str, float] = {}
    for name in spec.measured_names:  # the objectives, then other outcome-constrained quantities
        quantity = match_quantity(name, list(measured))
        if quantity is None:
            return failed(f"no instrument reported {name}")
        value = float(measured[quantity])
        if not math.isfinite(value):
            return failed(f"{name} reading is not a finite number ({value})")
        values[name] = value
    return Observation(
        experiment_id=protocol.experiment_id,
        iteration=iteration,
        composition=protocol.composition,
        values=values,
        choices=protocol.choices,
    )


def summarise(spec: CampaignSpec, observations: list[Observation]) -> dict[str, Any]:
    """Best overall, best of the initial design and failure count, for the PI and the report.

    With outcome constraints only experiments that meet them count as best (``feasible`` says how
    many do); with several objectives ``best_*`` is about the primary one and ``pareto_front`` lists
    the experiments no other dominates (``experiment_id``, ``values``), best first by the primary
    objective. With a cheap source (``spec.fidelities``) only experiments count as best and in
    ``experiments``; ``simulated`` counts the cheap evaluations, ``budget_spent`` is in experiments and
    ``fidelity_advice`` is :func:`tools.budget.advise`'s verdict.
    """
    objective = spec.primary_objective
    pick = max if objective.direction == "maximise" else min
    simulated = [o for o in observations if not is_target(spec, o.fidelity)]
    if simulated:
        observations = [o for o in observations if is_target(spec, o.fidelity)]
    ok = [o for o in observations if o.status == "ok" and objective.name in o.values]
    if spec.outcome_constraints:
        ok = [o for o in ok if counts(spec, o)]
    initial = [o for o in ok if o.iteration == 0]
    best = pick(ok, key=lambda o: o.values[objective.name], default=None)
    best_initial = pick(initial, key=lambda o: o.values[objective.name], default=None)
    summary: dict[str, Any] = {
        "objective": objective.name,
        "unit": objective.unit,
        "experiments": len(observations),
        "failed": sum(o.status == "failed" for o in observations),
        "best_value": best.values[objective.name] if best else None,
        "best_experiment": best.experiment_id if best else None,
        "best_composition": best.composition if best else None,
        "best_initial_value": best_initial.values[objective.name] if best_initial else None,
    }
    if spec.outcome_constraints:
        summary["feasible"] = len(ok)
    if spec.fidelities:
        advice = advise(spec, [*observations, *simulated])
        summary["simulated"] = len(simulated)
        summary["budget_spent"] = round(budget_spent(spec, [*observations, *simulated]), 6)
        summary["fidelity_advice"] = advice.model_dump(mode="json") if advice else None
    if len(spec.objectives) > 1:
        summary["pareto_front"] = [
            {"experiment_id": o.experiment_id, "values": dict(o.values)}
            for o in pareto_front(spec, observations)
        ]
    return summary


def analyse(state: CampaignState, ports: Ports) -> dict[str, Any]:
    """Graph node: summarise the campaign after a batch and record it."""
    spec = spec_of(state)
    summary = summarise(spec, observations_of(state))
    ports.context.record("analysis", {"iteration": state.get("iteration", 1) - 1, **summary})
    return {}
