"""A power cut in the middle of a campaign: the recorded instruments stop after the n-th measurement."""

from __future__ import annotations

from runs.recorder import RecordingInstruments


def power_cut_after(measurements: int) -> type[RecordingInstruments]:
    """A :class:`RecordingInstruments` that raises ``RuntimeError("power cut")`` right after the
    ``measurements``-th measurement reading reaches the run (put it in place of ``athanor.app``'s)."""

    class PowerCut(RecordingInstruments):
        measured = 0

        def submit(self, protocols, on_reading):
            def cut(reading):
                on_reading(reading)
                if reading.action == "measure":
                    PowerCut.measured += 1
                    if PowerCut.measured == measurements:
                        raise RuntimeError("power cut")

            super().submit(protocols, cut)

    return PowerCut


def ctrl_c_after(measurements: int) -> type[RecordingInstruments]:
    """A :class:`RecordingInstruments` that sends this process SIGINT, as Ctrl-C in its terminal
    does, right after the ``measurements``-th measurement reading reaches the run."""
    import os
    import signal

    class CtrlC(RecordingInstruments):
        measured = 0

        def submit(self, protocols, on_reading):
            def interrupt(reading):
                on_reading(reading)
                if reading.action == "measure":
                    CtrlC.measured += 1
                    if CtrlC.measured == measurements:
                        os.kill(os.getpid(), signal.SIGINT)

            super().submit(protocols, interrupt)

    return CtrlC
