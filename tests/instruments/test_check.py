"""The lab check: every instrument built as its actor builds it and dry-run, each problem with its fix."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest
from support import fake_opentrons_server as fake_robot
from support import fake_serial_device as fake_serial

from athanor.app import check_against_lab
from athanor.errors import InstrumentError, SpecError
from athanor.lab import InstrumentSpec, LabDescription
from athanor.spec import CampaignSpec
from athanor.yamlfile import load_model
from instruments.backends.simulated import make_simulated_backend
from instruments.check import check_lab, lab_findings
from instruments.lab_rules import instrument_problems
from instruments.virtual_lab import virtual_lab_description
from instruments.virtual_world import VirtualWorld

EXAMPLE = Path(__file__).resolve().parents[2] / "instruments" / "labs" / "example-ot2-serial.yaml"
TEMPLATE = EXAMPLE.with_name("virtual.yaml")
SPEC = CampaignSpec.model_validate(
    {
        "components": [{"name": "P3HT"}, {"name": "D1"}],
        "objectives": [{"name": "conductivity"}],
        "budget": {"experiments": 8},
    }
)


def virtual_data(time_scale: float = 1.0) -> dict:
    return virtual_lab_description(["P3HT", "D1"], time_scale=time_scale).model_dump(mode="json")


def lab_with(*instruments: dict, base: dict | None = None) -> LabDescription:
    data = virtual_data() if base is None else base
    data["instruments"] = [*data["instruments"], *instruments]
    return LabDescription.model_validate(data)


def serial_spec(name: str, port: str, profile: str, **envelope) -> dict:
    kind = "conductivity_meter" if profile == "four_point_probe" else "hotplate"
    actions = (
        ["measure", "safe_state"]
        if kind == "conductivity_meter"
        else [
            "set_temperature",
            "read_temperature",
            "safe_state",
        ]
    )
    return {
        "name": name,
        "kind": kind,
        "backend": "serial",
        "serial": {"port": port, "profile": profile, "timeout_s": 0.5, "retries": 0},
        "envelope": {"allowed_actions": actions, **envelope},
    }


def by_name(results) -> dict:
    return {r.name: r for r in results}


def finding(result, name: str):
    (found,) = [c for c in result.checks if c.name == name]
    return found


# -- simulated instruments --------------------------------------------------------------------------


def test_the_virtual_lab_checks_ok_on_a_throwaway_copy_without_waiting_or_injected_faults(tmp_path):
    data = virtual_data(time_scale=1.0)  # real durations: 8 s per dispense, 60 s per measurement
    data["instruments"][0]["options"]["fail_rate"] = 1.0  # every dispense would fail in a campaign
    lab = LabDescription.model_validate(data)

    started = time.monotonic()
    results = check_lab(lab, workdir=tmp_path)

    assert time.monotonic() - started < 10
    assert [r.status for r in results] == ["ok", "ok"], [c for r in results for c in r.problems()]
    handler, meter = results
    assert handler.dry_run.startswith("dispense 1 µL P3HT_stock→A1, mix A1")
    assert finding(handler, "safe state").status == "ok"
    assert meter.dry_run.startswith("measure A1 = ") and "S/cm" in meter.dry_run
    assert float(meter.dry_run.split("= ")[1].split()[0]) > 0
    assert lab.time_scale == 1.0 and lab.instruments[0].options["fail_rate"] == 1.0  # the lab is untouched


def test_a_simulated_hotplate_reads_its_temperature_and_its_envelope_is_checked(tmp_path):
    plate = {
        "name": "plate",
        "kind": "hotplate",
        "backend": "simulated",
        "options": {"ambient_c": 21.0, "noise_c": 0.0},
        "envelope": {"allowed_actions": ["set_temperature", "read_temperature", "safe_state"]},
    }

    result = by_name(check_lab(lab_with(plate), workdir=tmp_path))["plate"]

    assert result.dry_run.startswith("read_temperature = 21 °C")
    envelope = finding(result, "envelope")
    assert envelope.status == "warn" and "refuses every set point" in envelope.detail
    assert "max_temperature_c" in envelope.fix
    assert result.status == "warn" and result.envelope == "no max °C"


def test_inconsistent_envelopes_fail_naming_the_fields(tmp_path):
    data = virtual_data()
    data["instruments"][0]["envelope"].update(min_volume_ul=50, max_volume_ul=20)
    data["sample_volume_ul"] = 400
    lab = LabDescription.model_validate(data)

    handler = check_lab(lab, workdir=tmp_path)[0]

    volumes, wells = [c for c in handler.checks if c.name == "envelope"]
    assert handler.status == "fail" and volumes.status == wells.status == "fail"
    assert "min_volume_ul (50 µL) is above max_volume_ul (20 µL)" in volumes.detail
    assert "min_volume_ul" in volumes.fix
    assert "sample_volume_ul=400 µL) overfills a well (max_well_volume_ul=300 µL)" in wells.detail
    assert "sample_volume_ul" in wells.fix


def test_the_shipped_virtual_lab_template_passes_with_a_warning_that_it_has_no_stocks(tmp_path):
    lab = load_model(TEMPLATE, LabDescription, "lab file")
    assert lab.stocks == []

    results = check_lab(lab, workdir=tmp_path)

    assert [r.status for r in results] == ["ok", "warn", "warn"], [c for r in results for c in r.problems()]
    (stocks,) = lab_findings(lab)
    assert (stocks.name, stocks.status) == ("stocks", "warn")
    assert stocks.detail == "no stocks: every campaign on this lab will be refused until stocks are added"
    assert "under stocks" in stocks.fix
    handler, meter, _ = results
    assert handler.dry_run.startswith("mix A1")  # nothing to dispense, but it is built and mixes
    assert finding(meter, "dry run").status == "warn" and "no stocks" in finding(meter, "dry run").detail


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("fail_rate", 2.0, "options.fail_rate must be a number [0, 1], got 2.0"),
        ("stall_rate", -0.5, "options.stall_rate must be a number [0, 1], got -0.5"),
        ("fail_rat", 0.1, "liquid_handler: unknown option(s) fail_rat; known options:"),
    ],
)
def test_a_simulated_option_a_campaign_would_refuse_fails_in_the_words_of_run(tmp_path, option, value, words):
    data = virtual_data()
    data["instruments"][0]["options"][option] = value
    lab = LabDescription.model_validate(data)

    handler, meter = check_lab(lab, workdir=tmp_path)

    refused = finding(handler, "options")
    assert handler.status == "fail" and refused.status == "fail" and refused.detail.startswith(words)
    assert handler.dry_run == "not run: options refused" and meter.status == "ok"
    with pytest.raises(SpecError) as info:
        check_against_lab(SPEC, lab)
    assert str(info.value).splitlines() == [
        f"lab: instrument liquid_handler (options): {refused.detail}; {refused.fix}"
    ]


def test_a_lab_without_a_liquid_handler_fails_as_a_whole_in_the_words_of_run(tmp_path):
    data = virtual_data()
    data["instruments"] = data["instruments"][1:]
    lab = LabDescription.model_validate(data)

    (meter,) = check_lab(lab, workdir=tmp_path)
    (whole,) = lab_findings(lab)

    assert meter.status == "ok"
    assert (whole.name, whole.status) == ("instruments", "fail")
    assert whole.detail == "this lab has no liquid_handler to make samples with"
    with pytest.raises(SpecError) as info:
        check_against_lab(SPEC.model_copy(update={"instruments": ["conductivity_meter"]}), lab)
    assert str(info.value) == f"lab: instruments: {whole.detail}; {whole.fix}"


@pytest.mark.parametrize(
    ("instrument", "words"),
    [
        (
            {"name": "plate", "kind": "hotplate", "options": {"ambient_c": -300}},
            "options.ambient_c must be a number >= -273.15, got -300",
        ),
        (
            {"name": "probe", "kind": "conductivity_meter", "options": {"emulator": "p3ht"}},
            "options.emulator is 'p3ht'; use auto, p3ht_cnt or synthetic",
        ),
        (
            {"name": "uvvis", "kind": "spectrometer", "options": {"absorbance": 0.4}},
            "uvvis: options.absorbance must map component names to absorbances, got 0.4",
        ),
    ],
)
def test_each_kind_of_simulated_instrument_has_its_options_checked_without_being_built(instrument, words):
    spec = InstrumentSpec.model_validate({**instrument, "envelope": {"allowed_actions": ["safe_state"]}})
    lab = lab_with(spec.model_dump(mode="json"))

    (problem,) = instrument_problems(spec, lab)

    assert (problem.instrument, problem.topic, problem.detail) == (spec.name, "options", words)
    with pytest.raises(InstrumentError, match=re.escape(words)):
        make_simulated_backend(spec, lab, VirtualWorld(), seed=0)  # building it says the same


# -- serial instruments -----------------------------------------------------------------------------


def test_a_serial_instrument_on_a_missing_port_fails_with_the_fix_and_no_traceback(tmp_path):
    port = str(tmp_path / "ttyUSB9")
    lab = lab_with(serial_spec("probe", port, "four_point_probe"))

    result = by_name(check_lab(lab, workdir=tmp_path))["probe"]

    found = finding(result, "port")
    assert result.status == "fail" and found.status == "fail"
    assert found.detail == f"serial port {port} does not exist"
    assert "serial.port" in found.fix and "dialout" in found.fix
    assert found.trace is None and result.dry_run == "not run: no port"


def test_serial_instruments_on_real_ptys_identify_themselves_and_reach_their_safe_state(tmp_path):
    with (
        fake_serial.FakeSerialDevice("four_point_probe") as probe,
        fake_serial.FakeSerialDevice("hotplate") as plate,
    ):
        lab = lab_with(
            serial_spec("probe", probe.port, "four_point_probe"),
            serial_spec("plate", plate.port, "hotplate", max_temperature_c=120),
        )
        results = by_name(check_lab(lab, workdir=tmp_path))

        assert results["probe"].status == "ok", results["probe"].problems()
        assert results["plate"].status == "ok", results["plate"].problems()
        assert "FAKE,FPP-4,0001,1.2" in finding(results["probe"], "identify").detail
        assert results["plate"].dry_run == "*IDN? → FAKE,HP-550,0002,2.0, safe state"
        assert probe.received == ["*IDN?", "PROB UP"]  # identify, then the safe state; nothing measured
        assert plate.received == ["*IDN?", "HEAT OFF"]
        assert results["probe"].connection == f"{probe.port} 9600 baud (four_point_probe)"


def test_a_silent_serial_device_fails_to_identify_with_a_fix_naming_the_profile(tmp_path):
    with fake_serial.FakeSerialDevice("four_point_probe") as probe:
        probe.then("silent")
        lab = lab_with(serial_spec("probe", probe.port, "four_point_probe"))

        result = by_name(check_lab(lab, workdir=tmp_path))["probe"]

    found = finding(result, "identify")
    assert found.status == "fail" and "'*IDN?' failed" in found.detail
    assert "four_point_probe" in found.fix and "baud rate" in found.fix


def test_no_connect_opens_no_port_but_still_checks_the_profile(tmp_path):
    with fake_serial.FakeSerialDevice("four_point_probe") as probe:
        good = lab_with(serial_spec("probe", probe.port, "four_point_probe"))
        result = by_name(check_lab(good, connect=False, workdir=tmp_path))["probe"]
        time.sleep(0.1)
        assert probe.received == []
    assert result.status == "ok" and result.dry_run == "not run (--no-connect)"

    wrong = serial_spec("probe", str(tmp_path / "ttyGONE"), "hotplate")
    wrong["kind"] = "conductivity_meter"
    wrong["envelope"] = {"allowed_actions": ["measure", "safe_state"]}
    result = by_name(check_lab(lab_with(wrong), connect=False, workdir=tmp_path))["probe"]
    assert finding(result, "port").status == "warn"  # may be wired to another PC
    build = finding(result, "build")
    assert build.status == "fail" and "drives a hotplate, not a conductivity_meter" in build.detail


# -- the Opentrons robot ----------------------------------------------------------------------------


def ot2_lab(port: int, **stock_wells: str) -> LabDescription:
    data = LabDescription.from_file(EXAMPLE).model_dump(mode="json")
    data["instruments"] = data["instruments"][:1]  # the robot alone
    data["instruments"][0]["robot"].update(host="127.0.0.1", port=port)
    for stock in data["stocks"]:
        stock["well"] = stock_wells.get(stock["name"], stock["well"])
    return LabDescription.model_validate(data)


@pytest.fixture
def robot():
    with fake_robot.FakeRobot() as server:
        yield server


def test_the_robot_protocol_is_simulated_and_its_health_asked_without_moving_it(robot, tmp_path):
    (result,) = check_lab(ot2_lab(robot.port), workdir=tmp_path)

    assert result.status == "ok", result.problems()
    assert finding(result, "dry run").status == "ok"
    health = finding(result, "robot")
    assert health.status == "ok" and "OT-2 Standard" in health.detail and "8.0.0" in health.detail
    assert robot.calls() == ["GET /health"]  # nothing uploaded, nothing homed
    assert [c.status for c in result.checks if c.name.startswith("stock ")] == ["ok"] * 5
    protocol = (tmp_path / "liquid_handler" / "dry-run" / "protocol.py").read_text()
    for well in ("A1", "A2", "A3", "A4", "A5"):
        assert f".aspirate(1.0, labware_1[{well!r}])" in protocol  # every stock's tube is drawn from


def test_a_robot_of_another_type_fails_naming_the_setting(tmp_path):
    with fake_robot.FakeRobot(robot_model="OT-3 Standard") as robot:
        (result,) = check_lab(ot2_lab(robot.port), workdir=tmp_path)

    health = finding(result, "robot")
    assert health.status == "fail" and "is a Flex (OT-3 Standard), but lab.yaml says OT-2" in health.detail
    assert "robot.robot_type" in health.fix


def test_a_stock_on_a_missing_well_fails_naming_the_stock_and_an_unreachable_robot_fails_too(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]

    (result,) = check_lab(ot2_lab(dead, D1_stock="A9"), workdir=tmp_path)

    stock = finding(result, "stock D1_stock")
    assert stock.status == "fail" and "well A9 of stock_rack" in stock.detail and "KeyError" in stock.detail
    assert "stocks[1].well" in stock.fix
    robot = finding(result, "robot")
    assert robot.status == "fail" and "cannot reach the Opentrons robot" in robot.detail
    assert "robot.host" in robot.fix
    assert result.status == "fail"


# -- placement --------------------------------------------------------------------------------------


def with_resources(resources: dict) -> LabDescription:
    data = virtual_data()
    data["instruments"][1]["resources"] = resources
    return LabDescription.model_validate(data)


def test_placement_is_checked_against_the_live_ray_nodes(ray_local, tmp_path):
    missing = check_lab(with_resources({"serial_bench": 1}), workdir=tmp_path)[1]
    offered = check_lab(with_resources({"CPU": 1}), workdir=tmp_path)[1]

    placement = finding(missing, "placement")
    assert placement.status == "fail" and "serial_bench=1" in placement.detail
    assert """--resources='{"serial_bench": 1}'""" in placement.fix
    assert finding(offered, "placement").status == "ok"


def test_without_ray_the_resources_needed_are_listed(monkeypatch, tmp_path):
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)

    meter = check_lab(with_resources({"serial_bench": 1}), workdir=tmp_path)[1]

    placement = finding(meter, "placement")
    assert placement.status == "warn" and "needs Ray resource(s) serial_bench=1" in placement.detail
    assert "ray start --address=HEAD:6379" in placement.fix and "--ray-address" in placement.fix
