"""A fake serial instrument on a real pseudo-terminal, for the serial back-end tests.

The device runs in a thread on the master side of ``os.openpty()``; the code under test opens the
slave side by path (``port``). It speaks the ``four_point_probe`` or ``hotplate`` profile and can be
told how to treat the next commands (``then``):

- ``"normal"``: answer at once (also what happens when nothing is scripted);
- ``"late"``: answer after ``late_s`` seconds;
- ``"garbage"``: answer a line of noise;
- ``"silent"``: read the command and never answer;
- ``"error"``: answer ``ERR -222,"Data out of range"`` without acting;
- ``"vanish"``: read the command, then disappear (close the pty) without answering, and come back
  ``vanish_s`` seconds later on a new pty; with ``link`` set, the link is re-pointed to it.

It records every command line it received (``received``) and every raw byte (``raw``).
"""

from __future__ import annotations

import os
import select
import threading
import time
import tty
from collections import deque
from pathlib import Path

GARBAGE = b"\xfe\x13TE#P\xb7?7\r\n"
IDN = {"four_point_probe": "FAKE,FPP-4,0001,1.2", "hotplate": "FAKE,HP-550,0002,2.0"}


class FakeSerialDevice:
    """A scripted instrument on the master side of a pty."""

    def __init__(self, profile: str, link: Path | None = None, late_s: float = 0.35, vanish_s: float = 0.15):
        if profile not in IDN:
            raise ValueError(f"fake device speaks {', '.join(IDN)}, not {profile!r}")
        self.profile = profile
        self.link = link
        self.late_s = late_s
        self.vanish_s = vanish_s
        self.received: list[str] = []
        self.raw = bytearray()
        self.generation = 0
        # device state
        self.conductivity = 512.3
        self.conductivity_unit = "S/cm"
        self.probe_is_down = False
        self.temperature = 118.4
        self.setpoint: float | None = None
        self.heater_on = False
        self._plan: deque[str] = deque()
        self._stop = threading.Event()
        self._gone = threading.Event()
        self._vanish_request: float | None = None
        self._open_pty()
        self._thread = threading.Thread(target=self._run, name=f"fake-{profile}", daemon=True)
        self._thread.start()

    @property
    def port(self) -> str:
        """What the code under test opens: the link when there is one, else the slave's path."""
        return str(self.link) if self.link is not None else self._slave_name

    def then(self, *behaviours: str) -> FakeSerialDevice:
        """How to treat the next commands, one behaviour per command, in order."""
        self._plan.extend(behaviours)
        return self

    def vanish_now(self, back_after_s: float) -> None:
        """Disappear while idle and come back ``back_after_s`` later; returns once gone."""
        self._gone.clear()
        self._vanish_request = back_after_s
        if not self._gone.wait(2.0):
            raise RuntimeError("fake device did not vanish")

    def count(self, command: str) -> int:
        """How many times ``command`` was received."""
        return self.received.count(command)

    def close(self) -> None:
        """Stop the device and free its pty."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._close_pty()
        if self.link is not None and self.link.is_symlink():
            self.link.unlink()

    def __enter__(self) -> FakeSerialDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # pty handling

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        self._master, self._slave = master, slave
        self._slave_name = os.ttyname(slave)
        self.generation += 1
        if self.link is not None:
            staging = self.link.with_name(self.link.name + ".new")
            staging.unlink(missing_ok=True)
            os.symlink(self._slave_name, staging)
            os.replace(staging, self.link)

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None

    def _vanish(self, back_after_s: float) -> None:
        self._close_pty()
        self._gone.set()
        time.sleep(back_after_s)
        self._open_pty()

    # the device loop

    def _run(self) -> None:
        buffer = bytearray()
        while not self._stop.is_set():
            if self._vanish_request is not None:
                delay, self._vanish_request = self._vanish_request, None
                buffer.clear()
                self._vanish(delay)
                continue
            ready, _, _ = select.select([self._master], [], [], 0.02)
            if not ready:
                continue
            try:
                chunk = os.read(self._master, 1024)
            except OSError:
                time.sleep(0.01)
                continue
            self.raw += chunk
            buffer += chunk
            while b"\n" in buffer and not self._stop.is_set():
                line, _, rest = bytes(buffer).partition(b"\n")
                buffer[:] = rest
                command = line.decode("ascii", errors="replace").rstrip("\r")
                self.received.append(command)
                if self._handle(command):
                    buffer.clear()
                    break

    def _handle(self, command: str) -> bool:
        """Act on one command as scripted; True when the pty was replaced."""
        behaviour = self._plan.popleft() if self._plan else "normal"
        if behaviour == "silent":
            return False
        if behaviour == "vanish":
            self._vanish(self.vanish_s)
            return True
        if behaviour == "garbage":
            self._write(GARBAGE)
            return False
        if behaviour == "error":
            self._write(b'ERR -222,"Data out of range"\r\n')
            return False
        if behaviour == "late":
            time.sleep(self.late_s)
        self._write((self._answer(command) + "\r\n").encode("ascii"))
        return False

    def _write(self, data: bytes) -> None:
        try:
            os.write(self._master, data)
        except OSError:
            pass

    def _answer(self, command: str) -> str:
        if command == "*IDN?":
            return IDN[self.profile]
        if self.profile == "four_point_probe":
            return self._probe(command)
        return self._hotplate(command)

    def _probe(self, command: str) -> str:
        if command == "PROB DOWN":
            self.probe_is_down = True
            return "OK"
        if command == "PROB UP":
            self.probe_is_down = False
            return "OK"
        if command == "MEAS?":
            if not self.probe_is_down:
                return 'ERR -221,"Settings conflict; probe is up"'
            return f"COND {self.conductivity:g} {self.conductivity_unit}"
        return 'ERR -113,"Undefined header"'

    def _hotplate(self, command: str) -> str:
        word, _, argument = command.partition(" ")
        if word == "SETT":
            self.setpoint = float(argument)
            return "OK"
        if word == "STEP":
            self.setpoint = (self.setpoint or 25.0) + float(argument)
            return "OK"
        if command in ("HEAT ON", "HEAT OFF"):
            self.heater_on = command == "HEAT ON"
            return "OK"
        if command == "TEMP?":
            return f"TEMP {self.temperature:.1f}"
        return 'ERR -113,"Undefined header"'
