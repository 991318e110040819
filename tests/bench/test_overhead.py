"""The overhead benchmark splits a real campaign's time and re-checks every optimiser call."""

from __future__ import annotations

import copy

import pytest

from athanor.spec import CampaignSpec
from bench.overhead import measure_overhead, optimiser_seconds
from runs.eventlog import read_events


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    return measure_overhead(experiments=8, batch=4, repeats=1, home=home), home


@pytest.mark.slow
def test_campaign_time_splits_into_optimiser_and_orchestration(measured):
    results, _ = measured
    assert results["reproduced"] is True
    assert results["startup_s"] > 0
    assert 0 < results["optimiser_s"] < results["campaign_s"]
    assert results["orchestration_s"] == pytest.approx(results["campaign_s"] - results["optimiser_s"])
    assert 0 < results["orchestration_share"] < 1
    # every experiment leaves its proposal, protocol, submission, readings and observation in the log
    assert results["events_per_experiment"] >= 5
    assert 0 < results["event_append_s"] < 1


@pytest.mark.slow
def test_a_proposal_that_differs_from_the_record_is_caught(measured):
    _, home = measured
    run_dir = next((home / "runs").iterdir())
    events = read_events(run_dir / "events.jsonl")
    spec = CampaignSpec.model_validate(next(e["payload"] for e in events if e["kind"] == "spec"))
    assert optimiser_seconds(events, spec)[1] is True
    tampered = copy.deepcopy(events)
    call = next(e for e in tampered if e["kind"] == "optimiser_call" and e["payload"]["method"] == "propose")
    first = call["payload"]["proposals"][0]["composition"]
    name = next(iter(first))
    first[name] = first[name] + 0.01
    assert optimiser_seconds(tampered, spec)[1] is False
