"""One instrument per Ray actor: serialised actions, a persistent idempotency ledger, heartbeats.

:class:`InstrumentHost` builds an instrument's front end and back end from the lab description and
answers commands as JSON-ready dicts. :class:`InstrumentActor` is the same class as a Ray actor;
:class:`VirtualWorldActor` holds the virtual lab's shared well contents.

- Exactly-once: every keyed command is written to the instrument's :class:`~instruments.ledger.Ledger`
  as ``started`` before the back end acts and ``done``/``failed`` after. A key already done returns
  its recorded reading without acting; a failed key acts again; a key left ``started`` by a crash is
  *in doubt* and is refused until it is resolved (:meth:`InstrumentHost.resolve`), except for the
  actions listed in ``options.retry_in_doubt`` (default: read-only actions such as ``measure``).
  With a ledger path the ledger survives a restarted actor or process; without one it lives in memory.
- One action at a time: :meth:`InstrumentHost.execute` holds a lock, so commands of different runs
  sharing the instrument never overlap. The Ray actor answers :meth:`InstrumentHost.heartbeat`,
  :meth:`InstrumentHost.abort` and the other control methods from a separate thread group while an
  action runs.
- Faults: :meth:`InstrumentHost.abort` (called by a watchdog) marks the instrument faulted and puts
  it in its safe state at once; until :meth:`InstrumentHost.reset`, new commands fail without acting.
- Sharing: :class:`Attachments` counts the labs using an actor, so the last one to leave kills it.

Host-level options (``InstrumentSpec.options``, not passed to the back end):

- ``stall_timeout_s``: seconds an action may run before a watchdog declares it stalled (default
  ``3 x`` its expected duration plus slack, see :func:`instruments.watchdog.stall_limit`).
- ``retry_in_doubt``: actions safe to run again when a crash left them in doubt. Default: the
  read-only actions; for a simulated instrument every action, since the virtual world applies a
  keyed change once and a keyed command draws the same numbers each time it runs.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import ray
from pydantic import ValidationError

from athanor.errors import AthanorError, InstrumentError
from athanor.lab import ACTIONS, LabDescription
from athanor.models import Command, Reading
from instruments.backends import make_backend
from instruments.frontends import FrontEnd, make_frontend
from instruments.ledger import DONE, STARTED, Ledger, LedgerEntry, run_of
from instruments.virtual_world import VirtualWorld, connect_world

__all__ = [
    "HOST_OPTIONS",
    "SKIPPED",
    "Attachments",
    "InstrumentActor",
    "InstrumentHost",
    "VirtualWorldActor",
    "lab_fingerprint",
    "ledger_file",
]

#: Error of a reading whose command did not run because an earlier step of its experiment failed.
SKIPPED = "skipped: earlier step failed"
#: Options the host reads itself; the back end never sees them.
HOST_OPTIONS = frozenset({"stall_timeout_s", "retry_in_doubt"})
#: Actions that change nothing in the lab, so repeating one after a crash is harmless.
_READ_ONLY = ("measure", "read_temperature")
#: Threads answering control calls (heartbeat, abort, ledger queries) while an action runs.
_CONTROL_THREADS = 4
#: Threads for execute/safe_state calls; they queue on the host's lock (several runs may share it).
_ACTION_THREADS = 8


def lab_fingerprint(lab: LabDescription | dict[str, Any]) -> str:
    """A short hash of a lab description; shared actors refuse a lab with another fingerprint."""
    data = lab.model_dump(mode="json") if isinstance(lab, LabDescription) else lab
    text = json.dumps(data, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class Attachments:
    """Which labs use a shared actor, so that only the last one to leave removes it.

    Once the count has dropped to zero the actor is closing: :meth:`attach` answers None and the
    caller waits for a fresh actor.
    """

    def _init_attachments(self, fingerprint: str) -> None:
        self._fingerprint = fingerprint
        self._holders: set[str] = set()
        self._closing = False
        self._attach_lock = threading.Lock()

    def attach(self, holder: str, fingerprint: str) -> dict[str, Any] | None:
        """Register ``holder`` as a user.

        Args:
            holder: A unique id of the lab attaching.
            fingerprint: :func:`lab_fingerprint` of that lab's description.

        Returns:
            ``{"holders": n}``; ``{"error": ...}`` when the actor serves a different lab description;
            None when the actor is closing (attach to a new one).
        """
        with self._attach_lock:
            if self._closing:
                return None
            if fingerprint != self._fingerprint:
                return {
                    "error": "it already runs for a different lab description (another lab.yaml, other"
                    " stocks or another time_scale); use the same lab description or another namespace"
                }
            self._holders.add(holder)
            return {"holders": len(self._holders)}

    def detach(self, holder: str) -> int:
        """Unregister ``holder``; returns how many holders remain (0: the caller removes the actor)."""
        with self._attach_lock:
            self._holders.discard(holder)
            if not self._holders:
                self._closing = True
            return len(self._holders)

    def holders(self) -> list[str]:
        """The labs using this actor."""
        with self._attach_lock:
            return sorted(self._holders)


def _host_options(
    options: dict[str, Any], kind: str, name: str, backend: str = ""
) -> tuple[float | None, set[str]]:
    timeout = options.get("stall_timeout_s")
    valid = not isinstance(timeout, bool) and isinstance(timeout, int | float) and timeout > 0
    if timeout is not None and not valid:
        raise InstrumentError(f"{name}: options.stall_timeout_s must be a positive number of seconds")
    repeatable = ACTIONS[kind] if backend == "simulated" else _READ_ONLY
    default = [a for a in repeatable if a in ACTIONS[kind]]
    retry = options.get("retry_in_doubt", default)
    if not isinstance(retry, list | tuple) or not set(retry) <= set(ACTIONS[kind]):
        raise InstrumentError(
            f"{name}: options.retry_in_doubt must list actions of a {kind} ({', '.join(ACTIONS[kind])}),"
            f" got {retry!r}"
        )
    return (None if timeout is None else float(timeout)), set(retry)


class InstrumentHost(Attachments):
    """An instrument's front end + back end + idempotency ledger, speaking dicts.

    Attributes:
        frontend: The front end that validates and dispatches commands.
        ledger: The idempotency ledger.
        fingerprint: :func:`lab_fingerprint` of the lab it was built from.
    """

    def __init__(
        self,
        lab: LabDescription | dict[str, Any],
        instrument: str,
        world: Any,
        seed: int,
        epoch: float | None = None,
        ledger_path: str | Path | None = None,
    ) -> None:
        """Build the instrument.

        Args:
            lab: The lab description (or its JSON dump, as it crosses a Ray boundary).
            instrument: Name of the instrument in ``lab`` to host.
            world: The shared :class:`~instruments.virtual_world.VirtualWorld` or its actor handle.
            seed: The run seed.
            epoch: Wall-clock time (``time.time()``) the run began; reading times count from it.
            ledger_path: SQLite file of the persistent ledger (on the machine running the host); None
                keeps the ledger in memory.

        Raises:
            athanor.errors.InstrumentError: Unknown instrument, back end or options, or an unusable
                ledger file.
        """
        lab = lab if isinstance(lab, LabDescription) else LabDescription.model_validate(lab)
        try:
            spec = lab.instrument(instrument)
        except KeyError as error:
            raise InstrumentError(str(error.args[0])) from None
        self._stall_timeout_s, self._retry_in_doubt = _host_options(
            spec.options, spec.kind, spec.name, spec.backend
        )
        backend_spec = spec.model_copy(
            update={"options": {k: v for k, v in spec.options.items() if k not in HOST_OPTIONS}}
        )
        self._origin = time.time() if epoch is None else float(epoch)
        backend = make_backend(backend_spec, lab, connect_world(world), seed)
        self.frontend: FrontEnd = make_frontend(spec, lab, backend, self._clock)
        self.ledger = Ledger(ledger_path)
        self.fingerprint = lab_fingerprint(lab)
        self._init_attachments(self.fingerprint)
        self._lock = threading.Lock()
        self._restored: set[str] = set()
        self._current: tuple[str, str, float, float] | None = None
        self._fault: str | None = None
        self._safe_states = 0

    def _clock(self) -> float:
        return time.time() - self._origin

    def _expected_s(self, action: str) -> float:
        expected = getattr(self.frontend.backend, "expected_duration", None)
        return float(expected(action)) if callable(expected) else float(self.frontend.spec.duration_s)

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

    def execute(
        self, command: dict[str, Any], after: dict[str, Any] | None = None, epoch: float | None = None
    ) -> dict[str, Any]:
        """Run one command unless it already ran, is in doubt, or an earlier step failed.

        Args:
            command: A :class:`~athanor.models.Command` as a dict.
            after: The reading of the experiment's previous step; a failed one makes this command a
                skipped reading.
            epoch: Wall-clock time the caller's run began; reading times count from it (several runs
                may share the instrument). None keeps the previous one.

        Returns:
            A :class:`~athanor.models.Reading` as a dict. Refusals and faults come back as
            ``ok=False`` readings; nothing here raises for a bad command.
        """
        try:
            parsed = Command.model_validate(command)
        except ValidationError as error:
            return self._failed(command, f"malformed command: {error.errors()[0]['msg']}")
        dumped = parsed.model_dump(mode="json")
        key = parsed.key
        if key:  # a recorded reading needs no lock
            try:
                entry = self.ledger.lookup(key, dumped)
            except InstrumentError as error:
                return self._failed(dumped, str(error))
            if entry is not None and entry.state == DONE:
                return dict(entry.reading or {})
        if after is not None and not after.get("ok", True):
            return self._failed(dumped, SKIPPED)
        with self._lock:
            if epoch is not None:
                self._origin = float(epoch)
            return self._execute_locked(parsed, dumped)

    def _restore(self, run_id: str) -> None:
        """Give the front end the bookkeeping of what ``run_id`` already did here, once per run.

        A host rebuilt after a crash starts from the lab description; the run's ledger entries say
        what its earlier process dispensed, so stock, well and tip counts (and the readings that
        report them) continue as they would have.
        """
        if not run_id or run_id in self._restored:
            return
        self._restored.add(run_id)
        for entry in self.ledger.history(run_id):
            if entry.state != STARTED:
                command = Command.model_validate(entry.command)
                self.frontend.restore(command, entry.state == DONE, entry.attempts)

    def _execute_locked(self, parsed: Command, dumped: dict[str, Any]) -> dict[str, Any]:
        key = parsed.key
        self._restore(run_of(key))
        if key:
            try:
                entry = self.ledger.lookup(key, dumped)
            except InstrumentError as error:
                return self._failed(dumped, str(error))
            if entry is not None and entry.state == DONE:
                return dict(entry.reading or {})
            if entry is not None and entry.state == STARTED:
                if parsed.action not in self._retry_in_doubt:
                    return self._failed(dumped, _in_doubt_message(self.frontend.name, entry))
                self.ledger.resolve(key)
        if self._fault is not None:
            return self._failed(
                dumped,
                f"not run: {self.frontend.name} is faulted ({self._fault}); check the instrument, then"
                " reset it",
            )
        if key:
            try:
                self.ledger.begin(key, dumped)
            except Exception as error:  # never act on a command the ledger could not record
                return self._failed(dumped, f"not run: the ledger could not record it ({error})")
        self._current = (key, parsed.action, time.monotonic(), self._expected_s(parsed.action))
        try:
            reading = self.frontend.execute(parsed).model_dump(mode="json")
        except AthanorError as error:
            reading = self._failed(dumped, f"refused: {error}")
        except Exception as error:  # keep the actor alive whatever a back end does
            reading = self._failed(dumped, f"internal error: {type(error).__name__}: {error}")
        finally:
            self._current = None
        if key:
            try:
                self.ledger.finish(key, reading)
            except Exception as error:
                return {
                    **reading,
                    "ok": False,
                    "error": f"the action ran but the ledger could not record it ({error}); key {key!r}"
                    " is now in doubt",
                }
        return reading

    def safe_state(self, wait_s: float = 30.0) -> dict[str, Any]:
        """Put the instrument in its safe state after the running action (waits at most ``wait_s``).

        If the running action does not end in time, the safe state is entered anyway (the back end
        is expected to abort it). Returns the reading as a dict.
        """
        acquired = self._lock.acquire(timeout=wait_s)
        try:
            return self._enter_safe_state()
        finally:
            if acquired:
                self._lock.release()

    def _enter_safe_state(self) -> dict[str, Any]:
        reading = self.frontend.safe_state().model_dump(mode="json")
        self._safe_states += 1
        return reading

    def abort(self, reason: str) -> dict[str, Any]:
        """Mark the instrument faulted and put it in its safe state now, even mid-action.

        Until :meth:`reset`, commands fail without acting. Returns the safe-state reading as a dict.
        """
        if self._fault is None:
            self._fault = reason
        return self._enter_safe_state()

    def reset(self) -> None:
        """Clear a fault once the instrument has been checked."""
        self._fault = None

    def heartbeat(self) -> dict[str, Any]:
        """What the instrument is doing, for a watchdog.

        Returns:
            ``name``; ``busy``; the running action's ``key``, ``action``, ``elapsed_s`` and
            ``expected_s`` (seconds); ``stall_timeout_s`` (the instrument's explicit limit or None);
            ``fault`` (None unless faulted).
        """
        current = self._current
        beat: dict[str, Any] = {
            "name": self.frontend.name,
            "busy": current is not None,
            "key": None,
            "action": None,
            "elapsed_s": 0.0,
            "expected_s": 0.0,
            "stall_timeout_s": self._stall_timeout_s,
            "fault": self._fault,
        }
        if current is not None:
            key, action, began, expected = current
            beat.update(key=key, action=action, elapsed_s=time.monotonic() - began, expected_s=expected)
        return beat

    def ping(self) -> str:
        """The instrument's name (proves the host is up)."""
        return self.frontend.name

    def status(self) -> dict[str, Any]:
        """The front end's bookkeeping, the ledger size, the fault and the number of safe states."""
        return {
            **self.frontend.status(),
            "ledger_size": len(self.ledger),
            "fault": self._fault,
            "safe_states": self._safe_states,
        }

    def history(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Ledger entries (as dicts, see :class:`~instruments.ledger.LedgerEntry`) of a run, or all."""
        return [e.to_dict() for e in self.ledger.history(run_id)]

    def in_doubt(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Entries left ``started`` by a crash (as dicts), of a run or all."""
        current = self._current
        running = current[0] if current is not None else None
        return [e.to_dict() for e in self.ledger.in_doubt(run_id) if e.key != running]

    def resolve(self, key: str, reading: dict[str, Any] | None = None) -> dict[str, Any]:
        """Settle an in-doubt key: record ``reading`` as its outcome, or (None) let it run again.

        Returns:
            The updated entry as a dict.

        Raises:
            athanor.errors.InstrumentError: The key is not in doubt, or it is running right now.
        """
        current = self._current
        if current is not None and current[0] == key:
            raise InstrumentError(f"key {key!r} is running now; it is not in doubt")
        if reading is not None:
            reading = Reading.model_validate(reading).model_dump(mode="json")
        return self.ledger.resolve(key, reading).to_dict()


def _in_doubt_message(name: str, entry: LedgerEntry) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.started_at))
    return (
        f"in doubt: {name} began {entry.command.get('action')} for key {entry.key!r} at {when} and never"
        " recorded the outcome (the host stopped mid-action); check the instrument, then resolve the key"
        " (record what it did, or let it run again)"
    )


@ray.remote(
    num_cpus=0,
    max_restarts=0,
    max_concurrency=_ACTION_THREADS,
    concurrency_groups={"control": _CONTROL_THREADS},
)
class InstrumentActor(InstrumentHost):
    """:class:`InstrumentHost` in its own Ray actor (one per instrument).

    ``execute`` and ``safe_state`` run in the default thread group and queue on the host's lock;
    every other method runs in the ``control`` group, so it answers while an action runs.
    """

    @ray.method(concurrency_group="control")
    def heartbeat(self) -> dict[str, Any]:
        """See :meth:`InstrumentHost.heartbeat`."""
        return super().heartbeat()

    @ray.method(concurrency_group="control")
    def abort(self, reason: str) -> dict[str, Any]:
        """See :meth:`InstrumentHost.abort`."""
        return super().abort(reason)

    @ray.method(concurrency_group="control")
    def reset(self) -> None:
        """See :meth:`InstrumentHost.reset`."""
        super().reset()

    @ray.method(concurrency_group="control")
    def ping(self) -> str:
        """See :meth:`InstrumentHost.ping`."""
        return super().ping()

    @ray.method(concurrency_group="control")
    def status(self) -> dict[str, Any]:
        """See :meth:`InstrumentHost.status`."""
        return super().status()

    @ray.method(concurrency_group="control")
    def history(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """See :meth:`InstrumentHost.history`."""
        return super().history(run_id)

    @ray.method(concurrency_group="control")
    def in_doubt(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """See :meth:`InstrumentHost.in_doubt`."""
        return super().in_doubt(run_id)

    @ray.method(concurrency_group="control")
    def resolve(self, key: str, reading: dict[str, Any] | None = None) -> dict[str, Any]:
        """See :meth:`InstrumentHost.resolve`."""
        return super().resolve(key, reading)

    @ray.method(concurrency_group="control")
    def attach(self, holder: str, fingerprint: str) -> dict[str, Any] | None:
        """See :meth:`InstrumentHost.attach`."""
        return super().attach(holder, fingerprint)

    @ray.method(concurrency_group="control")
    def detach(self, holder: str) -> int:
        """See :meth:`InstrumentHost.detach`."""
        return super().detach(holder)

    @ray.method(concurrency_group="control")
    def holders(self) -> list[str]:
        """See :meth:`InstrumentHost.holders`."""
        return super().holders()

    @ray.method(concurrency_group="control")
    def node_id(self) -> str:
        """Id of the Ray node this actor runs on."""
        return ray.get_runtime_context().get_node_id()


class _SharedWorld(VirtualWorld, Attachments):
    """A :class:`~instruments.virtual_world.VirtualWorld` that counts the labs using it."""

    def __init__(self, fingerprint: str = "", path: str | None = None) -> None:
        VirtualWorld.__init__(self, path)
        self._init_attachments(fingerprint)


@ray.remote(num_cpus=0, max_restarts=0)
class VirtualWorldActor(_SharedWorld):
    """:class:`~instruments.virtual_world.VirtualWorld` in its own Ray actor, shareable between labs."""


def ledger_file(folder: str | Path, instrument: str) -> Path:
    """The ledger file of ``instrument`` under ``folder``: ``<folder>/<instrument>.sqlite``."""
    return Path(folder) / f"{instrument}.sqlite"
