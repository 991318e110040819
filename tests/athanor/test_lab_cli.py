"""`athanor lab check` and `athanor run --ray-address`, as a user types them."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from athanor.cli import app
from athanor.errors import AthanorError
from instruments.virtual_lab import virtual_lab_description

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # keep table cells on one line
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def write_lab(tmp_path, data: dict, name: str = "lab.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def virtual_data() -> dict:
    return virtual_lab_description(["P3HT", "D1"], time_scale=1.0).model_dump(mode="json")


def dead_address() -> str:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_a_good_lab_prints_the_table_and_exits_0(tmp_path):
    path = write_lab(tmp_path, virtual_data())

    result = runner.invoke(app, ["lab", "check", str(path)])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if "instrument" in line)
    for column in ("kind", "back end", "connection", "envelope", "dry run", "status"):
        assert column in header
    handler = next(line for line in lines if "liquid_handler" in line and "simulated" in line)
    assert "1-300 µL/step" in handler and "dispense 1 µL P3HT_stock→A1" in handler and "ok" in handler
    assert any("conductivity_meter" in line and "measure A1 =" in line for line in lines)
    assert "lab check passed: 2 instrument(s), 2 ok, 0 with warnings, 0 failing" in result.output


def test_a_failing_instrument_exits_1_and_says_how_to_fix_it(tmp_path):
    data = virtual_data()
    port = str(tmp_path / "ttyUSB7")
    data["instruments"].append(
        {
            "name": "probe",
            "kind": "conductivity_meter",
            "backend": "serial",
            "serial": {"port": port, "profile": "four_point_probe"},
            "envelope": {"allowed_actions": ["measure", "safe_state"]},
        }
    )
    path = write_lab(tmp_path, data)

    result = runner.invoke(app, ["lab", "check", str(path)])

    assert result.exit_code == 1, result.output
    assert f"fail probe · port: serial port {port} does not exist" in result.output
    assert "dialout" in result.output
    assert "lab check failed: 3 instrument(s), 2 ok, 0 with warnings, 1 failing" in result.output
    assert "Traceback" not in result.output


def test_warnings_alone_exit_0(tmp_path):
    data = virtual_data()
    data["instruments"].append(
        {
            "name": "plate",
            "kind": "hotplate",
            "backend": "simulated",
            "envelope": {"allowed_actions": ["read_temperature", "safe_state"]},
        }
    )
    path = write_lab(tmp_path, data)

    result = runner.invoke(app, ["lab", "check", "--no-connect", str(path)])

    assert result.exit_code == 0, result.output
    assert (
        "warn plate · envelope: no max_temperature_c: the hot plate refuses every set point" in result.output
    )
    assert "1 with warnings" in result.output


def test_a_malformed_lab_file_names_the_line_and_exits_2(tmp_path):
    data = virtual_data()
    data["instruments"][0]["envelope"]["max_volume_ul"] = -5
    path = write_lab(tmp_path, data)
    line = next(
        n for n, text in enumerate(path.read_text().splitlines(), start=1) if "max_volume_ul: -5" in text
    )

    result = runner.invoke(app, ["lab", "check", str(path)])

    assert result.exit_code == 2
    assert (
        f"{path}:{line}: instruments.0.envelope.max_volume_ul: Input should be greater than 0"
        in result.output
    )
    assert "instrument" not in result.output.split("error:")[0]  # nothing was checked


def test_a_missing_lab_file_and_broken_yaml_exit_2(tmp_path):
    missing = runner.invoke(app, ["lab", "check", str(tmp_path / "nope.yaml")])
    broken_path = tmp_path / "broken.yaml"
    broken_path.write_text("name: lab\nwells: [A1, A2\nsample_volume_ul: 200\n", encoding="utf-8")
    broken = runner.invoke(app, ["lab", "check", str(broken_path)])

    assert missing.exit_code == 2 and "does not exist; check the path" in missing.output
    assert broken.exit_code == 2 and f"{broken_path}:3: not valid YAML" in broken.output


def test_an_unreachable_ray_address_is_reported_and_the_check_goes_on(tmp_path, monkeypatch):
    address = dead_address()
    monkeypatch.setenv("RAY_ADDRESS", address)
    path = write_lab(tmp_path, virtual_data())

    result = runner.invoke(app, ["lab", "check", str(path)])

    assert result.exit_code == 0, result.output
    assert f"placement not checked: cannot reach the Ray cluster at {address}" in result.output


def test_run_passes_ray_address_over_the_environment(monkeypatch):
    seen = []

    def fake_run(request, options, **callbacks):
        seen.append(options.settings.ray_address)
        raise AthanorError("stopped before anything ran")

    monkeypatch.setattr("athanor.app.run", fake_run)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.9:6379")

    flagged = runner.invoke(app, ["run", "maximise x", "--ray-address", "10.0.0.5:6379"])
    from_env = runner.invoke(app, ["run", "maximise x"])

    assert flagged.exit_code == 2 and from_env.exit_code == 2
    assert seen == ["10.0.0.5:6379", "10.0.0.9:6379"]


def test_the_shipped_virtual_lab_template_passes_and_warns_that_campaigns_need_stocks(tmp_path):
    template = Path(__file__).resolve().parents[2] / "instruments" / "labs" / "virtual.yaml"

    result = runner.invoke(app, ["lab", "check", "--no-connect", str(template)])

    assert result.exit_code == 0, result.output
    assert (
        "warn lab · stocks: no stocks: every campaign on this lab will be refused until stocks are added"
        in result.output
    )
    assert "lab check passed: 3 instrument(s)" in result.output


def test_lab_check_and_plan_refuse_an_impossible_fault_rate_in_the_same_words(tmp_path):
    data = virtual_data()
    data["instruments"][1]["options"] = {"fail_rate": 1.5}  # the meter: a probability above one
    path = write_lab(tmp_path, data)
    campaign = tmp_path / "campaign.yaml"
    campaign.write_text(
        "components: [{name: P3HT}, {name: D1}]\nobjectives: [{name: conductivity}]\n"
        "budget: {experiments: 6}\n",
        encoding="utf-8",
    )
    words = "options.fail_rate must be a number [0, 1], got 1.5"

    checked = runner.invoke(app, ["lab", "check", "--no-connect", str(path)])
    planned = runner.invoke(app, ["plan", str(campaign), "--lab", str(path)])

    assert checked.exit_code == 1, checked.output
    assert f"fail conductivity_meter · options: {words}" in checked.output
    assert planned.exit_code == 2, planned.output
    assert f"error: lab: instrument conductivity_meter (options): {words}; correct the instrument's" in (
        " ".join(planned.output.split())
    )


def test_lab_check_fails_a_lab_without_a_liquid_handler_as_plan_refuses_it(tmp_path):
    data = virtual_data()
    data["instruments"] = [i for i in data["instruments"] if i["kind"] != "liquid_handler"]
    path = write_lab(tmp_path, data)
    campaign = tmp_path / "campaign.yaml"
    campaign.write_text(
        "components: [{name: P3HT}, {name: D1}]\nobjectives: [{name: conductivity}]\n"
        "budget: {experiments: 6}\ninstruments: [conductivity_meter]\n",
        encoding="utf-8",
    )
    words = "this lab has no liquid_handler to make samples with"

    checked = runner.invoke(app, ["lab", "check", str(path)])
    planned = runner.invoke(app, ["plan", str(campaign), "--lab", str(path)])

    assert checked.exit_code == 1, checked.output
    assert f"fail lab · instruments: {words}" in checked.output
    assert "1 problem(s) of the lab as a whole" in checked.output
    assert planned.exit_code == 2 and f"error: lab: instruments: {words}; add one" in planned.output


def test_cluster_env_prints_the_token_settings_a_ray_node_starts_with(tmp_path, monkeypatch):
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path / "lab-pc"))
    result = runner.invoke(app, ["lab", "cluster-env"])
    assert result.exit_code == 0, result.output
    exported = dict(line.removeprefix("export ").split("=", 1) for line in result.output.splitlines())
    token = tmp_path / "lab-pc" / "ray" / "auth_token"
    assert exported == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    assert token.stat().st_mode & 0o077 == 0 and len(token.read_text()) == 64
    again = runner.invoke(app, ["lab", "cluster-env"])
    assert again.output == result.output and len(token.read_text()) == 64  # the same token every time
