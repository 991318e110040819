"""Orchestration overhead: what the graph, the actors and the record cost on top of the optimiser.

A campaign runs end to end (real graph, mock LLM, Ray actors, event log, SQLite checkpoints) on a
virtual lab whose instruments take no time (``time_scale = 0``). Its wall time splits into the start-up
(Ray and one actor per instrument, paid once per campaign, from the ``lab`` event to the graph's first
``node`` event) and the campaign itself, which is the optimiser's time plus the orchestration's. The
optimiser's part is measured by calling
:func:`tools.optimiser.propose` again with the inputs and seeds each recorded ``optimiser_call`` holds;
the proposals must come out the same (a reproducibility check), and the rest of the wall time is the
orchestration: the roles, protocol compilation and checks, Ray dispatch, the event log (every event
fsynced) and the checkpoints. The campaign is repeated and the one with the median campaign time is
reported.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from athanor.app import RunOptions, run
from athanor.models import Observation
from athanor.spec import CampaignSpec
from instruments.virtual_lab import virtual_lab_description
from runs.eventlog import EventLog, read_events
from tools.optimiser import propose

__all__ = ["event_append_seconds", "measure_overhead", "optimiser_seconds"]

COMPONENTS = ("A", "B", "C", "D")


def _spec(experiments: int, batch: int, seed: int) -> dict[str, Any]:
    return {
        "title": "orchestration overhead",
        "components": [{"name": name} for name in COMPONENTS],
        "objectives": [{"name": "conductivity", "unit": "S/cm"}],
        "budget": {"experiments": experiments, "batch_size": batch, "initial_experiments": batch},
        "seed": seed,
    }


def optimiser_seconds(events: list[dict[str, Any]], spec: CampaignSpec) -> tuple[float, bool]:
    """Time the run's model-based optimiser calls again, from their recorded inputs.

    Args:
        events: The run's events (``runs.eventlog.read_events``).
        spec: The run's spec.

    Returns:
        Seconds spent in :func:`tools.optimiser.propose` over the run, and whether every call gave the
        recorded proposals again.
    """
    observations: list[Observation] = []
    total = 0.0
    same = True
    for event in events:
        payload = event["payload"]
        if event["kind"] == "observation":
            observations.append(Observation.model_validate(payload))
        elif event["kind"] == "optimiser_call" and payload["method"] == "propose":
            known = observations[: payload["observations"]]
            start = time.perf_counter()
            suggestions = propose(spec, known, payload["n"], payload["seed"], payload["pending"])
            total += time.perf_counter() - start
            recorded = [p["composition"] for p in payload["proposals"]]
            same = same and [s.composition for s in suggestions] == recorded
    return total, same


def event_append_seconds(samples: int = 200) -> float:
    """Median seconds to append one (fsynced, hash-chained) event to a run's log."""
    with tempfile.TemporaryDirectory(prefix="athanor-bench-") as folder:
        log = EventLog(Path(folder) / "events.jsonl")
        payload = {"instrument": "meter", "action": "measure", "params": {"well": "A1"}}
        times = []
        for i in range(samples):
            start = time.perf_counter()
            log.append("command", payload, float(i))
            times.append(time.perf_counter() - start)
        log.close()
    return statistics.median(times)


def measure_overhead(
    experiments: int = 24, batch: int = 4, repeats: int = 3, seed: int = 0, home: Path | None = None
) -> dict[str, Any]:
    """Run the campaign ``repeats`` times and split its wall time into optimiser and orchestration.

    Args:
        experiments: Experiments per campaign.
        batch: Batch size (also the size of the initial design).
        repeats: Number of campaigns; medians are taken over them.
        seed: Seed of every campaign (they are the same campaign).
        home: Where the runs are recorded (default: a temporary folder).

    Returns:
        ``{"experiments", "batch", "repeats", "wall_s", "startup_s", "campaign_s", "optimiser_s",
        "orchestration_s", "orchestration_per_experiment_s", "orchestration_share",
        "events_per_experiment", "event_append_s", "reproduced", "campaign_s_each"}``: times in
        seconds, of the campaign with the median campaign time (so that the parts add up);
        ``orchestration_s`` is its campaign time minus its optimiser time and ``orchestration_share``
        that over the campaign time (start-up excluded).
    """
    home = home or Path(tempfile.mkdtemp(prefix="athanor-bench-"))
    os.environ["ATHANOR_HOME"] = str(home)
    lab = virtual_lab_description(list(COMPONENTS), time_scale=0.0)
    walls, startups, campaigns, optimiser, events_per = [], [], [], [], []
    reproduced = True
    for _ in range(repeats):
        options = RunOptions(
            llm="mock",
            llm_script={"parse_request": [_spec(experiments, batch, seed)]},
            lab=lab,
            literature=False,
        )
        start = time.perf_counter()
        result = run("orchestration overhead benchmark", options)
        walls.append(time.perf_counter() - start)
        events = read_events(result.run_dir / "events.jsonl")
        graph_start = next(e["t"] for e in events if e["kind"] == "node")
        lab_event = next(e["t"] for e in events if e["kind"] == "lab")
        startups.append(graph_start - lab_event)
        campaigns.append(events[-1]["t"] - graph_start)
        seconds, same = optimiser_seconds(events, result.spec)
        optimiser.append(seconds)
        reproduced = reproduced and same
        events_per.append(len(events) / experiments)
    # the parts come from one campaign (the median one) so that they add up
    middle = sorted(range(repeats), key=lambda i: campaigns[i])[(repeats - 1) // 2]
    campaign = campaigns[middle]
    orchestration = campaign - optimiser[middle]
    return {
        "experiments": experiments,
        "batch": batch,
        "repeats": repeats,
        "wall_s": walls[middle],
        "startup_s": startups[middle],
        "campaign_s": campaign,
        "campaign_s_each": campaigns,
        "optimiser_s": optimiser[middle],
        "orchestration_s": orchestration,
        "orchestration_per_experiment_s": orchestration / experiments,
        "orchestration_share": orchestration / campaign,
        "events_per_experiment": statistics.median(events_per),
        "event_append_s": event_append_seconds(),
        "reproduced": reproduced,
    }
