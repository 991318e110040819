"""The PI: reads the request, grounds it in literature, and decides whether to go on.

The budget and the target are hard rules the engine enforces whatever the model says; the model may
only stop a campaign early, never extend it.

Prior data (earlier experiments from a CSV) informs the designer's model only. The budget, the best
so far and every stop rule that compares with a target count the campaign's own measurements: a
target met by a prior row does not stop the campaign before it has reproduced the result on its own
instruments. The model is told the prior rows' count and best value beside the campaign's.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from agents.llm import MODEL_BACKENDS
from agents.llm.reader import open_questions, read_request
from agents.llm.reader.crosscheck import check_reading, describe_spec
from agents.state import CampaignState, Ports, observations_of, prior_of, spec_of
from athanor.asking import Answer, Ask, Question, completed
from athanor.errors import ReadingsDisagree, RequestNotUnderstood, SpecError, format_validation_error
from athanor.models import Decision, Observation
from athanor.pareto import counts, pareto_front, targets_met
from athanor.ports import LLMPort
from athanor.spec import CampaignSpec, Objective
from tools.budget import advise, budget_spent, check_fidelities, is_target

__all__ = ["MIN_RELEVANCE", "best_value", "decide", "plan", "understand"]

#: Cosine similarity a passage needs to be cited. With the shipped embedder the passages about the
#: campaign's own system score 0.45–0.7 and the nearest off-topic ones 0.1–0.36 (e.g. a Cu-Ag-Zr
#: alloy request against a store without alloys): below this, "the literature says" would mislead.
MIN_RELEVANCE = 0.4

_PARSE_SYSTEM = (
    "You are the PI of an autonomous materials lab. Turn the user's campaign request into a"
    " CampaignSpec. Use only components, bounds, constraints, objectives and budget the request states;"
    " never invent any. Fractions sum to 1 unless the request uses percent."
)
_DECIDE_SYSTEM = (
    "You are the PI of an autonomous materials lab. Given the campaign's progress, answer whether to"
    " continue or stop, with a one-sentence reason."
)


def understand(
    request: str, llm: LLMPort, seed: int | None = None, ask: Ask | None = None
) -> CampaignSpec:
    """Turn a plain-language request into a validated spec.

    With ``ask`` (a terminal), what the request lacks and a question settles (its budget, its batch
    size, whether its amounts add up to 1 or to 100) is asked before it is read, and the answers join
    the request as words (``30 experiments``): the spec's ``request`` is the completed request. With a
    language model (:data:`agents.llm.MODEL_BACKENDS`) the model's reading is checked against the
    request's words (:func:`agents.llm.reader.crosscheck.check_reading`); on a disagreement ``ask``
    chooses between the model's reading and the offline reader's, and without ``ask`` it is refused.

    Args:
        request: The user's request, e.g. ``"Maximise the conductivity of ..., 30 experiments"``.
        llm: The language model port.
        seed: Overrides the seed the request names (``--seed``).
        ask: Answers a question (a terminal prompt); None when no one can be asked.

    Raises:
        athanor.errors.RequestNotUnderstood: The request cannot be read (or lacks what only a
            question would settle, and there is no one to ask: the message asks it).
        athanor.errors.ReadingsDisagree: The model's reading says what the request does not.
        athanor.errors.SpecError: What was read is not a valid, feasible spec.
    """
    if ask is not None:
        request = completed(request, [Answer(q, ask(q)) for q in open_questions(request)])
    messages = [
        {"role": "system", "content": _PARSE_SYSTEM},
        {"role": "user", "content": request},
    ]
    spec = llm.structured("parse_request", messages, CampaignSpec)
    if llm.name in MODEL_BACKENDS:
        spec = _checked_reading(request, spec, ask)
    data = spec.model_dump()
    data["request"] = request
    if seed is not None:
        data["seed"] = seed
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(format_validation_error(error)) from None


def _checked_reading(request: str, spec: CampaignSpec, ask: Ask | None) -> CampaignSpec:
    """The model's spec if it agrees with the request's words; else the reading the user picks.

    Raises:
        athanor.errors.ReadingsDisagree: They disagree and no one can be asked (or the user stops).
    """
    disagreements = check_reading(request, spec)
    if not disagreements:
        return spec
    try:
        own: CampaignSpec | None = CampaignSpec.model_validate(read_request(request))
        own_words = describe_spec(own)
    except (RequestNotUnderstood, ValidationError) as error:
        own = None
        first = str(error).splitlines()[1:2] if isinstance(error, RequestNotUnderstood) else []
        own_words = "could not read it" + (f" ({first[0].strip(' -')})" if first else "")
    lines = ["The model's reading of the request says what the request does not:"]
    lines += [f"  - {d}" for d in disagreements]
    lines.append(f"The model read: {describe_spec(spec)}.")
    lines.append(f"The offline reader read: {own_words}.")
    message = "\n".join(lines)
    if ask is not None:
        choices = ("model", "reader", "stop") if own is not None else ("model", "stop")
        text = f"{message}\nWhich reading is right?"
        answer = ask(Question(field="reading", text=text, words="", choices=choices))
        if answer == "model":
            return spec
        if answer == "reader" and own is not None:
            return own
    advice = "Nothing was run. Rephrase the request (see docs/request-grammar.md) or write a campaign file."
    raise ReadingsDisagree(f"{message}\n{advice}", disagreements)


def best_value(spec: CampaignSpec, observations: list[Observation]) -> float | None:
    """Best measured value of the primary objective, or None when nothing was measured.

    With outcome constraints only the experiments that meet them count; with a cheap source
    (``spec.fidelities``) only experiments, never its simulated values.
    """
    objective = spec.primary_objective
    values = [
        o.values[objective.name]
        for o in observations
        if o.status == "ok"
        and objective.name in o.values
        and is_target(spec, o.fidelity)
        and (not spec.outcome_constraints or counts(spec, o))
    ]
    if not values:
        return None
    return max(values) if objective.direction == "maximise" else min(values)


def _objective_progress(objective: Objective, front: list[Observation]) -> dict[str, Any]:
    """One objective of a campaign with several, for the PI's verdict: its aim and its best on the front.

    Returns:
        ``name``, ``direction``, ``unit``, ``target`` and ``best_on_front`` (the best value of the
        objective among the Pareto front's experiments, in ``unit``; None while the front is empty).
    """
    values = [o.values[objective.name] for o in front]
    pick = max if objective.direction == "maximise" else min
    return {
        "name": objective.name,
        "direction": objective.direction,
        "unit": objective.unit,
        "target": objective.target,
        "best_on_front": pick(values) if values else None,
    }


def plan(state: CampaignState, ports: Ports) -> dict[str, Any]:
    """Graph node: ground the campaign in literature, and put the prior data (if any) in the state."""
    spec = spec_of(state)
    citations: list[str] = []
    if ports.knowledge is not None:
        names = ", ".join(spec.component_names)
        query = f"{spec.primary_objective.name} of {names} {spec.title}"
        found = ports.knowledge.search(query, k=4)
        # the nearest passages of a store that knows nothing about this system are still returned
        passages = [p for p in found if p.score >= MIN_RELEVANCE]
        citations = [p.chunk_id for p in passages]
        ports.context.record(
            "grounding",
            {
                "query": query,
                "passages": [{"chunk_id": p.chunk_id, "citation": p.citation} for p in passages],
                "min_score": MIN_RELEVANCE,
                "not_cited": [p.chunk_id for p in found if p.score < MIN_RELEVANCE],
            },
        )
    # a cheap source whose simulator cannot be imported stops here; one unlikely to pay is warned about
    for warning in check_fidelities(spec):
        ports.context.record("fidelity_warning", {"message": warning})
    update: dict[str, Any] = {"iteration": 0, "citations": citations}
    if ports.prior:
        update["prior"] = [o.model_dump(mode="json") for o in ports.prior]
    return update


def decide(state: CampaignState, ports: Ports) -> dict[str, Any]:
    """Graph node: continue or stop, after each analysed batch."""
    spec = spec_of(state)
    observations = observations_of(state)
    iteration = state.get("iteration", 0)
    # with a cheap source a simulated evaluation spends its cost of one experiment
    done = round(budget_spent(spec, observations), 6) if spec.fidelities else len(observations)
    running = len(state.get("running", []))
    objective = spec.primary_objective
    best = best_value(spec, observations)
    earlier = [o for o in observations if o.iteration < iteration - 1]
    best_before = best_value(spec, earlier)
    several = len(spec.objectives) > 1 or bool(spec.outcome_constraints)
    # with several objectives one experiment must reach every target that is set (and be feasible)
    met = targets_met(spec, observations) if several else None
    target_reached = met is not None if several else best is not None and objective.reached(best)

    if spec.budget.experiments - done < 1:  # not enough left for another experiment
        decision = Decision(action="stop", reason=f"budget of {spec.budget.experiments} experiments used")
    elif met is not None:
        reached = ", ".join(
            f"{o.name} {met.values[o.name]:.4g} {o.unit}".rstrip()
            for o in spec.objectives
            if o.target is not None
        )
        decision = Decision(action="stop", reason=f"every target reached by {met.experiment_id} ({reached})")
    elif target_reached:
        decision = Decision(action="stop", reason=f"target {objective.target:g} {objective.unit} reached")
    else:
        progress = {
            "iteration": iteration,
            "experiments_done": done,
            "experiments_running": running,
            "experiments_budget": spec.budget.experiments,
            "best_value": best,
            "best_before": best_before,
            "objective": objective.name,
            "direction": objective.direction,
            "target": objective.target,
            "target_reached": target_reached,
        }
        prior = prior_of(state)
        if prior:
            # prior rows inform the verdict but are not the campaign's results
            progress["prior_rows"] = len(prior)
            progress["prior_best_value"] = best_value(spec, prior)
        if len(spec.objectives) > 1:
            front = pareto_front(spec, observations)
            progress["objectives"] = [_objective_progress(o, front) for o in spec.objectives]
            progress["pareto_front_size"] = len(front)
            progress["pareto_front_size_before"] = len(pareto_front(spec, earlier))
        advice = advise(spec, observations)
        if advice is not None:
            progress["fidelity_advice"] = advice.message
        messages = [
            {"role": "system", "content": _DECIDE_SYSTEM},
            {"role": "user", "content": json.dumps(progress)},
        ]
        decision = ports.llm.structured("decide", messages, Decision)
    record = {"iteration": iteration, **decision.model_dump()}
    advice = advise(spec, observations)
    if advice is not None:
        record["fidelity_advice"] = advice.model_dump(mode="json")
    ports.context.record("decision", record)
    return {"decision": decision.model_dump(mode="json")}


def route(state: CampaignState) -> str:
    """Edge: design more, wait for running experiments, or finish.

    A stopped campaign still waits for the experiments already on the instruments: a prepared
    sample is measured, never abandoned mid-protocol.
    """
    spec = spec_of(state)
    running = len(state.get("running", []))
    submitted = budget_spent(spec, observations_of(state), running)
    if state.get("decision", {}).get("action") == "stop" or spec.budget.experiments - submitted < 1:
        return "wait" if running else "stop"
    if spec.budget.mode == "async":
        return "continue" if running < spec.budget.batch_size else "wait"
    return "wait" if running else "continue"
