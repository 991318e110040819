"""The hot-plate front end refuses unsafe set points before the back end moves; the simulated plate heats."""

from __future__ import annotations

import math

import pytest

from athanor.errors import InstrumentError, SafetyError
from athanor.lab import InstrumentSpec, LabDescription, SafetyEnvelope
from athanor.models import Command
from instruments.backends import make_backend
from instruments.backends.simulated import SimulatedHotplateBackend
from instruments.frontends import Hotplate, make_frontend
from instruments.virtual_world import VirtualWorld

ACTIONS = ["set_temperature", "read_temperature", "safe_state"]


class Clock:
    """A run clock the test moves by hand, seconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SpyPlate:
    """Records calls; fails when told to."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.fail = False

    def set_temperature(self, celsius):
        self.calls.append(("set_temperature", celsius))
        if self.fail:
            raise InstrumentError("controller did not acknowledge")

    def read_temperature(self):
        self.calls.append(("read_temperature",))
        return 42.5

    def safe_state(self):
        self.calls.append(("safe_state",))


def plate_spec(max_temperature_c=150.0, max_ramp_c_per_min=10.0, options=None) -> InstrumentSpec:
    return InstrumentSpec(
        name="plate",
        kind="hotplate",
        options=options or {},
        envelope=SafetyEnvelope(
            allowed_actions=ACTIONS,
            max_temperature_c=max_temperature_c,
            max_ramp_c_per_min=max_ramp_c_per_min,
        ),
    )


def set_to(celsius) -> Command:
    return Command(instrument="plate", action="set_temperature", params={"celsius": celsius})


@pytest.fixture
def rig():
    clock, backend = Clock(), SpyPlate()
    return Hotplate(plate_spec(max_ramp_c_per_min=None), backend, ["A1"], clock), backend, clock


@pytest.mark.parametrize(
    ("command", "error", "words"),
    [
        (set_to(150.5), SafetyError, ["celsius=150.5", "max_temperature_c (150 °C)"]),
        (set_to(1e6), SafetyError, ["max_temperature_c"]),
        (set_to("hot"), InstrumentError, ["number of °C"]),
        (set_to(math.nan), InstrumentError, ["number of °C"]),
        (set_to(True), InstrumentError, ["number of °C"]),
        (set_to(-300.0), InstrumentError, ["absolute zero"]),
        (
            Command(instrument="plate", action="set_temperature", params={"kelvin": 300}),
            InstrumentError,
            ["celsius"],
        ),
        (Command(instrument="plate", action="stir", params={}), InstrumentError, ["set_temperature"]),
    ],
)
def test_bad_set_points_are_refused_before_the_back_end(rig, command, error, words):
    plate, backend, _ = rig
    with pytest.raises(error) as caught:
        plate.execute(command)
    for word in words:
        assert word in str(caught.value)
    assert backend.calls == []
    assert plate.setpoint_c is None


def test_set_point_at_the_limit_reaches_the_back_end_and_is_kept(rig):
    plate, backend, _ = rig
    reading = plate.execute(set_to(150))
    assert reading.ok and reading.values == {"setpoint": 150.0} and reading.units == {"setpoint": "°C"}
    assert backend.calls == [("set_temperature", 150.0)]
    assert plate.setpoint_c == 150.0 and plate.status()["setpoint_c"] == 150.0
    reading = plate.execute(Command(instrument="plate", action="read_temperature", params={}))
    assert reading.values == {"temperature": 42.5} and reading.units == {"temperature": "°C"}


def test_a_plate_without_max_temperature_refuses_to_heat():
    backend = SpyPlate()
    plate = Hotplate(plate_spec(max_temperature_c=None), backend, ["A1"], Clock())
    with pytest.raises(SafetyError, match=r"no max_temperature_c; set one in lab\.yaml"):
        plate.execute(set_to(30.0))
    assert backend.calls == []
    assert plate.safe_state().ok and backend.calls == [("safe_state",)]


def test_ramp_rate_limits_rises_and_says_what_is_allowed():
    clock, backend = Clock(), SpyPlate()
    plate = Hotplate(plate_spec(max_ramp_c_per_min=10.0), backend, ["A1"], clock)
    assert plate.execute(set_to(35.0)).ok  # one minute's worth from ambient (25 °C) at once
    with pytest.raises(SafetyError) as caught:
        plate.execute(set_to(40.0))
    message = str(caught.value)
    for words in ("from 35 to 40 °C", "max_ramp_c_per_min (10 °C/min)", "largest rise allowed now is 0.0 °C"):
        assert words in message
    assert backend.calls == [("set_temperature", 35.0)]
    clock.advance(30.0)  # half a minute refills 5 °C
    with pytest.raises(SafetyError, match=r"allowed now is 5\.0 °C \(to 40\.0 °C\)"):
        plate.execute(set_to(41.0))
    assert plate.execute(set_to(40.0)).ok
    clock.advance(600.0)  # idle time refills at most one minute's worth
    assert plate.ramp_allowance_c() == pytest.approx(10.0)
    with pytest.raises(SafetyError):
        plate.execute(set_to(51.0))
    assert plate.execute(set_to(50.0)).ok
    assert plate.execute(set_to(20.0)).ok  # lowering is always allowed
    with pytest.raises(SafetyError, match="from 20 to 21 °C"):
        plate.execute(set_to(21.0))  # and gives no allowance back
    assert [c[1] for c in backend.calls] == [35.0, 40.0, 50.0, 20.0]


def test_rises_count_from_ambient_after_safe_state():
    clock, backend = Clock(), SpyPlate()
    plate = Hotplate(plate_spec(max_ramp_c_per_min=60.0, options={"ambient_c": 20.0}), backend, ["A1"], clock)
    with pytest.raises(SafetyError, match="from 20 to 90"):
        plate.execute(set_to(90.0))
    assert plate.execute(set_to(80.0)).ok
    clock.advance(60.0)
    assert plate.execute(set_to(140.0)).ok
    reading = plate.execute(Command(instrument="plate", action="safe_state", params={}))
    assert reading.ok and plate.setpoint_c is None and backend.calls[-1] == ("safe_state",)
    clock.advance(60.0)
    with pytest.raises(SafetyError, match="from 20 to 140"):
        plate.execute(set_to(140.0))  # the heater was off: the plate may have cooled to ambient
    assert plate.execute(set_to(80.0)).ok
    assert plate.safe_state().ok and plate.setpoint_c is None


def test_back_end_fault_is_a_failed_reading_and_keeps_the_old_set_point(rig):
    plate, backend, _ = rig
    assert plate.execute(set_to(60.0)).ok
    backend.fail = True
    reading = plate.execute(set_to(90.0))
    assert not reading.ok and "did not acknowledge" in reading.error
    assert plate.setpoint_c == 60.0


def test_bad_ambient_option_is_refused():
    with pytest.raises(InstrumentError, match=r"options\.ambient_c"):
        Hotplate(plate_spec(options={"ambient_c": "warm"}), SpyPlate(), ["A1"], Clock())


def test_simulated_plate_approaches_the_set_point_and_cools_when_off():
    clock = Clock()
    backend = SimulatedHotplateBackend(
        "plate", 0.0, 0.5, {"time_constant_s": 60.0, "noise_c": 0.0, "ambient_c": 25.0}, seed=0, clock=clock
    )
    assert backend.read_temperature() == pytest.approx(25.0)
    backend.set_temperature(125.0)
    clock.advance(30.0)  # 60 simulated seconds at time_scale 0.5: one time constant
    assert backend.read_temperature() == pytest.approx(125.0 - 100.0 / math.e)
    clock.advance(300.0)
    assert backend.read_temperature() == pytest.approx(125.0, abs=0.01)
    backend.safe_state()
    clock.advance(30.0)
    assert backend.read_temperature() == pytest.approx(25.0 + 100.0 / math.e, abs=0.01)
    backend.set_temperature(60.0)  # retargeting starts from where the plate is
    assert backend.true_temperature() == pytest.approx(25.0 + 100.0 / math.e, abs=0.01)


def readings(seed, n=200):
    backend = SimulatedHotplateBackend("plate", 0.0, 0.0, {"noise_c": 0.5}, seed=seed, clock=Clock())
    backend.set_temperature(80.0)
    return [backend.read_temperature() for _ in range(n)]


def test_simulated_noise_is_seeded():
    first = readings(1)
    assert first == readings(1) and first != readings(2)
    mean = sum(first) / len(first)
    spread = math.sqrt(sum((x - mean) ** 2 for x in first) / (len(first) - 1))
    assert mean == pytest.approx(80.0, abs=0.15) and 0.4 < spread < 0.6


def test_virtual_hotplate_from_the_lab_description_with_fault_injection():
    lab = LabDescription(
        wells=["A1"],
        sample_volume_ul=200,
        time_scale=0.0,
        instruments=[
            InstrumentSpec(
                name="plate",
                kind="hotplate",
                options={"fail_rate": 1.0, "fail_actions": ["read_temperature"], "noise_c": 0.0},
                envelope=SafetyEnvelope(allowed_actions=ACTIONS, max_temperature_c=200.0),
            )
        ],
    )
    spec = lab.instruments[0]
    backend = make_backend(spec, lab, VirtualWorld(), seed=0)
    plate = make_frontend(spec, lab, backend)
    assert isinstance(backend, SimulatedHotplateBackend) and isinstance(plate, Hotplate)
    assert plate.execute(Command(instrument="plate", action="set_temperature", params={"celsius": 180})).ok
    assert backend.true_temperature() == pytest.approx(180.0)  # time_scale 0: at the set point at once
    reading = plate.execute(Command(instrument="plate", action="read_temperature", params={}))
    assert not reading.ok and "injected fault in read_temperature" in reading.error
    with pytest.raises(InstrumentError, match="unknown option"):
        SimulatedHotplateBackend("plate", options={"time_constant": 5})
