"""The lab description: which instruments exist, what they may do, and what stocks are on hand.

A :class:`LabDescription` is read from ``lab.yaml``. Protocols are checked against each instrument's
:class:`SafetyEnvelope` before any command reaches a back end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from athanor.numbers import Integer, Number

__all__ = [
    "ACTIONS",
    "MEASURES",
    "NO_LIQUID_HANDLER",
    "InstrumentSpec",
    "LabDescription",
    "Labware",
    "RobotConnection",
    "SafetyEnvelope",
    "SerialConnection",
    "Stock",
    "match_quantity",
]

#: The closed command registry: per instrument kind, each action and its parameter names. Protocol
#: validation (tools) and the instrument front ends (instruments) both enforce it.
ACTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "liquid_handler": {"dispense": ("stock", "well", "volume_ul"), "mix": ("well",), "safe_state": ()},
    "conductivity_meter": {"measure": ("well",), "safe_state": ()},
    "hotplate": {"set_temperature": ("celsius",), "read_temperature": (), "safe_state": ()},
    "spectrometer": {"measure": ("well",), "safe_state": ()},
}

#: Quantities each instrument kind measures, by the names its readings use.
MEASURES: dict[str, list[str]] = {
    "liquid_handler": [],
    "conductivity_meter": ["conductivity"],
    "hotplate": ["temperature"],
    "spectrometer": ["transmittance"],
}

#: Why a lab without a liquid handler can run no campaign: every sample is made by one.
NO_LIQUID_HANDLER = "this lab has no liquid_handler to make samples with"


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
        tips: Tips on hand (one per dispense); None when the liquid handler does not count them.
        max_temperature_c: Hottest set point allowed, °C.
        max_ramp_c_per_min: Fastest allowed change of the set point, °C per minute.
    """

    allowed_actions: list[str] = Field(min_length=1)
    min_volume_ul: Number | None = Field(default=None, ge=0)
    max_volume_ul: Number | None = Field(default=None, gt=0)
    max_well_volume_ul: Number | None = Field(default=None, gt=0)
    tips: Integer | None = Field(default=None, ge=0)
    max_temperature_c: Number | None = None
    max_ramp_c_per_min: Number | None = Field(default=None, gt=0)


class Stock(_Strict):
    """A stock solution or dispersion that the liquid handler draws from.

    Attributes:
        name: Stock name, e.g. ``P3HT_stock``.
        component: The spec component it supplies, or ``solvent`` for pure solvent that tops a sample up
            to its volume.
        volume_ul: Volume on hand at the start, µL.
        capacity_ul: Most its container holds, µL (None: not checked). A start volume or a refill
            above it is refused, so that a mistyped volume cannot make the campaign count on liquid
            that is not there.
        filled_ul: What the stock held when it was last filled, µL: the low-stock warning fires below
            a tenth of it. None (the usual case in a lab file): ``volume_ul``. A recorded refill sets
            it to the refilled volume, while ``volume_ul`` becomes what had been drawn plus that
            volume (see :mod:`runs.refill`).
        concentration: Amount of the component per volume, in ``concentration_unit`` (None: the stocks
            share one concentration, so volume shares are composition shares).
        concentration_unit: Unit of ``concentration``: ``mol/L``, ``mmol/L``, ``mg/mL`` or ``g/L``.
        molar_mass_g_mol: Molar mass of the component, g/mol, for a component whose name is not a
            chemical formula (e.g. ``P3HT``); needed only to convert between mass and amount of
            substance. Elements and formulas (``Cu``, ``TiO2``) are looked up without it.
        labware: Labware (by name) holding the stock, for robots that need a deck position.
        well: Well of that labware holding the stock, e.g. ``A1``.
    """

    name: str
    component: str
    volume_ul: Number = Field(gt=0)
    capacity_ul: Number | None = Field(default=None, gt=0)
    filled_ul: Number | None = Field(default=None, gt=0)
    concentration: Number | None = Field(default=None, gt=0)
    concentration_unit: str | None = None
    molar_mass_g_mol: Number | None = Field(default=None, gt=0)
    labware: str | None = None
    well: str | None = None

    @model_validator(mode="after")
    def _fits(self) -> Stock:
        if self.capacity_ul is not None and self.volume_ul > self.capacity_ul:
            raise ValueError(
                f"stock {self.name}: volume_ul={self.volume_ul:g} µL is more than its container holds"
                f" (capacity_ul={self.capacity_ul:g} µL); lower volume_ul or correct capacity_ul"
            )
        if self.filled_ul is not None and self.filled_ul > self.volume_ul:
            raise ValueError(
                f"stock {self.name}: filled_ul={self.filled_ul:g} µL is more than volume_ul="
                f"{self.volume_ul:g} µL; leave filled_ul out (it is set by a refill)"
            )
        return self

    @property
    def warning_base_ul(self) -> float:
        """The volume the low-stock warning is a fraction of: ``filled_ul``, else ``volume_ul`` (µL)."""
        return self.volume_ul if self.filled_ul is None else self.filled_ul


class SerialConnection(_Strict):
    """How to reach a serial instrument.

    Attributes:
        port: Device path, e.g. ``/dev/ttyUSB0``.
        baudrate: Line speed, bits per second.
        timeout_s: Seconds to wait for one reply line.
        retries: Extra attempts after a timeout or a garbled reply.
        profile: Device profile naming the command set (e.g. ``four_point_probe``, ``hotplate``).
    """

    port: str
    baudrate: Integer = Field(default=9600, gt=0)
    timeout_s: Number = Field(default=2.0, gt=0)
    retries: Integer = Field(default=2, ge=0)
    profile: str


class RobotConnection(_Strict):
    """How to reach an Opentrons robot's HTTP API.

    Attributes:
        host: Robot address (name or IP).
        port: HTTP API port (31950 on Opentrons robots).
        robot_type: ``OT-2`` or ``Flex``.
        poll_interval_s: Seconds between run-status polls.
        stall_timeout_s: A run whose status does not change for this long is declared stalled.
    """

    host: str
    port: Integer = Field(default=31950, gt=0, lt=65536)
    robot_type: Literal["OT-2", "Flex"] = "OT-2"
    poll_interval_s: Number = Field(default=1.0, gt=0)
    stall_timeout_s: Number = Field(default=600.0, gt=0)


class Labware(_Strict):
    """A piece of labware on the deck.

    Attributes:
        name: Name used by stocks and the sample plate, e.g. ``plate``.
        load_name: The Opentrons labware load name, e.g. ``corning_96_wellplate_360ul_flat``.
        slot: Deck slot (``"1"``..``"11"`` on an OT-2, ``"A1"``..``"D3"`` on a Flex).
    """

    name: str
    load_name: str
    slot: str


class InstrumentSpec(_Strict):
    """One instrument of the lab.

    Attributes:
        name: Unique name, used by campaigns and commands.
        kind: ``liquid_handler``, ``conductivity_meter``, ``hotplate`` or ``spectrometer`` (a UV-Vis
            spectrometer that measures a sample film's optical transmittance).
        backend: ``simulated`` (the virtual lab), ``opentrons`` or ``serial``.
        serial: Connection settings for the ``serial`` back end.
        robot: Connection settings for the ``opentrons`` back end.
        resources: Ray custom resources the instrument's actor needs, e.g. ``{"ot2_bench": 1}``, so
            that on a cluster it runs on the node wired to the instrument.
        duration_s: Nominal seconds per action for simulated back ends, before ``time_scale``.
        options: Back-end specific settings (noise, fault injection, ports, ...).
        envelope: The instrument's safety envelope.
    """

    name: str
    kind: Literal["liquid_handler", "conductivity_meter", "hotplate", "spectrometer"]
    backend: Literal["simulated", "opentrons", "serial"] = "simulated"
    serial: SerialConnection | None = None
    robot: RobotConnection | None = None
    resources: dict[str, Number] = Field(default_factory=dict)
    duration_s: Number = Field(default=1.0, ge=0)
    options: dict[str, Any] = Field(default_factory=dict)
    envelope: SafetyEnvelope

    @model_validator(mode="after")
    def _connection_matches_backend(self) -> InstrumentSpec:
        if self.backend == "serial" and self.serial is None:
            raise ValueError(
                f"instrument {self.name}: the serial back end needs a 'serial:' block (port, profile)"
            )
        if self.backend == "opentrons":
            if self.robot is None:
                raise ValueError(
                    f"instrument {self.name}: the opentrons back end needs a 'robot:' block (host)"
                )
            if self.kind != "liquid_handler":
                raise ValueError(
                    f"instrument {self.name}: the opentrons back end drives liquid handlers only"
                )
        unknown = sorted(set(self.envelope.allowed_actions) - set(ACTIONS[self.kind]))
        if unknown:
            raise ValueError(
                f"instrument {self.name}: envelope.allowed_actions has {', '.join(unknown)}, which a"
                f" {self.kind} does not know; known actions: {', '.join(ACTIONS[self.kind])}"
            )
        return self


class LabDescription(_Strict):
    """A lab: instruments, plate wells and stocks.

    Attributes:
        name: Lab name for reports.
        labware: Labware on the deck (needed by robot back ends).
        sample_labware: Name of the labware that holds the samples (None: not on a robot deck).
        wells: Wells available for samples, in the order they are used.
        sample_volume_ul: Total volume of one sample, µL.
        stocks: Stock solutions, one per component.
        instruments: The instruments.
        time_scale: Multiplier on simulated durations (0.01 runs a 60 s action in 0.6 s).
    """

    name: str = "lab"
    labware: list[Labware] = Field(default_factory=list)
    sample_labware: str | None = None
    wells: list[str] = Field(min_length=1)
    sample_volume_ul: Number = Field(gt=0)
    stocks: list[Stock] = Field(default_factory=list)
    instruments: list[InstrumentSpec] = Field(min_length=1)
    time_scale: Number = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _unique(self) -> LabDescription:
        names = [i.name for i in self.instruments]
        if len(set(names)) != len(names):
            raise ValueError("instruments: each instrument name must appear once")
        if len(set(self.wells)) != len(self.wells):
            raise ValueError("wells: each well must appear once")
        labware = {item.name for item in self.labware}
        if len(labware) != len(self.labware):
            raise ValueError("labware: each labware name must appear once")
        if self.sample_labware is not None and self.sample_labware not in labware:
            raise ValueError(f"sample_labware: {self.sample_labware!r} is not listed under labware")
        for stock in self.stocks:
            if stock.labware is not None and stock.labware not in labware:
                raise ValueError(
                    f"stocks: {stock.name} sits on {stock.labware!r}, which is not listed under labware"
                )
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
