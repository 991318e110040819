"""A campaign started from prior data: read once, recorded, used by the model, never charged to the budget."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest
import yaml
from typer.testing import CliRunner

import athanor.app as app_module
from athanor.app import RunOptions, read_prior, replay, resume, run
from athanor.cli import app as cli_app
from athanor.errors import LLMError, SpecError
from athanor.spec import CampaignSpec
from runs.eventlog import read_events, verify_log

SPEC = {
    "title": "prior test",
    "components": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
    "objectives": [{"name": "conductivity", "unit": "S/cm"}],
    "budget": {"experiments": 6, "batch_size": 3},
    "seed": 7,
}
#: Three usable rows (as many as the initial design), one failed, and one outside A's bound of 0.9.
PRIOR = (
    "experiment_id,A,B,C,conductivity,status,note\n"
    "E0001,0.2,0.3,0.5,35.5,ok,notebook p. 12\n"
    "E0002,0.5,0.25,0.25,80,ok,\n"
    "E0003,0.7,0.1,0.2,,failed,film cracked\n"
    "E0004,0.95,0.05,0.0,60,ok,\n"
)


def spec_with(**changes):
    return {**SPEC, "components": [{"name": "A", "upper": 0.9}, {"name": "B"}, {"name": "C"}], **changes}


@pytest.mark.slow
def test_a_campaign_from_prior_data_resumes_and_replays_after_the_file_is_gone(ray_local, tmp_path):
    home, csv_path = tmp_path / "home", tmp_path / "earlier.csv"
    csv_path.write_text(PRIOR, encoding="utf-8")
    digest = hashlib.sha256(csv_path.read_bytes()).hexdigest()
    script = {"parse_request": [spec_with()], "decide": [LLMError("endpoint down")]}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATHANOR_HOME", str(home))
        options = RunOptions(
            llm="mock", llm_script=script, literature=False, time_scale=0.001, prior=csv_path
        )
        with pytest.raises(LLMError, match="endpoint down"):
            run("scripted", options)  # the first batch is measured, then the PI's model fails
    (run_dir,) = (home / "runs").iterdir()
    events = read_events(run_dir / "events.jsonl")
    (recorded,) = [e["payload"] for e in events if e["kind"] == "prior_data"]
    assert recorded["sha256"] == digest and recorded["content"] == PRIOR
    assert recorded["used"] == ["P0001", "P0002", "P0004"] and len(recorded["outside"]) == 1
    spec_event = next(e["payload"] for e in events if e["kind"] == "spec")
    assert spec_event["prior_data"] == str(csv_path.absolute())
    first_call = next(e["payload"] for e in events if e["kind"] == "optimiser_call")
    assert (first_call["method"], first_call["prior"], first_call["observations"]) == ("propose", 3, 0)
    assert [p["source"] for p in first_call["proposals"]] == ["model"] * 3  # no initial design at all

    csv_path.write_text("this is not the file the run started from\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATHANOR_HOME", str(home))
        result = resume(run_dir.name, RunOptions(llm="offline", literature=False, time_scale=0.001))

    assert [o.experiment_id for o in result.observations] == [f"E{i:04d}" for i in range(1, 7)]
    assert result.decision["action"] == "stop" and "budget of 6" in result.decision["reason"]
    with open(run_dir / "observations.csv", newline="") as handle:
        assert [row["experiment_id"] for row in csv.DictReader(handle)] == [f"E{i:04d}" for i in range(1, 7)]
    assert result.summary["prior"] == {
        "rows": 4,
        "used": 3,
        "best_value": 80.0,
        "best_experiment": "P0002",
    }
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "| Prior data (not in the budget) | 3 of 4 rows used by the model (1 failed" in report
    assert "| Best of the prior data | 80 S/cm (P0002) |" in report
    assert "| Experiments | 6 of 6 budgeted" in report and "Gain over the prior data" in report
    calls = [e["payload"] for e in read_events(run_dir / "events.jsonl") if e["kind"] == "optimiser_call"]
    assert [c["prior"] for c in calls] == [3, 3]
    assert verify_log(run_dir / "events.jsonl").ok

    csv_path.unlink()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_module, "RayLab", None)  # a replay that built an instrument would fail
        patch.setattr(app_module, "ensure_ray", lambda *a, **k: pytest.fail("a replay started Ray"))
        replayed = replay(str(run_dir), write=False)
    assert replayed.ok, replayed.divergence.describe()
    tallies = {t.kind: (t.recorded, t.replayed, t.matched) for t in replayed.tallies}
    assert tallies["optimiser_call"] == (2, 2, 2) and tallies["observation"] == (6, 6, 6)


def test_a_relative_prior_data_path_is_read_relative_to_the_campaign_file(tmp_path, monkeypatch):
    folder = tmp_path / "campaigns"
    folder.mkdir()
    (folder / "earlier.csv").write_text(PRIOR, encoding="utf-8")
    spec_file = folder / "campaign.yaml"
    spec = CampaignSpec.model_validate(spec_with(prior_data="earlier.csv"))
    monkeypatch.chdir(tmp_path)  # not the campaign's folder

    same, prior = read_prior(spec, str(spec_file))

    assert same.prior_data == "earlier.csv" and prior is not None and len(prior.used) == 3
    with pytest.raises(SpecError, match=r"earlier\.csv does not exist"):
        read_prior(spec, "Maximise the conductivity of A, B and C, 6 experiments")  # from the cwd


def test_cli_plan_counts_the_prior_rows_and_names_a_bad_cell(tmp_path):
    spec_file = tmp_path / "campaign.yaml"
    spec_file.write_text(yaml.safe_dump(spec_with()), encoding="utf-8")
    good = tmp_path / "earlier.csv"
    good.write_text(PRIOR, encoding="utf-8")
    runner = CliRunner()

    shown = runner.invoke(cli_app, ["plan", str(spec_file), "--prior", str(good), "--json"])

    assert shown.exit_code == 0, shown.output
    assert "prior data: 4 rows from earlier.csv: 3 used by the model, 1 kept out" in shown.output
    assert "kept out of the model: P0003 (line 4): status failed" in shown.output
    assert "outside the design space (kept): P0004 (line 5): A=0.95 outside [0, 0.9]" in shown.output
    printed = json.loads(shown.output[shown.output.index("{") : shown.output.rindex("}") + 1])
    assert printed["prior_data"] == str(good.absolute())

    bad = tmp_path / "bad.csv"
    bad.write_text("A,B,C,conductivity\n0.2,0.3,0.5,high\n", encoding="utf-8")
    refused = runner.invoke(cli_app, ["plan", str(spec_file), "--prior", str(bad)])
    assert refused.exit_code == 2
    assert "bad.csv:2: column 'conductivity': 'high' is not a number" in " ".join(refused.output.split())


def test_cli_plan_names_each_row_with_an_infinite_result_and_each_repeated_row(tmp_path):
    spec_file = tmp_path / "campaign.yaml"
    spec_file.write_text(yaml.safe_dump(spec_with()), encoding="utf-8")
    pasted = tmp_path / "notebook.csv"
    pasted.write_text(
        "A,B,C,conductivity\n0.3,0.3,0.4,22\n0.6,0.2,0.2,inf\n0.3,0.3,0.4,22\n0.1,0.1,0.8,7.5\n",
        encoding="utf-8",
    )

    shown = CliRunner().invoke(cli_app, ["plan", str(spec_file), "--prior", str(pasted)])

    assert shown.exit_code == 0, shown.output
    assert "prior data: 4 rows from notebook.csv: 2 used by the model, 1 kept out" in shown.output
    assert "kept out of the model: P0002 (line 3): conductivity is 'inf', not a finite number" in shown.output
    assert "repeated (counted once): line 4: the same row as P0001 (line 2); used once" in shown.output
