"""Auditing a run: every way of tampering with its folder (or forging its record) is caught, and named."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from athanor.app import RunOptions, run
from athanor.cli import app
from runs.audit import AuditReport, audit_run
from runs.eventlog import event_hash, read_events
from runs.seal import INDEX_FILE, Head, file_digests, recorded_head
from runs.signing import create_signing_key, lab_public_key, lab_signing_key, sign

SPEC = {
    "title": "sealed blend",
    "components": [{"name": "PEDOT"}, {"name": "PSS"}, {"name": "EG"}],
    "objectives": [{"name": "conductivity", "unit": "S/cm"}],
    "budget": {"experiments": 4, "batch_size": 2},
    "seed": 19,
}


@pytest.fixture(scope="module")
def sealed(ray_local, tmp_path_factory) -> Path:
    """A home with a signing key and one finished run (made once; each test works on a copy)."""
    home = tmp_path_factory.mktemp("sealed-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("ATHANOR_HOME", str(home))
    try:
        create_signing_key(home)
        script = {"parse_request": [SPEC]}
        run("scripted", RunOptions(llm="mock", llm_script=script, literature=False, time_scale=0.0))
    finally:
        patch.undo()
    return home


@pytest.fixture
def home(sealed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(sealed, copy)
    monkeypatch.setenv("ATHANOR_HOME", str(copy))
    return copy


def run_dir_of(home: Path) -> Path:
    (run_dir,) = (home / "runs").iterdir()
    return run_dir


def audit(home: Path, *, key: bool = True) -> AuditReport:
    run_dir = run_dir_of(home)
    public = lab_public_key(home) if key else None
    return audit_run(run_dir, recorded_head(run_dir.name, home), "the run index", public, "the lab's key")


def failed(report: AuditReport) -> dict[str, str]:
    """Each failing check that counts, with its detail as one text."""
    return {c.name: " | ".join(c.detail) for c in report.checks if c.fatal and not c.ok}


def lines_of(run_dir: Path) -> list[str]:
    return (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)


def write_lines(run_dir: Path, lines: list[str]) -> None:
    (run_dir / "events.jsonl").write_text("".join(lines), encoding="utf-8")


def rechain(events: list[dict]) -> str:
    """The log of ``events`` with every seq, prev_hash and hash made consistent again (a forger's)."""
    previous, out = "0" * 64, []
    for seq, event in enumerate(events):
        event = {**event, "seq": seq, "prev_hash": previous}
        event["hash"] = event_hash(event)
        previous = event["hash"]
        out.append(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")
    return "".join(out)


def test_an_untouched_run_passes_every_check_and_traces_each_experiment(home):
    report = audit(home)
    assert report.ok, failed(report)
    names = [c.name for c in report.checks]
    assert names[:5] == ["event log", "record format", "head", "signature", "files"]
    assert "signed by SHA256:" in next(c for c in report.checks if c.name == "signature").detail[0]
    assert [row.experiment_id for row in report.provenance] == ["E0001", "E0002", "E0003", "E0004"]
    row = report.provenance[3]
    assert "propose, seed" in row.proposal and "2 observations (E0001, E0002)" in row.proposal
    assert row.protocol.endswith("well A4") and row.readings.startswith("seq ")
    assert row.observation.split(": ")[1].startswith("ok conductivity") and "stop" in row.decision


@pytest.mark.parametrize("change", ["edit", "delete", "insert", "reorder"])
def test_an_event_edited_deleted_inserted_or_reordered_breaks_the_chain(home, change):
    run_dir = run_dir_of(home)
    lines = lines_of(run_dir)
    middle = next(i for i, line in enumerate(lines) if '"kind":"observation"' in line)
    if change == "edit":
        lines[middle] = lines[middle].replace('"status":"ok"', '"status":"outlier"')
    elif change == "delete":
        del lines[middle]
    elif change == "insert":
        lines.insert(middle, lines[middle - 5])  # an earlier event, copied in again
    else:
        lines[middle], lines[middle + 1] = lines[middle + 1], lines[middle]
    write_lines(run_dir, lines)
    problems = failed(audit(home))
    assert "event log" in problems and f"line {middle + 1}" in problems["event log"]


def test_a_cut_tail_is_caught_by_the_head_kept_outside_the_run_folder(home):
    run_dir = run_dir_of(home)
    lines = lines_of(run_dir)
    write_lines(run_dir, lines[:-3])  # run_finished and the two events before it: the chain still holds
    problems = failed(audit(home))
    assert "event log" not in problems
    assert "last 3 event(s) were cut off" in problems["head"]
    assert "does not end with the end of an attempt" in problems["files"]


@pytest.mark.parametrize(
    "name", ["observations.csv", "report.md", "convergence.png", "checkpoints.sqlite", "virtual_world.json"]
)
def test_each_file_of_the_run_folder_edited_or_deleted_is_named(home, name):
    run_dir = run_dir_of(home)
    path = run_dir / name
    assert name in file_digests(run_dir)
    path.write_bytes(path.read_bytes()[:-1] + b"9")
    problems = failed(audit(home))
    assert set(problems) == {"files"}
    assert f"{name}: changed since the run ended" in problems["files"]
    path.unlink()
    assert f"{name}: missing" in failed(audit(home))["files"]


def test_an_edited_observation_is_named_cell_by_cell_against_the_log(home):
    run_dir = run_dir_of(home)
    table = run_dir / "observations.csv"
    rows = table.read_text(encoding="utf-8").splitlines(keepends=True)
    cells = rows[2].split(",")
    index = rows[0].split(",").index("conductivity")
    logged = cells[index]
    cells[index] = "9999.5"
    rows[2] = ",".join(cells)
    table.write_text("".join(rows), encoding="utf-8")
    detail = failed(audit(home))["files"]
    assert f"E0002 conductivity: 9999.5 in observations.csv, {logged} in the event log" in detail


def test_an_edited_manifest_is_caught_against_its_digest_and_the_spec_event(home):
    run_dir = run_dir_of(home)
    path = run_dir / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["spec"]["budget"]["experiments"] = 40
    manifest["seed"] = 20
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    detail = failed(audit(home))["files"]
    assert "manifest.json: changed since the run ended" in detail
    assert "its spec differs from the spec event's" in detail and "seed 20, the spec event's is 19" in detail


def test_a_file_added_after_the_run_is_listed_without_failing(home):
    run_dir = run_dir_of(home)
    (run_dir / "notes.txt").write_text("measured on the old probe\n", encoding="utf-8")
    report = audit(home)
    assert report.ok
    note = next(c for c in report.checks if c.name == "not in the record")
    assert not note.ok and not note.fatal and note.detail[0].startswith("notes.txt: no digest")


def forge(home: Path, *, value: float, sign_with=None) -> None:
    """Rewrite the whole record consistently: an observation's value, the table, the digests, the
    hashes, the manifest's head and the run index's, as a forger without (or with) a key would."""
    run_dir = run_dir_of(home)
    events = read_events(run_dir / "events.jsonl")
    first = next(e for e in events if e["kind"] == "observation")
    first["payload"]["values"]["conductivity"] = value
    table = run_dir / "observations.csv"
    rows = table.read_text(encoding="utf-8").splitlines(keepends=True)
    cells = rows[1].split(",")
    cells[rows[0].split(",").index("conductivity")] = repr(value)
    rows[1] = ",".join(cells)
    table.write_text("".join(rows), encoding="utf-8")
    events[-1]["payload"]["files"] = file_digests(run_dir)
    (run_dir / "events.jsonl").write_text(rechain(events), encoding="utf-8")
    forged = read_events(run_dir / "events.jsonl")
    old = recorded_head(run_dir.name, home)
    head = Head(run_id=old.run_id, events=len(forged), head=forged[-1]["hash"], ended=old.ended, at=old.at)
    if sign_with is not None:
        head = head.model_copy(update={"key": old.key, "signature": sign(sign_with, head.signed_bytes())})
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    manifest["final"] = head.model_dump()
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    (home / INDEX_FILE).write_text(json.dumps(head.model_dump()) + "\n", encoding="utf-8")


def test_a_chain_rewritten_consistently_is_caught_by_the_head_in_the_run_index(home):
    run_dir = run_dir_of(home)
    kept = (home / INDEX_FILE).read_bytes()
    forge(home, value=1234.5)
    (home / INDEX_FILE).write_bytes(kept)  # the forger rewrote the run folder, not the index
    problems = failed(audit(home))
    assert "event log" not in problems and "files" not in problems
    assert "the log was rewritten" in problems["head"]
    assert "differs from the head in the run index" in problems["head"]
    assert run_dir.exists()


def test_rewriting_the_index_too_needs_the_lab_key(home, tmp_path):
    forge(home, value=1234.5)  # index and manifest rewritten too, the head unsigned
    assert audit(home, key=False).ok  # without a key nothing tells this record from the real one
    assert "the head is not signed, but the lab has a key" in failed(audit(home))["signature"]

    stranger = tmp_path / "stranger"
    create_signing_key(stranger)
    forge(home, value=2345.5, sign_with=lab_signing_key(stranger))  # signed, with another key
    assert "forged or altered" in failed(audit(home))["signature"]

    forge(home, value=3456.5, sign_with=lab_signing_key(home))  # only the lab's own key passes
    assert audit(home).ok


def test_a_payload_that_does_not_match_its_kind_fails_the_record_format(home):
    run_dir = run_dir_of(home)
    events = read_events(run_dir / "events.jsonl")
    reading = next(e for e in events if e["kind"] == "reading")
    reading["payload"]["values"] = {"conductivity": "high"}
    (run_dir / "events.jsonl").write_text(rechain(events), encoding="utf-8")
    detail = failed(audit(home))["record format"]
    assert f"seq {reading['seq']} (reading): payload.values.conductivity" in detail


def test_audit_and_export_on_the_command_line_and_on_another_machine(home, tmp_path, monkeypatch):
    runner = CliRunner()
    run_id = run_dir_of(home).name
    ok = runner.invoke(app, ["audit", run_id[:15]])
    assert ok.exit_code == 0, ok.output
    assert "every check holds" in ok.output and "provenance" in ok.output
    archive = tmp_path / "sealed.tar.gz"
    exported = runner.invoke(app, ["export", run_id, "--output", str(archive)])
    assert exported.exit_code == 0, exported.output
    shown = runner.invoke(app, ["keys", "show"])
    public = tmp_path / "lab.pub.pem"
    public.write_text(shown.stdout, encoding="utf-8")

    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path / "auditor"))  # another machine: no lab files
    elsewhere = runner.invoke(app, ["audit", str(archive), "--public-key", str(public), "--json"])
    assert elsewhere.exit_code == 0, elsewhere.output
    report = json.loads(elsewhere.stdout)
    assert report["ok"] and report["run_id"] == run_id
    assert {c["name"]: c["ok"] for c in report["checks"]}["signature"]

    # the archive's run folder edited: the audit elsewhere fails and says what
    shutil.unpack_archive(archive, tmp_path / "unpacked")
    db = sqlite3.connect(tmp_path / "unpacked" / run_id / "checkpoints.sqlite")
    db.execute("CREATE TABLE notes (text TEXT)")  # left in the journal beside it, which SQLite reads
    db.commit()
    tampered = tmp_path / "tampered.tar.gz"
    shutil.make_archive(str(tampered).removesuffix(".tar.gz"), "gztar", tmp_path / "unpacked")
    bad = runner.invoke(app, ["audit", str(tampered), "--public-key", str(public)])
    assert bad.exit_code == 1
    assert "checkpoints.sqlite-wal: a SQLite journal that changes checkpoints.sqlite" in bad.output
    db.close()  # now the change is in the database file itself
    shutil.make_archive(str(tampered).removesuffix(".tar.gz"), "gztar", tmp_path / "unpacked")
    bad = runner.invoke(app, ["audit", str(tampered), "--public-key", str(public)])
    assert bad.exit_code == 1 and "checkpoints.sqlite: changed since the run ended" in bad.output

    assert runner.invoke(app, ["audit", "no-such-run"]).exit_code == 2
