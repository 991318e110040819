"""Campaigns recorded with an earlier optimiser replay with every decision matched by the current one.

The fixtures (one event log per campaign, made by ``record.py``) cover each path of the optimiser a
campaign takes: one objective, two objectives (Pareto), a mixed space with a categorical choice, a
cheap simulated source beside the experiment, and prior data. A replay re-makes every optimiser call
from the recorded inputs and compares it with the record (numbers to 1e-9), so any change of what
the optimiser proposes shows up here as a divergence at that call.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import athanor.app as app_module
from athanor.app import replay
from runs.eventlog import read_events

FIXTURES = Path(__file__).parent
CAMPAIGNS = sorted(p.parent.name for p in FIXTURES.glob("*/events.jsonl"))


class NoLab:
    def __init__(self, *args, **kwargs):
        raise AssertionError("a replay created an instrument")


@pytest.fixture
def no_lab(monkeypatch, tmp_path):
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(app_module, "RayLab", NoLab)
    monkeypatch.setattr(app_module, "ensure_ray", lambda *a, **k: pytest.fail("a replay started Ray"))


def test_every_optimiser_path_has_a_recorded_campaign():
    assert CAMPAIGNS == ["cheap_source", "mixed_categorical", "pareto", "prior_data", "single_objective"]


@pytest.mark.parametrize("name", CAMPAIGNS)
def test_a_recorded_campaign_replays_with_every_decision_matched(name, no_lab):
    run_dir = FIXTURES / name
    recorded = read_events(run_dir / "events.jsonl")
    model_calls = [
        e for e in recorded if e["kind"] == "optimiser_call" and e["payload"]["method"] != "initial_design"
    ]
    assert any(p["source"] == "model" for e in model_calls for p in e["payload"]["proposals"])

    report = replay(str(run_dir), write=False)

    assert report.ok, report.divergence.describe()
    tallies = {t.kind: (t.recorded, t.replayed, t.matched) for t in report.tallies}
    calls = sum(e["kind"] == "optimiser_call" for e in recorded)
    assert tallies["optimiser_call"] == (calls, calls, calls)
    assert all(t.recorded == t.replayed == t.matched for t in report.tallies), tallies
    assert "the whole run" in report.scope
