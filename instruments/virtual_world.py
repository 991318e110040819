"""The physical state the virtual instruments share: which liquid is in which well.

The simulated liquid handler writes well contents here; the simulated conductivity meter reads a
well's composition from here to evaluate the emulator. In Ray, a :class:`VirtualWorld` lives in its
own actor and back ends reach it through :class:`RemoteWorld`; without Ray the plain object is used
directly. Both satisfy :class:`World`.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from athanor.errors import InstrumentError

__all__ = ["RemoteWorld", "VirtualWorld", "World", "connect_world"]


@runtime_checkable
class World(Protocol):
    """What back ends may do to the shared physical state."""

    def add(self, well: str, component: str, volume_ul: float) -> float:
        """Add ``volume_ul`` µL of ``component`` to ``well``; returns the well's new total, µL."""
        ...

    def mix(self, well: str) -> None:
        """Mix the contents of ``well``."""
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
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self._wells: dict[str, dict[str, float]] = defaultdict(dict)
        self._mixes: dict[str, int] = defaultdict(int)
        self._path = None if path is None else Path(path)
        if self._path is not None and self._path.exists():
            saved = json.loads(self._path.read_text(encoding="utf-8"))
            self._wells.update({well: dict(c) for well, c in saved["wells"].items()})
            self._mixes.update(saved["mixes"])

    def _save(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"wells": self._wells, "mixes": self._mixes}), encoding="utf-8")
        os.replace(temporary, self._path)

    def add(self, well: str, component: str, volume_ul: float) -> float:
        """Add ``volume_ul`` µL of ``component`` to ``well``.

        Returns:
            The well's new total volume, µL.

        Raises:
            athanor.errors.InstrumentError: The volume is negative.
        """
        if volume_ul < 0:
            raise InstrumentError(f"cannot add a negative volume ({volume_ul} µL) to well {well}")
        contents = self._wells[well]
        contents[component] = contents.get(component, 0.0) + float(volume_ul)
        self._save()
        return sum(contents.values())

    def mix(self, well: str) -> None:
        """Record that ``well`` was mixed."""
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

    def add(self, well: str, component: str, volume_ul: float) -> float:
        """See :meth:`VirtualWorld.add`."""
        return self._call("add", well, component, volume_ul)

    def mix(self, well: str) -> None:
        """See :meth:`VirtualWorld.mix`."""
        self._call("mix", well)

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
