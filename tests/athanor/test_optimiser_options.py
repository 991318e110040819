"""A run started with optimiser options keeps them: recorded with each call, on resume and on replay."""

from __future__ import annotations

from dataclasses import replace

import pytest

import athanor.app as app_module
from athanor.app import RunOptions, replay, resume, run
from athanor.errors import AthanorError, LLMError
from runs.eventlog import read_events
from tools.optimiser import OptimiserOptions

SPEC = {
    "title": "options test",
    "components": [{"name": "P3HT", "lower": 0.4}, {"name": "D1"}, {"name": "D6"}],
    "sum_rule": {"total": 1.0},
    "objectives": [{"name": "conductivity", "unit": "S/cm"}],
    "budget": {"experiments": 6, "batch_size": 3},
    "seed": 13,
}


def calls(run_dir):
    return [e["payload"] for e in read_events(run_dir / "events.jsonl") if e["kind"] == "optimiser_call"]


@pytest.mark.slow
def test_a_run_with_optimiser_options_resumes_and_replays_with_them(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path / "home"))
    ucb = OptimiserOptions(acquisition="ucb", beta=4.0)
    script = {"parse_request": [SPEC], "decide": [LLMError("endpoint down")]}
    first = RunOptions(llm="mock", llm_script=script, literature=False, time_scale=0.001, optimiser=ucb)
    with pytest.raises(LLMError, match="endpoint down"):
        run("scripted", first)  # the first batch is measured, then the PI's model fails
    (run_dir,) = (tmp_path / "home" / "runs").iterdir()
    assert [c["options"] for c in calls(run_dir)] == [{"acquisition": "ucb", "beta": 4.0}]

    later = RunOptions(llm="offline", literature=False, time_scale=0.001)
    other = replace(later, optimiser=OptimiserOptions(warp=True))
    with pytest.raises(AthanorError, match=r"ran with optimiser options .*'ucb'.* drop the optimiser"):
        resume(run_dir.name, other)
    result = resume(run_dir.name, later)  # no options given: the recorded ones go on

    assert len(result.observations) == 6
    made = calls(run_dir)
    assert [c["method"] for c in made] == ["initial_design", "propose"]
    assert all(c["options"] == {"acquisition": "ucb", "beta": 4.0} for c in made)
    assert all("upper confidence bound" in p["rationale"] for p in made[1]["proposals"])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_module, "RayLab", None)  # a replay that built an instrument would fail
        patch.setattr(app_module, "ensure_ray", lambda *a, **k: pytest.fail("a replay started Ray"))
        replayed = replay(str(run_dir), write=False)
    assert replayed.ok, replayed.divergence.describe()
    assert {t.kind: t.matched for t in replayed.tallies}["optimiser_call"] == 2
