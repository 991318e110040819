"""The designer: chooses the next compositions with the optimiser tool.

The first batch is a seeded space-filling design; later batches come from the Bayesian optimiser
fitted to every observation so far. Each optimiser call is recorded with its inputs, seed and output,
and with the optimiser options (``Ports.optimiser``) that differ from the defaults.
A spec that limits the present components, has categorical choices or a grid gets its initial design
from :func:`tools.mixed_space.mixed_initial_design`, and its proposals carry their choices.

Prior data (earlier experiments, see :mod:`runs.prior`) joins every model fit beside the campaign's
observations and never counts toward the budget. Each usable prior row replaces one point of the
initial design: the first batch keeps its size, its space-filling points keep away from the prior
rows and the freed slots are proposed by the model; with at least ``budget.n_initial`` usable prior
rows there is no initial design and the first batch is model-based.
"""

from __future__ import annotations

from typing import Any

from agents.state import CampaignState, Ports, observations_of, prior_of, spec_of
from athanor.models import Observation, Proposal
from athanor.spec import CampaignSpec
from runs.prior import is_usable
from tools.budget import MIN_PAIRS, PAIR_TOLERANCE, budget_spent, paired_values
from tools.initial_design import initial_design
from tools.mixed_space import MixedPoint, mixed_initial_design, needs_mixed_space
from tools.optimiser import Suggestion, propose, propose_multifidelity

__all__ = ["design"]


def design(state: CampaignState, ports: Ports) -> dict[str, Any]:
    """Graph node: propose the next batch (or fill the freed slots), never past the budget."""
    spec = spec_of(state)
    if spec.fidelities:
        return _design_multifidelity(state, ports)
    observations = observations_of(state)
    prior = prior_of(state)
    iteration = state.get("iteration", 0)
    running = [r["protocol"] for r in state.get("running", [])]
    remaining = spec.budget.experiments - len(observations) - len(running)  # prior rows never count
    context = ports.context
    options = ports.optimiser
    usable_prior = [o for o in prior if is_usable(spec, o)]
    space_filling = max(spec.budget.n_initial - len(usable_prior), 0)

    if iteration == 0 and space_filling > 0:
        n = min(spec.budget.n_initial, remaining)
        if prior:
            n = min(max(space_filling, min(spec.budget.batch_size, spec.budget.n_initial)), remaining)
        seed = context.seed_for("initial-design")
        points = _initial_points(spec, min(space_filling, n), seed, usable_prior)
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
        call = {"method": "initial_design", "n": len(points), "seed": seed}
        if prior:
            call["prior"] = len(usable_prior)
            if n > len(points):
                model_seed = context.seed_for("propose-0")
                pending = [p.composition for p in points]
                pending_choices = [p.choices for p in points]
                suggestions = propose(
                    spec,
                    [*prior, *observations],
                    n - len(points),
                    model_seed,
                    pending,
                    pending_choices=pending_choices,
                    options=options,
                )
                proposals += [_proposal(context.next_experiment_id(), s) for s in suggestions]
                call["model"] = {"n": n - len(points), "seed": model_seed}
    else:
        # in async mode the slots of the experiments still running are taken
        n = min(spec.budget.batch_size - len(running), remaining)
        seed = context.seed_for(f"propose-{iteration}")
        pending = [protocol["composition"] for protocol in running]
        pending_choices = [protocol.get("choices", {}) for protocol in running]
        suggestions = propose(
            spec, [*prior, *observations], n, seed, pending, pending_choices=pending_choices, options=options
        )
        proposals = [_proposal(context.next_experiment_id(), s) for s in suggestions]
        call = {
            "method": "propose",
            "n": n,
            "seed": seed,
            "observations": len(observations),
            "pending": pending,
        }
        if spec.categories:
            call["pending_choices"] = pending_choices
        if prior:
            call["prior"] = len(usable_prior)
    if options is not None and (changed := options.recorded()):
        call["options"] = changed  # only what differs from the defaults: older records stay valid

    context.record(
        "optimiser_call",
        {**call, "iteration": iteration, "proposals": [p.model_dump(mode="json") for p in proposals]},
    )
    return {"proposals": [p.model_dump(mode="json") for p in proposals], "iteration": iteration + 1}


def _initial_points(spec: CampaignSpec, n: int, seed: int, prior: list[Observation]) -> list[MixedPoint]:
    """``n`` space-filling points, away from the usable prior rows when there are any."""
    if needs_mixed_space(spec):
        avoid = [MixedPoint(composition=o.composition, choices=o.choices) for o in prior]
        return mixed_initial_design(spec, n, seed, avoid=avoid)
    compositions = initial_design(spec, n, seed, avoid=[o.composition for o in prior])
    return [MixedPoint(composition=c) for c in compositions]


def _proposal(experiment_id: str, suggestion: Suggestion) -> Proposal:
    return Proposal(
        experiment_id=experiment_id,
        composition=suggestion.composition,
        source=suggestion.source,
        predicted_mean=suggestion.predicted_mean,
        predicted_std=suggestion.predicted_std,
        acquisition_value=suggestion.acquisition_value,
        rationale=suggestion.rationale,
        choices=suggestion.choices,
    )


#: Proposal rounds per design step with a cheap source: the cheap picks of a round are simulated at
#: once and their slots offered again; the last round fills every open slot with an experiment.
_ROUNDS = 3


def _design_multifidelity(state: CampaignState, ports: Ports) -> dict[str, Any]:
    """Design step of a campaign with a cheap simulated source (``spec.fidelities``).

    Every step fills the free instrument slots with experiments (the target). In between, the
    acquisition may prefer cheap evaluations, which are simulated at once (see
    :func:`agents.experimenter.simulate_proposals`) and their slot offered again, for at most
    :data:`_ROUNDS` rounds. Until :data:`tools.budget.MIN_PAIRS` compositions are known at both
    sources (the initial design, first of all), each experiment's composition is simulated as well, so
    that :func:`tools.budget.advise` can judge the cheap source. Costs come out of the budget
    (in experiments), and cheap evaluations only spend what the step's experiments leave.
    """
    from agents.experimenter import simulate_proposals  # the experimenter imports the analyst, not us

    spec = spec_of(state)
    if ports.optimiser is not None:
        ports.optimiser.refuse_model_options("a campaign with a cheap source")
    observations = observations_of(state)
    known = [*prior_of(state), *observations]  # prior rows are experiments; they never count
    iteration = state.get("iteration", 0)
    running = [r["protocol"] for r in state.get("running", [])]
    context = ports.context
    cheap = next(f for f in spec.fidelities if f.cost < 1.0)
    remaining = spec.budget.experiments - budget_spent(spec, observations, len(running))
    slots = max(0, min(spec.budget.batch_size - len(running), int(remaining + 1e-9)))
    simulated_so_far = sum(o.fidelity == cheap.name for o in observations)
    targets: list[Proposal] = []
    simulated: list[Observation] = []
    rounds: list[dict[str, Any]] = []

    def cheap_left() -> float:
        return remaining - slots - cheap.cost * len(simulated)

    def run_cheap(proposals: list[Proposal]) -> None:
        simulated.extend(simulate_proposals(spec, proposals, ports, iteration))

    def sim_id() -> str:
        return f"S{simulated_so_far + len(simulated) + 1:04d}"

    if iteration == 0:
        n = slots = max(0, min(spec.budget.n_initial, int(remaining + 1e-9)))
        seed = context.seed_for("initial-design")
        compositions = initial_design(spec, n, seed)
        targets = [
            Proposal(
                experiment_id=context.next_experiment_id(),
                composition=c,
                source="initial",
                rationale="space-filling initial design",
            )
            for c in compositions
        ]
        call: dict[str, Any] = {"method": "initial_design", "n": n, "seed": seed}
    else:
        seed = context.seed_for(f"propose-{iteration}")
        pending = [protocol["composition"] for protocol in running]
        for number in range(_ROUNDS):
            open_slots = slots - len(targets)
            if open_slots <= 0:
                break
            last = number == _ROUNDS - 1
            picks = propose_multifidelity(
                spec,
                [*known, *simulated],
                open_slots,
                seed + number,
                [*pending, *(t.composition for t in targets)],
                cheap_budget=max(0.0, cheap_left()),
                min_target=open_slots if last else 0,
            )
            rounds.append({"round": number, "n": open_slots, "fidelities": [p.fidelity for p in picks]})
            batch = []
            for pick in picks:
                proposal = Proposal(
                    experiment_id=context.next_experiment_id() if pick.cost == 1.0 else sim_id(),
                    composition=pick.composition,
                    source=pick.source,
                    predicted_mean=pick.predicted_mean,
                    predicted_std=pick.predicted_std,
                    acquisition_value=pick.acquisition_value,
                    rationale=pick.rationale,
                    fidelity=None if pick.cost == 1.0 else pick.fidelity,
                )
                if pick.cost == 1.0:
                    targets.append(proposal)
                else:
                    batch.append(proposal)
                    run_cheap([proposal])
            if not batch:
                break
        call = {"method": "propose_multifidelity", "n": slots, "seed": seed, "rounds": rounds}
        call |= {"observations": len(observations), "pending": pending}

    # until enough compositions are known at both sources, simulate each experiment's composition too
    pairs = len(paired_values(spec, [*observations, *simulated]))
    for target in targets:
        if pairs >= MIN_PAIRS or cheap_left() < cheap.cost - 1e-9:
            break
        if _has_twin(spec, target.composition, [*observations, *simulated], cheap.name):
            continue
        run_cheap(
            [
                Proposal(
                    experiment_id=sim_id(),
                    composition=target.composition,
                    source=target.source,
                    rationale=f"paired with {target.experiment_id}: how well does {cheap.name} predict it",
                    fidelity=cheap.name,
                )
            ]
        )
        pairs += 1
    call["simulated"] = [o.experiment_id for o in simulated]
    proposals = [*targets, *(_as_proposal(o) for o in simulated)]
    context.record(
        "optimiser_call",
        {**call, "iteration": iteration, "proposals": [p.model_dump(mode="json") for p in proposals]},
    )
    return {
        "proposals": [p.model_dump(mode="json") for p in targets],
        "iteration": iteration + 1,
        "observations": [o.model_dump(mode="json") for o in simulated],
    }


def _has_twin(
    spec: CampaignSpec, composition: dict[str, float], observations: list[Observation], fidelity: str
) -> bool:
    """Whether ``composition`` was already evaluated at ``fidelity``."""
    scale = spec.unit_scale
    return any(
        o.fidelity == fidelity
        and max(abs(o.composition.get(c, 0.0) - composition[c]) / scale for c in spec.component_names)
        <= PAIR_TOLERANCE
        for o in observations
    )


def _as_proposal(observation: Observation) -> Proposal:
    """The record of a simulated evaluation as a proposal, for the optimiser-call event."""
    return Proposal(
        experiment_id=observation.experiment_id,
        composition=observation.composition,
        rationale=observation.note,
        fidelity=observation.fidelity,
    )
