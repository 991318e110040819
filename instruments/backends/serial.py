"""Serial back ends: a line-oriented transport on pyserial and the instruments built on it.

:class:`SerialTransport` writes one command line and reads one reply line, checking the reply,
retrying and reconnecting; :class:`SerialDevice` binds it to a device profile
(:mod:`instruments.backends.profiles`); :class:`SerialConductivityMeterBackend` and
:class:`SerialHotplateBackend` implement the back-end protocols of the front ends.

Failure handling in :meth:`SerialTransport.query`, with ``1 + retries`` attempts in all:

- before every write, unread input is discarded so that a stale line cannot pass for the reply;
- no complete reply within the timeout, or a reply that does not match, is retried;
- the port failing (``SerialException`` / ``OSError``, e.g. a USB adapter unplugged) closes it and
  reopens it, waiting ``reopen_delays_s`` between tries, before the next attempt;
- a reply matching the profile's error pattern (``ERR ...``) is the device refusing: never retried;
- a command that is not idempotent is re-sent only when the port refused to take it (opening,
  discarding input or ``write`` failed); once ``write`` returned, a failing port or a lost or
  garbled reply fails at once, because the device may have acted on it;
- after a reply that needed a retry for a lost reply, the transport listens for the stray late
  replies of the earlier attempts and drops them, so they cannot answer the next command.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import serial

from athanor.errors import InstrumentError
from athanor.lab import InstrumentSpec, SerialConnection
from instruments.backends.profiles import CONDUCTIVITY_TO_S_PER_CM, DeviceProfile, get_profile

try:
    import termios

    _TERMIOS_ERRORS: tuple[type[BaseException], ...] = (termios.error,)
except ImportError:  # not a POSIX system
    _TERMIOS_ERRORS = ()

__all__ = [
    "DEFAULT_REOPEN_DELAYS_S",
    "SerialConductivityMeterBackend",
    "SerialDevice",
    "SerialHotplateBackend",
    "SerialTransport",
    "make_serial_backend",
]

#: Seconds to wait before each try to reopen a port that failed (after one immediate try).
DEFAULT_REOPEN_DELAYS_S: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0)
#: What a vanished or broken port raises (``SerialException`` is an ``OSError``).
_PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, *_TERMIOS_ERRORS)
_MAX_LINE_BYTES = 4096

Opener = Callable[..., Any]
Expectation = re.Pattern[str] | Callable[[str], bool]


class _PortGone(Exception):
    """The port could not be (re)opened."""


class SerialTransport:
    """One command line out, one reply line back, over a pyserial port.

    Attributes:
        connection: Port, baud rate, reply timeout and retries.
        terminator: Written after every command.
        encoding: Character encoding of commands and replies.
        error_reply: Replies matching this are refusals by the device (never retried).
        reopen_delays_s: Seconds to wait before each try to reopen a failed port.
        attempts_made: Attempts the last :meth:`query` took (1 when the first one succeeded).
    """

    def __init__(
        self,
        connection: SerialConnection,
        opener: Opener = serial.serial_for_url,
        *,
        terminator: str = "\r\n",
        encoding: str = "ascii",
        error_reply: re.Pattern[str] | None = None,
        reopen_delays_s: Sequence[float] = DEFAULT_REOPEN_DELAYS_S,
    ) -> None:
        """Describe the transport; the port opens on :meth:`open` or the first query.

        Args:
            connection: The ``serial:`` block of the instrument.
            opener: Called as ``opener(port, baudrate=..., timeout=...)``; returns an open
                pyserial-like port. ``serial.serial_for_url`` also takes URLs such as ``loop://``.
            terminator: Written after every command.
            encoding: Character encoding of commands and replies.
            error_reply: Replies matching this (``fullmatch``) are refusals: fail at once.
            reopen_delays_s: Seconds to wait before each try to reopen a failed port.
        """
        self.connection = connection
        self.terminator = terminator
        self.encoding = encoding
        self.error_reply = error_reply
        self.reopen_delays_s = tuple(float(d) for d in reopen_delays_s)
        self.attempts_made = 0
        self._opener = opener
        self._port: Any = None
        self._pending = bytearray()
        self._lock = threading.Lock()

    @property
    def port_name(self) -> str:
        """The device path or URL."""
        return self.connection.port

    @property
    def is_open(self) -> bool:
        """Whether the port is open now."""
        return self._port is not None

    def open(self) -> None:
        """Open the port now (one try).

        Raises:
            athanor.errors.InstrumentError: The port cannot be opened; the message names it.
        """
        with self._lock:
            if self._port is not None:
                return
            try:
                self._port = self._open_port()
            except _PORT_ERRORS as error:
                raise InstrumentError(
                    f"serial port {self.port_name}: cannot open it ({error}); check that the device is"
                    " plugged in and powered and that serial.port in lab.yaml names it"
                ) from None

    def close(self) -> None:
        """Close the port (a later query reopens it)."""
        with self._lock:
            self._close()

    def query(
        self,
        command: str,
        expect: Expectation,
        *,
        idempotent: bool = True,
        timeout_s: float | None = None,
    ) -> str:
        """Write ``command``, read one reply line, check it, retrying as the module docstring says.

        Args:
            command: The command line, without terminator, e.g. ``"TEMP?"``.
            expect: A pattern the whole reply must match, or a predicate on the reply.
            idempotent: Whether the command may be re-sent after it went out (see module docstring).
            timeout_s: Seconds to wait for the reply line; default the connection's ``timeout_s``.

        Returns:
            The reply line, stripped of its terminator and surrounding blanks.

        Raises:
            athanor.errors.InstrumentError: Every attempt failed, the device refused the command, or
                a non-idempotent command lost its reply. The message names the port, the command,
                what came back and the attempts.
        """
        timeout = self.connection.timeout_s if timeout_s is None else float(timeout_s)
        check = expect.fullmatch if isinstance(expect, re.Pattern) else expect
        data = (command + self.terminator).encode(self.encoding)
        attempts = 1 + self.connection.retries
        problems: list[str] = []
        with self._lock:
            lost = 0  # commands written on this connection whose reply never came
            for attempt in range(1, attempts + 1):
                self.attempts_made = attempt
                try:
                    port = self._ensure_open()
                    self._discard_input(port)
                    port.write(data)
                except _PortGone as error:
                    problems.append(f"port unavailable ({error})")
                    continue
                except _PORT_ERRORS as error:
                    problems.append(f"write failed ({error})")
                    self._close()
                    lost = 0
                    continue
                try:
                    port.flush()  # once write() returned the bytes may have reached the device
                    line = self._read_line(port, timeout)
                except _PORT_ERRORS as error:
                    problem = f"the port failed after the command went out ({error})"
                    self._close()
                    lost = 0
                else:
                    if line is None:
                        partial = self._pending.decode(self.encoding, errors="replace").strip()
                        problem = f"no complete reply within {timeout:g} s" + (
                            f" (got {partial!r})" if partial else ""
                        )
                        lost += 1
                    elif self.error_reply is not None and self.error_reply.fullmatch(line):
                        raise InstrumentError(
                            f"serial port {self.port_name}: the device refused {command!r} and answered"
                            f" {line!r}; check the command's parameters against the device's range"
                        )
                    elif check(line):
                        if lost:
                            self._drop_stray_replies(port, lost, timeout)
                        return line
                    else:
                        problem = f"unexpected reply {line!r}"
                problems.append(problem)
                if not idempotent:
                    raise InstrumentError(
                        f"serial port {self.port_name}: {command!r} was sent but {problem}; it was not"
                        " re-sent because it is not idempotent (the device may have acted on it)."
                        " Check the device's state before going on"
                    )
        detail = "; ".join(f"attempt {i}: {p}" for i, p in enumerate(problems, start=1))
        raise InstrumentError(
            f"serial port {self.port_name}: {command!r} failed after {attempts} attempt(s): {detail}."
            f" Check the cable, the baud rate ({self.connection.baudrate}) and that serial.profile"
            " matches the device"
        )

    def _open_port(self) -> Any:
        port = self._opener(
            self.connection.port, baudrate=self.connection.baudrate, timeout=self.connection.timeout_s
        )
        self._pending.clear()
        return port

    def _ensure_open(self) -> Any:
        """The open port, reopening it (with the backoff delays) if it was closed."""
        if self._port is not None:
            return self._port
        last: BaseException | None = None
        for delay in (0.0, *self.reopen_delays_s):
            if delay > 0:
                time.sleep(delay)
            try:
                self._port = self._open_port()
                return self._port
            except _PORT_ERRORS as error:
                last = error
        raise _PortGone(f"{1 + len(self.reopen_delays_s)} tries to reopen it failed; last: {last}")

    def _close(self) -> None:
        port, self._port = self._port, None
        self._pending.clear()
        if port is not None:
            try:
                port.close()
            except _PORT_ERRORS:
                pass  # it is gone already

    def _discard_input(self, port: Any) -> None:
        port.reset_input_buffer()
        self._pending.clear()

    def _read_line(self, port: Any, timeout_s: float) -> str | None:
        """One reply line without its terminator, or None when none completed within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            end = self._pending.find(b"\n")
            if end >= 0 or len(self._pending) > _MAX_LINE_BYTES:
                end = end if end >= 0 else len(self._pending)
                raw = bytes(self._pending[:end])
                del self._pending[: end + 1]
                return raw.decode(self.encoding, errors="replace").strip()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            port.timeout = remaining
            self._pending += port.read(max(1, min(port.in_waiting, _MAX_LINE_BYTES)))

    def _drop_stray_replies(self, port: Any, count: int, timeout_s: float) -> None:
        """Read and drop up to ``count`` late replies of earlier attempts, stopping at silence."""
        for _ in range(count):
            try:
                if self._read_line(port, timeout_s) is None:
                    return
            except _PORT_ERRORS:
                self._close()
                return


class SerialDevice:
    """A serial instrument speaking a :class:`~instruments.backends.profiles.DeviceProfile`.

    Attributes:
        profile: The command set.
        transport: The line transport.
    """

    def __init__(
        self,
        connection: SerialConnection,
        profile: DeviceProfile | None = None,
        *,
        opener: Opener = serial.serial_for_url,
        reopen_delays_s: Sequence[float] = DEFAULT_REOPEN_DELAYS_S,
        connect: bool = True,
    ) -> None:
        """Bind a transport to a profile.

        Args:
            connection: The ``serial:`` block; its ``profile`` is used when ``profile`` is None.
            profile: The command set; default the shipped profile ``connection.profile`` names.
            opener: Opens the port (see :class:`SerialTransport`).
            reopen_delays_s: Seconds to wait before each try to reopen a failed port.
            connect: Open the port now, so that a wrong port fails at start-up.

        Raises:
            athanor.errors.InstrumentError: Unknown profile, or the port cannot be opened.
        """
        self.profile = profile if profile is not None else get_profile(connection.profile)
        self.transport = SerialTransport(
            connection,
            opener,
            terminator=self.profile.terminator,
            encoding=self.profile.encoding,
            error_reply=self.profile.error_reply,
            reopen_delays_s=reopen_delays_s,
        )
        if connect:
            self.transport.open()

    def call(self, operation: str, **params: Any) -> re.Match[str]:
        """Send the profile's command for ``operation`` and return the match of its reply.

        Args:
            operation: Operation name in the profile, e.g. ``"read_temperature"``.
            **params: The command template's fields, e.g. ``celsius=120.0``.

        Raises:
            athanor.errors.InstrumentError: Unknown operation, bad parameters, or the query failed.
        """
        spec = self.profile.command(operation)
        line = self.transport.query(
            spec.render(**params),
            spec.reply,
            idempotent=spec.idempotent,
            timeout_s=self.transport.connection.timeout_s * spec.timeout_factor,
        )
        match = spec.reply.fullmatch(line)
        if match is None:  # query checked it; kept for the type checker
            raise InstrumentError(f"serial port {self.transport.port_name}: reply {line!r} does not match")
        return match

    def identify(self) -> str:
        """The device's identification line (``*IDN?``)."""
        return self.call("identify").group(0)

    def safe_state(self) -> None:
        """Send every safe-state command of the profile, all of them even if one fails.

        Raises:
            athanor.errors.InstrumentError: Some command failed (the message lists each).
        """
        problems = []
        for operation in self.profile.safe_state:
            try:
                self.call(operation)
            except InstrumentError as error:
                problems.append(str(error))
        if problems:
            raise InstrumentError("safe state not reached: " + "; ".join(problems))

    def close(self) -> None:
        """Close the port."""
        self.transport.close()


class _SerialBackend:
    """A back end that drives one :class:`SerialDevice` of a given instrument kind."""

    kind: str = ""

    def __init__(
        self,
        name: str,
        connection: SerialConnection,
        *,
        profile: DeviceProfile | None = None,
        opener: Opener = serial.serial_for_url,
        reopen_delays_s: Sequence[float] = DEFAULT_REOPEN_DELAYS_S,
        connect: bool = True,
    ) -> None:
        """Create the back end.

        Args:
            name: Instrument name (for messages).
            connection: The instrument's ``serial:`` block.
            profile: The command set; default the one ``connection.profile`` names.
            opener: Opens the port (see :class:`SerialTransport`).
            reopen_delays_s: Seconds to wait before each try to reopen a failed port.
            connect: Open the port now.

        Raises:
            athanor.errors.InstrumentError: Unknown profile, a profile for another kind, or the port
                cannot be opened.
        """
        profile = profile if profile is not None else get_profile(connection.profile)
        if profile.kind != self.kind:
            raise InstrumentError(
                f"instrument {name}: serial profile {profile.name!r} drives a {profile.kind}, not a"
                f" {self.kind}; set serial.profile to a {self.kind} profile"
            )
        self.name = name
        self.device = SerialDevice(
            connection, profile, opener=opener, reopen_delays_s=reopen_delays_s, connect=connect
        )

    def identify(self) -> str:
        """The device's identification line."""
        return self.device.identify()

    def safe_state(self) -> None:
        """Send the profile's safe-state commands."""
        self.device.safe_state()

    def close(self) -> None:
        """Close the port."""
        self.device.close()


class SerialConductivityMeterBackend(_SerialBackend):
    """A conductivity meter on a serial line (e.g. profile ``four_point_probe``).

    It measures whatever sample sits under its probe; the ``well`` argument is bookkeeping only.
    """

    kind = "conductivity_meter"

    def measure(self, well: str) -> float:
        """Lower the probe (if the profile has one), measure, lift it; conductivity in S/cm.

        The probe is lifted even when lowering it or measuring failed.

        Args:
            well: The well the sample came from (not sent to the device).

        Raises:
            athanor.errors.InstrumentError: A command failed or the reply's unit is unknown.
        """
        has_probe = "probe_down" in self.device.profile.commands
        try:
            if has_probe:
                self.device.call("probe_down")
            match = self.device.call("measure")
        except InstrumentError as error:
            if has_probe:
                try:
                    self.device.call("probe_up")
                except InstrumentError as lift_error:
                    raise InstrumentError(f"{error}; lifting the probe failed too: {lift_error}") from None
            raise
        if has_probe:
            self.device.call("probe_up")
        spec = self.device.profile.command("measure")
        unit = match.groupdict().get("unit") or spec.unit or "S/cm"
        if unit not in CONDUCTIVITY_TO_S_PER_CM:
            raise InstrumentError(
                f"{self.name}: the meter answered in {unit!r}; known units:"
                f" {', '.join(CONDUCTIVITY_TO_S_PER_CM)}"
            )
        return float(match["value"]) * CONDUCTIVITY_TO_S_PER_CM[unit]


class SerialHotplateBackend(_SerialBackend):
    """A hot-plate or furnace controller on a serial line (e.g. profile ``hotplate``); °C throughout."""

    kind = "hotplate"

    def set_temperature(self, celsius: float) -> None:
        """Send the absolute set point, then switch the heater on.

        Args:
            celsius: Set point, °C (the front end has checked it against the envelope).
        """
        if not math.isfinite(celsius):
            raise InstrumentError(f"{self.name}: set point must be a finite number of °C, got {celsius!r}")
        self.device.call("set_temperature", celsius=float(celsius))
        self.device.call("heater_on")

    def read_temperature(self) -> float:
        """The plate temperature, °C."""
        return float(self.device.call("read_temperature")["value"])


#: Options the serial back ends accept (others are refused so that typos do not go unnoticed).
_OPTIONS: dict[str, frozenset[str]] = {
    "conductivity_meter": frozenset({"reopen_delays_s"}),
    "hotplate": frozenset({"reopen_delays_s", "ambient_c"}),
}


def make_serial_backend(spec: InstrumentSpec, opener: Opener = serial.serial_for_url) -> Any:
    """The serial back end for ``spec`` (its ``serial:`` block names port and profile).

    Options (``spec.options``): ``reopen_delays_s`` (list of seconds; default
    :data:`DEFAULT_REOPEN_DELAYS_S`); hot plates also ``ambient_c`` (read by the front end).

    Args:
        spec: The instrument, with ``backend: serial``.
        opener: Opens the port (see :class:`SerialTransport`).

    Raises:
        athanor.errors.InstrumentError: No ``serial:`` block, a kind without a serial back end, an
            unknown or mismatched profile, bad options, or a port that cannot be opened.
    """
    if spec.serial is None:
        raise InstrumentError(f"instrument {spec.name}: the serial back end needs a 'serial:' block")
    classes: dict[str, type[_SerialBackend]] = {
        "conductivity_meter": SerialConductivityMeterBackend,
        "hotplate": SerialHotplateBackend,
    }
    if spec.kind not in classes:
        raise InstrumentError(
            f"instrument {spec.name}: no serial back end for a {spec.kind}; serial drives"
            f" {', '.join(classes)}"
        )
    unknown = sorted(set(spec.options) - _OPTIONS[spec.kind])
    if unknown:
        raise InstrumentError(
            f"{spec.name}: unknown option(s) {', '.join(unknown)}; a serial {spec.kind} knows"
            f" {', '.join(sorted(_OPTIONS[spec.kind]))}"
        )
    delays = spec.options.get("reopen_delays_s", DEFAULT_REOPEN_DELAYS_S)
    if not isinstance(delays, list | tuple) or not all(
        isinstance(d, int | float) and not isinstance(d, bool) and 0 <= d < math.inf for d in delays
    ):
        raise InstrumentError(
            f"{spec.name}: options.reopen_delays_s must be a list of seconds >= 0, got {delays!r}"
        )
    return classes[spec.kind](spec.name, spec.serial, opener=opener, reopen_delays_s=delays)
