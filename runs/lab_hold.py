"""One campaign per deck at a time, and a plate's used wells never used again.

- :class:`LabHold` is the exclusive hold a campaign takes on its lab before anything starts: one
  lock for the lab (its name, or the virtual lab of this ``$ATHANOR_HOME``) and one for every robot
  and serial port it drives, so two lab files that name the same robot cannot run at once either.
  A second campaign is refused naming the run that holds the lab, or (``wait``) waits for it. The
  locks go with the process: a crashed campaign holds nothing.
- :class:`Plate` is the record of a described lab's plate: which wells earlier runs used. A run
  takes the wells no run has used; ``athanor lab new-plate`` starts a fresh plate. The virtual lab
  makes a fresh virtual plate for every campaign and keeps no record.

Both live in ``$ATHANOR_HOME``: ``locks/<key>.lock`` and ``labs/<lab>/plate.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from athanor.errors import AthanorError, SpecError
from athanor.lab import LabDescription
from runs.context import slugify
from runs.locks import FileLock, LockHeld, describe_holder

__all__ = ["VIRTUAL_LAB", "LabHold", "Plate", "lab_keys"]

#: Lock key of the virtual lab (one per ``$ATHANOR_HOME``).
VIRTUAL_LAB = "virtual-lab"
_POLL_S = 1.0


def lab_keys(lab: LabDescription, described: bool) -> list[str]:
    """The names a lab is held under: the lab itself and each robot and serial port it drives.

    Args:
        lab: The lab description.
        described: A lab the user described (a ``lab.yaml``); False for the virtual lab.

    Returns:
        Sorted lock keys, e.g. ``["lab-ot-2-and-four-point-probe", "robot-ot2-local-31950",
        "serial-dev-ttyusb0"]``.
    """
    keys = {f"lab-{slugify(lab.name, 60)}" if described else VIRTUAL_LAB}
    for instrument in lab.instruments:
        if instrument.robot is not None and instrument.backend == "opentrons":
            keys.add(f"robot-{slugify(f'{instrument.robot.host} {instrument.robot.port}', 80)}")
        if instrument.serial is not None and instrument.backend == "serial":
            keys.add(f"serial-{slugify(os.path.realpath(instrument.serial.port), 80)}")
    return sorted(keys)


class LabHold:
    """The exclusive hold of one campaign on its lab (see the module docstring).

    Args:
        lab: The lab description.
        described: A lab the user described; False for the virtual lab.
        home: ``$ATHANOR_HOME``.
    """

    def __init__(self, lab: LabDescription, described: bool, home: Path) -> None:
        self.lab = lab
        self.described = described
        self._locks = [FileLock(Path(home) / "locks" / f"{key}.lock") for key in lab_keys(lab, described)]

    def acquire(
        self, run_id: str, *, wait: bool = False, on_wait: Callable[[str], None] | None = None
    ) -> None:
        """Hold the lab for ``run_id``, or refuse (or with ``wait``, wait) while another run holds it.

        Args:
            run_id: The run that will drive the lab.
            wait: Wait for the holder to finish instead of refusing (interruptible by Ctrl-C).
            on_wait: Told once, with a line for the operator, when the wait begins.

        Raises:
            athanor.errors.AthanorError: Another campaign holds the lab (and ``wait`` is False).
        """
        about = {"run_id": run_id, "since": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"}
        told = False
        while True:
            try:
                for lock in self._locks:
                    lock.acquire(about)
                return
            except LockHeld as held:
                self.release()
                message = self._in_use(held.holder)
                if not wait:
                    raise AthanorError(
                        f"{message}: one campaign drives a deck at a time. Wait for it to finish"
                        " (`athanor runs`), stop it, or queue this campaign with `athanor schedule add`"
                        " (the schedule's worker waits for the lab)"
                    ) from None
                if not told and on_wait is not None:
                    on_wait(f"{message}; waiting for it to finish")
                told = True
                time.sleep(_POLL_S)

    def release(self) -> None:
        """Let the lab go."""
        for lock in self._locks:
            lock.release()

    def _in_use(self, holder: Mapping[str, Any]) -> str:
        what = f"lab {self.lab.name!r}" if self.described else "the virtual lab of this ATHANOR_HOME"
        return f"{what} is in use by {describe_holder(holder)}"

    def __enter__(self) -> LabHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Plate:
    """Which wells of a described lab's plate earlier runs used (``labs/<lab>/plate.json``).

    Change it only while holding the lab (:class:`LabHold`). The file maps each used well to the
    run that used it; a run's wells are reserved when it starts and settled when it ends.

    Args:
        lab: The lab description (its name names the plate).
        home: ``$ATHANOR_HOME``.
    """

    def __init__(self, lab: LabDescription, home: Path) -> None:
        self.lab = lab
        self.path = Path(home) / "labs" / slugify(lab.name, 60) / "plate.json"

    def used(self) -> dict[str, dict[str, Any]]:
        """Well to ``{"run_id": ..., "reserved": bool}`` for every used (or reserved) well.

        Raises:
            athanor.errors.AthanorError: The record is damaged (the message names the fix).
        """
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {str(well): dict(entry) for well, entry in data["wells"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise AthanorError(
                f"{self.path}: the record of used wells cannot be read ({error}); check the plate and"
                " run `athanor lab new-plate` for a fresh one"
            ) from None

    def free_wells(self) -> list[str]:
        """The lab's wells no run has used or reserved, in the lab's order."""
        used = self.used()
        return [well for well in self.lab.wells if well not in used]

    def reserve(self, run_id: str, experiments: int) -> list[str]:
        """Reserve wells for a new run and return the wells it may use (every free well, in order).

        The first ``experiments`` free wells are reserved for it, so that a run that stops and is
        resumed later finds them free even if another run went in between.

        Raises:
            athanor.errors.SpecError: Fewer free wells than experiments (names the fix).
        """
        used = self.used()
        free = [well for well in self.lab.wells if well not in used]
        if len(free) < experiments:
            runs = sorted({entry.get("run_id", "?") for entry in used.values()})
            raise SpecError(
                f"budget.experiments: {experiments} experiments need as many free wells; the plate of"
                f" lab {self.lab.name!r} has {len(free)} of {len(self.lab.wells)} free ({len(used)}"
                f" used by {', '.join(runs)}). Load a fresh plate and run `athanor lab new-plate"
                " LAB_FILE`, or lower budget.experiments"
            )
        for well in free[:experiments]:
            used[well] = {"run_id": run_id, "reserved": True}
        self._write(used)
        return free

    def settle(self, run_id: str, wells: Iterable[str], *, finished: bool) -> None:
        """Record the wells a run dispensed into; a finished run's unused reservations are freed.

        Args:
            run_id: The run.
            wells: The wells its protocols used.
            finished: The run has finished (it will not resume); otherwise its reservations stay.
        """
        used = self.used()
        if finished:
            used = {w: e for w, e in used.items() if not (e.get("run_id") == run_id and e.get("reserved"))}
        for well in wells:
            used[well] = {"run_id": run_id, "reserved": False}
        self._write(used)

    def clear(self) -> int:
        """Start a fresh plate; returns how many wells the old one had used."""
        count = len(self.used())
        self._write({})
        return count

    def _write(self, used: Mapping[str, Mapping[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        order = {well: index for index, well in enumerate(self.lab.wells)}
        wells = dict(sorted(used.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))
        temporary = self.path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps({"lab": self.lab.name, "wells": wells}, indent=1) + "\n", "utf-8")
        os.replace(temporary, self.path)
