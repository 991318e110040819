"""The experimenter: the only role that reaches instruments, and only through the instruments port.

Each command gets an idempotency key ``run/experiment/step`` so that an instrument that sees a key
twice answers from its ledger instead of acting twice. Observations are emitted the moment an
experiment's last reading arrives, so a crash mid-batch loses no finished experiment.

In ``batch`` mode the node waits for the whole batch; in ``async`` mode it returns as soon as one
experiment finishes, leaving the others running, so the designer can fill the freed slot.

A campaign with a cheap simulated source (``spec.fidelities``) evaluates it without hardware:
:func:`simulate_proposals` calls the simulator for each such proposal, records each evaluation as a
``simulation`` event and emits its observation at once (status ``failed`` with the reason when the
simulator raises or returns no finite number).
"""

from __future__ import annotations

import threading
from typing import Any

from agents.analyst import observation_from_readings
from agents.state import CampaignState, Ports, protocols_of, spec_of
from athanor.errors import AthanorError, StopRequested
from athanor.models import Observation, Proposal, Protocol, Reading
from athanor.spec import CampaignSpec
from tools.budget import cost_of

__all__ = ["experiment", "simulate_proposals", "with_keys"]


def with_keys(protocol: Protocol, run_id: str) -> Protocol:
    """A copy of ``protocol`` whose commands carry idempotency keys."""
    commands = [
        command.model_copy(update={"key": f"{run_id}/{protocol.experiment_id}/{step}"})
        for step, command in enumerate(protocol.commands)
    ]
    return protocol.model_copy(update={"commands": commands})


_EMIT_LOCK = threading.Lock()


def _emit(ports: Ports, observation: Observation) -> None:
    """Pass an observation on once, from whichever thread delivers its last reading first."""
    with _EMIT_LOCK:
        if observation.experiment_id in ports.emitted:
            return
        ports.emitted.add(observation.experiment_id)
    if ports.on_observation is not None:
        ports.on_observation(observation)


def _reading_sink(spec: CampaignSpec, ports: Ports, protocols: list[Protocol], iteration: int) -> Any:
    """A callback that emits each experiment's observation as soon as its last reading arrives."""
    by_key = {c.key: p for p in protocols for c in p.commands}
    received: dict[str, list[Reading]] = {p.experiment_id: [] for p in protocols}

    def on_reading(reading: Reading) -> None:
        protocol = by_key.get(reading.key)
        if protocol is None:
            return
        readings = received[protocol.experiment_id]
        readings.append(reading)
        if len(readings) == len(protocol.commands) or not reading.ok:
            _emit(ports, observation_from_readings(spec, protocol, readings, iteration))

    return on_reading


def simulate_proposals(
    spec: CampaignSpec, proposals: list[Proposal], ports: Ports, iteration: int
) -> list[Observation]:
    """Evaluate proposals of a simulated source now, with no hardware; one observation each.

    Args:
        spec: The campaign spec (its ``fidelities`` name each proposal's simulator).
        proposals: Proposals whose ``fidelity`` is a simulated source.
        ports: The ports (events go to the run's log, observations to its sink).
        iteration: The design iteration that proposed them.

    Returns:
        One observation per proposal, in order, already passed to the observation sink.
    """
    objective = spec.primary_objective.name
    simulator = ports.simulator
    if simulator is None:
        raise AthanorError(
            "the campaign has a simulated source but no simulator port; pass Ports(simulator=...), as"
            " athanor.app does with tools.simulators.EntryPointSimulator"
        )
    out = []
    for proposal in proposals:
        fidelity = str(proposal.fidelity)
        source = next(f for f in spec.fidelities if f.name == fidelity)
        note = f"simulated by {fidelity} (cost {cost_of(spec, fidelity):g} of an experiment)"
        result = simulator.evaluate(spec, fidelity, proposal.composition)
        value = result.value
        if result.error is not None:
            note = f"{note}: the simulator failed: {result.error}"
        ports.context.record(
            "simulation",
            {
                "experiment_id": proposal.experiment_id,
                "fidelity": fidelity,
                "simulator": source.simulator,
                "composition": proposal.composition,
                "value": value,
                "error": result.error,
            },
        )
        observation = Observation(
            experiment_id=proposal.experiment_id,
            iteration=iteration,
            composition=proposal.composition,
            values={objective: value} if value is not None else {},
            status="ok" if value is not None else "failed",
            note=note,
            fidelity=fidelity,
        )
        _emit(ports, observation)
        out.append(observation)
    return out


def experiment(state: CampaignState, ports: Ports) -> dict[str, Any]:
    """Graph node: submit the new protocols, wait for one (async) or all (batch) to finish."""
    spec = spec_of(state)
    iteration = state.get("iteration", 1) - 1
    new = [with_keys(p, ports.context.run_id) for p in protocols_of(state)]
    running = {r["protocol"]["experiment_id"]: r for r in state.get("running", [])}
    for protocol in new:
        running[protocol.experiment_id] = {
            "protocol": protocol.model_dump(mode="json"),
            "iteration": iteration,
        }

    # After a resume the instruments port starts empty: experiments the checkpoint says are running
    # go again with their keys, and each instrument's ledger answers for the steps it already did.
    queued = set(ports.instruments.running())
    new_ids = {p.experiment_id for p in new}
    lost = [
        Protocol.model_validate(entry["protocol"])
        for experiment_id, entry in running.items()
        if experiment_id not in queued and experiment_id not in new_ids
    ]
    batches = [(new, iteration)] + [([p], running[p.experiment_id]["iteration"]) for p in lost]
    try:
        for protocols, batch_iteration in batches:
            if protocols:
                ports.instruments.submit(protocols, _reading_sink(spec, ports, protocols, batch_iteration))
        results = ports.instruments.wait(1 if spec.budget.mode == "async" else None) if running else {}
    except StopRequested:
        raise  # the operator's stop: the running commands may finish first (see athanor.stopping)
    except BaseException:
        ports.instruments.safe_state()
        raise

    observations = []
    for experiment_id, readings in results.items():
        entry = running.pop(experiment_id)
        protocol = Protocol.model_validate(entry["protocol"])
        observation = observation_from_readings(spec, protocol, readings, entry["iteration"])
        _emit(ports, observation)
        observations.append(observation)
    return {
        "protocols": [],
        "running": list(running.values()),
        "observations": [o.model_dump(mode="json") for o in observations],
    }
