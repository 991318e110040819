"""The serial back ends over a real pseudo-terminal: good paths, late/garbled/missing replies, unplugging."""

from __future__ import annotations

import time

import pytest
from support import fake_serial_device as fake

from athanor.errors import InstrumentError
from athanor.lab import InstrumentSpec, LabDescription, SafetyEnvelope, SerialConnection
from athanor.models import Command
from instruments.backends import make_backend
from instruments.backends.profiles import PROFILES, get_profile
from instruments.backends.serial import (
    SerialConductivityMeterBackend,
    SerialDevice,
    SerialHotplateBackend,
    SerialTransport,
    make_serial_backend,
)
from instruments.frontends import Hotplate, make_frontend

TIMEOUT = 0.2
FAST_REOPEN = (0.05, 0.1, 0.2, 0.4)


def connection(port: str, profile: str, retries: int = 2, timeout: float = TIMEOUT) -> SerialConnection:
    return SerialConnection(port=port, profile=profile, timeout_s=timeout, retries=retries)


@pytest.fixture
def probe():
    with fake.FakeSerialDevice("four_point_probe") as device:
        yield device


@pytest.fixture
def plate(tmp_path):
    with fake.FakeSerialDevice("hotplate", link=tmp_path / "ttyHOTPLATE") as device:
        yield device


def meter_backend(device, **kwargs) -> SerialConductivityMeterBackend:
    return SerialConductivityMeterBackend(
        "meter", connection(device.port, "four_point_probe", **kwargs), reopen_delays_s=FAST_REOPEN
    )


def plate_backend(device, **kwargs) -> SerialHotplateBackend:
    return SerialHotplateBackend(
        "plate", connection(device.port, "hotplate", **kwargs), reopen_delays_s=FAST_REOPEN
    )


@pytest.mark.parametrize(
    ("value", "unit", "s_per_cm"), [(512.3, "S/cm", 512.3), (4200.0, "S/m", 42.0), (85.0, "mS/cm", 0.085)]
)
def test_meter_lowers_the_probe_measures_and_lifts_it(probe, value, unit, s_per_cm):
    probe.conductivity, probe.conductivity_unit = value, unit
    backend = meter_backend(probe)
    assert backend.identify() == "FAKE,FPP-4,0001,1.2"
    assert backend.measure("B7") == pytest.approx(s_per_cm)
    assert probe.received == ["*IDN?", "PROB DOWN", "MEAS?", "PROB UP"]
    assert bytes(probe.raw) == b"*IDN?\r\nPROB DOWN\r\nMEAS?\r\nPROB UP\r\n"
    assert not probe.probe_is_down
    backend.close()


def test_hotplate_sends_absolute_set_point_then_heats_and_reads(plate):
    backend = plate_backend(plate)
    backend.set_temperature(120)
    assert plate.received == ["SETT 120.0", "HEAT ON"]
    assert plate.setpoint == 120.0 and plate.heater_on
    plate.temperature = 97.25
    assert backend.read_temperature() == pytest.approx(97.2)  # the device prints one decimal
    backend.close()


def test_late_reply_is_retried_and_its_echo_cannot_answer_the_next_command(plate):
    backend = plate_backend(plate)
    plate.then("late")
    assert backend.read_temperature() == pytest.approx(118.4)
    assert plate.count("TEMP?") == 2
    assert backend.device.transport.attempts_made == 2
    # the second TEMP? reply arrived after the first; it must not be taken as the answer to *IDN?
    assert backend.identify() == "FAKE,HP-550,0002,2.0"
    assert backend.device.transport.attempts_made == 1
    assert plate.count("*IDN?") == 1


def test_garbled_reply_is_retried(plate):
    backend = plate_backend(plate)
    plate.then("garbage")
    assert backend.read_temperature() == pytest.approx(118.4)
    assert plate.count("TEMP?") == 2


def test_garbage_on_every_attempt_fails_naming_port_command_and_reply(plate):
    backend = plate_backend(plate)
    plate.then("garbage", "garbage", "garbage")
    with pytest.raises(InstrumentError) as caught:
        backend.read_temperature()
    message = str(caught.value)
    for words in (plate.port, "'TEMP?'", "failed after 3 attempt(s)", "unexpected reply", "TE#P"):
        assert words in message
    assert plate.count("TEMP?") == 3


def test_silent_device_fails_after_the_retries_in_bounded_time(plate):
    backend = plate_backend(plate, retries=2)
    plate.then("silent", "silent", "silent")
    start = time.monotonic()
    with pytest.raises(InstrumentError, match=r"no complete reply within 0\.2 s") as caught:
        backend.read_temperature()
    elapsed = time.monotonic() - start
    assert 3 * TIMEOUT <= elapsed < 3 * TIMEOUT + 1.0
    assert "3 attempt(s)" in str(caught.value)
    assert plate.count("TEMP?") == 3


def test_device_refusal_is_not_retried(plate):
    backend = plate_backend(plate)
    plate.then("error")
    with pytest.raises(InstrumentError, match=r"refused 'SETT 120\.0'.*Data out of range"):
        backend.set_temperature(120.0)
    assert plate.received == ["SETT 120.0"]


def test_unplugged_device_is_reopened_and_the_command_re_sent(plate):
    backend = plate_backend(plate)
    plate.then("vanish")
    assert backend.read_temperature() == pytest.approx(118.4)
    assert plate.generation == 2  # answered on the new pty
    assert plate.count("TEMP?") == 2
    backend.set_temperature(60.0)  # and the new connection keeps working
    assert plate.setpoint == 60.0


@pytest.mark.parametrize("fault", ["silent", "garbage", "vanish"])
def test_non_idempotent_command_is_not_re_sent_once_it_went_out(plate, fault):
    device = SerialDevice(connection(plate.port, "hotplate"), reopen_delays_s=FAST_REOPEN)
    plate.setpoint = 50.0
    plate.then(fault)
    with pytest.raises(InstrumentError, match="not re-sent because it is not idempotent"):
        device.call("step", delta=5.0)
    time.sleep(plate.vanish_s + 2 * TIMEOUT)  # long enough for a retry to have reached the device
    assert plate.received == ["STEP +5.0"]
    assert device.transport.attempts_made == 1
    # an idempotent command under the same fault is re-sent
    plate.then(fault)
    device.call("set_temperature", celsius=80.0)
    assert plate.count("SETT 80.0") == 2 and plate.setpoint == 80.0


def test_non_idempotent_command_is_sent_after_reconnecting_when_the_write_failed(plate):
    device = SerialDevice(connection(plate.port, "hotplate"), reopen_delays_s=FAST_REOPEN)
    plate.setpoint = 50.0
    plate.vanish_now(back_after_s=0.1)  # unplugged while idle: the write fails, nothing reached it
    device.call("step", delta=5.0)
    assert plate.received == ["STEP +5.0"]
    assert plate.setpoint == 55.0
    assert device.transport.attempts_made == 2


def test_safe_state_is_sent_on_request(plate, probe):
    hot = plate_backend(plate)
    hot.set_temperature(150.0)
    hot.safe_state()
    assert plate.received[-1] == "HEAT OFF" and not plate.heater_on
    meter = meter_backend(probe)
    meter.safe_state()
    assert probe.received == ["PROB UP"]


def test_failed_measurement_still_lifts_the_probe(probe):
    backend = meter_backend(probe, retries=1, timeout=0.05)
    probe.then("normal", "silent", "silent")
    with pytest.raises(InstrumentError, match="'MEAS\\?' failed after 2 attempt"):
        backend.measure("A1")
    assert probe.received == ["PROB DOWN", "MEAS?", "MEAS?", "PROB UP"]
    assert not probe.probe_is_down


def test_serial_lab_runs_through_make_backend_and_the_front_ends(plate, probe):
    lab = LabDescription(
        wells=["A1"],
        sample_volume_ul=200,
        instruments=[
            InstrumentSpec(
                name="plate",
                kind="hotplate",
                backend="serial",
                serial=connection(plate.port, "hotplate"),
                options={"ambient_c": 20.0, "reopen_delays_s": list(FAST_REOPEN)},
                envelope=SafetyEnvelope(
                    allowed_actions=["set_temperature", "read_temperature", "safe_state"],
                    max_temperature_c=200.0,
                    max_ramp_c_per_min=100.0,
                ),
            ),
            InstrumentSpec(
                name="meter",
                kind="conductivity_meter",
                backend="serial",
                serial=connection(probe.port, "four_point_probe"),
                envelope=SafetyEnvelope(allowed_actions=["measure", "safe_state"]),
            ),
        ],
    )
    frontends = {
        spec.name: make_frontend(spec, lab, make_backend(spec, lab, world=None, seed=0))
        for spec in lab.instruments
    }
    hot = frontends["plate"]
    assert isinstance(hot, Hotplate)
    reading = hot.execute(Command(instrument="plate", action="set_temperature", params={"celsius": 110.0}))
    assert reading.ok and reading.values == {"setpoint": 110.0}
    reading = hot.execute(Command(instrument="plate", action="read_temperature", params={}))
    assert reading.values == {"temperature": pytest.approx(118.4)} and reading.units == {"temperature": "°C"}
    assert hot.safe_state().ok and plate.received[-1] == "HEAT OFF"
    reading = frontends["meter"].execute(Command(instrument="meter", action="measure", params={"well": "A1"}))
    assert reading.ok and reading.values == {"conductivity": pytest.approx(512.3)}
    probe.then("silent", "silent", "silent")  # a dead line is a failed reading, not a crash
    reading = frontends["meter"].execute(Command(instrument="meter", action="measure", params={"well": "A1"}))
    assert not reading.ok and "PROB DOWN" in reading.error
    assert probe.received[-1] == "PROB UP"  # the probe may have gone down: it is lifted anyway


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(InstrumentError) as caught:
        get_profile("keithley")
    assert "'keithley'" in str(caught.value)
    for name in PROFILES:
        assert name in str(caught.value)
    assert {"four_point_probe", "hotplate"} <= set(PROFILES)


def test_profile_for_another_kind_and_missing_port_are_refused(tmp_path, plate):
    with pytest.raises(InstrumentError, match="drives a hotplate, not a conductivity_meter"):
        SerialConductivityMeterBackend("meter", connection(plate.port, "hotplate"))
    missing = str(tmp_path / "ttyUSB9")
    with pytest.raises(InstrumentError, match="cannot open it") as caught:
        SerialHotplateBackend("plate", connection(missing, "hotplate"))
    assert missing in str(caught.value) and "serial.port" in str(caught.value)
    spec = InstrumentSpec(
        name="plate",
        kind="hotplate",
        backend="serial",
        serial=connection(plate.port, "hotplate"),
        options={"reopen_delay": 1},
        envelope=SafetyEnvelope(allowed_actions=["safe_state"]),
    )
    with pytest.raises(
        InstrumentError, match=r"unknown option\(s\) reopen_delay; .* knows .*reopen_delays_s"
    ):
        make_serial_backend(spec)


def test_transport_accepts_a_predicate_and_any_opener():
    transport = SerialTransport(connection("loop://", "hotplate"))
    assert transport.query("PING 7", lambda line: line.startswith("PING")) == "PING 7"
    with pytest.raises(InstrumentError, match=r"'PONG' failed after 3 attempt\(s\).*unexpected reply 'PONG'"):
        transport.query("PONG", lambda line: line == "PING")
    transport.close()
