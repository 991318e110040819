"""The lab as an :class:`athanor.ports.InstrumentsPort`: in Ray actors, or in-process.

- :func:`virtual_lab_description` builds the lab description of the virtual lab for a campaign's
  components from the shipped template ``instruments/labs/virtual.yaml``.
- :class:`RayLab` runs one named actor per instrument plus one for the shared world and pipelines
  experiments: the liquid handler prepares experiment ``i + 1`` while the meter measures experiment
  ``i``. It places actors by Ray custom resources, watches them with heartbeats (a stalled or silent
  instrument is put in its safe state and its pending commands fail instead of hanging), keeps a
  persistent ledger per instrument when given a folder, and can share instruments with other
  campaigns through a common namespace.
- :class:`LocalLab` has the same interface, runs everything in-process and in sequence (unit tests).
- Ray itself is started (or a cluster joined) by :func:`instruments.ray_runtime.ensure_ray`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from athanor.errors import InstrumentError, SpecError, format_validation_error
from athanor.lab import MEASURES, LabDescription, match_quantity
from athanor.models import Protocol, Reading
from instruments.actors import (
    SKIPPED,
    InstrumentActor,
    InstrumentHost,
    VirtualWorldActor,
    lab_fingerprint,
    ledger_file,
)
from instruments.ledger import DONE
from instruments.placement import actor_options, check_placement, cluster_nodes
from instruments.ray_runtime import ensure_ray
from instruments.virtual_world import RemoteWorld, VirtualWorld, World
from instruments.watchdog import Watchdog

__all__ = [
    "SHARED_NAMESPACE",
    "STOCK_VOLUME_UL",
    "TEMPLATE",
    "LocalLab",
    "RayLab",
    "virtual_lab_description",
]

#: The shipped virtual-lab template.
TEMPLATE = Path(__file__).parent / "labs" / "virtual.yaml"
#: Volume of each stock the virtual lab starts with, µL.
STOCK_VOLUME_UL = 20_000.0
#: Namespace in which campaigns share instruments (pass it as ``RayLab(namespace=...)``).
SHARED_NAMESPACE = "athanor"
_WORLD_ACTOR = "athanor-virtual-world"
_START_TIMEOUT_S = 120.0
#: Seconds to wait for a control call (abort, detach, ledger query) to answer.
_CONTROL_TIMEOUT_S = 10.0
#: Seconds to wait for the end-of-run safe state of one instrument.
_SAFE_STATE_TIMEOUT_S = 60.0
#: Seconds between checks of the run loop for faults reported by the watchdog.
_POLL_S = 0.1
_ATTACH_ATTEMPTS = 5


def virtual_lab_description(
    components: list[str], time_scale: float = 0.01, measures: Sequence[str] = ("conductivity",)
) -> LabDescription:
    """The virtual lab for a campaign: the template plus one stock per component.

    Args:
        components: Campaign component names; stock ``<name>_stock`` supplies component ``<name>``.
        time_scale: Multiplier on simulated durations (0.01 turns a 60 s measurement into 0.6 s).
        measures: Quantities the campaign measures (e.g. ``spec.measured_names``): of the template's
            measuring instruments, those that measure one of them are kept (the others would only
            cost an actor each). When none measures any, all are kept, so that the refusal of the
            campaign lists what the virtual lab can measure.

    Raises:
        athanor.errors.SpecError: No components, a repeated component or a negative time scale.
    """
    names = list(components)
    if not names:
        raise SpecError("components: the virtual lab needs at least one component to make stocks for")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SpecError(f"components: {', '.join(repeated)} listed more than once; name each once")
    data = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    wanted = [i for i in data["instruments"] if any(match_quantity(q, MEASURES[i["kind"]]) for q in measures)]
    if wanted:
        data["instruments"] = [i for i in data["instruments"] if not MEASURES[i["kind"]] or i in wanted]
    data["stocks"] = [{"name": f"{n}_stock", "component": n, "volume_ul": STOCK_VOLUME_UL} for n in names]
    data["time_scale"] = time_scale
    try:
        return LabDescription.model_validate(data)
    except ValidationError as error:
        raise SpecError(format_validation_error(error, prefix="lab.")) from None


def _check_protocols(protocols: Sequence[Protocol], instruments: Sequence[str]) -> None:
    """Refuse, before anything runs, protocols that name unknown instruments or repeat an id."""
    seen: set[str] = set()
    for protocol in protocols:
        if protocol.experiment_id in seen:
            raise InstrumentError(
                f"experiment {protocol.experiment_id} appears twice in one run; give each protocol its own id"
            )
        seen.add(protocol.experiment_id)
        for command in protocol.commands:
            if command.instrument not in instruments:
                raise InstrumentError(
                    f"experiment {protocol.experiment_id}: unknown instrument {command.instrument!r};"
                    f" this lab has {', '.join(instruments)}"
                )


def _failure(command: dict[str, Any], error: str, at: float = 0.0) -> Reading:
    return Reading(
        instrument=command["instrument"],
        action=command["action"],
        key=command.get("key", ""),
        started=at,
        finished=at,
        ok=False,
        error=error,
    )


def _completed(entries: Sequence[dict[str, Any]]) -> dict[str, Reading]:
    return {e["key"]: Reading.model_validate(e["reading"]) for e in entries if e["state"] == DONE}


class LocalLab:
    """The virtual lab in this process: one experiment after another, no Ray.

    Attributes:
        lab: The lab description.
        seed: The run seed.
        world: The shared well contents.
        ledger_dir: Folder of the instruments' ledger files (None: in memory).
    """

    def __init__(
        self,
        lab: LabDescription,
        seed: int,
        *,
        epoch: float | None = None,
        ledger_dir: Path | None = None,
    ) -> None:
        """Create the lab; instruments are built by :meth:`start` (or the first :meth:`run`).

        Args:
            lab: The lab description.
            seed: The run seed.
            epoch: Wall-clock time the run began (reading times count from it); default: now.
            ledger_dir: Folder for one ledger file per instrument; None keeps ledgers in memory.
        """
        self.lab = lab
        self.seed = seed
        self.world: VirtualWorld = VirtualWorld()
        self.ledger_dir = ledger_dir
        self._epoch = time.time() if epoch is None else epoch
        self._hosts: dict[str, InstrumentHost] = {}
        self._queue: list[tuple[Protocol, Callable[[Reading], None]]] = []

    def start(self) -> None:
        """Build every instrument."""
        if not self._hosts:
            for spec in self.lab.instruments:
                path = None if self.ledger_dir is None else ledger_file(self.ledger_dir, spec.name)
                self._hosts[spec.name] = InstrumentHost(
                    self.lab, spec.name, self.world, self.seed, self._epoch, path
                )

    def host(self, name: str) -> InstrumentHost:
        """The instrument called ``name``."""
        self.start()
        return self._hosts[name]

    def run(
        self, protocols: list[Protocol], on_reading: Callable[[Reading], None]
    ) -> dict[str, list[Reading]]:
        """Run protocols in order; see :meth:`athanor.ports.InstrumentsPort.run`."""
        self.submit(protocols, on_reading)
        return self.wait(None)

    def submit(self, protocols: list[Protocol], on_reading: Callable[[Reading], None]) -> None:
        """Queue protocols; :meth:`wait` runs them one after another."""
        self.start()
        kinds = sorted({spec.kind for spec in self.lab.instruments})
        _check_protocols(protocols, [*self._hosts, *kinds])
        self._queue.extend((protocol, on_reading) for protocol in protocols)

    def running(self) -> list[str]:
        """Experiment ids submitted and not yet returned by :meth:`wait`."""
        return [protocol.experiment_id for protocol, _ in self._queue]

    def wait(self, min_finished: int | None = 1) -> dict[str, list[Reading]]:
        """Run queued experiments until ``min_finished`` are done (None: all); return their readings."""
        count = len(self._queue) if min_finished is None else min(min_finished, len(self._queue))
        results: dict[str, list[Reading]] = {}
        for _ in range(count):
            protocol, on_reading = self._queue.pop(0)
            previous: dict[str, Any] | None = None
            readings = results.setdefault(protocol.experiment_id, [])
            for command in protocol.commands:
                name = command.instrument
                if name not in self._hosts:  # an instrument kind: its first instrument
                    name = next(s.name for s in self.lab.instruments if s.kind == command.instrument)
                payload = {**command.model_dump(mode="json"), "instrument": name}
                answer = self._hosts[name].execute(payload, previous)
                reading = Reading.model_validate(answer)
                readings.append(reading)
                on_reading(reading)
                previous = answer
        return results

    def completed(self, run_id: str) -> dict[str, Reading]:
        """Key to reading of every command of ``run_id`` the instruments have done."""
        self.start()
        return {k: r for h in self._hosts.values() for k, r in _completed(h.history(run_id)).items()}

    def in_doubt(self, run_id: str) -> list[dict[str, Any]]:
        """Ledger entries of ``run_id`` begun but never finished, each with its ``instrument``."""
        self.start()
        return [{**e, "instrument": n} for n, h in self._hosts.items() for e in h.in_doubt(run_id)]

    def safe_state(self) -> None:
        """Put every instrument in its safe state.

        Raises:
            athanor.errors.InstrumentError: Some instrument did not reach it (all were tried).
        """
        failed = [
            r for r in (Reading.model_validate(h.safe_state()) for h in self._hosts.values()) if not r.ok
        ]
        if failed:
            raise InstrumentError("; ".join(f"{r.instrument}: {r.error}" for r in failed))

    def close(self) -> None:
        """Drop the instruments."""
        for host in self._hosts.values():
            host.ledger.close()
        self._hosts.clear()

    def __enter__(self) -> LocalLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RayLab:
    """The lab with one Ray actor per instrument, pipelined and watched.

    The caller owns ``ray.init`` (see :func:`instruments.ray_runtime.ensure_ray`); :meth:`close`
    detaches from this lab's actors, kills those no other lab uses, and leaves Ray running.

    Namespaces: by default each lab gets a fresh namespace of its own, so runs never share anything
    (the actors die with this process). With ``namespace=SHARED_NAMESPACE`` (or any given name),
    actors are named by instrument in that namespace, outlive the process that created them and are
    shared: every lab with the same lab description attaches to the same instrument actors and
    virtual world, commands of different runs take turns on each instrument, and the last lab to
    close removes them. Keys carry the run id, so the runs' ledger entries never clash.

    Attributes:
        lab: The lab description.
        seed: The run seed (a shared instrument keeps the seed, and the ledger folder, of the lab
            that created it).
        namespace: Ray namespace of the named actors.
        shared: Whether the namespace was given (actors shared and detached) or made for this lab.
        ledger_dir: Folder of one ledger file per instrument, on the nodes running the actors.
        heartbeat_s: Seconds between heartbeats.
        stall_slack_s: Slack of the stall limit ``3 x expected duration + slack``, s.
        on_fault: Called as ``on_fault(instrument, reason)`` when an instrument stalls, stops
            answering or dies (from the watchdog's thread).
    """

    def __init__(
        self,
        lab: LabDescription,
        seed: int,
        ray_address: str | None = None,
        *,
        namespace: str | None = None,
        epoch: float | None = None,
        ledger_dir: Path | None = None,
        heartbeat_s: float = 1.0,
        stall_slack_s: float = 10.0,
        on_fault: Callable[[str, str], None] | None = None,
        start_timeout_s: float = _START_TIMEOUT_S,
        world_path: Path | None = None,
        stop_sending: threading.Event | None = None,
    ) -> None:
        """Describe the lab; nothing starts until :meth:`start`.

        Args:
            lab: The lab description.
            seed: The run seed.
            ray_address: Cluster to join if Ray is not initialised yet; None starts a local Ray.
            namespace: Shared namespace for the actors (see the class docstring); None: a fresh
                ``athanor-<hex>`` for this lab alone.
            epoch: Wall-clock time the run began (reading times count from it); default: at start.
            ledger_dir: Folder for persistent ledgers, e.g. ``<ATHANOR_HOME>/ledgers``; None keeps
                them in the actors' memory.
            heartbeat_s: Seconds between heartbeats of the watchdog.
            stall_slack_s: Seconds added to ``3 x`` an action's expected duration before it stalls
                (an instrument's ``options.stall_timeout_s`` overrides the whole limit).
            on_fault: Called as ``on_fault(instrument, reason)`` on a stall, silence or death.
            start_timeout_s: Seconds :meth:`start` waits for the actors to answer.
            world_path: File that keeps the virtual wells' contents across a crash (None: memory).
            stop_sending: Once set (a stop was requested), no queued command is sent; the ones
                already running go on (see :meth:`finish_running`).
        """
        self.lab = lab
        self.seed = seed
        self.shared = namespace is not None
        self.namespace = namespace or f"athanor-{uuid.uuid4().hex[:12]}"
        self.ledger_dir = None if ledger_dir is None else Path(ledger_dir).absolute()
        self.heartbeat_s = heartbeat_s
        self.stall_slack_s = stall_slack_s
        self.on_fault = on_fault
        self.start_timeout_s = start_timeout_s
        self.world_path = None if world_path is None else Path(world_path).absolute()
        self._address = ray_address
        self._epoch = epoch
        self._stop_sending = stop_sending if stop_sending is not None else threading.Event()
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._world: Any = None
        self._actors: dict[str, Any] = {}
        self._watchdog: Watchdog | None = None
        self._faults: dict[str, str] = {}
        self._handled: dict[str, threading.Event] = {}
        self._faults_lock = threading.Lock()
        # The queue of submitted experiments (see submit / wait).
        self._results: dict[str, list[Reading | None]] = {}
        self._finished: dict[str, int] = {}
        self._failed: set[str] = set()
        self._callbacks: dict[str, Callable[[Reading], None]] = {}
        self._queues: dict[str, deque[tuple[str, int, dict[str, Any]]]] = {}
        self._in_flight: dict[Any, tuple[str, str, int, dict[str, Any]]] = {}
        self._busy: dict[str, Any] = {}
        # A dispatcher thread keeps sending queued commands while the caller is busy elsewhere
        # (refitting the model, say), so a free instrument never waits for the next wait() call.
        self._cond = threading.Condition()
        self._dispatcher: threading.Thread | None = None
        self._stop_dispatch = threading.Event()
        self._dispatch_error: BaseException | None = None

    # Starting, sharing and stopping.

    def start(self) -> None:
        """Create (or attach to) the world actor and one named actor per instrument.

        Raises:
            athanor.errors.InstrumentError: An instrument needs Ray resources no node offers, could
                not be built, did not start in time, or a shared actor serves another lab description.
        """
        if self._actors:
            return
        ensure_ray(self._address, None)
        check_placement(self.lab, cluster_nodes())
        if self._epoch is None:
            self._epoch = time.time()
        for _ in range(_ATTACH_ATTEMPTS):
            if self._create_and_attach():
                break
        else:
            raise InstrumentError(
                f"the shared instruments in namespace {self.namespace!r} kept shutting down while this lab"
                " attached; try again once the other campaign has closed"
            )
        self._watchdog = Watchdog(
            list(self._actors),
            self._probe,
            self._handle_fault,
            heartbeat_s=self.heartbeat_s,
            slack_s=self.stall_slack_s,
        )
        self._watchdog.start()

    def _drop_stale_holders(self) -> None:
        """Detach the shared actors' holders that were labs on this host whose process has died.

        A campaign that crashed never detached, so its actors would otherwise stay up for good, and a
        changed lab file would be refused as "a different lab description" until Ray was restarted.
        Holders on other hosts cannot be checked from here and are left alone. An actor left with no
        holder is removed, so that :meth:`_create_and_attach` builds a fresh one.
        """
        import ray

        host = socket.gethostname()
        gone: list[str] = []
        for label in (_WORLD_ACTOR, *(i.name for i in self.lab.instruments)):
            try:
                handle = ray.get_actor(label, namespace=self.namespace)
                holders = ray.get(handle.holders.remote(), timeout=_CONTROL_TIMEOUT_S)
            except Exception:  # no such actor, or one that cannot answer: nothing to prune here
                continue
            stale = [h for h in holders if _dead_local_holder(h, host)]
            if not stale:
                continue
            try:
                remaining = [ray.get(handle.detach.remote(h), timeout=_CONTROL_TIMEOUT_S) for h in stale][-1]
                if remaining == 0:
                    ray.kill(handle, no_restart=True)
                    gone.append(label)
            except Exception:  # died meanwhile: attaching reports it, with the usual message
                continue
        self._wait_gone(gone, timeout_s=_CONTROL_TIMEOUT_S)

    def _create_and_attach(self) -> bool:
        """Create or find the actors and attach to them; False if some were closing (try again)."""
        import ray

        if self.shared:
            self._drop_stale_holders()
        fingerprint = lab_fingerprint(self.lab)
        common: dict[str, Any] = {"namespace": self.namespace, "get_if_exists": True}
        if self.shared:
            common["lifetime"] = "detached"
        world_path = None if self.world_path is None else str(self.world_path)
        world = VirtualWorldActor.options(name=_WORLD_ACTOR, **common).remote(fingerprint, world_path)
        lab = self.lab.model_dump(mode="json")
        actors: dict[str, Any] = {}
        for spec in self.lab.instruments:
            ledger = None if self.ledger_dir is None else str(ledger_file(self.ledger_dir, spec.name))
            actors[spec.name] = InstrumentActor.options(
                name=spec.name, **common, **actor_options(spec)
            ).remote(lab, spec.name, world, self.seed, self._epoch, ledger)
        handles = {_WORLD_ACTOR: world, **actors}
        refs = {label: h.attach.remote(self._holder, fingerprint) for label, h in handles.items()}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=self.start_timeout_s)
        problems: list[str] = []
        attached: set[str] = set()
        kill: set[str] = set()
        closing: list[str] = []
        for label, ref in refs.items():
            if ref not in ready:
                problems.append(self._not_started(label))
                kill.add(label)
                continue
            try:
                answer = ray.get(ref)
            except ray.exceptions.RayError as error:
                problems.append(f"{label} could not be built: {_cause(error)}")
                kill.add(label)
                continue
            if answer is None:
                closing.append(label)
            elif "error" in answer:
                problems.append(f"{label} in namespace {self.namespace!r}: {answer['error']}")
                if not self.shared:
                    kill.add(label)
            else:
                attached.add(label)
        if problems or closing:
            self._release(handles, attached, kill)
        if problems:
            raise InstrumentError("the lab's instruments did not start: " + "; ".join(problems))
        if closing:
            self._wait_gone(closing)
            return False
        self._world, self._actors = world, actors
        return True

    def _not_started(self, label: str) -> str:
        needs = {} if label == _WORLD_ACTOR else self.lab.instrument(label).resources
        text = f"{label} did not answer within {self.start_timeout_s:g} s"
        if needs:
            text += (
                f"; its actor needs Ray resources {needs}, which another actor may hold (an instrument of"
                " another campaign in another namespace?); share it through a common namespace"
            )
        return text

    def _wait_gone(self, labels: list[str], timeout_s: float = 30.0) -> None:
        import ray

        deadline = time.monotonic() + timeout_s
        for label in labels:
            while time.monotonic() < deadline:
                try:
                    ray.get_actor(label, namespace=self.namespace)
                except ValueError:
                    break
                time.sleep(0.1)

    def _release(self, handles: dict[str, Any], attached: set[str], kill: set[str]) -> None:
        """Detach from ``attached`` actors and kill the ones nobody uses, plus those in ``kill``."""
        import ray

        detaching = {label: handles[label].detach.remote(self._holder) for label in attached}
        killed: list[str] = []
        for label, handle in handles.items():
            remove = label in kill
            if label in detaching:
                try:
                    remaining = ray.get(detaching[label], timeout=_CONTROL_TIMEOUT_S)
                except Exception:  # dead or stuck: nobody can use it
                    remaining = 0
                remove = remove or remaining == 0 or not self.shared
            if remove:
                try:
                    ray.kill(handle, no_restart=True)
                except Exception:  # already gone
                    continue
                killed.append(label)
        self._wait_gone(killed, timeout_s=_CONTROL_TIMEOUT_S)

    def close(self) -> None:
        """Stop the dispatcher and the watchdog, detach from the actors and kill those no other lab uses."""
        import ray

        self._stop_dispatch.set()
        with self._cond:
            self._cond.notify_all()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=5 * _POLL_S + 1)
            self._dispatcher = None
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        handles = {**({_WORLD_ACTOR: self._world} if self._world is not None else {}), **self._actors}
        self._actors = {}
        self._world = None
        if not handles or not ray.is_initialized():
            return
        self._release(handles, set(handles), set())

    def __enter__(self) -> RayLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def actor(self, name: str) -> Any:
        """The Ray actor handle of instrument ``name`` (after :meth:`start`)."""
        return self._actors[name]

    @property
    def world(self) -> World:
        """The shared well contents (after :meth:`start`)."""
        return RemoteWorld(self._world)

    # Faults.

    @property
    def faults(self) -> dict[str, str]:
        """Instrument name to the reason it was declared faulty, for every fault not yet reset."""
        with self._faults_lock:
            return dict(self._faults)

    def _probe(self, names: list[str], timeout_s: float) -> dict[str, Any]:
        import ray

        answers: dict[str, Any] = {}
        refs: dict[str, Any] = {}
        for name in names:
            actor = self._actors.get(name)
            if actor is None:
                continue
            try:
                refs[name] = actor.heartbeat.remote()
            except Exception as error:  # handle unusable: the actor is gone
                answers[name] = error
        if refs:
            ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
            for name, ref in refs.items():
                if ref not in ready:
                    answers[name] = None
                    continue
                try:
                    answers[name] = ray.get(ref)
                except ray.exceptions.RayError as error:
                    answers[name] = error
        return answers

    def _handle_fault(self, name: str, reason: str) -> None:
        """Record a fault once, put the instrument in its safe state (best effort), tell ``on_fault``."""
        import ray

        with self._faults_lock:
            if name in self._faults:
                return
            self._faults[name] = reason
            handled = self._handled[name] = threading.Event()
        try:
            actor = self._actors.get(name)
            if actor is not None:
                try:
                    ray.get(actor.abort.remote(reason), timeout=_CONTROL_TIMEOUT_S)
                except Exception as error:  # best effort: the instrument may be gone
                    logging.getLogger(__name__).warning("%s: safe state after fault failed: %s", name, error)
            if self.on_fault is not None:
                self.on_fault(name, reason)
        finally:
            handled.set()

    def _await_fault_handling(self) -> None:
        """Wait until every fault seen so far was made safe and reported (bounded)."""
        with self._faults_lock:
            pending = list(self._handled.values())
        deadline = time.monotonic() + 2 * _CONTROL_TIMEOUT_S
        for event in pending:
            event.wait(max(0.0, deadline - time.monotonic()))

    def reset(self, name: str) -> None:
        """Clear an instrument's fault once it has been checked, and watch it again."""
        import ray

        ray.get(self._actors[name].reset.remote(), timeout=_CONTROL_TIMEOUT_S)
        with self._faults_lock:
            self._faults.pop(name, None)
            self._handled.pop(name, None)
        if self._watchdog is not None:
            self._watchdog.clear(name)

    # Running.

    def _now(self) -> float:
        return time.time() - (self._epoch or time.time())

    def run(
        self, protocols: list[Protocol], on_reading: Callable[[Reading], None]
    ) -> dict[str, list[Reading]]:
        """Run protocols with the instruments kept busy; see :meth:`athanor.ports.InstrumentsPort.run`."""
        self.submit(protocols, on_reading)
        return self.wait(None)

    def submit(self, protocols: list[Protocol], on_reading: Callable[[Reading], None]) -> None:
        """Queue protocols behind those already running; :meth:`wait` drives them.

        Each instrument takes its commands in submission order, one at a time; a command is sent as
        soon as the previous step of its experiment has finished, so experiments go through the
        instruments like an assembly line. A command may name an instrument kind instead of an
        instrument (``conductivity_meter``): it goes to whichever instrument of that kind is free
        first. A failed step skips the rest of its experiment. When the watchdog declares an
        instrument faulty, its running command gets a reading with the fault (``"stalled: ..."``) and
        its queued commands fail without being sent.

        Raises:
            athanor.errors.InstrumentError: A protocol names an unknown instrument or kind, or reuses
                an experiment id still in the queue.
        """
        self.start()
        pools = self._pools()
        _check_protocols(protocols, [*self._actors, *pools])
        with self._cond:
            clash = [p.experiment_id for p in protocols if p.experiment_id in self._results]
            if clash:
                raise InstrumentError(
                    f"experiments {', '.join(clash)} are already queued; give each its own id"
                )
            for protocol in protocols:
                self._results[protocol.experiment_id] = [None] * len(protocol.commands)
                self._finished[protocol.experiment_id] = 0
                self._callbacks[protocol.experiment_id] = on_reading
                for index, command in enumerate(protocol.commands):
                    instrument = command.instrument
                    queue = instrument if instrument in self._actors else f"pool:{instrument}"
                    self._queues.setdefault(queue, deque()).append(
                        (protocol.experiment_id, index, command.model_dump(mode="json"))
                    )
            self._cond.notify_all()
        if self._dispatcher is None or not self._dispatcher.is_alive():
            self._stop_dispatch.clear()
            self._dispatcher = threading.Thread(
                target=self._dispatch_loop, name="athanor-dispatch", daemon=True
            )
            self._dispatcher.start()

    def running(self) -> list[str]:
        """Experiment ids submitted and not yet returned by :meth:`wait`."""
        with self._cond:
            return list(self._results)

    def _pools(self) -> dict[str, list[str]]:
        pools: dict[str, list[str]] = {}
        for spec in self.lab.instruments:
            if spec.kind not in self._actors:
                pools.setdefault(spec.kind, []).append(spec.name)
        return pools

    def _deliver(self, experiment_id: str, index: int, reading: Reading) -> None:
        self._results[experiment_id][index] = reading
        self._finished[experiment_id] = index + 1
        if not reading.ok:
            self._failed.add(experiment_id)
        self._callbacks[experiment_id](reading)

    def _send(self, name: str, experiment_id: str, index: int, payload: dict[str, Any]) -> None:
        payload = {**payload, "instrument": name}
        ref = self._actors[name].execute.remote(payload, None, self._epoch)
        self._in_flight[ref] = (name, experiment_id, index, payload)
        self._busy[name] = ref

    def _pump(self) -> None:
        """Send every command whose instrument is free and whose previous step has finished."""
        if self._stop_sending.is_set():
            return
        faults = self.faults
        pools = self._pools()
        for queue_name, queue in self._queues.items():
            while queue:
                experiment_id, index, payload = queue[0]
                if self._finished[experiment_id] != index:
                    break  # its previous step has not finished yet
                if queue_name.startswith("pool:"):
                    members = pools[queue_name.removeprefix("pool:")]
                    healthy = [m for m in members if m not in faults]
                    free = [m for m in healthy if m not in self._busy]
                    if healthy and not free:
                        break
                    name = free[0] if free else members[0]
                else:
                    name = queue_name
                    if name in self._busy:
                        break
                queue.popleft()
                if experiment_id in self._failed:
                    self._deliver(experiment_id, index, _failure(payload, SKIPPED, self._now()))
                elif name in faults:
                    error = f"not run: {name} is faulted ({faults[name]}); check it, then reset it"
                    self._deliver(experiment_id, index, _failure(payload, error, self._now()))
                else:
                    self._send(name, experiment_id, index, payload)

    def _complete(self) -> list[str]:
        return [e for e, readings in self._results.items() if all(r is not None for r in readings)]

    def _collect(self, ready: list[Any]) -> None:
        """Deliver the readings of finished commands and abandon commands of faulted instruments."""
        import ray

        for ref in ready:
            name, experiment_id, index, payload = self._in_flight.pop(ref)
            self._busy.pop(name, None)
            try:
                reading = Reading.model_validate(ray.get(ref))
            except ray.exceptions.RayError as error:
                self._handle_fault(name, f"unresponsive: {name}'s actor failed ({_cause(error)})")
                reading = _failure(payload, f"instrument actor failed: {_cause(error)}", self._now())
            fault = self.faults.get(name)
            if fault is not None and not reading.ok and not (reading.error or "").startswith(fault):
                # the safe state that followed the fault ended the action before this loop saw it
                reading = reading.model_copy(update={"error": f"{fault} ({reading.error})"})
            self._deliver(experiment_id, index, reading)
        faults = self.faults
        for name, ref in list(self._busy.items()):
            if name in faults:  # abandon the running command; its late answer is ignored
                self._busy.pop(name)
                _, experiment_id, index, payload = self._in_flight.pop(ref)
                self._deliver(experiment_id, index, _failure(payload, faults[name], self._now()))

    def _dispatch_loop(self) -> None:
        import ray

        try:
            while not self._stop_dispatch.is_set():
                with self._cond:
                    self._pump()
                    refs = list(self._in_flight)
                    if not refs:
                        self._cond.notify_all()
                        self._cond.wait(timeout=_POLL_S)
                        continue
                ready, _ = ray.wait(refs, num_returns=1, timeout=_POLL_S)
                with self._cond:
                    self._collect(ready)
                    self._pump()
                    self._cond.notify_all()
        except BaseException as error:  # handed to the caller of wait()
            with self._cond:
                self._dispatch_error = error
                self._cond.notify_all()

    def wait(self, min_finished: int | None = 1) -> dict[str, list[Reading]]:
        """Wait until ``min_finished`` submitted experiments are complete (None: all of them).

        Returns:
            Experiment id to its readings, for every experiment completed since the last call; those
            experiments leave the queue.
        """
        with self._cond:
            target = len(self._results) if min_finished is None else min(min_finished, len(self._results))
            while True:
                if self._dispatch_error is not None:
                    error, self._dispatch_error = self._dispatch_error, None
                    raise InstrumentError(f"the instrument dispatcher failed: {error}") from error
                done = self._complete()
                if len(done) >= target:
                    break
                if not self._in_flight and not any(self._queues.values()):
                    stuck = [e for e in self._results if e not in done]
                    raise InstrumentError(
                        f"experiments {', '.join(stuck)} did not finish; this is a bug in RayLab"
                    )
                self._cond.wait(timeout=_POLL_S)
            finished = {}
            for experiment_id in done:
                finished[experiment_id] = [r for r in self._results.pop(experiment_id) if r is not None]
                self._finished.pop(experiment_id)
                self._callbacks.pop(experiment_id)
                self._failed.discard(experiment_id)
        self._await_fault_handling()
        return finished

    def finish_running(self, timeout_s: float) -> list[str]:
        """Send no new command and wait for the running ones to finish (a stop that lets them finish).

        Their readings reach the callbacks given to :meth:`submit` as usual; queued commands stay
        unsent (a resumed run sends them).

        Args:
            timeout_s: Longest wait, seconds.

        Returns:
            The instruments still busy when the wait ended (empty when everything finished).
        """
        self._stop_sending.set()
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._in_flight and self._dispatch_error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(timeout=min(_POLL_S, left))
            return sorted(self._busy)

    def safe_state(self) -> None:
        """Put every instrument in its safe state (all are tried; faulty ones at once).

        Raises:
            athanor.errors.InstrumentError: Some instrument did not reach it.
        """
        import ray

        faults = self.faults
        problems = []
        refs = {
            name: actor.abort.remote(faults[name]) if name in faults else actor.safe_state.remote()
            for name, actor in self._actors.items()
        }
        for name, ref in refs.items():
            try:
                reading = Reading.model_validate(ray.get(ref, timeout=_SAFE_STATE_TIMEOUT_S))
            except (ray.exceptions.RayError, TimeoutError) as error:
                problems.append(f"{name}: {_cause(error)}")
                continue
            if not reading.ok:
                problems.append(f"{name}: {reading.error}")
        if problems:
            raise InstrumentError("safe state not reached: " + "; ".join(problems))

    # Resuming.

    def _ledger_call(self, method: str, *args: Any) -> dict[str, Any]:
        import ray

        refs = {name: getattr(actor, method).remote(*args) for name, actor in self._actors.items()}
        return {name: ray.get(ref, timeout=_START_TIMEOUT_S) for name, ref in refs.items()}

    def completed(self, run_id: str) -> dict[str, Reading]:
        """Key to reading of every command of ``run_id`` the instruments have done (for resuming).

        Re-running a protocol of that run returns these readings without acting again.
        """
        self.start()
        done: dict[str, Reading] = {}
        for entries in self._ledger_call("history", run_id).values():
            done.update(_completed(entries))
        return done

    def in_doubt(self, run_id: str) -> list[dict[str, Any]]:
        """Commands of ``run_id`` begun but never finished (a crash mid-action), each with ``instrument``.

        Such commands are refused until :meth:`resolve` settles them, except actions an instrument
        lists in ``options.retry_in_doubt``.
        """
        self.start()
        return [
            {**entry, "instrument": name}
            for name, entries in self._ledger_call("in_doubt", run_id).items()
            for entry in entries
        ]

    def resolve(self, instrument: str, key: str, reading: Reading | None = None) -> None:
        """Settle an in-doubt command: record what the instrument did, or (None) let it run again.

        Raises:
            athanor.errors.InstrumentError: Unknown instrument, or the key is not in doubt.
        """
        import ray

        self.start()
        if instrument not in self._actors:
            raise InstrumentError(
                f"unknown instrument {instrument!r}; this lab has {', '.join(self._actors)}"
            )
        payload = None if reading is None else reading.model_dump(mode="json")
        try:
            ray.get(self._actors[instrument].resolve.remote(key, payload), timeout=_CONTROL_TIMEOUT_S)
        except ray.exceptions.RayTaskError as error:
            raise InstrumentError(_cause(error)) from None


def _dead_local_holder(holder: str, host: str) -> bool:
    """Whether ``holder`` (``host:pid:tag``, see :class:`RayLab`) was a process on ``host`` that is gone."""
    name, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if name != host or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, but another user's
        return False
    return False


def _cause(error: BaseException) -> str:
    """The message of what went wrong inside Ray, without Ray's wrapping and traceback."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return f"{cause}" if str(cause) else type(cause).__name__
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__
