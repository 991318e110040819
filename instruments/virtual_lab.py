"""The virtual lab as an :class:`athanor.ports.InstrumentsPort`: in Ray actors, or in-process.

- :func:`virtual_lab_description` builds the lab description of the virtual lab for a campaign's
  components from the shipped template ``instruments/labs/virtual.yaml``.
- :class:`RayLab` runs one named actor per instrument plus one for the shared world, in a namespace of
  its own, and pipelines experiments: the liquid handler prepares experiment ``i + 1`` while the
  meter measures experiment ``i``.
- :class:`LocalLab` has the same interface, runs everything in-process and in sequence (unit tests).
- :func:`ensure_ray` starts a local Ray once per process.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from athanor.errors import InstrumentError, SpecError, format_validation_error
from athanor.lab import LabDescription
from athanor.models import Protocol, Reading
from instruments.actors import SKIPPED, InstrumentActor, InstrumentHost, VirtualWorldActor
from instruments.virtual_world import RemoteWorld, VirtualWorld, World

__all__ = [
    "STOCK_VOLUME_UL",
    "TEMPLATE",
    "LocalLab",
    "RayLab",
    "ensure_ray",
    "virtual_lab_description",
]

#: The shipped virtual-lab template.
TEMPLATE = Path(__file__).parent / "labs" / "virtual.yaml"
#: Volume of each stock the virtual lab starts with, µL.
STOCK_VOLUME_UL = 20_000.0
_WORLD_ACTOR = "athanor-virtual-world"
_START_TIMEOUT_S = 120.0


def virtual_lab_description(components: list[str], time_scale: float = 0.01) -> LabDescription:
    """The virtual lab for a campaign: the template plus one stock per component.

    Args:
        components: Campaign component names; stock ``<name>_stock`` supplies component ``<name>``.
        time_scale: Multiplier on simulated durations (0.01 turns a 60 s measurement into 0.6 s).

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
    data["stocks"] = [{"name": f"{n}_stock", "component": n, "volume_ul": STOCK_VOLUME_UL} for n in names]
    data["time_scale"] = time_scale
    try:
        return LabDescription.model_validate(data)
    except ValidationError as error:
        raise SpecError(format_validation_error(error, prefix="lab.")) from None


def ensure_ray(address: str | None, temp_dir: Path | None) -> bool:
    """Start (or connect to) Ray unless this process already did.

    A local Ray is started with two CPUs, no dashboard, worker logs kept out of the terminal and
    token authentication off (``RAY_AUTH_MODE=disabled``). Starting Ray takes a few seconds and
    close to 1 GB of memory: do it once per process.

    Args:
        address: A cluster to connect to (``host:port`` or ``ray://...``); None starts a local Ray
            of this process's own, even if another one runs on the machine.
        temp_dir: Ray's session folder for a local start; None uses Ray's default.

    Returns:
        True when this call started or connected Ray (the caller then owns ``ray.shutdown()``).
    """
    import ray

    if ray.is_initialized():
        return False
    if address is None:
        os.environ["RAY_AUTH_MODE"] = "disabled"
        options: dict[str, Any] = {
            "address": "local",
            "num_cpus": 2,
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        if temp_dir is not None:
            temp_dir.mkdir(parents=True, exist_ok=True)
            options["_temp_dir"] = str(temp_dir.resolve())
        ray.init(**options)
    else:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    return True


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


def _failure(command: dict[str, Any], error: str) -> Reading:
    return Reading(
        instrument=command["instrument"],
        action=command["action"],
        key=command.get("key", ""),
        ok=False,
        error=error,
    )


class LocalLab:
    """The virtual lab in this process: one experiment after another, no Ray.

    Attributes:
        lab: The lab description.
        seed: The run seed.
        world: The shared well contents.
    """

    def __init__(self, lab: LabDescription, seed: int, *, epoch: float | None = None) -> None:
        """Create the lab; instruments are built by :meth:`start` (or the first :meth:`run`).

        Args:
            lab: The lab description.
            seed: The run seed.
            epoch: Wall-clock time the run began (reading times count from it); default: now.
        """
        self.lab = lab
        self.seed = seed
        self.world: VirtualWorld = VirtualWorld()
        self._epoch = time.time() if epoch is None else epoch
        self._hosts: dict[str, InstrumentHost] = {}

    def start(self) -> None:
        """Build every instrument."""
        if not self._hosts:
            for spec in self.lab.instruments:
                self._hosts[spec.name] = InstrumentHost(
                    self.lab, spec.name, self.world, self.seed, self._epoch
                )

    def host(self, name: str) -> InstrumentHost:
        """The instrument called ``name``."""
        self.start()
        return self._hosts[name]

    def run(
        self, protocols: list[Protocol], on_reading: Callable[[Reading], None]
    ) -> dict[str, list[Reading]]:
        """Run protocols in order; see :meth:`athanor.ports.InstrumentsPort.run`."""
        self.start()
        _check_protocols(protocols, list(self._hosts))
        results: dict[str, list[Reading]] = {}
        for protocol in protocols:
            previous: dict[str, Any] | None = None
            readings = results.setdefault(protocol.experiment_id, [])
            for command in protocol.commands:
                answer = self._hosts[command.instrument].execute(command.model_dump(mode="json"), previous)
                reading = Reading.model_validate(answer)
                readings.append(reading)
                on_reading(reading)
                previous = answer
        return results

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
        self._hosts.clear()

    def __enter__(self) -> LocalLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RayLab:
    """The virtual lab with one Ray actor per instrument, pipelined.

    The caller owns ``ray.init`` (see :func:`ensure_ray`); :meth:`close` kills this lab's actors
    and leaves Ray running.

    Attributes:
        lab: The lab description.
        seed: The run seed.
        namespace: Ray namespace of this lab's named actors (one per run, so runs never clash).
    """

    def __init__(
        self,
        lab: LabDescription,
        seed: int,
        ray_address: str | None = None,
        *,
        namespace: str | None = None,
        epoch: float | None = None,
    ) -> None:
        """Describe the lab; nothing starts until :meth:`start`.

        Args:
            lab: The lab description.
            seed: The run seed.
            ray_address: Cluster to connect to if Ray is not initialised yet; None starts a local Ray.
            namespace: Ray namespace for the actors; default a fresh ``athanor-<hex>``.
            epoch: Wall-clock time the run began (reading times count from it); default: at start.
        """
        self.lab = lab
        self.seed = seed
        self.namespace = namespace or f"athanor-{uuid.uuid4().hex[:12]}"
        self._address = ray_address
        self._epoch = epoch
        self._world: Any = None
        self._actors: dict[str, Any] = {}

    def start(self) -> None:
        """Create the world actor and one named actor per instrument, and wait until they answer.

        Raises:
            athanor.errors.InstrumentError: An instrument could not be built (its message says why).
        """
        import ray

        if self._actors:
            return
        ensure_ray(self._address, None)
        if self._epoch is None:
            self._epoch = time.time()
        self._world = VirtualWorldActor.options(name=_WORLD_ACTOR, namespace=self.namespace).remote()
        lab = self.lab.model_dump(mode="json")
        for spec in self.lab.instruments:
            self._actors[spec.name] = InstrumentActor.options(
                name=spec.name, namespace=self.namespace
            ).remote(lab, spec.name, self._world, self.seed, self._epoch)
        try:
            ray.get([a.ping.remote() for a in self._actors.values()], timeout=_START_TIMEOUT_S)
        except Exception as error:
            self.close()
            raise InstrumentError(f"the virtual lab's instruments did not start: {error}") from None

    def actor(self, name: str) -> Any:
        """The Ray actor handle of instrument ``name`` (after :meth:`start`)."""
        return self._actors[name]

    @property
    def world(self) -> World:
        """The shared well contents (after :meth:`start`)."""
        return RemoteWorld(self._world)

    def run(
        self, protocols: list[Protocol], on_reading: Callable[[Reading], None]
    ) -> dict[str, list[Reading]]:
        """Run protocols with the instruments kept busy; see :meth:`athanor.ports.InstrumentsPort.run`.

        Every command is submitted at once. Each depends on the previous reading of its experiment,
        and each actor runs its commands in submission order, so experiments go through the
        instruments like an assembly line. Readings reach ``on_reading`` as they arrive.
        """
        import ray

        self.start()
        _check_protocols(protocols, list(self._actors))
        where: dict[Any, tuple[str, int, dict[str, Any]]] = {}
        results: dict[str, list[Reading | None]] = {}
        pending = []
        for protocol in protocols:
            previous = None
            results[protocol.experiment_id] = [None] * len(protocol.commands)
            for index, command in enumerate(protocol.commands):
                payload = command.model_dump(mode="json")
                ref = self._actors[command.instrument].execute.remote(payload, previous)
                where[ref] = (protocol.experiment_id, index, payload)
                pending.append(ref)
                previous = ref
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                experiment_id, index, payload = where[ref]
                try:
                    reading = Reading.model_validate(ray.get(ref))
                except ray.exceptions.RayError as error:
                    earlier = results[experiment_id][:index]
                    failed_before = any(r is not None and not r.ok for r in earlier)
                    reading = _failure(
                        payload, SKIPPED if failed_before else f"instrument actor failed: {error}"
                    )
                results[experiment_id][index] = reading
                on_reading(reading)
        return {eid: [r for r in readings if r is not None] for eid, readings in results.items()}

    def safe_state(self) -> None:
        """Put every instrument in its safe state (all are tried).

        Raises:
            athanor.errors.InstrumentError: Some instrument did not reach it.
        """
        import ray

        problems = []
        refs = {name: actor.safe_state.remote() for name, actor in self._actors.items()}
        for name, ref in refs.items():
            try:
                reading = Reading.model_validate(ray.get(ref))
            except ray.exceptions.RayError as error:
                problems.append(f"{name}: {error}")
                continue
            if not reading.ok:
                problems.append(f"{name}: {reading.error}")
        if problems:
            raise InstrumentError("safe state not reached: " + "; ".join(problems))

    def close(self) -> None:
        """Kill this lab's actors (Ray itself keeps running)."""
        import ray

        handles = [*self._actors.values(), *([self._world] if self._world is not None else [])]
        self._actors.clear()
        self._world = None
        if not ray.is_initialized():
            return
        for handle in handles:
            try:
                ray.kill(handle, no_restart=True)
            except Exception:  # already gone
                continue

    def __enter__(self) -> RayLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
