"""The designer: chooses the next compositions with the optimiser tool.

The first batch is a seeded space-filling design; later batches come from the Bayesian optimiser
fitted to every observation so far. Each optimiser call is recorded with its inputs, seed and output.
A spec that limits the present components, has categorical choices or a grid gets its initial design
from :func:`tools.mixed_space.mixed_initial_design`, and its proposals carry their choices.
"""

from __future__ import annotations

from typing import Any

from agents.state import CampaignState, Ports, observations_of, spec_of
from athanor.models import Proposal
from tools.initial_design import initial_design
from tools.mixed_space import MixedPoint, mixed_initial_design, needs_mixed_space
from tools.optimise import propose

__all__ = ["design"]


def design(state: CampaignState, ports: Ports) -> dict[str, Any]:
    """Graph node: propose the next batch (or fill the freed slots), never past the budget."""
    spec = spec_of(state)
    observations = observations_of(state)
    iteration = state.get("iteration", 0)
    running = [r["protocol"] for r in state.get("running", [])]
    remaining = spec.budget.experiments - len(observations) - len(running)
    context = ports.context

    if iteration == 0:
        n = min(spec.budget.n_initial, remaining)
        seed = context.seed_for("initial-design")
        if needs_mixed_space(spec):
            points = mixed_initial_design(spec, n, seed)
        else:
            points = [MixedPoint(composition=c) for c in initial_design(spec, n, seed)]
        proposals = [
            Proposal(
                experiment_id=context.next_experiment_id(),
                composition=point.composition,
                source="initial",
                rationale="space-filling initial design",
                choices=point.choices,
            )
            for point in points
        ]
        call = {"method": "initial_design", "n": n, "seed": seed}
    else:
        # in async mode the slots of the experiments still running are taken
        n = min(spec.budget.batch_size - len(running), remaining)
        seed = context.seed_for(f"propose-{iteration}")
        pending = [protocol["composition"] for protocol in running]
        pending_choices = [protocol.get("choices", {}) for protocol in running]
        suggestions = propose(spec, observations, n, seed, pending, pending_choices=pending_choices)
        proposals = [
            Proposal(
                experiment_id=context.next_experiment_id(),
                composition=s.composition,
                source=s.source,
                predicted_mean=s.predicted_mean,
                predicted_std=s.predicted_std,
                acquisition_value=s.acquisition_value,
                rationale=s.rationale,
                choices=s.choices,
            )
            for s in suggestions
        ]
        call = {
            "method": "propose",
            "n": n,
            "seed": seed,
            "observations": len(observations),
            "pending": pending,
        }
        if spec.categories:
            call["pending_choices"] = pending_choices

    context.record(
        "optimiser_call",
        {**call, "iteration": iteration, "proposals": [p.model_dump(mode="json") for p in proposals]},
    )
    return {"proposals": [p.model_dump(mode="json") for p in proposals], "iteration": iteration + 1}
