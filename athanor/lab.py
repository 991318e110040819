"""The lab description: which instruments exist, what they may do, and what stocks are on hand.

A :class:`LabDescription` is read from ``lab.yaml``. Protocols are checked against each instrument's
:class:`SafetyEnvelope` before any command reaches a back end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ACTIONS",
    "MEASURES",
    "InstrumentSpec",
    "LabDescription",
    "SafetyEnvelope",
    "Stock",
    "match_quantity",
]

#: The closed command registry: per instrument kind, each action and its parameter names. Protocol
#: validation (tools) and the instrument front ends (instruments) both enforce it.
ACTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "liquid_handler": {"dispense": ("stock", "well", "volume_ul"), "mix": ("well",), "safe_state": ()},
    "conductivity_meter": {"measure": ("well",), "safe_state": ()},
}

#: Quantities each instrument kind measures, by the names its readings use.
MEASURES: dict[str, list[str]] = {"liquid_handler": [], "conductivity_meter": ["conductivity"]}


def match_quantity(objective: str, quantities: list[str]) -> str | None:
    """The measured quantity an objective refers to, or None.

    ``conductivity`` matches ``conductivity``; so does ``electrical_conductivity`` (a qualified name
    ending in the quantity).
    """
    for quantity in quantities:
        if objective == quantity or objective.endswith("_" + quantity):
            return quantity
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SafetyEnvelope(_Strict):
    """Limits an instrument must never leave.

    Attributes:
        allowed_actions: The closed set of actions it accepts; anything else is refused.
        min_volume_ul: Smallest volume one pipetting step may move, µL.
        max_volume_ul: Largest volume one pipetting step may move, µL.
        max_well_volume_ul: Most liquid one well may hold, µL.
        max_temperature_c: Hottest set point allowed, °C.
    """

    allowed_actions: list[str] = Field(min_length=1)
    min_volume_ul: float | None = Field(default=None, ge=0)
    max_volume_ul: float | None = Field(default=None, gt=0)
    max_well_volume_ul: float | None = Field(default=None, gt=0)
    max_temperature_c: float | None = None


class Stock(_Strict):
    """A stock solution or dispersion that the liquid handler draws from.

    Attributes:
        name: Stock name, e.g. ``P3HT_stock``.
        component: The spec component it supplies.
        volume_ul: Volume on hand at the start, µL.
    """

    name: str
    component: str
    volume_ul: float = Field(gt=0)


class InstrumentSpec(_Strict):
    """One instrument of the lab.

    Attributes:
        name: Unique name, used by campaigns and commands.
        kind: ``liquid_handler`` or ``conductivity_meter``.
        backend: ``simulated`` (the virtual lab); real back ends come later.
        duration_s: Nominal seconds per action for simulated back ends, before ``time_scale``.
        options: Back-end specific settings (noise, fault injection, ports, ...).
        envelope: The instrument's safety envelope.
    """

    name: str
    kind: Literal["liquid_handler", "conductivity_meter"]
    backend: Literal["simulated"] = "simulated"
    duration_s: float = Field(default=1.0, ge=0)
    options: dict[str, Any] = Field(default_factory=dict)
    envelope: SafetyEnvelope


class LabDescription(_Strict):
    """A lab: instruments, plate wells and stocks.

    Attributes:
        name: Lab name for reports.
        wells: Wells available for samples, in the order they are used.
        sample_volume_ul: Total volume of one sample, µL.
        stocks: Stock solutions, one per component.
        instruments: The instruments.
        time_scale: Multiplier on simulated durations (0.01 runs a 60 s action in 0.6 s).
    """

    name: str = "lab"
    wells: list[str] = Field(min_length=1)
    sample_volume_ul: float = Field(gt=0)
    stocks: list[Stock] = Field(default_factory=list)
    instruments: list[InstrumentSpec] = Field(min_length=1)
    time_scale: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _unique(self) -> LabDescription:
        names = [i.name for i in self.instruments]
        if len(set(names)) != len(names):
            raise ValueError("instruments: each instrument name must appear once")
        if len(set(self.wells)) != len(self.wells):
            raise ValueError("wells: each well must appear once")
        return self

    def instrument(self, name: str) -> InstrumentSpec:
        """The instrument called ``name``; raises KeyError naming the known ones."""
        for spec in self.instruments:
            if spec.name == name:
                return spec
        known = ", ".join(i.name for i in self.instruments)
        raise KeyError(f"unknown instrument {name!r}; this lab has: {known}")

    def first_of_kind(self, kind: str) -> InstrumentSpec:
        """The first instrument of a kind; raises KeyError if the lab has none."""
        for spec in self.instruments:
            if spec.kind == kind:
                return spec
        raise KeyError(f"this lab has no {kind}; add one to the lab description")

    def stock_for(self, component: str) -> Stock:
        """The stock that supplies ``component``; raises KeyError with the fix."""
        for stock in self.stocks:
            if stock.component == component:
                return stock
        raise KeyError(f"no stock supplies component {component!r}; add one under stocks in lab.yaml")

    def measured_quantities(self) -> list[str]:
        """Every quantity some instrument of this lab measures."""
        return sorted({q for i in self.instruments for q in MEASURES.get(i.kind, [])})

    @classmethod
    def from_file(cls, path: Path) -> LabDescription:
        """Read and validate a ``lab.yaml`` file."""
        return cls.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
