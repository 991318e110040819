"""The command line and a run reading a request: plan --explain, questions on a terminal (recorded in
the run's log as part of the request), and the same questions as a refusal without one."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from athanor.app import RunOptions, run
from athanor.asking import Question
from athanor.cli import app
from runs.eventlog import read_events

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path))
    return tmp_path


def test_plan_explain_shows_which_words_became_which_field(home):
    request = "Maximise the conductivity of P3HT, CNT and PEDOT, CNT the balance, PEDOT ≤ 0.2, 12 runs"
    result = runner.invoke(app, ["plan", "--explain", request])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.count("│") == 4]
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines]
    rows = {words: (field, value) for words, field, value in cells}
    assert rows["Maximise the conductivity"] == ("objective", "maximise conductivity")
    assert rows["of P3HT, CNT and PEDOT"] == ("components", "P3HT, CNT, PEDOT")
    assert rows["CNT the balance"][0] == "balance"
    assert rows["PEDOT ≤ 0.2"] == ("bound", "PEDOT <= 0.2")
    assert rows["12 runs"] == ("budget", "12 experiments")
    assert ["(not stated)", "batch size", "1: one experiment at a time (not stated)"] in cells
    assert "experiments: 12" in result.stdout  # the spec is still printed, on stdout


def test_plan_explain_marks_the_words_it_could_not_read(home):
    result = runner.invoke(app, ["plan", "--explain", "最大化 Cu、Ag 和 Zr 的硬度，20 次实验，在 500 度退火"])
    assert result.exit_code == 2
    row = next(line for line in result.output.splitlines() if "在 500 度退火" in line and "│" in line)
    assert "not read" in row
    assert 'could not read "在 500 度退火"' in result.output


def test_without_a_terminal_a_missing_budget_is_refused_with_the_question(home):
    for options in ([], ["--yes"]):
        result = runner.invoke(app, ["plan", *options, "Minimise the band gap of TiO2 and ZnO, 4 at a time"])
        assert result.exit_code == 2
        assert "no budget: how many experiments may the campaign run in all?" in result.output


def on_a_terminal(args: list[str], answers: list[str], home: Path, code: int = 0) -> str:
    """Run ``athanor`` with a terminal as its input, typing each answer once its prompt shows."""
    main, child = pty.openpty()
    env = {**os.environ, "ATHANOR_HOME": str(home), "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    process = subprocess.Popen(
        [sys.executable, "-c", "from athanor.cli import main; main()", *args],
        stdin=child,
        stdout=subprocess.PIPE,
        stderr=child,
        env=env,
        cwd=ROOT,
    )
    os.close(child)
    seen, deadline = "", time.monotonic() + 120
    pending = list(answers)
    while process.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                seen += os.read(main, 4096).decode(errors="replace")
            except OSError:
                break
        if pending and seen.rstrip().endswith(":"):
            os.write(main, (pending.pop(0) + "\n").encode())
            seen += "\n"
    out, _ = process.communicate(timeout=60)
    os.close(main)
    assert process.returncode == code, seen
    return seen + out.decode()


def test_on_a_terminal_what_the_request_leaves_open_is_asked(home):
    output = on_a_terminal(["plan", "Maximise the conductivity of ITO and FTO"], ["16", "4"], home)
    assert "How many experiments may the campaign run in all?" in output
    assert "How many experiments at a time? [1]" in output
    assert "experiments: 16" in output and "batch_size: 4" in output
    assert "request: Maximise the conductivity of ITO and FTO; 16 experiments; 4 at a time" in output


def test_on_a_terminal_yes_refuses_instead_of_asking(home):
    output = on_a_terminal(["plan", "--yes", "Maximise the conductivity of ITO and FTO"], [], home, code=2)
    assert "How many experiments may" not in output.split("error:")[0]  # nothing was asked
    assert "no budget: how many experiments may the campaign run in all?" in output


def test_a_run_records_the_questions_and_answers_as_part_of_the_request(home, ray_local):
    asked: list[Question] = []

    def ask(question: Question) -> str:
        asked.append(question)
        return {"budget.experiments": "4", "budget.batch_size": "2"}[question.field]

    request = "Maximise the conductivity of P3HT and D1, D1 at most 0.4"
    result = run(request, RunOptions(literature=False, time_scale=0.001, ask=ask))
    assert len(result.observations) == 4
    (event,) = [e for e in read_events(result.run_dir / "events.jsonl") if e["kind"] == "request"]
    assert event["payload"]["text"] == f"{request}; 4 experiments; 2 at a time"
    assert event["payload"]["answers"] == [
        {
            "field": "budget.experiments",
            "question": "How many experiments may the campaign run in all?",
            "answer": "4",
            "added": "4 experiments",
        },
        {
            "field": "budget.batch_size",
            "question": "How many experiments at a time?",
            "answer": "2",
            "added": "2 at a time",
        },
    ]
    assert result.spec.request == event["payload"]["text"]


def test_a_model_reading_that_disagrees_stops_the_run_before_anything_is_recorded(home):
    from support import fake_openai_server as fake

    from athanor.errors import ReadingsDisagree
    from athanor.settings import Settings

    reading = {
        "title": "t",
        "components": [{"name": "ITO", "upper": 0.6}, {"name": "FTO"}],
        "objectives": [{"name": "conductivity", "direction": "maximise", "unit": "S/cm"}],
        "budget": {"experiments": 8, "batch_size": 2},
    }
    with fake.FakeOpenAIServer() as server:
        server.script(fake.answer(reading))
        settings = Settings(llm="openai", llm_model="fake", llm_base_url=server.base_url, llm_api_key="sk-x")
        request = "Maximise the conductivity of ITO and FTO, 8 runs, 2 at a time"
        with pytest.raises(ReadingsDisagree, match=r"the upper bound of ITO is 0\.6"):
            run(request, RunOptions(settings=settings))
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())
