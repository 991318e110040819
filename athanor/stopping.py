"""How a campaign stops when the operator (or systemd) asks: SIGTERM and SIGINT, by policy.

The first signal stops the campaign resumably: no instrument takes a new command, the campaign's
roles stop where they are (:class:`athanor.errors.StopRequested` is raised in the main thread), and
then, by policy, the commands already running on the instruments either finish (``finish``, the
default: a dispense or a measurement half done helps nobody) or are aborted by the safe state
(``abort``). A second signal while they finish aborts them. Either way every instrument is put in
its safe state, the run records ``run_stopped`` and can be resumed; signals after that are ignored
until the safe state is reached. As bluesky's RunEngine does with a deferred and an immediate pause.

A :class:`StopControl` is made by the command line (``athanor run``, ``resume``, ``schedule work``)
and handed to the run in :class:`athanor.app.RunOptions`; Ray's own SIGTERM handler, which would exit
at once, is kept out (see :func:`instruments.ray_runtime.ensure_ray`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, Literal

from athanor.errors import StopRequested

__all__ = ["STOP_POLICIES", "StopControl", "StopPolicy"]

StopPolicy = Literal["finish", "abort"]
#: The stop policies: let running instrument commands finish, or abort them at once.
STOP_POLICIES: tuple[StopPolicy, ...] = ("finish", "abort")


class StopControl:
    """The stop request of one process: set by a signal, read by the run and its instruments.

    Attributes:
        policy: ``finish`` or ``abort`` (see the module docstring).
        grace_s: Longest wait, seconds, for running commands to finish before they are aborted.
        requested: Set at the first signal; the instruments send no new command once it is set.
        signal_name: The first signal's name (``"SIGTERM"``), None before any.
        raising: Whether a signal raises :class:`StopRequested` in the main thread (during a
            campaign) or only sets :attr:`requested` (a worker between campaigns).
    """

    def __init__(
        self,
        policy: StopPolicy = "finish",
        grace_s: float = 60.0,
        *,
        on_notice: Callable[[str], None] | None = None,
        raising: bool = True,
    ) -> None:
        """Make a control; nothing is installed until :meth:`installed`.

        Args:
            policy: ``finish`` or ``abort``.
            grace_s: Longest wait, seconds, for running commands to finish.
            on_notice: Called with a line for the operator at each signal (from the handler).
            raising: See :attr:`raising`.

        Raises:
            ValueError: An unknown policy or a negative grace time.
        """
        if policy not in STOP_POLICIES:
            raise ValueError(f"stop policy must be one of {', '.join(STOP_POLICIES)}, got {policy!r}")
        if not grace_s >= 0:
            raise ValueError(f"the stop grace time must be at least 0 s, got {grace_s!r}")
        self.policy: StopPolicy = policy
        self.grace_s = float(grace_s)
        self.requested = threading.Event()
        self.signal_name: str | None = None
        self.raising = raising
        self.on_notice = on_notice
        self._signals = 0
        self._settling = False

    @property
    def aborted(self) -> bool:
        """Whether the running commands are to be aborted (policy, or a second signal)."""
        return self.policy == "abort" or self._signals > 1

    def stopped_by(self, interrupt: KeyboardInterrupt) -> StopRequested:
        """The stop an interrupt stands for, as this control saw it.

        Ray turns an exception raised by a signal handler during one of its blocking calls into a
        plain ``KeyboardInterrupt``; the signal this control recorded says which stop it was.
        """
        if isinstance(interrupt, StopRequested):
            return interrupt
        return StopRequested(self.signal_name or "SIGINT", abort=self.aborted)

    def handle(self, signum: int, frame: Any = None) -> None:
        """The signal handler: see the module docstring for what each signal does.

        Raises:
            athanor.errors.StopRequested: In the main thread, when :attr:`raising`.
        """
        name = signal.Signals(signum).name
        self._signals += 1
        if self._signals == 1:
            self.signal_name = name
            self.requested.set()
            if self.raising:
                self._notice(
                    f"{name}: stopping — no new instrument command;"
                    + (
                        " aborting the running ones"
                        if self.policy == "abort"
                        else f" the running ones finish (up to {self.grace_s:g} s; {name} again aborts them)"
                    )
                )
                raise StopRequested(name, abort=self.policy == "abort")
            return
        if self.raising and self._signals == 2 and not self._settling and self.policy == "finish":
            self._notice(f"{name} again: aborting the running commands")
            raise StopRequested(name, abort=True)
        self._notice(f"{name}: already stopping; the instruments are being put in their safe state")

    @contextlib.contextmanager
    def settling(self) -> Iterator[None]:
        """While the instruments reach their safe state, further signals are noted, not raised."""
        self._settling = True
        try:
            yield
        finally:
            self._settling = False

    @contextlib.contextmanager
    def installed(
        self, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
    ) -> Iterator[None]:
        """Handle ``signals`` with :meth:`handle` inside the block (main thread only; else a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _notice(self, line: str) -> None:
        if self.on_notice is not None:
            self.on_notice(line)
