"""Serial device profiles: each instrument's command set as data.

A :class:`DeviceProfile` says what to write for each operation, what a good reply looks like, whether
the command may be re-sent when its reply is lost, and which commands put the device in its safe
state. The serial back ends (:mod:`instruments.backends.serial`) only speak what a profile says.

Line protocol shared by the shipped profiles (SCPI-like, ASCII, one command per line):

- the host writes the command followed by the profile's ``terminator`` (``CR LF``);
- the device answers every command with exactly one line ending in ``LF`` (a ``CR`` before it is
  dropped): the documented reply, or ``ERR <code>,"<text>"`` when it refuses the command
  (SCPI error numbers, e.g. ``ERR -222,"Data out of range"``).

Idempotency rule: a command is *idempotent* when sending it twice leaves the device exactly as
sending it once (an absolute set point, a query, "heater off"). Only idempotent commands are
re-sent after the command went out and its reply was lost or garbled; a non-idempotent one (a
relative step) is re-sent only when writing it failed, and otherwise fails with a message that says
the device state must be checked.

Shipped profiles (see :data:`PROFILES`):

``four_point_probe`` (kind ``conductivity_meter``), a four-point-probe conductivity meter that
computes conductivity from its configured film thickness:

====================  ==============================  =========================================
Command               Reply                           Meaning
====================  ==============================  =========================================
``*IDN?``             ``FAKE,FPP-4,0001,1.2``         vendor, model, serial, firmware
``PROB DOWN``         ``OK``                          lower the probe head onto the sample
``MEAS?``             ``COND 512.3 S/cm``             one current sweep; unit S/cm, S/m or mS/cm
``PROB UP``           ``OK``                          lift the probe head (safe state)
====================  ==============================  =========================================

``hotplate`` (kind ``hotplate``), a hot-plate or furnace temperature controller; temperatures in °C
with one decimal:

====================  ==============================  =========================================
Command               Reply                           Meaning
====================  ==============================  =========================================
``*IDN?``             ``FAKE,HP-550,0002,2.0``        vendor, model, serial, firmware
``SETT 120.0``        ``OK``                          absolute set point, °C (idempotent)
``HEAT ON``           ``OK``                          enable the heater
``TEMP?``             ``TEMP 118.4``                  plate temperature, °C
``STEP +5.0``         ``OK``                          raise the set point by 5 °C (NOT idempotent)
``HEAT OFF``          ``OK``                          disable the heater (safe state)
====================  ==============================  =========================================

``STEP`` is never used by the back end, which always sends absolute set points; it is listed because
real controllers have such commands and the transport must never repeat them blindly.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from athanor.errors import InstrumentError

__all__ = [
    "CONDUCTIVITY_TO_S_PER_CM",
    "FOUR_POINT_PROBE",
    "HOTPLATE",
    "PROFILES",
    "REQUIRED_COMMANDS",
    "CommandSpec",
    "DeviceProfile",
    "get_profile",
]

#: A decimal number as devices print it: ``512.3``, ``-4``, ``1.2e-3``.
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
#: Factor that turns a conductivity in the given unit into S/cm.
CONDUCTIVITY_TO_S_PER_CM: dict[str, float] = {"S/cm": 1.0, "S/m": 0.01, "mS/cm": 1e-3}
#: Commands a profile must define to drive an instrument of each kind.
REQUIRED_COMMANDS: dict[str, tuple[str, ...]] = {
    "conductivity_meter": ("identify", "measure"),
    "hotplate": ("identify", "set_temperature", "heater_on", "read_temperature"),
}


@dataclass(frozen=True)
class CommandSpec:
    """One command of a device.

    Attributes:
        template: What to write, as a ``str.format`` template, e.g. ``"SETT {celsius:.1f}"``.
        reply: The whole reply line must match this (``fullmatch``); named groups carry values.
        idempotent: Whether sending it twice equals sending it once (see the module docstring).
        timeout_factor: Multiplier on the connection's ``timeout_s`` for this command (slow ones).
        unit: Unit of the reply's ``value`` group when the reply does not name one.
        doc: One line on what the command does.
    """

    template: str
    reply: re.Pattern[str]
    idempotent: bool = True
    timeout_factor: float = 1.0
    unit: str | None = None
    doc: str = ""

    @property
    def params(self) -> tuple[str, ...]:
        """Names of the template's fields, in order."""
        return tuple(name for _, name, _, _ in string.Formatter().parse(self.template) if name)

    def render(self, **params: Any) -> str:
        """The command line to write (without terminator).

        Raises:
            athanor.errors.InstrumentError: A parameter is missing, extra or not a finite number.
        """
        expected = set(self.params)
        if set(params) != expected:
            raise InstrumentError(
                f"command {self.template!r} takes ({', '.join(self.params)});"
                f" got ({', '.join(sorted(params))})"
            )
        for name, value in params.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InstrumentError(
                    f"command {self.template!r}: {name} must be a finite number, got {value!r}"
                )
        return self.template.format(**params)


@dataclass(frozen=True)
class DeviceProfile:
    """A device's command set.

    Attributes:
        name: Profile name used in ``serial.profile`` of ``lab.yaml``.
        kind: The instrument kind it drives (``conductivity_meter`` or ``hotplate``).
        description: What device this is.
        commands: Operation name to command.
        safe_state: Commands, by operation name, that put the device in its safe state, in order.
        terminator: Written after every command.
        encoding: Character encoding of commands and replies.
        error_reply: A reply matching this is the device refusing the command (never retried).
    """

    name: str
    kind: str
    description: str
    commands: Mapping[str, CommandSpec]
    safe_state: tuple[str, ...]
    terminator: str = "\r\n"
    encoding: str = "ascii"
    error_reply: re.Pattern[str] = field(default=re.compile(r"ERR\b.*"))

    def __post_init__(self) -> None:
        missing = [c for c in REQUIRED_COMMANDS.get(self.kind, ()) if c not in self.commands]
        unknown = [c for c in self.safe_state if c not in self.commands]
        if self.kind not in REQUIRED_COMMANDS:
            raise InstrumentError(
                f"profile {self.name}: kind {self.kind!r} has no serial back end; use one of"
                f" {', '.join(REQUIRED_COMMANDS)}"
            )
        if missing or unknown:
            raise InstrumentError(
                f"profile {self.name}: missing command(s) {', '.join(missing + unknown)}; a {self.kind}"
                f" profile needs {', '.join(REQUIRED_COMMANDS[self.kind])} and its safe-state commands"
            )

    def command(self, name: str) -> CommandSpec:
        """The command for operation ``name``; raises InstrumentError naming the known ones."""
        try:
            return self.commands[name]
        except KeyError:
            raise InstrumentError(
                f"profile {self.name} has no command {name!r}; it has {', '.join(self.commands)}"
            ) from None


_OK = re.compile(r"OK")
_IDN = re.compile(r"(?P<vendor>[^,]+),(?P<model>[^,]+),(?P<serial>[^,]*),(?P<firmware>[^,]+)")

FOUR_POINT_PROBE = DeviceProfile(
    name="four_point_probe",
    kind="conductivity_meter",
    description="four-point-probe conductivity meter (film thickness configured on the device)",
    commands={
        "identify": CommandSpec("*IDN?", _IDN, doc="vendor, model, serial number, firmware"),
        "probe_down": CommandSpec("PROB DOWN", _OK, doc="lower the probe head onto the sample"),
        "measure": CommandSpec(
            "MEAS?",
            re.compile(rf"COND (?P<value>{_NUMBER}) (?P<unit>S/cm|S/m|mS/cm)"),
            timeout_factor=3.0,
            unit="S/cm",
            doc="one current sweep through the lowered probe; the film is not altered",
        ),
        "probe_up": CommandSpec("PROB UP", _OK, doc="lift the probe head"),
    },
    safe_state=("probe_up",),
)

HOTPLATE = DeviceProfile(
    name="hotplate",
    kind="hotplate",
    description="hot-plate or furnace temperature controller",
    commands={
        "identify": CommandSpec("*IDN?", _IDN, doc="vendor, model, serial number, firmware"),
        "set_temperature": CommandSpec(
            "SETT {celsius:.1f}", _OK, unit="°C", doc="absolute set point; re-sending changes nothing"
        ),
        "heater_on": CommandSpec("HEAT ON", _OK, doc="enable the heater"),
        "read_temperature": CommandSpec(
            "TEMP?", re.compile(rf"TEMP (?P<value>{_NUMBER})"), unit="°C", doc="plate temperature"
        ),
        "step": CommandSpec(
            "STEP {delta:+.1f}",
            _OK,
            idempotent=False,
            unit="°C",
            doc="raise the set point by delta; re-sending would raise it twice",
        ),
        "heater_off": CommandSpec("HEAT OFF", _OK, doc="disable the heater"),
    },
    safe_state=("heater_off",),
)

#: Every shipped profile by name.
PROFILES: dict[str, DeviceProfile] = {p.name: p for p in (FOUR_POINT_PROBE, HOTPLATE)}


def get_profile(name: str) -> DeviceProfile:
    """The shipped profile called ``name``.

    Raises:
        athanor.errors.InstrumentError: Unknown name; the message lists the known profiles.
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise InstrumentError(
            f"unknown serial device profile {name!r}; known profiles: {', '.join(sorted(PROFILES))}."
            " Set serial.profile in lab.yaml to one of them"
        ) from None
