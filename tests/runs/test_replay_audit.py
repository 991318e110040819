"""Attempts, payload differences and the per-kind comparison that name a replay's first divergence."""

from __future__ import annotations

from runs.replay_audit import ReplayReport, compare_events, earliest, payload_diff, split_attempts


def log(*items):
    """Events numbered in order, as the event log writes them."""
    return [{"seq": seq, "kind": kind, "payload": payload} for seq, (kind, payload) in enumerate(items)]


def test_attempts_are_cut_at_each_resume_with_their_outcome():
    events = log(
        ("run_started", {}),
        ("run_failed", {"error": "LLMError: endpoint down"}),
        ("run_resumed", {}),
        ("run_finished", {}),
    )
    first, second = split_attempts(events)
    assert (first.outcome, first.error, first.start_seq, first.end_seq) == ("failed", "endpoint down", 0, 1)
    assert (second.outcome, second.finished, second.start_seq) == ("finished", True, 2)
    (only,) = split_attempts(events[:1])
    assert only.outcome == "cut off" and not only.finished


def test_payload_diff_tolerates_rounding_noise_but_not_a_changed_value():
    recorded = {"seed": 7, "proposals": [{"composition": {"A": 0.3, "B": 0.7}, "source": "model"}]}
    noisy = {"seed": 7, "proposals": [{"composition": {"A": 0.3 + 1e-15, "B": 0.7}, "source": "model"}]}
    assert payload_diff(recorded, noisy) == []
    shifted = {"seed": 8, "proposals": [{"composition": {"A": 0.31, "B": 0.7}, "source": "model"}]}
    assert payload_diff(recorded, shifted) == [
        "payload.seed: recorded 7, replayed 8",
        "payload.proposals[0].composition.A: recorded 0.3, replayed 0.31",
    ]
    assert payload_diff({"ok": True}, {"ok": 1}) == ["payload.ok: recorded True, replayed 1"]


def test_compare_names_the_earliest_recorded_divergence_and_counts_matches():
    recorded = log(
        ("optimiser_call", {"seed": 1}),
        ("decision", {"action": "continue"}),
        ("optimiser_call", {"seed": 2}),
        ("decision", {"action": "stop"}),
    )
    replayed = log(
        ("optimiser_call", {"seed": 1}),
        ("decision", {"action": "continue"}),
        ("optimiser_call", {"seed": 3}),
        ("decision", {"action": "continue"}),
    )
    tallies, first = compare_events(recorded, replayed)
    counts = {t.kind: (t.recorded, t.replayed, t.matched) for t in tallies}
    assert counts["optimiser_call"] == (2, 2, 1) and counts["decision"] == (2, 2, 1)
    assert (first.seq, first.kind) == (2, "optimiser_call")
    assert first.diff == ["payload.seed: recorded 2, replayed 3"]
    assert compare_events(recorded, recorded)[1] is None

    short = replayed[:2]
    missing = compare_events(recorded, short)[1]
    assert missing.message == "the replay never made the recorded optimiser_call #2" and missing.seq == 2
    assert compare_events(recorded, short, missing_after=1)[1] is None  # the replay stopped at seq 1
    extra = compare_events(recorded[:2], replayed)[1]
    assert extra.seq is None and "never made" in extra.message
    assert earliest([extra, first]) is first


def test_report_is_ok_only_without_a_divergence_and_serialises_it(tmp_path):
    recorded = log(("decision", {"action": "continue"}), ("decision", {"action": "stop"}))
    tallies, first = compare_events(recorded, recorded)
    report = ReplayReport("run-1", tmp_path, "the whole run", tallies, first)
    assert report.ok and report.matched == 2
    assert report.to_json()["divergence"] is None

    tallies, first = compare_events(recorded, recorded[:1])
    report = ReplayReport("run-1", tmp_path, "the whole run", tallies, first)
    data = report.to_json()
    assert not report.ok and data["ok"] is False
    assert data["divergence"]["seq"] == 1 and data["divergence"]["kind"] == "decision"
    assert report.divergence.describe().startswith("seq 1 (decision): the replay never made")
