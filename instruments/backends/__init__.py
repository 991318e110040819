"""Instrument back ends: what really acts behind a front end (the virtual lab's simulators, serial)."""

from __future__ import annotations

from typing import Any

from athanor.errors import InstrumentError
from athanor.lab import InstrumentSpec, LabDescription
from instruments.backends.simulated import (
    SimulatedConductivityMeterBackend,
    SimulatedHotplateBackend,
    SimulatedLiquidHandlerBackend,
    make_simulated_backend,
)
from instruments.virtual_world import World

__all__ = [
    "SimulatedConductivityMeterBackend",
    "SimulatedHotplateBackend",
    "SimulatedLiquidHandlerBackend",
    "make_backend",
]


def make_backend(spec: InstrumentSpec, lab: LabDescription, world: World, seed: int) -> Any:
    """The back end ``spec.backend`` names, configured from ``spec``.

    Args:
        spec: The instrument.
        lab: The lab it belongs to (stocks, wells, ``time_scale``).
        world: Shared physical state of the virtual lab (unused by serial back ends).
        seed: The run seed; each back end derives its own streams from it and its name.

    Raises:
        athanor.errors.InstrumentError: Unknown back end or bad options; for ``serial``, also an
            unknown profile or a port that cannot be opened.
    """
    if spec.backend == "simulated":
        return make_simulated_backend(spec, lab, world, seed)
    if spec.backend == "serial":
        from instruments.backends.serial import make_serial_backend

        return make_serial_backend(spec)
    if spec.backend == "opentrons":
        from instruments.backends.opentrons_http import make_opentrons_backend

        return make_opentrons_backend(spec, lab)
    raise InstrumentError(
        f"instrument {spec.name}: unknown backend {spec.backend!r}; use 'simulated' or 'serial'"
    )
