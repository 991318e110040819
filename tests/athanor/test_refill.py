"""A stock that ran low is refilled and the run resumed with ``--refill``: the campaign goes on to its budget.

End to end on local Ray and the virtual lab with tiny stocks; the ``--refill`` checks through the
command line.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from support.power import power_cut_after
from typer.testing import CliRunner

import athanor.app as app_module
from athanor.app import RunOptions, replay, resume, run
from athanor.cli import app as cli_app
from athanor.errors import SafetyError
from athanor.lab import LabDescription
from athanor.spec import CampaignSpec
from instruments.actors import ledger_file
from instruments.ledger import Ledger
from instruments.virtual_lab import virtual_lab_description
from runs.context import RunContext
from runs.eventlog import read_events
from runs.store import create_run_dir, list_runs

SPEC = {
    "title": "refill test",
    "components": [{"name": "A", "lower": 0.3, "upper": 0.7}, {"name": "B", "lower": 0.3, "upper": 0.7}],
    "objectives": [{"name": "conductivity", "unit": "S/cm"}],
    "budget": {"experiments": 12, "batch_size": 3},
    "seed": 7,
}
# A 200 µL sample draws 60 to 140 µL of each stock: one batch of three always fits in 450 µL, and two
# batches draw 1200 µL from the two stocks, more than 450 µL from one of them.
STOCK_UL = 450.0
OFFLINE = RunOptions(llm="offline", literature=False)
runner = CliRunner()


def tiny_lab() -> LabDescription:
    data = virtual_lab_description(["A", "B"], time_scale=0.001).model_dump()
    for stock in data["stocks"]:
        stock["volume_ul"] = STOCK_UL
    return LabDescription.model_validate(data)


def measured(run_dir: Path) -> list[str]:
    with open(run_dir / "observations.csv", newline="") as handle:
        return [row["experiment_id"] for row in csv.DictReader(handle)]


def text(output: str) -> str:
    """Console output with the line wrapping undone."""
    return " ".join(output.split())


def events_of(run_dir: Path, kind: str | None = None) -> list[dict]:
    return read_events(run_dir / "events.jsonl", kind)


@pytest.mark.slow
def test_a_run_stopped_by_a_low_stock_continues_to_its_budget_once_refilled(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path))
    options = RunOptions(llm="mock", llm_script={"parse_request": [SPEC]}, literature=False, lab=tiny_lab())
    with pytest.raises(SafetyError, match="refill it and resume") as stopped:
        run("scripted", options)
    (summary,) = list_runs()
    run_dir, run_id = summary.path, summary.run_id
    assert measured(run_dir) == ["E0001", "E0002", "E0003"]  # the second batch never reached the lab
    (low,) = events_of(run_dir, "stock_low")
    assert str(stopped.value) == "; ".join(low["payload"]["problems"])

    # resumed without a refill, the same batch is refused with the same message, nothing is measured
    with pytest.raises(SafetyError) as again:
        resume(run_id, OFFLINE)
    assert str(again.value) == str(stopped.value)
    events = events_of(run_dir)
    attempt = events[[e["kind"] for e in events].index("run_resumed") :]
    assert [e["payload"] for e in attempt if e["kind"] == "stock_low"] == [low["payload"]]
    assert not [e for e in attempt if e["kind"] in ("protocol_submitted", "reading", "observation")]
    assert measured(run_dir) == ["E0001", "E0002", "E0003"]

    # refilled through the command line; the power goes in the third batch
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_module, "RecordingInstruments", power_cut_after(4))
        args = ["resume", run_id, "--llm", "offline", "--no-literature"]
        result = runner.invoke(cli_app, [*args, "--refill", "A_stock=5000", "--refill", "B_stock=4000uL"])
    assert result.exit_code == 2 and "power cut" in result.output, result.output
    assert "refilled: A_stock now holds 5000 µL" in text(result.output)
    refills = [e["payload"] for e in events_of(run_dir, "stock_refilled")]
    left = low["payload"]["left_ul"]
    assert refills == [
        {"stock": "A_stock", "volume_ul": 5000.0, "used_ul": pytest.approx(STOCK_UL - left["A_stock"])},
        {"stock": "B_stock", "volume_ul": 4000.0, "used_ul": pytest.approx(STOCK_UL - left["B_stock"])},
    ]
    kinds = [e["kind"] for e in events_of(run_dir)]
    third = len(kinds) - kinds[::-1].index("run_resumed")
    assert kinds[third : third + 2] == ["stock_refilled", "stock_refilled"]  # before the graph restarted
    assert 7 <= len(measured(run_dir)) < 9

    # a second resume, with no refill given, still counts from the refilled volumes
    result = resume(run_id, OFFLINE)

    assert len(result.observations) == 12
    assert all(o.status == "ok" for o in result.observations), [
        (o.experiment_id, o.note) for o in result.observations if o.status != "ok"
    ]
    ids = measured(run_dir)
    assert sorted(ids) == [f"E{i:04d}" for i in range(1, 13)] and len(set(ids)) == 12
    kinds = [e["kind"] for e in events_of(run_dir)]
    assert kinds.count("run_resumed") == 3 and kinds.count("stock_refilled") == 2
    assert kinds.count("stock_low") == 2 and kinds[-1] == "run_finished"
    assert sorted((tmp_path / "ledgers").glob("*.sqlite")) == sorted(
        ledger_file(tmp_path / "ledgers", i.name) for i in tiny_lab().instruments
    )  # every instrument of the run kept its ledger on disk
    for ledger_path in (tmp_path / "ledgers").glob("*.sqlite"):
        entries = Ledger(ledger_path).history(run_id)
        assert entries and all(e.attempts == 1 and e.state == "done" for e in entries), [
            (e.key, e.state, e.attempts) for e in entries if e.attempts != 1 or e.state != "done"
        ]

    shown = runner.invoke(cli_app, ["show", run_id])
    assert shown.exit_code == 0, shown.output
    assert "stock low: stock" in text(shown.output) and "refill it and resume" in text(shown.output)
    assert "refilled: B_stock now holds 4000 µL" in text(shown.output)

    report = replay(run_id, write=False)
    assert report.ok, report.divergence.describe()
    assert "4 attempts" in report.scope
    counts = {t.kind: (t.recorded, t.replayed, t.matched) for t in report.tallies}
    assert counts["stock_low"] == (2, 2, 2)
    assert counts["observation"] == (12, 12, 12)


@pytest.fixture
def stopped_run(tmp_path, monkeypatch):
    """A run folder holding only its spec and its lab (no Ray, no graph), as a run stopped early leaves it."""
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path))
    spec = CampaignSpec.model_validate(SPEC)
    run_dir = create_run_dir("20261128-000000-refill-test-abcd")
    context = RunContext(run_dir, seed=spec.seed)
    context.record("run_started", {"run_id": run_dir.name})
    context.record("spec", spec.model_dump(mode="json"))
    context.record("lab", tiny_lab().model_dump(mode="json"))
    context.close()
    return run_dir


@pytest.mark.parametrize(
    ("refill", "says"),
    [
        ("A_stock", "--refill 'A_stock' is not STOCK=UL"),
        ("A_stock=half", "'half' is not a number of µL"),
        ("A_stock=0", "must be a positive number of µL, not 0"),
        ("A_stock=-250", "must be a positive number of µL, not -250"),
        ("Z_stock=5000", "this run's lab has no stock 'Z_stock'; its stocks are A_stock, B_stock"),
    ],
)
def test_resume_refuses_a_bad_refill_before_anything_starts(stopped_run, refill, says):
    log = (stopped_run / "events.jsonl").read_bytes()

    result = runner.invoke(cli_app, ["resume", stopped_run.name, "--llm", "offline", "--refill", refill])

    assert result.exit_code == 2, result.output
    assert says in text(result.output)
    assert "--refill A_stock=5000" in text(result.output) or "Z_stock" in refill
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert (stopped_run / "events.jsonl").read_bytes() == log  # nothing recorded, nothing started


def test_the_same_stock_refilled_twice_in_one_command_is_refused(stopped_run):
    args = ["resume", stopped_run.name, "--refill", "A_stock=100", "--refill", "A_stock=200"]
    result = runner.invoke(cli_app, args)
    assert result.exit_code == 2
    assert "stock A_stock is given twice" in text(result.output) and "Traceback" not in result.output
