"""The Opentrons HTTP client and back end against a fake robot: the call sequence and headers, every
fault as a clear InstrumentError, stall detection with a stop, and simulate-before-send."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from support import fake_opentrons_server as fake

from athanor.errors import InstrumentError, SafetyError
from athanor.lab import LabDescription, RobotConnection
from athanor.models import Command
from instruments.backends import make_backend
from instruments.backends.opentrons_http import (
    OpentronsHTTPClient,
    OpentronsLiquidHandlerBackend,
    RobotRun,
)
from instruments.frontends import LiquidHandler
from instruments.opentrons.protocol import render_protocol, tips_needed
from instruments.opentrons.simulate import simulate
from instruments.virtual_world import VirtualWorld

EXAMPLE = Path(__file__).resolve().parents[2] / "instruments" / "labs" / "example-ot2-serial.yaml"


PROTOCOL = """from opentrons import protocol_api
metadata = {'protocolName': 't'}
requirements = {'robotType': 'OT-2', 'apiLevel': '2.20'}
def run(protocol):
    right_pipette.pick_up_tip()
    right_pipette.aspirate(120.5, labware_1['A1'])
    right_pipette.dispense(120.5, labware_0['A1'])
    right_pipette.drop_tip()
    right_pipette.pick_up_tip()
    right_pipette.mix(3, 60.0, labware_0['A1'])
    right_pipette.drop_tip()
"""


def connection(port: int, stall_timeout_s: float = 5.0) -> RobotConnection:
    return RobotConnection(host="127.0.0.1", port=port, poll_interval_s=0.01, stall_timeout_s=stall_timeout_s)


@pytest.fixture
def robot():
    with fake.FakeRobot() as server:
        yield server


def test_good_path_uploads_creates_plays_polls_then_fetches_the_paged_command_log(robot):
    with OpentronsHTTPClient(connection(robot.port), page_length=2) as client:
        run = client.run_protocol(PROTOCOL, filename="sample.py")

    calls = robot.calls()
    assert calls[:3] == ["POST /protocols", "POST /runs", "POST /runs/{id}/actions"]
    first_poll = calls.index("GET /runs/{id}")
    assert first_poll == 3
    last_poll = len(calls) - 1 - calls[::-1].index("GET /runs/{id}")
    log_fetches = robot.requests[last_poll + 1 :]
    assert log_fetches and all(r.path.endswith("/commands") for r in log_fetches)
    assert [r.query["cursor"] for r in log_fetches] == [["0"], ["2"], ["4"], ["6"]]  # 7 commands, pages of 2
    assert all(r.headers.get("opentrons-version") == "3" for r in robot.requests)

    upload, create, play = robot.requests[:3]
    assert upload.body["files"] == ("sample.py", PROTOCOL)
    assert create.body == {"data": {"protocolId": run.protocol_id}}
    assert play.body == {"data": {"actionType": "play"}}
    assert run.status == "succeeded" and run.played
    assert run.commands == robot.runs[run.run_id].commands
    kinds = ["pickUpTip", "aspirate", "dispense", "dropTip", "pickUpTip", "mix", "dropTip"]
    assert [c["commandType"] for c in run.commands] == kinds
    assert client.last_run is run


def test_a_failed_run_reports_the_robots_error_and_keeps_its_log(robot):
    robot.mode = "fail"
    client = OpentronsHTTPClient(connection(robot.port))

    with pytest.raises(InstrumentError, match="failed: TipNotAttachedError: Pipette should have a tip"):
        client.run_protocol(PROTOCOL)
    assert client.last_run.status == "failed"
    assert client.last_run.errors[0]["errorType"] == "ExceptionInProtocolError"
    assert len(client.last_run.commands) == 2  # the log up to the failure was fetched


def test_a_stalled_run_is_stopped_and_reported(robot):
    robot.mode = "stall"
    client = OpentronsHTTPClient(connection(robot.port, stall_timeout_s=0.3))

    started = time.monotonic()
    with pytest.raises(
        InstrumentError, match=r"stalled: status 'running' and 3 commands unchanged for 0.3 s"
    ):
        client.run_protocol(PROTOCOL)
    elapsed = time.monotonic() - started

    (run,) = robot.runs.values()
    assert run.actions == ["play", "stop"]
    assert len(client.last_run.commands) == 3  # the log as far as it got is kept
    assert 0.3 <= elapsed < 3.0


def test_http_500_on_upload_is_a_clear_error_and_nothing_else_is_sent(robot):
    robot.mode = "upload_500"
    client = OpentronsHTTPClient(connection(robot.port))

    with pytest.raises(
        InstrumentError, match=r"refused POST /protocols: HTTP 500 \(Unexpected Internal Error: disk full\)"
    ):
        client.run_protocol(PROTOCOL)
    assert robot.calls() == ["POST /protocols"]
    assert client.last_run.run_id is None and not client.last_run.played


def test_connection_refused_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the client connects: nothing listens
    client = OpentronsHTTPClient(connection(port))

    with pytest.raises(
        InstrumentError, match=rf"cannot reach the Opentrons robot at http://127.0.0.1:{port}"
    ):
        client.run_protocol(PROTOCOL)


# -- the liquid-handler back end ----------------------------------------------------------------------


def lab_for(port: int) -> LabDescription:
    data = LabDescription.from_file(EXAMPLE).model_dump()
    data["instruments"][0]["robot"].update(
        host="127.0.0.1", port=port, poll_interval_s=0.01, stall_timeout_s=5
    )
    return LabDescription.model_validate(data)


def backend_for(lab: LabDescription, workdir: Path) -> OpentronsLiquidHandlerBackend:
    spec = lab.instrument("liquid_handler")
    client = OpentronsHTTPClient(spec.robot)
    return OpentronsLiquidHandlerBackend(
        spec, lab, client, render=render_protocol, count_tips=tips_needed, simulate=simulate, workdir=workdir
    )


def test_the_backend_makes_a_sample_through_the_robot_after_simulating_it(robot, tmp_path):
    lab = lab_for(robot.port)
    backend = backend_for(lab, tmp_path)
    handler = LiquidHandler(lab.instrument("liquid_handler"), backend, lab.wells, lab.stocks)
    volumes = {"P3HT_stock": 150.3, "D1_stock": 12.7, "D6_stock": 37.0}

    for stock, volume in volumes.items():
        params = {"stock": stock, "well": "B2", "volume_ul": volume}
        assert handler.execute(Command(instrument="liquid_handler", action="dispense", params=params)).ok
    assert robot.requests == []  # dispenses are only queued
    reading = handler.execute(Command(instrument="liquid_handler", action="mix", params={"well": "B2"}))

    assert reading.ok, reading.error
    (text,) = robot.protocols.values()
    (record,) = backend.records
    assert record["protocol"] == text
    assert record["simulation"]["ok"] and "Aspirating 150.3 uL" in record["simulation"]["log"]
    robot_volumes = [
        c["params"]["volume"] for c in record["run"]["commands"] if c["commandType"] == "aspirate"
    ]
    assert robot_volumes == list(volumes.values())
    assert record["run"]["status"] == "succeeded"
    assert backend.tips_used == {"p300_single_gen2": 3, "p20_single_gen2": 1}


def test_the_backend_refuses_a_protocol_that_fails_simulation_without_contacting_the_robot(robot, tmp_path):
    backend = backend_for(lab_for(robot.port), tmp_path)
    backend.dispense("P3HT_stock", "A1", 450.0)  # above the p300's 300 µL

    with pytest.raises(
        SafetyError, match=r"failed its simulation, so nothing was sent.*Cannot aspirate 450\.0"
    ):
        backend.mix("A1")
    assert robot.requests == []
    assert backend.records[0]["run"] is None and not backend.records[0]["simulation"]["ok"]
    assert backend.tips_used == {}


def test_safe_state_stops_the_active_run_before_homing(robot, tmp_path):
    robot.mode = "stall"
    backend = backend_for(lab_for(robot.port), tmp_path)
    client = backend.client
    protocol_id = client.upload_protocol(PROTOCOL)
    run_id = client.create_run(protocol_id)
    client.action(run_id, "play")
    client.last_run = RobotRun(protocol_id=protocol_id, run_id=run_id, played=True, status="running")
    backend.dispense("P3HT_stock", "A1", 100.0)

    backend.safe_state()

    calls = robot.calls()
    assert calls[-1] == "POST /commands" and calls.count("POST /commands") == 1  # home comes last, once
    assert robot.runs[run_id].actions == ["play", "stop"]
    assert robot.requests[-1].body == {"data": {"commandType": "home", "params": {}}}
    assert client.last_run.status == "stopped"
    assert backend._pending == {}


def test_make_backend_builds_the_opentrons_backend_and_checks_its_options(tmp_path):
    data = lab_for(31950).model_dump()
    data["instruments"][0]["options"] = {"workdir": str(tmp_path), "simulation_timeout_s": 30}
    lab = LabDescription.model_validate(data)

    backend = make_backend(lab.instrument("liquid_handler"), lab, VirtualWorld(), seed=0)

    assert isinstance(backend, OpentronsLiquidHandlerBackend)
    assert backend.workdir == tmp_path and backend.simulation_timeout_s == 30.0
    data["instruments"][0]["options"] = {"speed": "fast"}
    bad = LabDescription.model_validate(data)
    with pytest.raises(InstrumentError, match="unknown option"):
        make_backend(bad.instrument("liquid_handler"), bad, VirtualWorld(), seed=0)


def test_the_backend_checks_the_deck_when_it_is_created(tmp_path):
    data = lab_for(31950).model_dump()
    data["stocks"][0]["labware"] = None
    data["stocks"][0]["well"] = None
    lab = LabDescription.model_validate(data)

    with pytest.raises(InstrumentError, match="stock P3HT_stock has no deck position"):
        backend_for(lab, tmp_path)
