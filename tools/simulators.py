"""The simulator adapter: a campaign's cheap sources called through their entry points.

A source of :attr:`~athanor.spec.CampaignSpec.fidelities` names its simulator as
``"package.module:function"``. :class:`EntryPointSimulator` is the
:class:`~athanor.ports.SimulatorPort` of a live run; the composition root (:mod:`athanor.app`) gives
it to the roles, as a replay gives them the recorded values instead.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
from collections.abc import Callable

from athanor.errors import SpecError
from athanor.ports import SimulationResult
from athanor.spec import CampaignSpec

__all__ = ["EntryPointSimulator", "load_simulator", "simulate"]

_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def load_simulator(entry_point: str) -> Callable[..., float]:
    """Import the function ``"package.module:function"`` names.

    Raises:
        SpecError: The text is not of that form, the module cannot be imported, or the name is not a
            callable in it.
    """
    if not _ENTRY_POINT.match(entry_point):
        raise SpecError(
            f"simulator {entry_point!r} is not an entry point; write it as 'package.module:function'"
            " (e.g. 'instruments.virtual_world:screen')"
        )
    module_name, _, attribute = entry_point.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SpecError(
            f"simulator {entry_point!r}: module {module_name!r} cannot be imported ({error}); install the"
            " package that provides it or fix the module path"
        ) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise SpecError(
            f"simulator {entry_point!r}: {module_name} has no function {attribute!r}; name a function"
            " that takes a composition dict and returns the value"
        )
    return function


def simulate(spec: CampaignSpec, fidelity: str, composition: dict[str, float]) -> float:
    """Evaluate ``composition`` (spec unit) with the simulator of source ``fidelity``.

    The simulator is called as ``function(composition)``, plus ``seed=spec.seed`` when it takes a
    ``seed`` keyword (so a simulated landscape can match the virtual lab's).

    Returns:
        The simulated value of the primary objective, in its unit.

    Raises:
        SpecError: ``fidelity`` is not a simulated source, or the simulator cannot be loaded.
        ValueError: The simulator returned something that is not a finite number.
    """
    source = next((f for f in spec.fidelities if f.name == fidelity and f.simulator), None)
    if source is None:
        raise SpecError(f"fidelity {fidelity!r} is not a simulated source of this campaign")
    function = load_simulator(source.simulator)
    try:
        takes_seed = "seed" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        takes_seed = False
    value = function(dict(composition), seed=spec.seed) if takes_seed else function(dict(composition))
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"simulator {source.simulator} returned {value}, not a finite number")
    return value


class EntryPointSimulator:
    """The :class:`~athanor.ports.SimulatorPort` of a live run: calls each source's entry point."""

    def evaluate(self, spec: CampaignSpec, fidelity: str, composition: dict[str, float]) -> SimulationResult:
        """Evaluate ``composition`` with :func:`simulate`; any failure comes back as ``error``."""
        try:
            return SimulationResult(value=simulate(spec, fidelity, composition))
        except Exception as error:  # a user's simulator may raise anything; the campaign goes on
            return SimulationResult(error=f"{type(error).__name__}: {error}")
