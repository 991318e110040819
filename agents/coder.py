"""The coder: compiles each proposal into a protocol and dry-runs it against the lab's envelope.

A protocol that fails the dry run never reaches an instrument: its experiment is recorded as failed
with the reason, and the rest of the batch goes on.
"""

from __future__ import annotations

import re
from typing import Any

from agents.state import CampaignState, Ports, proposals_of, spec_of
from athanor.errors import AthanorError
from athanor.lab import LabDescription
from athanor.models import Observation
from tools.protocols import compile_protocol, validate_protocol

__all__ = ["code", "well_for"]


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
            )
            rejected.append(observation)
            if ports.on_observation is not None:
                ports.on_observation(observation)
            continue
        ports.context.record("protocol", protocol.model_dump(mode="json"))
        protocols.append(protocol)
    return {
        "protocols": [p.model_dump(mode="json") for p in protocols],
        "observations": [o.model_dump(mode="json") for o in rejected],
    }
