"""Instrument front ends: validation and bookkeeping in front of a swappable back end.

A front end owns the closed command registry of its instrument kind, checks every command against
the safety envelope and its own bookkeeping, and only then calls the back end (simulated, serial,
opentrons, ...). :meth:`FrontEnd.execute` is the one dispatch point:

- a command the front end refuses raises :class:`~athanor.errors.InstrumentError` or
  :class:`~athanor.errors.SafetyError` and the back end is never called;
- a fault inside the back end becomes a ``Reading(ok=False, error=...)``.

A back end whose answers are drawn at random (the simulated ones) may define
``begin_action(key)`` (:class:`KeyedBackend`): it is told each command's idempotency key just before
the command runs, so that it can draw that command's numbers from the key's own stream.

The liquid handler's volume bookkeeping is a transaction: volumes are reserved before the back end is
called, committed when it succeeds and rolled back when it fails.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from athanor.errors import AthanorError, InstrumentError, SafetyError
from athanor.lab import ACTIONS, InstrumentSpec, LabDescription, Stock
from athanor.models import Command, Reading

__all__ = [
    "ACTIONS",
    "DEFAULT_AMBIENT_C",
    "ConductivityMeter",
    "ConductivityMeterBackend",
    "FrontEnd",
    "Hotplate",
    "HotplateBackend",
    "KeyedBackend",
    "LiquidHandler",
    "LiquidHandlerBackend",
    "Spectrometer",
    "SpectrometerBackend",
    "VolumeLedger",
    "make_frontend",
]


#: Slack on volume comparisons, µL (sums of 0.1 µL steps are not exact in binary).
_VOLUME_TOL = 1e-6


@runtime_checkable
class KeyedBackend(Protocol):
    """A back end that wants to know the idempotency key of each command before it runs."""

    def begin_action(self, key: str) -> None:
        """The next command runs under ``key`` (``""`` for an unkeyed command)."""
        ...


class LiquidHandlerBackend(Protocol):
    """What a liquid-handler back end must do; raising means the action failed."""

    def dispense(self, stock: str, well: str, volume_ul: float) -> None:
        """Move ``volume_ul`` µL from ``stock`` into ``well``."""
        ...

    def mix(self, well: str) -> None:
        """Mix the contents of ``well``."""
        ...

    def safe_state(self) -> None:
        """Stop, drop tips and park."""
        ...


class ConductivityMeterBackend(Protocol):
    """What a conductivity-meter back end must do; raising means the action failed."""

    def measure(self, well: str) -> float:
        """Conductivity of the sample in ``well``, S/cm."""
        ...

    def safe_state(self) -> None:
        """Retract the probe and idle."""
        ...


class SpectrometerBackend(Protocol):
    """What a spectrometer back end must do; raising means the action failed."""

    def measure(self, well: str) -> float:
        """Optical transmittance of the film made from the sample in ``well``, %."""
        ...

    def safe_state(self) -> None:
        """Close the shutter and idle."""
        ...


class HotplateBackend(Protocol):
    """What a hot-plate back end must do; raising means the action failed."""

    def set_temperature(self, celsius: float) -> None:
        """Heat towards ``celsius`` °C (switching the heater on)."""
        ...

    def read_temperature(self) -> float:
        """The plate temperature, °C."""
        ...

    def safe_state(self) -> None:
        """Switch the heater off."""
        ...


def _describe_wells(wells: Sequence[str]) -> str:
    if len(wells) <= 8:
        return ", ".join(wells)
    return f"{', '.join(wells[:3])}, ..., {wells[-1]} ({len(wells)} wells)"


def _error_text(error: Exception) -> str:
    return str(error) if isinstance(error, AthanorError) else f"{type(error).__name__}: {error}"


class FrontEnd:
    """Common dispatch, parameter checks and reading construction of every front end.

    Attributes:
        spec: The instrument as the lab describes it.
        backend: The object that really acts.
    """

    kind: ClassVar[str]
    units: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        spec: InstrumentSpec,
        backend: Any,
        wells: Sequence[str],
        clock: Callable[[], float] | None = None,
    ) -> None:
        """Wrap ``backend``.

        Args:
            spec: The instrument; its kind must match this front end.
            backend: The back end (see :class:`LiquidHandlerBackend`, :class:`ConductivityMeterBackend`).
            wells: Wells of the lab's plate.
            clock: Run clock in seconds for reading timestamps; defaults to seconds since creation.
        """
        if spec.kind != self.kind:
            raise InstrumentError(f"instrument {spec.name} is a {spec.kind}, not a {self.kind}")
        self.spec = spec
        self.backend = backend
        self._wells = list(wells)
        self._well_set = set(wells)
        if clock is None:
            origin = time.monotonic()
            clock = lambda: time.monotonic() - origin  # noqa: E731
        self._clock = clock

    @property
    def name(self) -> str:
        """The instrument's name."""
        return self.spec.name

    @property
    def allowed_actions(self) -> list[str]:
        """Actions both in this kind's registry and in the envelope's ``allowed_actions``."""
        registry = ACTIONS[self.kind]
        return [a for a in self.spec.envelope.allowed_actions if a in registry]

    def execute(self, command: Command) -> Reading:
        """Check ``command``, run it on the back end and report what happened.

        Raises:
            athanor.errors.InstrumentError: Wrong instrument, an action outside the registry or the
                envelope, bad parameters, an unknown well or stock. The back end was not called.
            athanor.errors.SafetyError: The command would leave the safety envelope (volume limits,
                well capacity, an empty stock). The back end was not called.

        Returns:
            The reading; ``ok=False`` with the fault when the back end failed.
        """
        if command.instrument != self.name:
            raise InstrumentError(
                f"command for {command.instrument!r} sent to {self.name!r}; route it to its own instrument"
            )
        allowed = self.allowed_actions
        if command.action not in allowed:
            where = "its safety envelope" if command.action in ACTIONS[self.kind] else f"a {self.kind}"
            raise InstrumentError(
                f"{self.name}: action {command.action!r} is not allowed by {where}; allowed actions:"
                f" {', '.join(allowed) or 'none'}"
            )
        expected = ACTIONS[self.kind][command.action]
        if set(command.params) != set(expected):
            raise InstrumentError(
                f"{self.name}.{command.action} takes parameters ({', '.join(expected)}); got"
                f" ({', '.join(sorted(command.params))}). Give exactly those"
            )
        run = self._prepare(command.action, dict(command.params))
        if isinstance(self.backend, KeyedBackend):
            self.backend.begin_action(command.key)
        started = self._clock()
        try:
            values = run()
        except Exception as error:  # a back-end fault is data, not a crash
            return self._reading(command, {}, started, ok=False, error=_error_text(error))
        return self._reading(command, values, started)

    def safe_state(self) -> Reading:
        """Put the instrument in its safe state; always allowed, whatever the envelope says."""
        command = Command(instrument=self.name, action="safe_state", key="")
        started = self._clock()
        try:
            self.backend.safe_state()
        except Exception as error:
            return self._reading(command, {}, started, ok=False, error=_error_text(error))
        return self._reading(command, {}, started)

    def status(self) -> dict[str, Any]:
        """Bookkeeping for inspection; subclasses add their own."""
        return {"name": self.name, "kind": self.kind}

    def restore(self, command: Command, done: bool, attempts: int) -> None:
        """Count a command an earlier process ran (from the ledger) in the bookkeeping; nothing acts.

        Args:
            command: The command as recorded.
            done: Whether it succeeded (else it failed).
            attempts: How many times the back end was called for it.
        """

    def _prepare(self, action: str, params: dict[str, Any]) -> Callable[[], dict[str, float]]:
        """Validate ``params`` and return the call that performs ``action``; raise to refuse."""
        raise NotImplementedError

    def _check_well(self, well: Any) -> str:
        if not isinstance(well, str) or well not in self._well_set:
            raise InstrumentError(
                f"{self.name}: unknown well {well!r}; this lab's wells are {_describe_wells(self._wells)}"
            )
        return well

    def _reading(
        self,
        command: Command,
        values: Mapping[str, float],
        started: float,
        ok: bool = True,
        error: str | None = None,
    ) -> Reading:
        return Reading(
            instrument=self.name,
            action=command.action,
            key=command.key,
            values=dict(values),
            units={k: self.units[k] for k in values if k in self.units},
            started=started,
            finished=self._clock(),
            ok=ok,
            error=error,
        )


@dataclass
class _Reservation:
    stock: str
    well: str
    volume_ul: float


class VolumeLedger:
    """Stock and well volumes with reserve / commit / roll back.

    Available stock and well fill both count reservations, so a check made while another dispense is
    in flight cannot overdraw a stock or overfill a well.
    """

    def __init__(self, stocks: Sequence[Stock]) -> None:
        """Start with each stock at its ``volume_ul`` and every well empty."""
        self._stock: dict[str, float] = {s.name: float(s.volume_ul) for s in stocks}
        self._well: dict[str, float] = {}
        self._pending: list[_Reservation] = []

    def stock_available(self, stock: str) -> float:
        """µL left in ``stock`` after committed and reserved draws."""
        reserved = sum(r.volume_ul for r in self._pending if r.stock == stock)
        return self._stock[stock] - reserved

    def well_volume(self, well: str) -> float:
        """µL in ``well`` counting reserved additions."""
        reserved = sum(r.volume_ul for r in self._pending if r.well == well)
        return self._well.get(well, 0.0) + reserved

    def reserve(self, stock: str, well: str, volume_ul: float) -> _Reservation:
        """Set ``volume_ul`` aside from ``stock`` for ``well``."""
        reservation = _Reservation(stock, well, volume_ul)
        self._pending.append(reservation)
        return reservation

    def commit(self, reservation: _Reservation) -> None:
        """The move happened: take it from the stock and add it to the well."""
        self._pending.remove(reservation)
        self._stock[reservation.stock] -= reservation.volume_ul
        self._well[reservation.well] = self._well.get(reservation.well, 0.0) + reservation.volume_ul

    def rollback(self, reservation: _Reservation) -> None:
        """The move failed: release the reservation."""
        self._pending.remove(reservation)

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Committed volumes: ``{"stocks": {name: µL}, "wells": {well: µL}}``."""
        return {"stocks": dict(self._stock), "wells": dict(self._well)}


class LiquidHandler(FrontEnd):
    """Front end of a pipetting robot: ``dispense(stock, well, volume_ul)``, ``mix(well)``, ``safe_state()``.

    Attributes:
        ledger: Stock and well volumes, µL.
        tips_used: Tips used so far (one per dispense).
    """

    kind = "liquid_handler"
    units: ClassVar[dict[str, str]] = {"volume_ul": "µL", "well_volume_ul": "µL"}

    def __init__(
        self,
        spec: InstrumentSpec,
        backend: LiquidHandlerBackend,
        wells: Sequence[str],
        stocks: Sequence[Stock],
        clock: Callable[[], float] | None = None,
    ) -> None:
        """Wrap ``backend``; ``stocks`` are the lab's stocks with their starting volumes."""
        super().__init__(spec, backend, wells, clock)
        self._stocks = {s.name: s for s in stocks}
        self.ledger = VolumeLedger(stocks)
        self.tips_used = 0

    def _prepare(self, action: str, params: dict[str, Any]) -> Callable[[], dict[str, float]]:
        if action == "dispense":
            return self._prepare_dispense(params["stock"], params["well"], params["volume_ul"])
        if action == "mix":
            well = self._check_well(params["well"])
            return lambda: self.backend.mix(well) or {}
        return lambda: self.backend.safe_state() or {}

    def _prepare_dispense(self, stock: Any, well: Any, volume: Any) -> Callable[[], dict[str, float]]:
        envelope = self.spec.envelope
        if isinstance(volume, bool) or not isinstance(volume, int | float) or not math.isfinite(volume):
            raise InstrumentError(f"{self.name}.dispense: volume_ul must be a number of µL, got {volume!r}")
        volume = float(volume)
        if volume <= 0:
            raise SafetyError(f"{self.name}.dispense: volume_ul={volume:g} µL; give a positive volume")
        if envelope.min_volume_ul is not None and volume < envelope.min_volume_ul - _VOLUME_TOL:
            raise SafetyError(
                f"{self.name}.dispense: volume_ul={volume:g} µL is below the envelope's min_volume_ul"
                f" ({envelope.min_volume_ul:g} µL); dispense at least that much or leave the stock out"
            )
        if envelope.max_volume_ul is not None and volume > envelope.max_volume_ul + _VOLUME_TOL:
            raise SafetyError(
                f"{self.name}.dispense: volume_ul={volume:g} µL is above the envelope's max_volume_ul"
                f" ({envelope.max_volume_ul:g} µL); split it into dispenses of at most that much"
            )
        well = self._check_well(well)
        if not isinstance(stock, str) or stock not in self._stocks:
            raise InstrumentError(
                f"{self.name}.dispense: unknown stock {stock!r}; the lab's stocks are"
                f" {', '.join(self._stocks) or 'none'}. Add it under stocks in lab.yaml"
            )
        after = self.ledger.well_volume(well) + volume
        if envelope.max_well_volume_ul is not None and after > envelope.max_well_volume_ul + _VOLUME_TOL:
            raise SafetyError(
                f"{self.name}.dispense: well {well} would hold {after:g} µL, above the envelope's"
                f" max_well_volume_ul ({envelope.max_well_volume_ul:g} µL); use a smaller sample"
                " volume or another well"
            )
        available = self.ledger.stock_available(stock)
        if volume > available + _VOLUME_TOL:
            raise SafetyError(
                f"{self.name}.dispense: stock {stock} has {available:g} µL left, not enough for"
                f" {volume:g} µL; refill it and resume with `athanor resume RUN --refill {stock}=<µL>`"
            )
        if envelope.tips is not None and self.tips_used >= envelope.tips:
            raise SafetyError(
                f"{self.name}.dispense: all {envelope.tips} tips are used; load fresh tip racks, raise"
                " envelope.tips in lab.yaml and resume"
            )

        def run() -> dict[str, float]:
            reservation = self.ledger.reserve(stock, well, volume)
            self.tips_used += 1  # counted on the attempt: a failed transfer still used its tip
            try:
                self.backend.dispense(stock, well, volume)
            except BaseException:
                self.ledger.rollback(reservation)
                raise
            self.ledger.commit(reservation)
            return {"volume_ul": volume, "well_volume_ul": self.ledger.well_volume(well)}

        return run

    def restore(self, command: Command, done: bool, attempts: int) -> None:
        """Count an earlier dispense: its tips, and when it succeeded its volume (see :class:`FrontEnd`)."""
        if command.action != "dispense":
            return
        self.tips_used += attempts
        params = command.params
        if done and params.get("stock") in self._stocks:
            volume = float(params["volume_ul"])
            self.ledger.commit(self.ledger.reserve(params["stock"], params["well"], volume))

    def status(self) -> dict[str, Any]:
        """Name, kind, committed stock and well volumes in µL, and tips used."""
        return {**super().status(), **self.ledger.snapshot(), "tips_used": self.tips_used}


class ConductivityMeter(FrontEnd):
    """Front end of a conductivity meter: ``measure(well)`` (``{"conductivity": S/cm}``), ``safe_state()``."""

    kind = "conductivity_meter"
    units: ClassVar[dict[str, str]] = {"conductivity": "S/cm"}

    def _prepare(self, action: str, params: dict[str, Any]) -> Callable[[], dict[str, float]]:
        if action == "measure":
            well = self._check_well(params["well"])
            return lambda: {"conductivity": float(self.backend.measure(well))}
        return lambda: self.backend.safe_state() or {}


class Spectrometer(FrontEnd):
    """Front end of a UV-Vis spectrometer: ``measure(well)`` (``{"transmittance": %}``), ``safe_state()``."""

    kind = "spectrometer"
    units: ClassVar[dict[str, str]] = {"transmittance": "%"}

    def _prepare(self, action: str, params: dict[str, Any]) -> Callable[[], dict[str, float]]:
        if action == "measure":
            well = self._check_well(params["well"])
            return lambda: {"transmittance": float(self.backend.measure(well))}
        return lambda: self.backend.safe_state() or {}


#: Temperature a plate with its heater off is taken to start from, °C (``options.ambient_c`` overrides).
DEFAULT_AMBIENT_C = 25.0
#: The ramp allowance holds at most this many minutes' worth of ``max_ramp_c_per_min``.
_RAMP_WINDOW_MIN = 1.0
#: Slack on temperature comparisons, °C.
_TEMPERATURE_TOL = 1e-9


class Hotplate(FrontEnd):
    """Front end of a hot plate: ``set_temperature(celsius)``, ``read_temperature()``, ``safe_state()``.

    Set points are checked before the back end is called, and a refusal raises
    :class:`~athanor.errors.SafetyError`:

    - a set point above the envelope's ``max_temperature_c`` is refused, naming the limit; a hot
      plate whose envelope has no ``max_temperature_c`` refuses every set point;
    - raising the set point is limited by ``max_ramp_c_per_min`` (°C per minute of the run clock).
      The front end keeps a ramp allowance that refills at that rate up to one minute's worth and
      that every rise spends, so over any T minutes the set point rises by at most
      ``max_ramp_c_per_min * (T + 1)``. A larger rise is refused with the largest rise allowed now:
      the front end never ramps on its own, a protocol must heat in steps. Rises count from the
      current set point, or from ``ambient_c`` while the heater is off. Lowering the set point is
      always allowed (with less heating the plate cools at its own pace).

    An allowance spent on a set point the back end then failed to apply is not given back.

    Attributes:
        ambient_c: Where rises start from while the heater is off, °C.
        setpoint_c: The set point the back end last applied, °C; None while the heater is off.
    """

    kind = "hotplate"
    units: ClassVar[dict[str, str]] = {"temperature": "°C", "setpoint": "°C"}

    def __init__(
        self,
        spec: InstrumentSpec,
        backend: HotplateBackend,
        wells: Sequence[str],
        clock: Callable[[], float] | None = None,
    ) -> None:
        """Wrap ``backend``; ``spec.options["ambient_c"]`` (°C, default 25) sets :attr:`ambient_c`."""
        super().__init__(spec, backend, wells, clock)
        ambient = spec.options.get("ambient_c", DEFAULT_AMBIENT_C)
        if isinstance(ambient, bool) or not isinstance(ambient, int | float) or not math.isfinite(ambient):
            raise InstrumentError(f"{spec.name}: options.ambient_c must be a number of °C, got {ambient!r}")
        self.ambient_c = float(ambient)
        self.setpoint_c: float | None = None
        rate = spec.envelope.max_ramp_c_per_min
        self._allowance_c = math.inf if rate is None else rate * _RAMP_WINDOW_MIN
        self._allowance_at = self._clock()

    def ramp_allowance_c(self) -> float:
        """The largest rise of the set point allowed now, °C (infinite without a ramp limit)."""
        return self._allowance(self._clock())

    def _allowance(self, now: float) -> float:
        rate = self.spec.envelope.max_ramp_c_per_min
        if rate is None:
            return math.inf
        minutes = max(0.0, now - self._allowance_at) / 60.0
        return min(rate * _RAMP_WINDOW_MIN, self._allowance_c + rate * minutes)

    def _spend(self, rise_c: float) -> None:
        now = self._clock()
        self._allowance_c = max(0.0, self._allowance(now) - rise_c)
        self._allowance_at = now

    def _prepare(self, action: str, params: dict[str, Any]) -> Callable[[], dict[str, float]]:
        if action == "set_temperature":
            return self._prepare_setpoint(params["celsius"])
        if action == "read_temperature":
            return lambda: {"temperature": float(self.backend.read_temperature())}
        return self._heater_off

    def _prepare_setpoint(self, celsius: Any) -> Callable[[], dict[str, float]]:
        where = f"{self.name}.set_temperature"
        if isinstance(celsius, bool) or not isinstance(celsius, int | float) or not math.isfinite(celsius):
            raise InstrumentError(f"{where}: celsius must be a number of °C, got {celsius!r}")
        celsius = float(celsius)
        envelope = self.spec.envelope
        if envelope.max_temperature_c is None:
            raise SafetyError(
                f"{where}: the safety envelope has no max_temperature_c; set one in lab.yaml before heating"
            )
        if celsius > envelope.max_temperature_c + _TEMPERATURE_TOL:
            raise SafetyError(
                f"{where}: celsius={celsius:g} °C is above the envelope's max_temperature_c"
                f" ({envelope.max_temperature_c:g} °C); choose at most that"
            )
        if celsius < -273.15:
            raise InstrumentError(f"{where}: celsius={celsius:g} °C is below absolute zero")
        start = self.ambient_c if self.setpoint_c is None else self.setpoint_c
        rise = celsius - start
        allowance = self.ramp_allowance_c()
        if rise > allowance + _TEMPERATURE_TOL:
            rate = envelope.max_ramp_c_per_min
            raise SafetyError(
                f"{where}: raising the set point from {start:g} to {celsius:g} °C at once is faster than"
                f" the envelope's max_ramp_c_per_min ({rate:g} °C/min); the largest rise allowed now is"
                f" {allowance:.1f} °C (to {start + allowance:.1f} °C). Heat in steps of at most"
                f" {rate:g} °C per minute"
            )

        def run() -> dict[str, float]:
            if rise > 0:
                self._spend(rise)
            self.backend.set_temperature(celsius)
            self.setpoint_c = celsius
            return {"setpoint": celsius}

        return run

    def _heater_off(self) -> dict[str, float]:
        self.backend.safe_state()
        self.setpoint_c = None
        return {}

    def safe_state(self) -> Reading:
        """Switch the heater off; always allowed, whatever the envelope says."""
        reading = super().safe_state()
        if reading.ok:
            self.setpoint_c = None
        return reading

    def status(self) -> dict[str, Any]:
        """Name, kind, set point (°C, None when off) and the ramp allowance (°C)."""
        return {
            **super().status(),
            "setpoint_c": self.setpoint_c,
            "ramp_allowance_c": self.ramp_allowance_c(),
        }


def make_frontend(
    spec: InstrumentSpec, lab: LabDescription, backend: Any, clock: Callable[[], float] | None = None
) -> FrontEnd:
    """The front end for ``spec``'s kind, wrapping ``backend``.

    Args:
        spec: The instrument.
        lab: The lab (wells and stocks).
        backend: Its back end.
        clock: Run clock for reading timestamps.
    """
    if spec.kind == "liquid_handler":
        return LiquidHandler(spec, backend, lab.wells, lab.stocks, clock)
    if spec.kind == "conductivity_meter":
        return ConductivityMeter(spec, backend, lab.wells, clock)
    if spec.kind == "hotplate":
        return Hotplate(spec, backend, lab.wells, clock)
    if spec.kind == "spectrometer":
        return Spectrometer(spec, backend, lab.wells, clock)
    raise InstrumentError(
        f"no front end for instrument kind {spec.kind!r}; known kinds: {', '.join(ACTIONS)}"
    )
