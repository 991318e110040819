"""The physical state the virtual instruments share: which liquid is in which well.

The simulated liquid handler writes well contents here; the simulated conductivity meter reads a
well's composition from here to evaluate the emulator. In Ray, a :class:`VirtualWorld` lives in its
own actor and back ends reach it through :class:`RemoteWorld`; without Ray the plain object is used
directly. Both satisfy :class:`World`.

:func:`screen` is the demo world's cheap source for multi-fidelity campaigns: a quick, biased and
noisier estimate of what the virtual conductivity meter would measure, with no hardware.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from athanor.errors import InstrumentError

__all__ = ["SCREEN_BIAS", "SCREEN_NOISE", "RemoteWorld", "VirtualWorld", "World", "connect_world", "screen"]

#: Largest smooth bias of :func:`screen`, as a factor ``exp(±SCREEN_BIAS)`` on the true value.
SCREEN_BIAS = 0.3
#: Relative noise of :func:`screen` (standard deviation of ``ln(screen / true)`` beyond the bias).
SCREEN_NOISE = 0.15


@runtime_checkable
class World(Protocol):
    """What back ends may do to the shared physical state."""

    def add(self, well: str, component: str, volume_ul: float, key: str = "") -> float:
        """Add ``volume_ul`` µL of ``component`` to ``well`` (once per non-empty ``key``); returns µL."""
        ...

    def mix(self, well: str, key: str = "") -> None:
        """Mix the contents of ``well`` (once per non-empty ``key``)."""
        ...

    def contents(self, well: str) -> dict[str, float]:
        """Component name to µL in ``well`` (empty when nothing was added)."""
        ...

    def mixes(self, well: str) -> int:
        """How many times ``well`` was mixed."""
        ...

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Every non-empty well's contents."""
        ...


class VirtualWorld:
    """Well contents of the virtual lab, in µL per component.

    With a ``path`` the contents are kept on disk after every change, as a real plate keeps its
    liquid when the software crashes: a resumed run finds the wells as they were.

    A change made under a command's idempotency key is applied once: the key is kept with the
    contents (in the same write), and the same key again changes nothing. So a simulated action
    left in doubt by a crash (the process died between acting and recording it) can run again
    without dispensing twice.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self._wells: dict[str, dict[str, float]] = defaultdict(dict)
        self._mixes: dict[str, int] = defaultdict(int)
        self._applied: set[str] = set()
        self._path = None if path is None else Path(path)
        if self._path is not None and self._path.exists():
            saved = json.loads(self._path.read_text(encoding="utf-8"))
            self._wells.update({well: dict(c) for well, c in saved["wells"].items()})
            self._mixes.update(saved["mixes"])
            self._applied.update(saved.get("applied", []))  # files written before keys were kept have none

    def _save(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_suffix(".tmp")
        state = {"wells": self._wells, "mixes": self._mixes, "applied": sorted(self._applied)}
        temporary.write_text(json.dumps(state), encoding="utf-8")
        os.replace(temporary, self._path)

    def _first_time(self, key: str) -> bool:
        """Whether a change under ``key`` is new (an empty key always is); remembers the key."""
        if not key:
            return True
        if key in self._applied:
            return False
        self._applied.add(key)
        return True

    def add(self, well: str, component: str, volume_ul: float, key: str = "") -> float:
        """Add ``volume_ul`` µL of ``component`` to ``well``, unless ``key`` was applied already.

        Returns:
            The well's new total volume, µL.

        Raises:
            athanor.errors.InstrumentError: The volume is negative.
        """
        if volume_ul < 0:
            raise InstrumentError(f"cannot add a negative volume ({volume_ul} µL) to well {well}")
        contents = self._wells[well]
        if self._first_time(key):
            contents[component] = contents.get(component, 0.0) + float(volume_ul)
            self._save()
        return sum(contents.values())

    def mix(self, well: str, key: str = "") -> None:
        """Record that ``well`` was mixed, unless ``key`` was applied already."""
        if self._first_time(key):
            self._mixes[well] += 1
            self._save()

    def contents(self, well: str) -> dict[str, float]:
        """Component name to µL in ``well``; empty for a well nothing was added to."""
        return dict(self._wells.get(well, {}))

    def mixes(self, well: str) -> int:
        """How many times ``well`` was mixed."""
        return self._mixes.get(well, 0)

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Every non-empty well's contents, well to component to µL."""
        return {well: dict(c) for well, c in self._wells.items() if c}


class RemoteWorld:
    """A :class:`World` backed by a :class:`VirtualWorld` running in a Ray actor.

    Each call blocks until the actor answers, so a back end sees its own writes in order.
    """

    def __init__(self, handle: Any) -> None:
        """Wrap an actor handle of a remote :class:`VirtualWorld`."""
        self.handle = handle

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        return ray.get(getattr(self.handle, method).remote(*args))

    def add(self, well: str, component: str, volume_ul: float, key: str = "") -> float:
        """See :meth:`VirtualWorld.add`."""
        return self._call("add", well, component, volume_ul, key)

    def mix(self, well: str, key: str = "") -> None:
        """See :meth:`VirtualWorld.mix`."""
        self._call("mix", well, key)

    def contents(self, well: str) -> dict[str, float]:
        """See :meth:`VirtualWorld.contents`."""
        return self._call("contents", well)

    def mixes(self, well: str) -> int:
        """See :meth:`VirtualWorld.mixes`."""
        return self._call("mixes", well)

    def snapshot(self) -> dict[str, dict[str, float]]:
        """See :meth:`VirtualWorld.snapshot`."""
        return self._call("snapshot")


def connect_world(target: Any) -> World:
    """A :class:`World` for ``target``: a plain world is used as is, an actor handle is wrapped."""
    if isinstance(target, (VirtualWorld, RemoteWorld)):
        return target
    if hasattr(getattr(target, "add", None), "remote"):
        return RemoteWorld(target)
    if isinstance(target, World):
        return target
    raise InstrumentError(f"cannot use {type(target).__name__} as the virtual world")


def screen(composition: dict[str, float], *, seed: int = 0) -> float:
    """A quick, less accurate conductivity estimate of a composition: the demo world's cheap source.

    The value is the virtual meter's true conductivity (the emulator
    :func:`instruments.emulator.emulator_for` picks for these components and ``seed``, the same one
    the virtual lab measures) times ``exp(bias + noise)``: ``bias`` is a smooth tilt across the
    composition, at most :data:`SCREEN_BIAS` in size, drawn from ``seed``; ``noise`` is normal with
    standard deviation :data:`SCREEN_NOISE`, drawn from ``seed`` and the composition, so the same
    composition always screens the same, as a simulation does. Use it as
    ``simulator: instruments.virtual_world:screen`` in a campaign's ``fidelities``.

    Args:
        composition: Component name to amount (any unit; normalised to fractions of one), in the
            campaign's component order.
        seed: The campaign's seed (it picks the synthetic landscape, as in the virtual lab).

    Returns:
        Estimated conductivity, S/cm.

    Raises:
        athanor.errors.InstrumentError: An empty composition or a negative amount.
    """
    from instruments.emulator import emulator_for

    emulator = emulator_for(list(composition), seed)
    fractions = emulator.to_array(composition)
    tilt = np.random.default_rng([seed, 7919]).uniform(-1.0, 1.0, fractions.shape[0])
    bias = SCREEN_BIAS * float(fractions @ tilt)
    key = ",".join(f"{name}={round(float(composition[name]), 6)!r}" for name in sorted(composition))
    noise = SCREEN_NOISE * float(np.random.default_rng([seed, zlib.crc32(key.encode())]).standard_normal())
    true = emulator.true_value(dict(zip(emulator.components, fractions, strict=True)))
    return true * math.exp(bias + noise)
