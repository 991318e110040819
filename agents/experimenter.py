"""The experimenter: the only role that reaches instruments, and only through the instruments port.

Each command gets an idempotency key ``run/experiment/step`` so that an instrument that sees a key
twice answers from its ledger instead of acting twice. Observations are emitted the moment an
experiment's last reading arrives, so a crash mid-batch loses no finished experiment.
"""

from __future__ import annotations

from typing import Any

from agents.analyst import observation_from_readings
from agents.state import CampaignState, Ports, protocols_of, spec_of
from athanor.models import Observation, Protocol, Reading

__all__ = ["experiment", "with_keys"]


def with_keys(protocol: Protocol, run_id: str) -> Protocol:
    """A copy of ``protocol`` whose commands carry idempotency keys."""
    commands = [
        command.model_copy(update={"key": f"{run_id}/{protocol.experiment_id}/{step}"})
        for step, command in enumerate(protocol.commands)
    ]
    return protocol.model_copy(update={"commands": commands})


def experiment(state: CampaignState, ports: Ports) -> dict[str, Any]:
    """Graph node: run the batch's protocols and turn each finished experiment into an observation."""
    spec = spec_of(state)
    iteration = state.get("iteration", 1) - 1
    protocols = [with_keys(p, ports.context.run_id) for p in protocols_of(state)]
    by_key = {c.key: p for p in protocols for c in p.commands}
    received: dict[str, list[Reading]] = {p.experiment_id: [] for p in protocols}
    done: dict[str, Observation] = {}

    def finish(protocol: Protocol, readings: list[Reading]) -> None:
        observation = observation_from_readings(spec, protocol, readings, iteration)
        done[protocol.experiment_id] = observation
        if ports.on_observation is not None:
            ports.on_observation(observation)

    def on_reading(reading: Reading) -> None:
        protocol = by_key.get(reading.key)
        if protocol is None or protocol.experiment_id in done:
            return
        readings = received[protocol.experiment_id]
        readings.append(reading)
        if len(readings) == len(protocol.commands) or not reading.ok:
            finish(protocol, readings)

    try:
        results = ports.instruments.run(protocols, on_reading) if protocols else {}
    except BaseException:
        ports.instruments.safe_state()
        raise
    for protocol in protocols:
        if protocol.experiment_id not in done:
            finish(protocol, results.get(protocol.experiment_id, received[protocol.experiment_id]))
    observations = [done[p.experiment_id] for p in protocols]
    return {"observations": [o.model_dump(mode="json") for o in observations]}
