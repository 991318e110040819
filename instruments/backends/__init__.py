"""Instrument back ends: what really acts behind a front end (the virtual lab's simulators for now)."""

from __future__ import annotations

from typing import Any

from athanor.errors import InstrumentError
from athanor.lab import InstrumentSpec, LabDescription
from instruments.backends.simulated import (
    SimulatedConductivityMeterBackend,
    SimulatedLiquidHandlerBackend,
    make_simulated_backend,
)
from instruments.virtual_world import World

__all__ = [
    "SimulatedConductivityMeterBackend",
    "SimulatedLiquidHandlerBackend",
    "make_backend",
]


def make_backend(spec: InstrumentSpec, lab: LabDescription, world: World, seed: int) -> Any:
    """The back end ``spec.backend`` names, configured from ``spec``.

    Args:
        spec: The instrument.
        lab: The lab it belongs to (stocks, wells, ``time_scale``).
        world: Shared physical state of the virtual lab.
        seed: The run seed; each back end derives its own streams from it and its name.

    Raises:
        athanor.errors.InstrumentError: Unknown back end or bad options.
    """
    if spec.backend == "simulated":
        return make_simulated_backend(spec, lab, world, seed)
    raise InstrumentError(f"instrument {spec.name}: unknown backend {spec.backend!r}; use 'simulated'")
