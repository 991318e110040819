"""Stall and silence detection for instruments: a heartbeat thread that calls a fault handler.

Every ``heartbeat_s`` the :class:`Watchdog` asks each instrument for a heartbeat (through a *probe*,
so that it needs no Ray and can be tested with a fake). A heartbeat says whether an action is running,
for how long and how long it should take. An instrument is reported, once, when

- its running action exceeds its limit (:func:`stall_limit`): ``"stalled: ..."``;
- it misses ``misses`` heartbeats in a row, or its probe raises (its actor died):
  ``"unresponsive: ..."``;
- it reports a fault of its own (another campaign's watchdog found it stalled): that fault.

Reporting is the handler's job: put the instrument in its safe state, fail its pending commands, tell
the user. :meth:`Watchdog.clear` re-arms an instrument once it has been seen to.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["STALL_FACTOR", "Probe", "Watchdog", "stall_limit", "stall_reason"]

_log = logging.getLogger(__name__)

#: A running action may take this many times its expected duration (plus slack) before it stalls.
STALL_FACTOR = 3.0

#: Asks named instruments for a heartbeat, waiting at most the given seconds. Each name maps to its
#: heartbeat dict (see :meth:`instruments.actors.InstrumentHost.heartbeat`), None when it did not
#: answer in time, or the exception that says it never will (a dead actor).
Probe = Callable[[list[str], float], Mapping[str, "dict[str, Any] | BaseException | None"]]


def stall_limit(
    expected_s: float, stall_timeout_s: float | None, slack_s: float, factor: float = STALL_FACTOR
) -> float:
    """Seconds a running action may take before it counts as stalled.

    Args:
        expected_s: Its nominal duration, s.
        stall_timeout_s: The instrument's explicit limit (``options.stall_timeout_s``), s; wins if set.
        slack_s: Added to ``factor * expected_s``, s.
        factor: Multiplier on the expected duration.
    """
    if stall_timeout_s is not None:
        return float(stall_timeout_s)
    return factor * max(0.0, float(expected_s)) + float(slack_s)


def stall_reason(beat: Mapping[str, Any], slack_s: float) -> str | None:
    """Why a heartbeat shows a faulty instrument, or None when it is fine.

    Args:
        beat: A heartbeat dict with ``name``, ``busy``, ``key``, ``action``, ``elapsed_s``,
            ``expected_s``, ``stall_timeout_s`` and ``fault``.
        slack_s: Slack of :func:`stall_limit`, s.
    """
    if beat.get("fault"):
        return str(beat["fault"])
    if not beat.get("busy"):
        return None
    limit = stall_limit(float(beat.get("expected_s") or 0.0), beat.get("stall_timeout_s"), slack_s)
    elapsed = float(beat.get("elapsed_s") or 0.0)
    if elapsed <= limit:
        return None
    return (
        f"stalled: {beat.get('name', 'instrument')}.{beat.get('action')} (key {beat.get('key')!r}) has run"
        f" {elapsed:.1f} s, over its limit of {limit:.1f} s"
    )


class Watchdog:
    """Heartbeats for a set of instruments, in a daemon thread.

    Args:
        names: The instruments to watch.
        probe: How to ask for heartbeats (see :data:`Probe`).
        on_fault: Called as ``on_fault(name, reason)`` once per fault, from the watchdog's thread.
        heartbeat_s: Seconds between rounds.
        slack_s: Slack of :func:`stall_limit`, s.
        ping_timeout_s: Seconds to wait for one round's answers; default ``max(2 * heartbeat_s, 2)``.
        misses: Unanswered rounds in a row that make an instrument unresponsive.
    """

    def __init__(
        self,
        names: Iterable[str],
        probe: Probe,
        on_fault: Callable[[str, str], None],
        *,
        heartbeat_s: float = 1.0,
        slack_s: float = 10.0,
        ping_timeout_s: float | None = None,
        misses: int = 3,
    ) -> None:
        if heartbeat_s <= 0:
            raise ValueError(f"heartbeat_s must be positive, got {heartbeat_s}")
        if misses < 1:
            raise ValueError(f"misses must be at least 1, got {misses}")
        self.names = list(names)
        self.probe = probe
        self.on_fault = on_fault
        self.heartbeat_s = float(heartbeat_s)
        self.slack_s = float(slack_s)
        self.ping_timeout_s = max(2 * heartbeat_s, 2.0) if ping_timeout_s is None else float(ping_timeout_s)
        self.misses = misses
        self._missed: dict[str, int] = dict.fromkeys(self.names, 0)
        self._faults: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def faults(self) -> dict[str, str]:
        """Instrument name to the reason it was reported, for every unresolved fault."""
        with self._lock:
            return dict(self._faults)

    def check(self) -> dict[str, str]:
        """One round: probe every watched instrument without a fault and report new faults.

        Returns:
            The faults found in this round, name to reason (each already passed to ``on_fault``).
        """
        with self._lock:
            names = [n for n in self.names if n not in self._faults]
        if not names:
            return {}
        try:
            answers = self.probe(names, self.ping_timeout_s)
        except Exception as error:  # a failing probe must not stop the watchdog
            _log.warning("watchdog probe failed: %s", error)
            return {}
        found: dict[str, str] = {}
        for name in names:
            answer = answers.get(name)
            if isinstance(answer, BaseException):
                found[name] = f"unresponsive: {name} cannot be reached ({type(answer).__name__}: {answer})"
                continue
            if answer is None:
                self._missed[name] = self._missed.get(name, 0) + 1
                if self._missed[name] >= self.misses:
                    waited = self._missed[name] * (self.heartbeat_s + self.ping_timeout_s)
                    found[name] = (
                        f"unresponsive: {name} missed {self._missed[name]} heartbeats in a row"
                        f" (no answer for about {waited:.0f} s)"
                    )
                continue
            self._missed[name] = 0
            reason = stall_reason({"name": name, **answer}, self.slack_s)
            if reason is not None:
                found[name] = reason
        with self._lock:
            self._faults.update(found)
        for name, reason in found.items():
            try:
                self.on_fault(name, reason)
            except Exception as error:  # the handler's failure must not stop the watchdog
                _log.warning("fault handler failed for %s: %s", name, error)
        return found

    def clear(self, name: str) -> None:
        """Watch ``name`` again after its fault was dealt with."""
        with self._lock:
            self._faults.pop(name, None)
            self._missed[name] = 0

    def start(self) -> None:
        """Start the heartbeat thread (a second call does nothing)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="athanor-watchdog", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the heartbeat thread, waiting at most ``timeout`` seconds for it."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self.check()
