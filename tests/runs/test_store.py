from __future__ import annotations

import json
from pathlib import Path

import pytest

from athanor.errors import AthanorError
from athanor.models import Observation
from athanor.spec import CampaignSpec
from runs.context import RunContext
from runs.manifest import write_manifest
from runs.observations import ObservationsCSV
from runs.store import (
    athanor_home,
    check_observations,
    create_run_dir,
    list_runs,
    resolve_run,
    runs_root,
)

SPEC = CampaignSpec.model_validate(
    {
        "title": "Conductive blend",
        "components": [{"name": "P3HT"}, {"name": "CNT"}],
        "objectives": [{"name": "conductivity", "unit": "S/cm"}],
        "budget": {"experiments": 10, "batch_size": 2},
    }
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


#: A payload of each kind that ends a run, as the run records it.
ENDINGS = {
    "run_finished": {
        "summary": {
            "objective": "conductivity",
            "unit": "S/cm",
            "experiments": 1,
            "failed": 0,
            "best_value": None,
            "best_experiment": None,
            "best_composition": None,
            "best_initial_value": None,
        },
        "decision": {"action": "stop", "reason": "budget used"},
        "report": "report.md",
    },
    "run_failed": {"error": "LLMError: endpoint down"},
    "run_stopped": {"error": "StopRequested: SIGTERM", "signal": "SIGTERM", "aborted": False},
}


def _make_run(run_id: str, values: list[float | None], final: str | None) -> Path:
    run_dir = create_run_dir(run_id)
    write_manifest(run_dir, SPEC, seed=1, extra={"llm_backend": "offline"})
    with RunContext(run_dir, seed=1) as ctx, ObservationsCSV(run_dir / "observations.csv", SPEC) as table:
        ctx.record("run_started", {"run_id": run_id})
        for value in values:
            experiment_id = ctx.next_experiment_id()
            table.append(
                Observation(
                    experiment_id=experiment_id,
                    iteration=0,
                    composition={"P3HT": 0.5, "CNT": 0.5},
                    values={} if value is None else {"conductivity": value},
                    status="failed" if value is None else "ok",
                )
            )
        if final:
            ctx.record(final, ENDINGS[final])
    return run_dir


def test_home_follows_environment(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert athanor_home() == home
    assert runs_root() == home / "runs"
    monkeypatch.delenv("ATHANOR_HOME")
    monkeypatch.chdir(tmp_path)
    assert athanor_home() == tmp_path / ".athanor"


def test_create_run_dir_is_exclusive_and_checks_the_name(home: Path) -> None:
    path = create_run_dir("20261127-201500-x-abcd")
    assert path == home / "runs" / "20261127-201500-x-abcd"
    assert path.is_dir()
    with pytest.raises(AthanorError, match="already exists"):
        create_run_dir("20261127-201500-x-abcd")
    for bad in ["../escape", "a/b", "", ".hidden"]:
        with pytest.raises(AthanorError, match="folder name"):
            create_run_dir(bad)


def test_resolve_by_id_prefix_and_path(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _make_run("20261127-201500-blend-aaaa", [1.0], "run_finished")
    b = _make_run("20261128-091000-blend-bbbb", [2.0], "run_finished")
    assert resolve_run("20261127-201500-blend-aaaa") == a
    assert resolve_run("20261128") == b
    assert resolve_run(str(a)) == a
    monkeypatch.chdir(home / "runs")
    assert resolve_run("./20261127-201500-blend-aaaa") == a


def test_unknown_ref_lists_close_matches_and_the_hint(home: Path) -> None:
    _make_run("20261127-201500-blend-aaaa", [1.0], None)
    with pytest.raises(AthanorError) as info:
        resolve_run("20261127-201500-blend-aaab")
    message = str(info.value)
    assert "20261127-201500-blend-aaaa" in message
    assert "athanor runs" in message
    with pytest.raises(AthanorError, match="athanor runs"):
        resolve_run("zzz")


def test_ambiguous_prefix_names_the_candidates(home: Path) -> None:
    _make_run("20261127-201500-blend-aaaa", [], None)
    _make_run("20261127-201500-blend-bbbb", [], None)
    with pytest.raises(AthanorError, match="matches 2 runs") as info:
        resolve_run("20261127")
    assert "blend-aaaa" in str(info.value) and "blend-bbbb" in str(info.value)
    assert "athanor runs" in str(info.value)


def test_path_that_is_not_a_run_folder_is_refused(home: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(AthanorError, match="not a run folder"):
        resolve_run(str(tmp_path / "empty"))


def test_no_runs_yet_says_where_it_looked(home: Path) -> None:
    with pytest.raises(AthanorError, match="no runs in"):
        resolve_run("anything")


def test_list_runs_newest_first_with_status_and_best(home: Path) -> None:
    _make_run("20261127-201500-blend-aaaa", [3.0, None, 5.0], "run_finished")
    _make_run("20261127-201600-blend-bbbb", [1.0], "run_failed")
    _make_run("20261127-201700-blend-cccc", [], None)  # no terminal event, nobody writing
    # Make the creation times distinct and known.
    for minute, run_id in [(15, "aaaa"), (16, "bbbb"), (17, "cccc")]:
        manifest_path = runs_root() / f"20261127-20{minute}00-blend-{run_id}" / "manifest.json"
        data = json.loads(manifest_path.read_text())
        data["created"] = f"2026-11-27T20:{minute}:00Z"
        manifest_path.write_text(json.dumps(data))
    runs = list_runs()
    assert [r.run_id for r in runs] == [
        "20261127-201700-blend-cccc",
        "20261127-201600-blend-bbbb",
        "20261127-201500-blend-aaaa",
    ]
    newest, failed, finished = runs
    assert newest.status == "stopped"
    assert failed.status == "failed"
    assert finished.status == "finished"
    assert finished.experiments_done == 3
    assert finished.best_value == 5.0
    assert finished.objective == "conductivity"
    assert finished.unit == "S/cm"
    assert finished.title == "Conductive blend"
    assert newest.best_value is None
    assert all(r.problem == "" for r in runs)


def test_running_run_is_running_while_its_log_is_open(home: Path) -> None:
    run_dir = create_run_dir("20261127-201500-live-abcd")
    with RunContext(run_dir, seed=0) as ctx:
        ctx.record("run_started", {"run_id": run_dir.name})
        assert list_runs()[0].status == "running"
    assert list_runs()[0].status == "stopped"


def test_list_runs_is_empty_without_a_runs_folder(home: Path) -> None:
    assert list_runs() == []


def test_manifest_records_spec_seed_versions_and_revision(home: Path, tmp_path: Path) -> None:
    import re

    from runs.manifest import code_revision, read_manifest

    run_dir = create_run_dir("20261127-201500-blend-abcd")
    write_manifest(run_dir, SPEC, seed=9, extra={"llm_backend": "offline", "lab": "lab.yaml"})
    manifest = read_manifest(run_dir)
    assert CampaignSpec.model_validate(manifest["spec"]) == SPEC
    assert manifest["seed"] == 9
    assert manifest["run_id"] == "20261127-201500-blend-abcd"
    assert manifest["llm_backend"] == "offline"
    assert manifest["extra"]["lab"] == "lab.yaml"
    assert manifest["packages"]["pydantic"] is not None
    assert set(manifest["packages"]) >= {"athanor-lab", "torch", "botorch", "numpy", "scipy"}
    code = manifest["code"]
    assert code is None or re.fullmatch(r"[0-9a-f]{40}", code["commit"])
    assert code_revision(tmp_path) is None  # not a checkout: null, not an error
    with pytest.raises(AthanorError, match="athanor runs"):
        read_manifest(tmp_path)


def _recorded_run(run_id: str, rows: list[tuple[float, float | None, str]]) -> Path:
    """A finished run whose observations.csv and event log both hold each (P3HT, value, note) row."""
    run_dir = create_run_dir(run_id)
    write_manifest(run_dir, SPEC, seed=4)
    with RunContext(run_dir, seed=4) as ctx, ObservationsCSV(run_dir / "observations.csv", SPEC) as table:
        ctx.record("run_started", {"run_id": run_id})
        for share, value, note in rows:
            observation = Observation(
                experiment_id=ctx.next_experiment_id(),
                iteration=1,
                composition={"P3HT": share, "CNT": round(1 - share, 6)},
                values={} if value is None else {"conductivity": value},
                status="failed" if value is None else "ok",
                note=note,
            )
            table.append(observation)
            ctx.record("observation", observation.model_dump(mode="json"))
        ctx.record("run_finished", ENDINGS["run_finished"])
    return run_dir


ROWS = [(0.62, 118.25, ""), (0.4, None, "meter timed out\nretried once"), (0.55, 1e-3, "低电导")]


def test_an_untouched_observations_csv_matches_the_event_log(home: Path) -> None:
    run_dir = _recorded_run("20261203-101500-untouched-aaaa", ROWS)
    check = check_observations(run_dir, SPEC)
    assert (check.ok, check.rows, check.logged, check.differences) == (True, 3, 3, [])


def test_an_edited_cell_a_deleted_row_and_an_added_row_are_each_named(home: Path) -> None:
    run_dir = _recorded_run("20261203-101500-edited-bbbb", ROWS)
    path = run_dir / "observations.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines[1].startswith("E0001,1,0.62,")
    lines[1] = lines[1].replace("118.25", "181.25")  # a value typed in by hand
    del lines[2]  # E0002, the failed one
    lines.append("E0009,2,0.5,0.5,42.0,ok,\n")  # a row no instrument measured
    path.write_text("".join(lines), encoding="utf-8")

    check = check_observations(run_dir, SPEC)

    assert not check.ok and (check.rows, check.logged) == (3, 3)
    assert check.differences == [
        "E0001 conductivity: 181.25 in observations.csv, 118.25 in the event log",
        "E0009: in observations.csv but not in the event log",
        "E0002: in the event log but not in observations.csv",
    ]


def test_runs_shows_a_broken_chain_whatever_the_status(home: Path) -> None:
    intact = _recorded_run("20261203-101500-intact-cccc", ROWS)
    altered = _recorded_run("20261203-101600-altered-dddd", ROWS)
    log = altered / "events.jsonl"
    log.write_bytes(log.read_bytes().replace(b"118.25", b"128.25", 1))
    by_id = {s.run_id: s for s in list_runs()}
    good, bad = by_id[intact.name], by_id[altered.name]
    assert (good.status, good.verified, good.shown_status) == ("finished", True, "finished")
    assert (bad.status, bad.verified) == ("finished", False)
    assert bad.shown_status == "finished (chain broken)"
    assert bad.chain_problem.startswith("seq 2 (line 3): hash does not match")
    assert bad.to_json()["verified"] is False and bad.to_json()["status"] == "finished"


def test_a_log_cut_mid_line_is_broken_unless_it_is_still_being_written(home: Path) -> None:
    run_dir = create_run_dir("20261203-101500-live-eeee")
    with RunContext(run_dir, seed=0) as ctx:
        ctx.record("run_started", {"run_id": run_dir.name})
        with open(run_dir / "events.jsonl", "ab") as handle:
            handle.write(b'{"seq":1,"time":"2026-12')  # the writer is half-way through a line
        (running,) = list_runs()
        assert (running.status, running.verified) == ("running", True)
    (stopped,) = list_runs()  # nobody will finish that line now
    assert stopped.status == "stopped" and stopped.verified is False
    assert "no newline" in stopped.chain_problem
