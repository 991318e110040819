"""One instrument per Ray actor, with an idempotency ledger.

:class:`InstrumentHost` builds an instrument's front end and back end from the lab description and
answers commands as JSON-ready dicts. :class:`InstrumentActor` is the same class as a Ray actor;
:class:`VirtualWorldActor` holds the virtual lab's shared well contents.

Exactly-once: a command whose ``key`` already succeeded returns the recorded reading without acting
again. The ledger lives in the actor's memory, so it survives a retried call but not a restarted
actor; failed commands are not recorded, so a retry of a failed step acts again.
"""

from __future__ import annotations

import time
from typing import Any

import ray
from pydantic import ValidationError

from athanor.errors import AthanorError, InstrumentError
from athanor.lab import LabDescription
from athanor.models import Command, Reading
from instruments.backends import make_backend
from instruments.frontends import FrontEnd, make_frontend
from instruments.virtual_world import VirtualWorld, connect_world

__all__ = ["SKIPPED", "InstrumentActor", "InstrumentHost", "VirtualWorldActor"]

#: Error of a reading whose command did not run because an earlier step of its experiment failed.
SKIPPED = "skipped: earlier step failed"


class InstrumentHost:
    """An instrument's front end + back end + idempotency ledger, speaking dicts.

    Attributes:
        frontend: The front end that validates and dispatches commands.
    """

    def __init__(
        self,
        lab: LabDescription | dict[str, Any],
        instrument: str,
        world: Any,
        seed: int,
        epoch: float | None = None,
    ) -> None:
        """Build the instrument.

        Args:
            lab: The lab description (or its JSON dump, as it crosses a Ray boundary).
            instrument: Name of the instrument in ``lab`` to host.
            world: The shared :class:`~instruments.virtual_world.VirtualWorld` or its actor handle.
            seed: The run seed.
            epoch: Wall-clock time (``time.time()``) the run began; reading times count from it.

        Raises:
            athanor.errors.InstrumentError: Unknown instrument, back end or options.
        """
        lab = lab if isinstance(lab, LabDescription) else LabDescription.model_validate(lab)
        try:
            spec = lab.instrument(instrument)
        except KeyError as error:
            raise InstrumentError(str(error.args[0])) from None
        origin = time.time() if epoch is None else float(epoch)

        def clock() -> float:
            return time.time() - origin

        backend = make_backend(spec, lab, connect_world(world), seed)
        self.frontend: FrontEnd = make_frontend(spec, lab, backend, clock)
        self._clock = clock
        self._ledger: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    def _failed(self, command: dict[str, Any], error: str) -> dict[str, Any]:
        now = self._clock()
        return Reading(
            instrument=self.frontend.name,
            action=str(command.get("action", "")),
            key=str(command.get("key", "")),
            started=now,
            finished=now,
            ok=False,
            error=error,
        ).model_dump(mode="json")

    def execute(self, command: dict[str, Any], after: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one command unless it already ran or an earlier step failed.

        Args:
            command: A :class:`~athanor.models.Command` as a dict.
            after: The reading of the experiment's previous step (Ray resolves it before the call,
                which is what orders the steps); a failed one makes this command a skipped reading.

        Returns:
            A :class:`~athanor.models.Reading` as a dict. Refusals and faults come back as
            ``ok=False`` readings; nothing here raises for a bad command.
        """
        try:
            parsed = Command.model_validate(command)
        except ValidationError as error:
            return self._failed(command, f"malformed command: {error.errors()[0]['msg']}")
        dumped = parsed.model_dump(mode="json")
        if parsed.key and parsed.key in self._ledger:
            recorded_command, recorded_reading = self._ledger[parsed.key]
            if recorded_command != dumped:
                return self._failed(
                    dumped,
                    f"key {parsed.key!r} was already used for a different command; give each command"
                    " its own key",
                )
            return dict(recorded_reading)
        if after is not None and not after.get("ok", True):
            return self._failed(dumped, SKIPPED)
        try:
            reading = self.frontend.execute(parsed).model_dump(mode="json")
        except AthanorError as error:
            return self._failed(dumped, f"refused: {error}")
        except Exception as error:  # keep the actor alive whatever a back end does
            return self._failed(dumped, f"internal error: {type(error).__name__}: {error}")
        if reading["ok"] and parsed.key:
            self._ledger[parsed.key] = (dumped, reading)
        return reading

    def safe_state(self) -> dict[str, Any]:
        """Put the instrument in its safe state; returns the reading as a dict."""
        return self.frontend.safe_state().model_dump(mode="json")

    def ping(self) -> str:
        """The instrument's name (proves the actor is up)."""
        return self.frontend.name

    def status(self) -> dict[str, Any]:
        """The front end's bookkeeping plus the number of ledgered commands."""
        return {**self.frontend.status(), "ledger_size": len(self._ledger)}


@ray.remote(num_cpus=0, max_restarts=0)
class InstrumentActor(InstrumentHost):
    """:class:`InstrumentHost` in its own Ray actor (one per instrument)."""


@ray.remote(num_cpus=0, max_restarts=0)
class VirtualWorldActor(VirtualWorld):
    """:class:`~instruments.virtual_world.VirtualWorld` in its own Ray actor."""
