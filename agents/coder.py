"""The coder: compiles each proposal into a protocol and dry-runs it against the lab's envelope.

A protocol that fails the dry run never reaches an instrument: its experiment is recorded as failed
with the reason, and the rest of the batch goes on. A batch that would run a stock dry stops the
campaign before any of it reaches an instrument (event ``stock_low``); a stock that falls below 10 %
of what it held when last filled (its start, or its latest refill) is warned about (event
``stock_warning``).
"""

from __future__ import annotations

import re
from typing import Any

from agents.state import CampaignState, Ports, proposals_of, spec_of
from athanor.errors import AthanorError, SafetyError
from athanor.lab import LabDescription
from athanor.models import Observation, Protocol
from tools.mixing import running_low, stock_forecast
from tools.protocols import compile_protocol, validate_protocol

__all__ = ["code", "pooled", "well_for"]


def well_for(experiment_id: str, lab: LabDescription) -> str:
    """The plate well an experiment uses: experiment ``E0001`` takes the lab's first well.

    Raises:
        athanor.errors.AthanorError: The plate has no well left for this experiment.
    """
    match = re.search(r"(\d+)$", experiment_id)
    index = int(match.group(1)) - 1 if match else -1
    if not 0 <= index < len(lab.wells):
        raise AthanorError(
            f"experiment {experiment_id} has no free well: the lab declares {len(lab.wells)} wells;"
            " add wells (or a plate) to the lab description or lower the budget"
        )
    return lab.wells[index]


def pooled(protocol: Protocol, lab: LabDescription) -> Protocol:
    """Address measuring steps to an instrument kind when the lab has several of that kind.

    The engine then gives each such step to whichever of those instruments is free first, so that
    four meters of different speeds are all kept busy.
    """
    kinds = [i.kind for i in lab.instruments]
    commands = []
    for command in protocol.commands:
        kind = lab.instrument(command.instrument).kind
        if command.action == "measure" and kinds.count(kind) > 1:  # any free meter may measure it
            command = command.model_copy(update={"instrument": kind})
        commands.append(command)
    return protocol.model_copy(update={"commands": commands})


def _stock_left(state: CampaignState, lab: LabDescription) -> dict[str, float]:
    """µL left in each stock after every protocol compiled so far."""
    used = state.get("stock_used_ul", {})
    return {s.name: s.volume_ul - used.get(s.name, 0.0) for s in lab.stocks}


def _refuse_run_out(protocols: list[Protocol], state: CampaignState, ports: Ports) -> None:
    """Stop the campaign, before anything reaches an instrument, if ``protocols`` would run a stock dry.

    Raises:
        athanor.errors.SafetyError: A stock would run dry; names it, what is left and the fix.
    """
    left = _stock_left(state, ports.lab)
    short = stock_forecast([p.volumes_ul for p in protocols], left, [p.experiment_id for p in protocols])
    if short:
        ports.context.record("stock_low", {"problems": short, "left_ul": left})
        raise SafetyError("; ".join(short))


def _draw_stocks(protocols: list[Protocol], state: CampaignState, ports: Ports) -> dict[str, float]:
    """The campaign's stock use (µL per stock) once ``protocols`` are made; warns of low stocks."""
    used = dict(state.get("stock_used_ul", {}))
    before = _stock_left(state, ports.lab)
    for protocol in protocols:
        for stock, volume in protocol.volumes_ul.items():
            used[stock] = round(used.get(stock, 0.0) + volume, 6)
    after = {s.name: s.volume_ul - used.get(s.name, 0.0) for s in ports.lab.stocks}
    filled = {s.name: s.warning_base_ul for s in ports.lab.stocks}  # after a refill: the refilled volume
    for message in running_low(before, after, filled):
        ports.context.record("stock_warning", {"message": message})
    return used


def code(state: CampaignState, ports: Ports) -> dict[str, Any]:
    """Graph node: a checked protocol per proposal; rejected ones become failed observations."""
    spec = spec_of(state)
    iteration = state.get("iteration", 1) - 1
    protocols, rejected = [], []
    for proposal in proposals_of(state):
        try:
            protocol = compile_protocol(
                proposal, spec, ports.lab, well_for(proposal.experiment_id, ports.lab)
            )
            problems = validate_protocol(protocol, ports.lab)
        except AthanorError as error:
            protocol, problems = None, [str(error)]
        if problems:
            ports.context.record(
                "protocol_rejected", {"experiment_id": proposal.experiment_id, "problems": problems}
            )
            observation = Observation(
                experiment_id=proposal.experiment_id,
                iteration=iteration,
                composition=proposal.composition,
                status="failed",
                note="protocol rejected by dry run: " + "; ".join(problems),
                choices=proposal.choices,
            )
            rejected.append(observation)
            if ports.on_observation is not None:
                ports.on_observation(observation)
            continue
        protocol = pooled(protocol, ports.lab)
        _refuse_run_out([*protocols, protocol], state, ports)
        ports.context.record("protocol", protocol.model_dump(mode="json"))
        protocols.append(protocol)
    stock_used = _draw_stocks(protocols, state, ports)
    return {
        "stock_used_ul": stock_used,
        "protocols": [p.model_dump(mode="json") for p in protocols],
        "observations": [o.model_dump(mode="json") for o in rejected],
    }
