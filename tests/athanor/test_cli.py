"""The command line: plan, runs, show and verify, as a user types them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from athanor.cli import app
from athanor.models import Observation
from athanor.spec import CampaignSpec
from runs.context import RunContext
from runs.manifest import write_manifest
from runs.observations import ObservationsCSV
from runs.store import create_run_dir

DEMO = (
    "Maximise the conductivity of a P3HT/CNT blend of P3HT, D1, D2, D6 and D8 (fractions sum to 1,"
    " P3HT at least 0.5), 30 experiments in batches of 5"
)
runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path))
    return tmp_path


def test_plan_prints_the_spec_as_yaml_and_runs_nothing(home):
    result = runner.invoke(app, ["plan", DEMO])
    assert result.exit_code == 0, result.output
    spec = CampaignSpec.from_yaml(result.output)
    assert spec.component_names == ["P3HT", "D1", "D2", "D6", "D8"]
    assert spec.components[0].lower == 0.5
    assert spec.budget.experiments == 30 and spec.budget.batch_size == 5
    assert not (home / "runs").exists()


def test_plan_json_holds_the_model_dump(home):
    result = runner.invoke(app, ["plan", DEMO, "--json", "--seed", "4"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [c["name"] for c in data["components"]] == ["P3HT", "D1", "D2", "D6", "D8"]
    assert data["components"][0]["lower"] == 0.5 and data["components"][1]["upper"] == 1.0
    assert data["sum_rule"]["total"] == 1.0
    assert data["objectives"][0] == {
        "name": "conductivity",
        "direction": "maximise",
        "unit": "S/cm",
        "target": None,
    }
    assert data["budget"]["experiments"] == 30 and data["budget"]["batch_size"] == 5
    assert data["seed"] == 4


def test_plan_refuses_an_unreadable_request_with_a_working_phrasing(home):
    result = runner.invoke(
        app, ["plan", "Maximise the conductivity of P3HT and D1 very quickly, 10 experiments"]
    )
    assert result.exit_code == 2
    assert "error:" in result.output
    assert "very quickly" in result.output
    assert "Traceback" not in result.output
    # the nearest phrasing of this request, not a fixed example
    assert "A phrasing that works: Maximise the conductivity of P3HT and D1, 10 experiments" in result.output


def test_plan_keeps_a_colon_in_a_material_name_through_its_yaml(home, tmp_path):
    request = "Maximise the conductivity of PEDOT:PSS, DMSO and EG, PEDOT:PSS at least 0.6, 9 runs"
    result = runner.invoke(app, ["plan", request])
    assert result.exit_code == 0, result.output
    path = tmp_path / "pedot.yaml"
    path.write_text(result.output)
    again = runner.invoke(app, ["plan", str(path)])
    assert again.exit_code == 0, again.output
    spec = CampaignSpec.from_yaml(again.output)
    assert [(c.name, c.lower) for c in spec.components] == [("PEDOT:PSS", 0.6), ("DMSO", 0.0), ("EG", 0.0)]


def test_plan_refuses_a_described_alloy_whose_components_are_not_listed(home):
    result = runner.invoke(app, ["plan", "Maximise the hardness of a Mg-rich alloy, 14 experiments"])
    assert result.exit_code == 2
    assert 'no components: "Mg-rich alloy"' in result.output
    assert "Traceback" not in result.output and "name: rich" not in result.output


def test_plan_reads_a_campaign_file(home, tmp_path):
    path = tmp_path / "campaign.yaml"
    first = runner.invoke(app, ["plan", DEMO])
    path.write_text(first.output)
    again = runner.invoke(app, ["plan", str(path)])
    assert again.exit_code == 0
    assert yaml.safe_load(again.output) == yaml.safe_load(first.output)


def make_run(home) -> str:
    spec = CampaignSpec.model_validate(
        {
            "title": "cli test",
            "components": [{"name": "A"}, {"name": "B"}],
            "objectives": [{"name": "conductivity", "unit": "S/cm"}],
            "budget": {"experiments": 2},
        }
    )
    run_dir = create_run_dir("20261127-000000-cli-test-abcd")
    context = RunContext(run_dir, seed=1)
    context.record("run_started", {"run_id": run_dir.name})
    write_manifest(run_dir, spec, 1)
    with ObservationsCSV(run_dir / "observations.csv", spec) as csv:
        for i, (a, value) in enumerate([(0.2, 10.0), (0.7, 42.0)], start=1):
            observation = Observation(
                experiment_id=f"E000{i}",
                iteration=0,
                composition={"A": a, "B": 1 - a},
                values={"conductivity": value},
            )
            csv.append(observation)
            context.record("observation", observation.model_dump(mode="json"))
    summary = {
        "objective": "conductivity",
        "unit": "S/cm",
        "experiments": 2,
        "failed": 0,
        "best_value": 42.0,
        "best_experiment": "E0002",
        "best_composition": {"A": 0.7, "B": 0.3},
        "best_initial_value": 42.0,
    }
    context.record("run_finished", {"summary": summary, "decision": {}, "report": "report.md"})
    context.close()
    return run_dir.name


def test_runs_and_show_accept_an_id_a_prefix_or_a_path(home):
    run_id = make_run(home)
    listing = runner.invoke(app, ["runs"])
    assert listing.exit_code == 0 and run_id[:20] in listing.output
    assert "finished" in listing.output and "conductivity 42 S/cm" in listing.output
    for ref in (run_id, run_id[:18], str(home / "runs" / run_id)):
        shown = runner.invoke(app, ["show", ref])
        assert shown.exit_code == 0, shown.output
        assert "E0002" in shown.output and "42" in shown.output
        assert "verified" in shown.output


def test_show_unknown_run_says_how_to_list_runs(home):
    make_run(home)
    result = runner.invoke(app, ["show", "no-such-run"])
    assert result.exit_code == 2
    assert "athanor runs" in result.output


def test_verify_detects_a_flipped_byte(home):
    run_id = make_run(home)
    assert runner.invoke(app, ["verify", run_id]).exit_code == 0
    path = home / "runs" / run_id / "events.jsonl"
    data = bytearray(path.read_bytes())
    at = data.index(b"42")
    data[at] = ord("5")  # 42 -> 52 in the second observation
    path.write_bytes(bytes(data))
    result = runner.invoke(app, ["verify", run_id])
    assert result.exit_code == 1
    assert "altered" in result.output


def write_campaign(tmp_path, **changes) -> str:
    data = {
        "title": "沉积薄膜 screen",
        "components": [{"name": "P3HT", "lower": 0.4}, {"name": "D2"}, {"name": "D6"}],
        "objectives": [{"name": "conductivity", "unit": "S/cm"}],
        "budget": {"experiments": 12, "batch_size": 3},
        **changes,
    }
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


def test_plan_refuses_an_instrument_the_lab_run_would_use_does_not_have(home, tmp_path):
    import ray

    campaign = write_campaign(tmp_path, instruments=["liquid_handler", "xrd"])
    ray_before = ray.is_initialized()  # the session's Ray may run already: plan must start none

    result = runner.invoke(app, ["plan", campaign])

    assert result.exit_code == 2, result.output
    assert "error: instruments: unknown instrument 'xrd'; this lab has" in result.output
    assert ray.is_initialized() == ray_before and not (home / "runs").exists() and not (home / "ray").exists()


def test_plan_checks_a_given_lab_file_without_contacting_its_instruments(home, tmp_path):
    import ray

    example = Path(__file__).resolve().parents[2] / "instruments" / "labs" / "example-ot2-serial.yaml"
    lab = yaml.safe_load(example.read_text(encoding="utf-8"))
    lab["instruments"][0]["robot"]["host"] = "127.0.0.1"  # nothing answers there
    good = tmp_path / "lab.yaml"
    good.write_text(yaml.safe_dump(lab), encoding="utf-8")
    lab["stocks"] = [s for s in lab["stocks"] if s["component"] != "D6"]
    short = tmp_path / "short.yaml"
    short.write_text(yaml.safe_dump(lab), encoding="utf-8")
    campaign = write_campaign(tmp_path)
    ray_before = ray.is_initialized()  # the session's Ray may run already: plan must start none

    planned = runner.invoke(app, ["plan", campaign, "--lab", str(good)])
    refused = runner.invoke(app, ["plan", campaign, "--lab", str(short)])
    virtual = runner.invoke(app, ["plan", campaign])

    assert planned.exit_code == 0, planned.output
    assert CampaignSpec.from_yaml(planned.output).component_names == ["P3HT", "D2", "D6"]
    assert refused.exit_code == 2, refused.output
    assert "components: no stock supplies 'D6'; add one under stocks in the lab file" in refused.output
    assert virtual.exit_code == 0, virtual.output  # the virtual lab makes a stock per component
    assert ray.is_initialized() == ray_before and not (home / "runs").exists() and not (home / "ray").exists()


def test_runs_lists_a_run_whose_chain_is_broken_as_such(home):
    run_id = make_run(home)
    log = home / "runs" / run_id / "events.jsonl"
    log.write_bytes(log.read_bytes().replace(b'"conductivity":42.0', b'"conductivity":24.0'))
    listing = runner.invoke(app, ["runs"])
    assert listing.exit_code == 0
    assert "finished (chain broken)" in listing.output
    assert "event log altered at seq" in listing.output and "athanor verify" in listing.output
    (entry,) = json.loads(runner.invoke(app, ["runs", "--json"]).output)
    assert (entry["run_id"], entry["status"], entry["verified"]) == (run_id, "finished", False)
    assert "hash does not match" in entry["chain_problem"]


def test_show_names_the_rows_of_observations_csv_that_differ_from_the_event_log(home):
    run_id = make_run(home)
    intact = runner.invoke(app, ["show", run_id])
    assert "observations.csv: 2 rows, as in the event log" in intact.output
    path = home / "runs" / run_id / "observations.csv"
    path.write_text(path.read_text().replace(",42.0,", ",92.5,"))  # "improved" by hand

    shown = runner.invoke(app, ["show", run_id])

    assert shown.exit_code == 0
    assert "chain verified" in shown.output  # the log itself is intact...
    assert "observations.csv: not verified against the event log" in shown.output  # ...the table is not
    assert "E0002 conductivity: 92.5 in observations.csv, 42.0 in the event log" in shown.output
    data = json.loads(runner.invoke(app, ["show", run_id, "--json"]).output)
    assert data["event_log"] == {"events": 4, "verified": True, "problem": ""}
    assert data["observations_csv"]["matches_event_log"] is False
    assert data["observations_csv"]["differences"] == [
        "E0002 conductivity: 92.5 in observations.csv, 42.0 in the event log"
    ]


def test_runs_and_show_print_json_in_the_documented_shape(home):
    run_id = make_run(home)
    (entry,) = json.loads(runner.invoke(app, ["runs", "--json"]).output)
    assert set(entry) == {
        "run_id", "path", "created", "title", "status", "verified", "chain_problem", "events",
        "experiments_done", "objective", "best_value", "unit", "problem",
    }  # fmt: skip
    assert (entry["experiments_done"], entry["best_value"], entry["unit"]) == (2, 42.0, "S/cm")
    data = json.loads(runner.invoke(app, ["show", run_id[:20], "--json"]).output)
    assert set(data) == {
        "run_id", "path", "title", "request", "status", "experiments", "objectives", "best",
        "event_log", "observations_csv", "stock", "files",
    }  # fmt: skip
    assert data["run_id"] == run_id and data["status"] == "finished"
    assert data["experiments"] == {"done": 2, "budget": 2, "failed": 0}
    assert data["objectives"] == [{"name": "conductivity", "direction": "maximise", "unit": "S/cm"}]
    assert [row["experiment_id"] for row in data["best"]] == ["E0002", "E0001"]
    assert data["best"][0]["values"] == {"conductivity": 42.0}
    empty = runner.invoke(app, ["runs", "--json"], env={"ATHANOR_HOME": str(home / "none")})
    assert json.loads(empty.output) == []


def _commands(command, path=()):
    """Every command of the command line with its path, groups included."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


@pytest.mark.parametrize("width", [80, 200])
def test_help_names_what_each_option_takes_instead_of_its_python_type(width):
    import re

    import typer

    checked = 0
    for path, _ in _commands(typer.main.get_command(app)):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": str(width)})
        assert result.exit_code == 0, (path, result.output)
        options = result.output.split("Options")[1].split("Commands")[0]
        types = re.findall(r"<(?:bool|str|int|float|path)>", options)
        assert not types, f"athanor {' '.join(path)} --help shows {types}"
        checked += 1
    assert checked > 15
    run_help = runner.invoke(app, ["run", "--help"], env={"COLUMNS": str(width)}).output
    for name in ("FACTOR", "LAB.yaml", "HOST:PORT", "BACKEND", "FILE.csv"):
        assert name in run_help
    add_help = runner.invoke(app, ["schedule", "add", "--help"], env={"COLUMNS": str(width)}).output
    assert "WHEN" in add_help and "--no-literature" in add_help


def test_version_prints_the_distribution_version():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"{project['name']} {project['version']}\n"
