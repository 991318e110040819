"""Killed anywhere, resumed: the same campaign as the one never killed, with nothing done twice or lost.

A simulated lab is a function of the seed and the action (each keyed command draws its own noise),
so a campaign killed at any point and resumed must give exactly the observations of the same
campaign run without a kill. The kills are crash drills in this process (``crash_at_event``: the
record stops dead at a recorded event count, drawn at random), and one real SIGKILL of a child
``athanor run`` with its Ray.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from support.cli_process import ROOT, athanor_command, athanor_environment

from athanor.app import RunOptions, replay, resume, run
from athanor.models import Observation
from athanor.spec import CampaignSpec
from instruments.actors import ledger_file
from instruments.ledger import DONE, Ledger
from runs.audit import audit_run
from runs.context import PowerCut
from runs.eventlog import read_events, verify_log
from runs.observations import logged_observations, read_observations
from runs.seal import recorded_head

SPEC = {
    "title": "electrolyte drill",
    "components": [{"name": "PEO"}, {"name": "LiTFSI"}, {"name": "SiO2"}],
    "objectives": [{"name": "conductivity", "unit": "mS/cm"}],
    "budget": {"experiments": 6, "batch_size": 2},
    "seed": 29,
}
SPEC_MODEL = CampaignSpec.model_validate(SPEC)
KILLS = 20
#: Kills of one campaign before it is resumed to its end.
KILLS_PER_CAMPAIGN = 10
#: The next kill of a campaign comes 1 to STRIDE - 1 events after where its resume starts.
STRIDE = 14
#: Set to repeat an earlier draw of kill points (every failure names the seed it drew).
SEED_VARIABLE = "ATHANOR_KILL_SEED"


def _options(**more) -> RunOptions:
    return RunOptions(llm="offline", literature=False, time_scale=0.0, **more)


def _only_run(home: Path) -> Path:
    (run_dir,) = (home / "runs").iterdir()
    return run_dir


def _by_id(observation: Observation) -> str:
    return observation.experiment_id


def _outcome(home: Path) -> dict:
    """What the campaign did: its observations, its instruments' actions and the plate they left."""
    run_dir = _only_run(home)
    events = read_events(run_dir / "events.jsonl")
    actions = {}
    for path in sorted((home / "ledgers").glob("*.sqlite")):
        for entry in Ledger(path).history(run_dir.name):
            actions[entry.key.removeprefix(run_dir.name + "/")] = (entry.state, entry.reading["values"])
    world = json.loads((run_dir / "virtual_world.json").read_text(encoding="utf-8"))
    return {
        "observations": sorted(logged_observations(events), key=_by_id),
        "table": sorted(read_observations(run_dir / "observations.csv", SPEC_MODEL), key=_by_id),
        "actions": actions,
        "wells": world["wells"],
        "applied": sorted(key.removeprefix(run_dir.name + "/") for key in world["applied"]),
    }


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("campaign") / "drill.yaml"
    path.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def uninterrupted(ray_local, campaign, tmp_path_factory) -> tuple[dict, int, int]:
    """The campaign never killed: its outcome, its event count and where its set-up ends."""
    home = tmp_path_factory.mktemp("uninterrupted")
    patch = pytest.MonkeyPatch()
    patch.setenv("ATHANOR_HOME", str(home))
    try:
        run(str(campaign), _options())
        events = read_events(_only_run(home) / "events.jsonl")
        outcome = _outcome(home)
    finally:
        patch.undo()
    kinds = [e["kind"] for e in events]
    return outcome, len(events), kinds.index("lab") + 1


def _drop_last_row(run_dir: Path) -> bool:
    """Cut the last row off ``observations.csv``, as a SIGKILL between the log and the table would."""
    table = run_dir / "observations.csv"
    if not table.exists():
        return False
    rows = table.read_text(encoding="utf-8").splitlines(keepends=True)
    if len(rows) < 2:
        return False
    table.write_text("".join(rows[:-1]), encoding="utf-8")
    return True


def _check_resumed(home: Path, expected: dict, where: str) -> int:
    """Assert the resumed run is the uninterrupted one; returns how many actions ran again in doubt."""
    run_dir = _only_run(home)
    got = _outcome(home)
    assert got["observations"] == expected["observations"], where
    assert got["table"] == expected["observations"], where  # observations.csv holds each once, as logged
    assert got["actions"] == expected["actions"], where  # every action done, none missing, none extra
    assert all(state == DONE for state, _ in got["actions"].values()), where
    assert got["wells"] == expected["wells"] and got["applied"] == expected["applied"], where  # nothing twice
    assert verify_log(run_dir / "events.jsonl").ok, where
    replayed = replay(str(run_dir), write=False)
    assert replayed.divergence is None, f"{where}: {replayed.divergence.describe()}"
    audit = audit_run(run_dir, recorded_head(run_dir.name, home), "the run index")
    assert audit.ok, f"{where}: {[c.detail for c in audit.checks if c.fatal and not c.ok]}"
    retried = 0
    for path in (home / "ledgers").glob("*.sqlite"):
        retried += sum(e.attempts - 1 for e in Ledger(path).history(run_dir.name))
    return retried


@pytest.mark.slow
def test_killed_at_20_random_points_every_resumed_run_is_the_uninterrupted_one(
    ray_local, campaign, uninterrupted, tmp_path, monkeypatch, record_property
):
    # Starting a lab's actors costs most of an attempt (about 4 s on 2 cores), so the kills are
    # chained: each campaign is killed, resumed and killed again, KILLS_PER_CAMPAIGN times, before
    # a last resume runs it to its end. Every resume continues from whatever the kills left.
    expected, total, set_up = uninterrupted
    seed = int(os.environ.get(SEED_VARIABLE, random.SystemRandom().randrange(2**32)))
    draw = random.Random(seed)
    kills: list[tuple[int, int]] = []  # (campaign, events in its log when the power went)
    retried = {}
    number = 0
    while len(kills) < KILLS:
        number += 1
        home = tmp_path / f"campaign-{number}"
        monkeypatch.setenv("ATHANOR_HOME", str(home))
        point = draw.randrange(set_up, total)
        with pytest.raises(PowerCut):
            run(str(campaign), _options(crash_at_event=point))
        run_dir = _only_run(home)
        kills.append((number, point))
        cut_row = _drop_last_row(run_dir)
        while len(kills) < KILLS and sum(n == number for n, _ in kills) < KILLS_PER_CAMPAIGN:
            point = len(read_events(run_dir / "events.jsonl")) + draw.randrange(1, STRIDE)
            try:
                resume(run_dir.name, _options(crash_at_event=point))
            except PowerCut:
                assert len(read_events(run_dir / "events.jsonl")) == point
                kills.append((number, point))
            else:
                break  # it finished before the power went
        if "run_finished" not in {e["kind"] for e in read_events(run_dir / "events.jsonl")}:
            resume(run_dir.name, _options())
        resumed = read_events(run_dir / "events.jsonl", "run_resumed")[0]["payload"]
        assert resumed["observations_rebuilt"] == cut_row  # the table made again from the log
        points = [p for n, p in kills if n == number]
        where = f"campaign {number}, killed at events {points} ({SEED_VARIABLE}={seed})"
        retried[number] = _check_resumed(home, expected, where)
    record_property("kill_seed", seed)
    record_property("kills", kills)
    print(f"kills ({SEED_VARIABLE}={seed}; campaign, events in its log; {total} uninterrupted): {kills}")
    print(f"actions run again after being left in doubt, per campaign: {retried}")


@pytest.mark.slow
def test_a_real_sigkill_mid_batch_resumes_to_the_uninterrupted_campaign(
    ray_local, campaign, uninterrupted, tmp_path, monkeypatch
):
    expected, total, set_up = uninterrupted
    home = tmp_path / "home"
    target = random.SystemRandom().randrange(set_up + 10, total - 10)
    command = athanor_command("run", str(campaign), "--no-literature", "--time-scale", "0.01")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    environment = athanor_environment(home)
    child = subprocess.Popen(command, cwd=ROOT, env=environment, start_new_session=True, **quiet)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            logs = list((home / "runs").glob("*/events.jsonl"))
            if logs and logs[0].read_bytes().count(b"\n") >= target:
                break
            assert child.poll() is None, "the campaign ended before it could be killed"
            time.sleep(0.005)
        else:
            pytest.fail(f"the run never reached event {target}")
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # the process and its Ray, mid-action
        child.wait(timeout=30)
    killed_at = logs[0].read_bytes().count(b"\n")
    monkeypatch.setenv("ATHANOR_HOME", str(home))
    resume(logs[0].parent.name, _options())
    _check_resumed(home, expected, f"SIGKILL at event {killed_at} (aimed at {target})")
    assert ledger_file(home / "ledgers", "conductivity_meter").exists()
