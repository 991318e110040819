"""Typed messages that flow between the roles: proposals, protocols, readings, observations.

Roles emit intent as these models; only the experimenter's engine turns a :class:`Protocol` into
instrument commands. Every model is JSON-serialisable so that it can cross a Ray boundary, sit in a
LangGraph checkpoint and be written to the event log unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Command",
    "Decision",
    "Observation",
    "Proposal",
    "Protocol",
    "Reading",
]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Proposal(_Message):
    """One composition the designer wants measured.

    Attributes:
        experiment_id: Run-unique id, e.g. ``E0007``.
        composition: Component name to amount, in the spec's unit.
        source: ``"initial"`` (space-filling design) or ``"model"`` (acquisition optimum).
        predicted_mean: Model mean of the primary objective, in its unit (None before a model).
        predicted_std: Model standard deviation of the primary objective.
        acquisition_value: Value of the acquisition function at this point (None for initial).
        rationale: One line saying why this point was chosen.
        choices: Categorical variable name to the chosen option (empty when the spec has none).
        fidelity: The source to evaluate it with (a name in ``spec.fidelities``); None is the target,
            the lab's experiment. Left out of the serialised proposal when None.
    """

    experiment_id: str
    composition: dict[str, float]
    source: Literal["initial", "model", "prior"] = "model"
    predicted_mean: float | None = None
    predicted_std: float | None = None
    acquisition_value: float | None = None
    rationale: str = ""
    choices: dict[str, str] = Field(default_factory=dict)
    fidelity: str | None = Field(default=None, exclude_if=lambda value: value is None)


class Command(_Message):
    """One action for one instrument; the unit of dispatch and of exactly-once bookkeeping.

    Attributes:
        instrument: Instrument name in the lab description.
        action: A command from that instrument's closed registry.
        params: Keyword arguments of the action (volumes in µL, temperatures in °C, ...).
        key: Idempotency key ``run/experiment/step``; set by the engine.
    """

    instrument: str
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    key: str = ""


class Protocol(_Message):
    """The commands that make and measure one proposal, in order.

    Attributes:
        experiment_id: The proposal this protocol realises.
        well: Labware well that holds the sample, e.g. ``A1``.
        volumes_ul: Stock name to dispensed volume in µL, after rounding.
        composition: The composition those volumes actually give (spec unit).
        commands: Commands in execution order.
        choices: The proposal's categorical choices, carried to the observation.
    """

    experiment_id: str
    well: str
    volumes_ul: dict[str, float]
    composition: dict[str, float]
    commands: list[Command]
    choices: dict[str, str] = Field(default_factory=dict)


class Reading(_Message):
    """What an instrument returned for one command.

    Attributes:
        instrument: Instrument name.
        action: The command that produced it.
        key: The command's idempotency key.
        values: Measured quantities, e.g. ``{"conductivity": 512.3}``.
        units: Unit per value, e.g. ``{"conductivity": "S/cm"}``.
        started: Run-clock time the action started, in seconds since the run began.
        finished: Run-clock time it finished, in seconds.
        ok: False when the instrument reported a fault.
        error: The fault, when ``ok`` is False.
    """

    instrument: str
    action: str
    key: str
    values: dict[str, float] = Field(default_factory=dict)
    units: dict[str, str] = Field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0
    ok: bool = True
    error: str | None = None


class Observation(_Message):
    """One finished experiment as the analyst sees it.

    Attributes:
        experiment_id: The proposal's id.
        iteration: Design iteration that proposed it (0 = initial design).
        composition: Composition actually made (spec unit), after volume rounding.
        values: Objective name to measured value; empty when the experiment failed.
        status: ``"ok"``, ``"failed"`` or ``"outlier"``.
        note: Why an experiment failed or was flagged.
        choices: Categorical variable name to the option used (empty when the spec has none).
        fidelity: The source that gave the values (a name in ``spec.fidelities``); None is the target,
            the lab's experiment, so observations recorded before fidelities existed still load. Left
            out of the serialised observation when None.
    """

    experiment_id: str
    iteration: int
    composition: dict[str, float]
    values: dict[str, float] = Field(default_factory=dict)
    status: Literal["ok", "failed", "outlier"] = "ok"
    note: str = ""
    choices: dict[str, str] = Field(default_factory=dict)
    fidelity: str | None = Field(default=None, exclude_if=lambda value: value is None)


class Decision(_Message):
    """The PI's verdict after an iteration.

    Attributes:
        action: ``"continue"`` or ``"stop"``.
        reason: One sentence that explains the verdict.
    """

    action: Literal["continue", "stop"]
    reason: str
