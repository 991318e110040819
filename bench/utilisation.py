"""Instrument utilisation: asynchronous proposals versus synchronous batches, in one run.

The same campaign runs twice through the real graph, the real optimiser and Ray actors, on a virtual
lab with a fast liquid handler and four conductivity meters of different speeds:

- ``sync``: batches of four; each batch waits for its slowest meter before the next is designed.
- ``async``: as each experiment finishes, the designer proposes its replacement with the running
  experiments as pending points; one prepared sample is kept ahead of the meters.

Utilisation of a meter is its busy time (sum of its measurements' durations) over the wall time from
the first command to the last reading; the figure reported is the mean over the four meters.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from athanor.app import RunOptions, run
from athanor.lab import LabDescription
from instruments.virtual_lab import virtual_lab_description
from runs.eventlog import read_events

__all__ = ["bench_lab", "measure", "utilisation_from_events"]

#: Seconds per measurement of the four meters (before ``time_scale``).
METER_SECONDS = (2.0, 4.0, 6.0, 8.0)
COMPONENTS = ("A", "B", "C")


def bench_lab(meter_seconds: tuple[float, ...] = METER_SECONDS, time_scale: float = 1.0) -> LabDescription:
    """The virtual lab with a fast liquid handler and one meter per entry of ``meter_seconds``."""
    lab = virtual_lab_description(list(COMPONENTS), time_scale=time_scale)
    handler = lab.first_of_kind("liquid_handler")
    meter = lab.first_of_kind("conductivity_meter")
    fast_handler = handler.model_copy(
        update={
            "duration_s": 0.02,
            "options": {**handler.options, "durations": {"mix": 0.02, "safe_state": 0.01}},
        }
    )
    meters = [
        meter.model_copy(update={"name": f"meter_{i}", "duration_s": seconds})
        for i, seconds in enumerate(meter_seconds, start=1)
    ]
    return lab.model_copy(update={"instruments": [fast_handler, *meters]})


def utilisation_from_events(events: list[dict[str, Any]], meters: list[str]) -> dict[str, Any]:
    """Busy time over wall time per meter, from a run's recorded readings.

    Args:
        events: The run's events (``runs.eventlog.read_events``).
        meters: Names of the instruments to measure.

    Returns:
        ``{"utilisation": mean fraction, "wall_s": s, "per_instrument": {name: fraction}}``.
    """
    readings = [e["payload"] for e in events if e["kind"] == "reading"]
    if not readings:
        return {"utilisation": 0.0, "wall_s": 0.0, "per_instrument": {}}
    start = min(r["started"] for r in readings)
    end = max(r["finished"] for r in readings)
    wall = max(end - start, 1e-9)
    busy = dict.fromkeys(meters, 0.0)
    for reading in readings:
        if reading["instrument"] in busy and reading["ok"]:
            busy[reading["instrument"]] += reading["finished"] - reading["started"]
    per = {name: seconds / wall for name, seconds in busy.items()}
    return {"utilisation": sum(per.values()) / len(per), "wall_s": wall, "per_instrument": per}


def _spec(mode: str, experiments: int, batch: int, seed: int) -> dict[str, Any]:
    return {
        "title": f"utilisation {mode}",
        "components": [{"name": name} for name in COMPONENTS],
        "objectives": [{"name": "conductivity", "unit": "S/cm"}],
        "budget": {"experiments": experiments, "batch_size": batch, "initial_experiments": 4, "mode": mode},
        "seed": seed,
    }


def measure(
    experiments: int = 40,
    time_scale: float = 1.0,
    seed: int = 0,
    home: Path | None = None,
    meter_seconds: tuple[float, ...] = METER_SECONDS,
) -> dict[str, Any]:
    """Run the campaign in both modes and return their utilisation and wall time.

    Args:
        experiments: Experiments per campaign.
        time_scale: Multiplier on the meters' durations (1: 2, 4, 6 and 8 s).
        seed: Seed of both campaigns.
        home: Where the two runs are recorded (default: a temporary folder).
        meter_seconds: Seconds per measurement of each meter.

    Returns:
        ``{"async": {"utilisation", "wall_s", "per_instrument", "run_dir"}, "sync": {...}, ...}``.
    """
    home = home or Path(tempfile.mkdtemp(prefix="athanor-bench-"))
    os.environ["ATHANOR_HOME"] = str(home)
    lab = bench_lab(meter_seconds, time_scale)
    meters = [i.name for i in lab.instruments if i.kind == "conductivity_meter"]
    n = len(meters)
    results: dict[str, Any] = {}
    # async keeps one prepared sample ahead of the meters; sync runs one sample per meter per batch
    for mode, batch in (("sync", n), ("async", n + 1)):
        options = RunOptions(
            llm="mock",
            llm_script={
                "parse_request": [_spec("batch" if mode == "sync" else "async", experiments, batch, seed)]
            },
            lab=lab,
            literature=False,
        )
        result = run(f"utilisation benchmark, {mode}", options)
        figures = utilisation_from_events(read_events(result.run_dir / "events.jsonl"), meters)
        results[mode] = {**figures, "run_dir": str(result.run_dir)}
    results["meter_seconds"] = [s * time_scale for s in meter_seconds]
    results["experiments"] = experiments
    return results
