"""The graph's state and the ports every role reaches the world through.

The state holds only JSON-ready data (dicts of pydantic dumps) so that every LangGraph checkpoint is
plain data; roles validate it back into models at their boundary.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from athanor.lab import LabDescription
from athanor.models import Observation, Proposal, Protocol
from athanor.ports import InstrumentsPort, KnowledgePort, LLMPort, RunContextPort, SimulatorPort
from athanor.spec import CampaignSpec

if TYPE_CHECKING:  # the optimiser loads torch; the roles that only read the state need not
    from tools.optimiser import OptimiserOptions

__all__ = [
    "CampaignState",
    "Ports",
    "observations_of",
    "prior_of",
    "proposals_of",
    "protocols_of",
    "spec_of",
]


class CampaignState(TypedDict, total=False):
    """What flows between the nodes; every value is JSON-ready.

    Keys:
        spec: ``CampaignSpec.model_dump(mode="json")``.
        iteration: Design iterations finished (0 before the first batch).
        citations: Chunk ids of the literature the PI grounded the campaign in.
        proposals: The current batch, ``Proposal`` dumps.
        protocols: The current batch's protocols, ``Protocol`` dumps.
        running: Experiments submitted to the instruments and not finished, each
            ``{"protocol": Protocol dump, "iteration": int}``.
        observations: Every finished experiment so far, ``Observation`` dumps (appended by a reducer).
        decision: The PI's latest ``Decision`` dump.
        stock_used_ul: µL drawn from each stock by every protocol compiled so far.
        prior: Earlier experiments from the campaign's prior data, ``Observation`` dumps (ids ``P0001``...,
            iteration -1); set once by the PI's plan, never counted toward the budget.
    """

    spec: dict[str, Any]
    iteration: int
    citations: list[str]
    proposals: list[dict[str, Any]]
    protocols: list[dict[str, Any]]
    running: list[dict[str, Any]]
    observations: Annotated[list[dict[str, Any]], operator.add]
    decision: dict[str, Any]
    stock_used_ul: dict[str, float]
    prior: list[dict[str, Any]]


@dataclass
class Ports:
    """The ports (LLM, knowledge, instruments, run context, simulators), the lab, the sink and the optimiser.

    Attributes:
        llm: The language model (already wrapped by the recorder).
        knowledge: The literature store (recorded), or None to run without literature.
        instruments: The lab (recorded).
        context: Clock, random streams, ids and the event log.
        lab: The lab description protocols are compiled and checked against.
        on_observation: Called with each observation as soon as its last reading arrives.
        emitted: Experiment ids already passed to ``on_observation`` (each is passed once).
        prior: Earlier experiments read from the prior data when the run started (or from its event log
            on resume and replay); the PI's plan puts them in the state.
        simulator: The campaign's simulated sources: the composition root's
            :class:`tools.simulators.EntryPointSimulator` in a live run, the recorded values in a
            replay; None where no simulated source runs.
        optimiser: The optimiser's model and acquisition options (None: the defaults); the designer
            records those that differ from the defaults with each optimiser call.
    """

    llm: LLMPort
    knowledge: KnowledgePort | None
    instruments: InstrumentsPort
    context: RunContextPort
    lab: LabDescription
    on_observation: Any = None
    emitted: set[str] = field(default_factory=set)
    prior: list[Observation] = field(default_factory=list)
    simulator: SimulatorPort | None = None
    optimiser: OptimiserOptions | None = None


def spec_of(state: CampaignState) -> CampaignSpec:
    """The campaign spec held in the state."""
    return CampaignSpec.model_validate(state["spec"])


def observations_of(state: CampaignState) -> list[Observation]:
    """Every observation held in the state, in the order they arrived."""
    return [Observation.model_validate(o) for o in state.get("observations", [])]


def prior_of(state: CampaignState) -> list[Observation]:
    """The prior observations held in the state (empty without prior data)."""
    return [Observation.model_validate(o) for o in state.get("prior", [])]


def proposals_of(state: CampaignState) -> list[Proposal]:
    """The current batch of proposals."""
    return [Proposal.model_validate(p) for p in state.get("proposals", [])]


def protocols_of(state: CampaignState) -> list[Protocol]:
    """The current batch of protocols."""
    return [Protocol.model_validate(p) for p in state.get("protocols", [])]
