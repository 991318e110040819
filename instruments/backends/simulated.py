"""Simulated back ends: the virtual lab's liquid handler, conductivity meter and hot plate.

They take realistic time (``duration_s * time_scale`` per action), write to and read from the shared
:class:`~instruments.virtual_world.World`, add seeded noise and fail on purpose when asked to.

A simulated lab is a function of the seed and the action. Each keyed command is announced with
:meth:`_SimulatedBackend.begin_action` before it runs, and every random draw it makes (its noise, a
fault, a stall: whether and how long it hangs) comes from a stream of its own, derived with
SHA-256 from the run seed, the instrument's name and the command's idempotency key (its experiment
and step; see :func:`keyed_seed`). So a command
gives the same reading whenever and however often it runs: in the first process or after a crash
and a resume, before or after other commands. Nominal durations are fixed. Commands without a key
(tests, ``safe_state``) draw from per-instrument streams in call order, as before.

Options (``InstrumentSpec.options``), all optional:

- ``fail_rate``: probability in ``[0, 1]`` that an eligible action fails (seeded, reproducible).
- ``fail_actions``: actions eligible for faults; default every action except ``safe_state``.
- ``fail_wells``: restrict faults to these wells (e.g. a clogged channel or a cracked well).
- ``noise_rel``: liquid handler: relative error of each dispensed volume (default 0);
  meter: relative measurement noise, overriding the emulator's own estimate.
- ``durations``: nominal seconds per action, overriding ``duration_s`` for the actions named.
- ``stall_rate``: probability in ``[0, 1]`` that an eligible action hangs (seeded, reproducible): it
  waits ``stall_s`` seconds (default 3600) or until :meth:`safe_state` aborts it, then fails.
- ``stall_actions``: actions eligible for stalls; default every action except ``safe_state``.
- ``stall_s``: how long a stalled action hangs, s.
- ``emulator`` (meter only): ``auto`` (default; see :func:`instruments.emulator.emulator_for`),
  ``p3ht_cnt`` or ``synthetic``.
- ``absorbance`` (spectrometer only): component name to its absorbance when pure, for components
  that should not get one drawn from the seed (see :class:`instruments.optics.TransmittanceEmulator`).
- ``ambient_c`` (hot plate only): temperature of the plate at start and with the heater off, °C
  (default 25; the hot-plate front end reads it too).
- ``time_constant_s`` (hot plate only): seconds for the plate to close 63 % of the gap to its set
  point, before ``time_scale`` (default 120).
- ``noise_c`` (hot plate only): standard deviation of a temperature reading, °C (default 0.1);
  ``noise_rel`` adds relative noise on top.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from athanor.errors import InstrumentError
from athanor.lab import InstrumentSpec, LabDescription
from instruments.emulator import Emulator, P3HTCNTEmulator, SyntheticEmulator, emulator_for
from instruments.optics import TransmittanceEmulator
from instruments.virtual_world import World

__all__ = [
    "SimulatedConductivityMeterBackend",
    "SimulatedHotplateBackend",
    "SimulatedLiquidHandlerBackend",
    "SimulatedSpectrometerBackend",
    "check_simulated_options",
    "keyed_seed",
    "make_simulated_backend",
    "pick_emulator",
]

_COMMON_OPTIONS = {
    "fail_rate",
    "fail_actions",
    "fail_wells",
    "noise_rel",
    "durations",
    "stall_rate",
    "stall_actions",
    "stall_s",
}
_EMULATORS = ("auto", "p3ht_cnt", "synthetic")
_ACTIONS = {
    "liquid_handler": ("dispense", "mix", "safe_state"),
    "conductivity_meter": ("measure", "safe_state"),
    "hotplate": ("set_temperature", "read_temperature", "safe_state"),
    "spectrometer": ("measure", "safe_state"),
}


def _number(name: str, value: Any, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        bounds = f"[{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
        raise InstrumentError(f"options.{name} must be a number {bounds}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class _Settings:
    """A simulated instrument's options, checked (see the module docstring for each)."""

    time_scale: float
    fail_rate: float
    fail_actions: set[str]
    fail_wells: set[str] | None
    noise_rel: float | None
    stall_rate: float
    stall_s: float
    stall_actions: set[str]
    durations: dict[str, float]


def _settings(
    name: str,
    kind: str,
    extra_options: frozenset[str],
    duration_s: float,
    time_scale: float,
    options: Mapping[str, Any] | None,
) -> _Settings:
    """The options every simulated back end shares, checked; raises InstrumentError naming the option."""
    options = dict(options or {})
    unknown = sorted(set(options) - _COMMON_OPTIONS - extra_options)
    if unknown:
        known = ", ".join(sorted(_COMMON_OPTIONS | extra_options))
        raise InstrumentError(f"{name}: unknown option(s) {', '.join(unknown)}; known options: {known}")
    actions = _ACTIONS[kind]
    fail_actions = set(options.get("fail_actions", [a for a in actions if a != "safe_state"]))
    bad = sorted(fail_actions - set(actions))
    if bad:
        raise InstrumentError(
            f"{name}: options.fail_actions names {', '.join(bad)}; a {kind} has {', '.join(actions)}"
        )
    wells, noise = options.get("fail_wells"), options.get("noise_rel")
    durations = dict(options.get("durations") or {})
    bad = sorted(set(durations) - set(actions))
    if bad:
        raise InstrumentError(f"{name}: options.durations names unknown action(s) {', '.join(bad)}")
    stall_actions = set(options.get("stall_actions", [a for a in actions if a != "safe_state"]))
    bad = sorted(stall_actions - set(actions))
    if bad:
        raise InstrumentError(
            f"{name}: options.stall_actions names {', '.join(bad)}; a {kind} has {', '.join(actions)}"
        )
    base = _number("duration_s", duration_s, 0.0)
    return _Settings(
        time_scale=_number("time_scale", time_scale, 0.0),
        fail_rate=_number("fail_rate", options.get("fail_rate", 0.0), 0.0, 1.0),
        fail_actions=fail_actions,
        fail_wells=None if wells is None else set(wells),
        noise_rel=None if noise is None else _number("noise_rel", noise, 0.0),
        stall_rate=_number("stall_rate", options.get("stall_rate", 0.0), 0.0, 1.0),
        stall_s=_number("stall_s", options.get("stall_s", 3600.0), 0.0),
        stall_actions=stall_actions,
        durations={a: _number(f"durations.{a}", durations.get(a, base), 0.0) for a in actions},
    )


#: The purposes a simulated action draws random numbers for; each has a stream of its own.
_PURPOSES = ("fault", "noise", "stall")


def keyed_seed(seed: int, instrument: str, key: str, purpose: str) -> int:
    """The seed of the stream one keyed command draws ``purpose`` numbers from.

    The run id part of the key is left out: two runs with the same seed make the same draws for
    the same step of the same experiment, as they make the same proposals.

    Args:
        seed: The run seed.
        instrument: The instrument's name.
        key: The command's idempotency key, ``run/experiment/step``.
        purpose: ``fault``, ``noise`` or ``stall``.

    Returns:
        A 128-bit integer from SHA-256: the same in every process and on every machine.
    """
    action = "/".join(key.rsplit("/", 2)[-2:])
    text = f"athanor-simulated:{seed}:{instrument}:{action}:{purpose}"
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:16], "big")


class _SimulatedBackend:
    """Durations, option checks and fault injection shared by the simulated back ends."""

    kind: str = ""
    extra_options: frozenset[str] = frozenset()

    def __init__(
        self,
        name: str,
        duration_s: float,
        time_scale: float,
        options: Mapping[str, Any] | None,
        seed: int,
    ) -> None:
        settings = _settings(name, self.kind, self.extra_options, duration_s, time_scale, options)
        self.name = name
        self.time_scale = settings.time_scale
        self.fail_rate = settings.fail_rate
        self.fail_actions = settings.fail_actions
        self.fail_wells = settings.fail_wells
        self.noise_rel = settings.noise_rel
        self.stall_rate = settings.stall_rate
        self.stall_s = settings.stall_s
        self.stall_actions = settings.stall_actions
        self._abort = threading.Event()
        self.durations = settings.durations
        self._seed = seed
        stream = zlib.crc32(name.encode("utf-8"))
        # unkeyed commands draw in call order, one stream per purpose
        self._unkeyed = {p: np.random.default_rng([seed, stream, n]) for n, p in enumerate(_PURPOSES, 1)}
        self._key = ""
        self.calls: list[tuple[Any, ...]] = []

    def begin_action(self, key: str) -> None:
        """Draw the next command's random numbers from the streams of ``key`` (its idempotency key).

        The front end calls it before each command; the host runs one command at a time. An empty
        key draws from the instrument's unkeyed streams.
        """
        self._key = key

    def _streams(self, keyed: bool = True) -> dict[str, np.random.Generator]:
        """The generators of the current command: fresh ones of its key, or the unkeyed ones."""
        key = self._key if keyed else ""
        if not key:
            return self._unkeyed
        return {p: np.random.default_rng(keyed_seed(self._seed, self.name, key, p)) for p in _PURPOSES}

    def _act(
        self, action: str, well: str | None = None, streams: dict[str, np.random.Generator] | None = None
    ) -> None:
        """Spend the action's time, then fail if fault injection says so (drawing from ``streams``)."""
        self.calls.append((action, well))
        draws = streams if streams is not None else self._streams()
        if action != "safe_state":
            self._abort.clear()
        stalls = action in self.stall_actions and self.stall_rate > 0
        if stalls and draws["stall"].random() < self.stall_rate:
            aborted = self._abort.wait(self.stall_s)
            how = "aborted by safe_state" if aborted else f"gave up after {self.stall_s:g} s"
            raise InstrumentError(
                f"{self.name}: injected stall in {action} ({how}; options.stall_rate={self.stall_rate:g})"
            )
        seconds = self.durations[action] * self.time_scale
        if seconds > 0:
            time.sleep(seconds)
        eligible = action in self.fail_actions and (self.fail_wells is None or well in self.fail_wells)
        if eligible and self.fail_rate > 0 and draws["fault"].random() < self.fail_rate:
            where = f" on well {well}" if well else ""
            raise InstrumentError(
                f"{self.name}: injected fault in {action}{where} (options.fail_rate={self.fail_rate:g})"
            )

    def safe_state(self) -> None:
        """Abort a stalled action, stop and park (takes the ``safe_state`` duration).

        Safe to call from another thread while an action runs; never fails unless asked to.
        """
        self._abort.set()
        # it may run beside a keyed command (an abort): it never takes that command's streams
        self._act("safe_state", streams=self._streams(keyed=False))

    def expected_duration(self, action: str) -> float:
        """Seconds ``action`` normally takes (its duration times ``time_scale``); 0 if unknown."""
        return self.durations.get(action, 0.0) * self.time_scale


class SimulatedLiquidHandlerBackend(_SimulatedBackend):
    """A pipetting robot that writes what it dispenses into the virtual world.

    With ``noise_rel`` > 0 the volume that lands in the well is off by that relative error, so the
    composition made differs slightly from the one asked for, as with a real pipette.
    """

    kind = "liquid_handler"

    def __init__(
        self,
        name: str,
        world: World,
        stocks: Mapping[str, str],
        duration_s: float = 8.0,
        time_scale: float = 1.0,
        options: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        """Create the back end.

        Args:
            name: Instrument name.
            world: Shared well contents.
            stocks: Stock name to the component it supplies.
            duration_s: Nominal seconds per action before ``time_scale``.
            time_scale: Multiplier on every duration (0 for no waiting).
            options: See the module docstring.
            seed: Seed of the fault and volume-noise streams.
        """
        super().__init__(name, duration_s, time_scale, options, seed)
        self.world = world
        self.stocks = dict(stocks)

    def dispense(self, stock: str, well: str, volume_ul: float) -> None:
        """Move ``volume_ul`` µL (nominal) of ``stock`` into ``well``."""
        if stock not in self.stocks:
            raise InstrumentError(f"{self.name}: no stock {stock!r} on the deck")
        streams = self._streams()
        self._act("dispense", well, streams)
        actual = volume_ul
        if self.noise_rel:
            actual = volume_ul * max(0.0, 1.0 + self.noise_rel * float(streams["noise"].standard_normal()))
        self.world.add(well, self.stocks[stock], actual, self._key)

    def mix(self, well: str) -> None:
        """Mix ``well`` by pipetting up and down."""
        self._act("mix", well)
        self.world.mix(well, self._key)


class _SimulatedMeasuringBackend(_SimulatedBackend):
    """An instrument that reads a well's composition from the world and asks its emulator."""

    def __init__(
        self,
        name: str,
        world: World,
        emulator: Emulator,
        duration_s: float = 60.0,
        time_scale: float = 1.0,
        options: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        """Create the back end.

        Args:
            name: Instrument name.
            world: Shared well contents.
            emulator: Ground truth of the measured quantity.
            duration_s: Nominal seconds per measurement before ``time_scale``.
            time_scale: Multiplier on every duration.
            options: See the module docstring.
            seed: Seed of the fault and measurement-noise streams.
        """
        super().__init__(name, duration_s, time_scale, options, seed)
        self.world = world
        self.emulator = emulator

    def measure(self, well: str) -> float:
        """The quantity measured on the sample in ``well``, with measurement noise."""
        streams = self._streams()
        self._act("measure", well, streams)
        contents = self.world.contents(well)
        if sum(contents.values()) <= 0:
            raise InstrumentError(f"{self.name}: well {well} is empty; dispense a sample before measuring")
        return self.emulator.measure(contents, streams["noise"], noise_rel=self.noise_rel)


class SimulatedConductivityMeterBackend(_SimulatedMeasuringBackend):
    """A conductivity meter (S/cm); its emulator is fitted to data or synthetic."""

    kind = "conductivity_meter"
    extra_options = frozenset({"emulator"})


class SimulatedSpectrometerBackend(_SimulatedMeasuringBackend):
    """A UV-Vis spectrometer reporting its film's transmittance (%, see :mod:`instruments.optics`)."""

    kind = "spectrometer"
    extra_options = frozenset({"absorbance"})


class SimulatedHotplateBackend(_SimulatedBackend):
    """A hot plate whose temperature approaches its target as a first-order system.

    With the heater on the target is the set point, with it off the ambient temperature; the plate
    temperature is ``target + (T0 - target) * exp(-t / time_constant_s)`` in simulated seconds since
    the target last changed (real seconds divided by ``time_scale``; with ``time_scale == 0`` the
    plate reaches its target at once). Readings carry seeded Gaussian noise.

    Attributes:
        ambient_c: Temperature with the heater off, °C.
        time_constant_s: Time constant of the approach, simulated seconds.
        noise_c: Standard deviation of a reading, °C.
        setpoint_c: The set point, °C; None while the heater is off.
    """

    kind = "hotplate"
    extra_options = frozenset({"ambient_c", "time_constant_s", "noise_c"})

    def __init__(
        self,
        name: str,
        duration_s: float = 1.0,
        time_scale: float = 1.0,
        options: Mapping[str, Any] | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create the back end, at ambient temperature with the heater off.

        Args:
            name: Instrument name.
            duration_s: Nominal seconds per action (the command exchange, not the heating).
            time_scale: Multiplier on durations; simulated time runs ``1 / time_scale`` times faster.
            options: See the module docstring.
            seed: Seed of the fault and reading-noise streams.
            clock: Real seconds, monotonic (tests pass a fake one).
        """
        super().__init__(name, duration_s, time_scale, options, seed)
        self.ambient_c, self.time_constant_s, self.noise_c = _hotplate_settings(options)
        self.setpoint_c: float | None = None
        self._clock = clock
        self._origin = clock()
        self._since = 0.0
        self._start_c = self.ambient_c

    def _sim_seconds(self) -> float:
        elapsed = self._clock() - self._origin
        return elapsed / self.time_scale if self.time_scale > 0 else 0.0

    def true_temperature(self) -> float:
        """The plate temperature without reading noise, °C."""
        target = self.ambient_c if self.setpoint_c is None else self.setpoint_c
        if self.time_constant_s == 0 or self.time_scale == 0:
            return target
        elapsed = max(0.0, self._sim_seconds() - self._since)
        return target + (self._start_c - target) * math.exp(-elapsed / self.time_constant_s)

    def _retarget(self, setpoint_c: float | None) -> None:
        self._start_c = self.true_temperature()
        self._since = self._sim_seconds()
        self.setpoint_c = setpoint_c

    def set_temperature(self, celsius: float) -> None:
        """Switch the heater on and head for ``celsius`` °C."""
        self._act("set_temperature")
        self._retarget(float(celsius))

    def read_temperature(self) -> float:
        """The plate temperature with reading noise, °C."""
        streams = self._streams()
        self._act("read_temperature", streams=streams)
        noise = streams["noise"]
        value = self.true_temperature() + self.noise_c * float(noise.standard_normal())
        if self.noise_rel:
            value *= 1.0 + self.noise_rel * float(noise.standard_normal())
        return value

    def safe_state(self) -> None:
        """Abort a stalled action and switch the heater off; the plate cools towards ambient."""
        super().safe_state()
        self._retarget(None)


def _hotplate_settings(options: Mapping[str, Any] | None) -> tuple[float, float, float]:
    """A hot plate's own options, checked: ambient °C, time constant s, reading noise °C."""
    options = dict(options or {})
    return (
        _number("ambient_c", options.get("ambient_c", 25.0), -273.15),
        _number("time_constant_s", options.get("time_constant_s", 120.0), 0.0),
        _number("noise_c", options.get("noise_c", 0.1), 0.0),
    )


def pick_emulator(choice: str, components: Sequence[str], seed: int) -> Emulator:
    """The emulator an ``emulator`` option names.

    Args:
        choice: ``auto``, ``p3ht_cnt`` or ``synthetic``.
        components: Components the lab's stocks supply.
        seed: Seed of a synthetic landscape.
    """
    if choice == "auto":
        return emulator_for(components, seed)
    if choice == "p3ht_cnt":
        emulator = emulator_for(components, seed)
        if not isinstance(emulator, P3HTCNTEmulator):
            raise InstrumentError(
                f"options.emulator=p3ht_cnt needs components P3HT and some of D1, D2, D6, D8;"
                f" the lab's stocks supply {', '.join(components)}. Use emulator: auto"
            )
        return emulator
    if choice == "synthetic":
        return SyntheticEmulator(list(components), seed)
    raise InstrumentError(_emulator_problem(choice) or f"options.emulator is {choice!r}")


def _emulator_problem(choice: str) -> str | None:
    """What is wrong with an ``emulator`` option's value, or None when it names an emulator."""
    if choice in _EMULATORS:
        return None
    return f"options.emulator is {choice!r}; use {', '.join(_EMULATORS[:-1])} or {_EMULATORS[-1]}"


def _absorbance_problem(spec: InstrumentSpec) -> str | None:
    """What is wrong with a spectrometer's ``absorbance`` option, or None."""
    absorbance = spec.options.get("absorbance")
    if absorbance is None or isinstance(absorbance, dict):
        return None
    return f"{spec.name}: options.absorbance must map component names to absorbances, got {absorbance!r}"


def make_simulated_backend(spec: InstrumentSpec, lab: LabDescription, world: World, seed: int) -> Any:
    """The simulated back end for ``spec``.

    Args:
        spec: The instrument; its ``duration_s`` and ``options`` configure the back end.
        lab: The lab (stocks, ``time_scale``).
        world: Shared well contents.
        seed: The run seed.
    """
    if spec.kind == "liquid_handler":
        stocks = {s.name: s.component for s in lab.stocks}
        return SimulatedLiquidHandlerBackend(
            spec.name, world, stocks, spec.duration_s, lab.time_scale, spec.options, seed
        )
    if spec.kind == "conductivity_meter":
        components = list(dict.fromkeys(s.component for s in lab.stocks))
        emulator = pick_emulator(str(spec.options.get("emulator", "auto")), components, seed)
        return SimulatedConductivityMeterBackend(
            spec.name, world, emulator, spec.duration_s, lab.time_scale, spec.options, seed
        )
    if spec.kind == "hotplate":
        return SimulatedHotplateBackend(spec.name, spec.duration_s, lab.time_scale, spec.options, seed)
    if spec.kind == "spectrometer":
        components = list(dict.fromkeys(s.component for s in lab.stocks))
        problem = _absorbance_problem(spec)
        if problem is not None:
            raise InstrumentError(problem)
        emulator = TransmittanceEmulator(components, seed, spec.options.get("absorbance"))
        return SimulatedSpectrometerBackend(
            spec.name, world, emulator, spec.duration_s, lab.time_scale, spec.options, seed
        )
    raise InstrumentError(f"no simulated back end for instrument kind {spec.kind!r}")


_CLASSES: dict[str, type[_SimulatedBackend]] = {
    "liquid_handler": SimulatedLiquidHandlerBackend,
    "conductivity_meter": SimulatedConductivityMeterBackend,
    "hotplate": SimulatedHotplateBackend,
    "spectrometer": SimulatedSpectrometerBackend,
}


def check_simulated_options(spec: InstrumentSpec, time_scale: float) -> None:
    """Refuse a simulated instrument's options as building it would, without building it.

    Needs no world, no stocks and no emulator, so a lab is checked before anything starts; what
    depends on the stocks (``emulator: p3ht_cnt`` for other components) is checked when it is built.

    Args:
        spec: A simulated instrument.
        time_scale: The lab's multiplier on simulated durations.

    Raises:
        athanor.errors.InstrumentError: An option is unknown, out of range or names an unknown action,
            in the words building the back end would use.
    """
    backend = _CLASSES.get(spec.kind)
    if backend is None:
        raise InstrumentError(f"no simulated back end for instrument kind {spec.kind!r}")
    _settings(spec.name, spec.kind, backend.extra_options, spec.duration_s, time_scale, spec.options)
    problem = None
    if spec.kind == "hotplate":
        _hotplate_settings(spec.options)
    elif spec.kind == "conductivity_meter":
        problem = _emulator_problem(str(spec.options.get("emulator", "auto")))
    elif spec.kind == "spectrometer":
        problem = _absorbance_problem(spec)
    if problem is not None:
        raise InstrumentError(problem)
