"""Front ends refuse bad commands before the back end moves, keep volume books, and report faults as data."""

from __future__ import annotations

import time

import pytest

from athanor.errors import InstrumentError, SafetyError
from athanor.lab import InstrumentSpec, SafetyEnvelope, Stock
from athanor.models import Command
from instruments.backends import make_backend
from instruments.backends.simulated import (
    SimulatedConductivityMeterBackend,
    SimulatedLiquidHandlerBackend,
)
from instruments.emulator import emulator_for
from instruments.frontends import ACTIONS, ConductivityMeter, LiquidHandler, make_frontend
from instruments.virtual_lab import virtual_lab_description
from instruments.virtual_world import VirtualWorld

WELLS = ["A1", "A2", "A3"]
STOCKS = [
    Stock(name="P3HT_stock", component="P3HT", volume_ul=500),
    Stock(name="D1_stock", component="D1", volume_ul=50),
]


def handler_spec(**envelope) -> InstrumentSpec:
    limits = {
        "allowed_actions": ["dispense", "mix", "safe_state"],
        "min_volume_ul": 1.0,
        "max_volume_ul": 300.0,
    }
    limits["max_well_volume_ul"] = 300.0
    limits.update(envelope)
    return InstrumentSpec(name="lh", kind="liquid_handler", envelope=SafetyEnvelope(**limits))


METER_SPEC = InstrumentSpec(
    name="meter",
    kind="conductivity_meter",
    envelope=SafetyEnvelope(allowed_actions=["measure", "safe_state"]),
)


class SpyBackend:
    """Records calls; fails when told to."""

    def __init__(self, fail: bool = False):
        self.calls = []
        self.fail = fail

    def dispense(self, stock, well, volume_ul):
        self.calls.append(("dispense", stock, well, volume_ul))
        if self.fail:
            raise InstrumentError("tip crashed")

    def mix(self, well):
        self.calls.append(("mix", well))

    def safe_state(self):
        self.calls.append(("safe_state",))


def dispense(stock="P3HT_stock", well="A1", volume=100.0, instrument="lh"):
    return Command(
        instrument=instrument, action="dispense", params={"stock": stock, "well": well, "volume_ul": volume}
    )


@pytest.fixture
def spy():
    backend = SpyBackend()
    return LiquidHandler(handler_spec(), backend, WELLS, STOCKS), backend


def test_dispense_reaches_back_end_and_books_volumes(spy):
    handler, backend = spy
    reading = handler.execute(dispense(volume=120.5))
    assert reading.ok and reading.values == {"volume_ul": 120.5, "well_volume_ul": 120.5}
    assert reading.units["volume_ul"] == "µL"
    assert backend.calls == [("dispense", "P3HT_stock", "A1", 120.5)]
    assert handler.ledger.stock_available("P3HT_stock") == pytest.approx(379.5)
    assert handler.ledger.well_volume("A1") == pytest.approx(120.5)
    assert reading.finished >= reading.started


@pytest.mark.parametrize(
    ("command", "error", "words"),
    [
        (dispense(volume=0.5), SafetyError, ["volume_ul=0.5", "min_volume_ul"]),
        (dispense(volume=301.0), SafetyError, ["max_volume_ul", "split"]),
        (dispense(volume=-3.0), SafetyError, ["positive"]),
        (dispense(volume="lots"), InstrumentError, ["number"]),
        (dispense(well="Z9"), InstrumentError, ["unknown well 'Z9'", "A1"]),
        (dispense(stock="D9_stock"), InstrumentError, ["unknown stock 'D9_stock'", "P3HT_stock", "lab.yaml"]),
        (dispense(stock="D1_stock", volume=60.0), SafetyError, ["D1_stock has 50", "refill"]),
        (
            Command(instrument="lh", action="aspirate", params={}),
            InstrumentError,
            ["dispense, mix, safe_state"],
        ),
        (
            Command(instrument="lh", action="dispense", params={"well": "A1"}),
            InstrumentError,
            ["stock, well"],
        ),
        (
            Command(instrument="lh", action="mix", params={"well": "A1", "speed": 3}),
            InstrumentError,
            ["speed"],
        ),
        (dispense(instrument="meter"), InstrumentError, ["meter"]),
    ],
)
def test_bad_commands_are_refused_before_the_back_end(spy, command, error, words):
    handler, backend = spy
    with pytest.raises(error) as caught:
        handler.execute(command)
    for word in words:
        assert word in str(caught.value)
    assert backend.calls == []
    assert handler.ledger.stock_available("P3HT_stock") == 500


def test_running_out_of_tips_is_refused_before_the_back_end():
    backend = SpyBackend()
    handler = LiquidHandler(handler_spec(tips=2), backend, WELLS, STOCKS)
    handler.execute(dispense(volume=10.0))
    handler.execute(dispense(well="A2", volume=10.0))
    assert handler.status()["tips_used"] == 2
    with pytest.raises(SafetyError, match="all 2 tips are used; load fresh tip racks"):
        handler.execute(dispense(well="A3", volume=10.0))
    assert len(backend.calls) == 2


def test_a_failed_dispense_still_used_its_tip():
    handler = LiquidHandler(handler_spec(tips=1), SpyBackend(fail=True), WELLS, STOCKS)
    assert not handler.execute(dispense(volume=10.0)).ok
    assert handler.tips_used == 1
    with pytest.raises(SafetyError, match="tips are used"):
        handler.execute(dispense(volume=10.0))


def test_overflowing_a_well_is_refused(spy):
    handler, backend = spy
    handler.execute(dispense(volume=250.0))
    with pytest.raises(SafetyError, match="max_well_volume_ul"):
        handler.execute(dispense(volume=60.0))
    assert len(backend.calls) == 1
    assert handler.ledger.well_volume("A1") == 250.0


def test_action_outside_the_envelope_is_refused_even_if_the_kind_has_it():
    backend = SpyBackend()
    handler = LiquidHandler(handler_spec(allowed_actions=["dispense", "safe_state"]), backend, WELLS, STOCKS)
    with pytest.raises(InstrumentError, match="safety envelope; allowed actions: dispense, safe_state"):
        handler.execute(Command(instrument="lh", action="mix", params={"well": "A1"}))
    assert backend.calls == []
    assert handler.safe_state().ok  # safe state is always reachable
    assert backend.calls == [("safe_state",)]


def test_back_end_fault_is_a_failed_reading_and_rolls_back():
    backend = SpyBackend(fail=True)
    handler = LiquidHandler(handler_spec(), backend, WELLS, STOCKS)
    reading = handler.execute(dispense(volume=100.0))
    assert not reading.ok and "tip crashed" in reading.error
    assert reading.values == {}
    assert handler.ledger.stock_available("P3HT_stock") == 500
    assert handler.ledger.well_volume("A1") == 0
    backend.fail = False
    assert handler.execute(dispense(volume=100.0)).ok
    assert handler.ledger.stock_available("P3HT_stock") == 400


def simulated_pair(lh_options=None, meter_options=None, seed=0):
    world = VirtualWorld()
    stocks = {s.name: s.component for s in STOCKS}
    lh_backend = SimulatedLiquidHandlerBackend("lh", world, stocks, 8.0, 0.0, lh_options, seed)
    emulator = emulator_for(["P3HT", "D1"], seed)
    meter_backend = SimulatedConductivityMeterBackend(
        "meter", world, emulator, 60.0, 0.0, meter_options, seed
    )
    return (
        world,
        LiquidHandler(handler_spec(), lh_backend, WELLS, STOCKS),
        ConductivityMeter(METER_SPEC, meter_backend, WELLS),
        emulator,
    )


def test_meter_measures_what_the_handler_put_in_the_well():
    world, handler, meter, emulator = simulated_pair(meter_options={"noise_rel": 0.0})
    handler.execute(dispense("P3HT_stock", "A2", 120.0))
    handler.execute(dispense("D1_stock", "A2", 30.0))
    assert handler.execute(Command(instrument="lh", action="mix", params={"well": "A2"})).ok
    assert world.contents("A2") == {"P3HT": 120.0, "D1": 30.0}
    assert world.mixes("A2") == 1
    reading = meter.execute(Command(instrument="meter", action="measure", params={"well": "A2"}))
    assert reading.ok and reading.units == {"conductivity": "S/cm"}
    assert reading.values["conductivity"] == pytest.approx(emulator.true_value({"P3HT": 0.8, "D1": 0.2}))


def test_measuring_an_empty_well_is_a_failed_reading():
    _, _, meter, _ = simulated_pair()
    reading = meter.execute(Command(instrument="meter", action="measure", params={"well": "A3"}))
    assert not reading.ok and "empty" in reading.error
    with pytest.raises(InstrumentError, match="unknown well"):
        meter.execute(Command(instrument="meter", action="measure", params={"well": "B7"}))


def test_pipetting_noise_changes_what_lands_in_the_well():
    world, handler, _, _ = simulated_pair(lh_options={"noise_rel": 0.05})
    handler.execute(dispense("P3HT_stock", "A1", 100.0))
    landed = world.contents("A1")["P3HT"]
    assert landed != 100.0 and abs(landed - 100.0) < 30
    assert handler.ledger.well_volume("A1") == 100.0  # the books hold the nominal volume


def fault_pattern(seed):
    _, handler, _, _ = simulated_pair(lh_options={"fail_rate": 0.5, "fail_actions": ["mix"]}, seed=seed)
    mix = Command(instrument="lh", action="mix", params={"well": "A1"})
    return [handler.execute(mix).ok for _ in range(40)]


def test_fault_injection_is_seeded_and_targeted():
    first = fault_pattern(seed=1)
    assert first == fault_pattern(seed=1)
    assert first != fault_pattern(seed=2)
    assert 8 < first.count(False) < 32
    _, handler, _, _ = simulated_pair(
        lh_options={"fail_rate": 1.0, "fail_actions": ["mix"], "fail_wells": ["A3"]}
    )
    assert handler.execute(dispense(well="A1", volume=10.0)).ok
    assert handler.execute(Command(instrument="lh", action="mix", params={"well": "A1"})).ok
    failed = handler.execute(Command(instrument="lh", action="mix", params={"well": "A3"}))
    assert not failed.ok and "injected fault" in failed.error


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"failrate": 0.1}, "unknown option(s) failrate"),
        ({"fail_rate": 1.5}, "fail_rate must be a number [0, 1]"),
        ({"fail_actions": ["measure"]}, "fail_actions names measure"),
        ({"durations": {"teleport": 1}}, "durations names unknown"),
    ],
)
def test_bad_options_are_refused_with_the_fix(options, words):
    with pytest.raises(InstrumentError) as caught:
        SimulatedLiquidHandlerBackend("lh", VirtualWorld(), {}, 1.0, 0.0, options, 0)
    assert words in str(caught.value)


def test_durations_scale_with_time_scale():
    backend = SimulatedLiquidHandlerBackend(
        "lh", VirtualWorld(), {"P3HT_stock": "P3HT"}, 2.0, 0.05, {"durations": {"mix": 0.0}}, 0
    )
    handler = LiquidHandler(handler_spec(), backend, WELLS, STOCKS)
    start = time.monotonic()
    reading = handler.execute(dispense(volume=10.0))
    assert time.monotonic() - start >= 0.1
    assert reading.finished - reading.started >= 0.1
    start = time.monotonic()
    handler.execute(Command(instrument="lh", action="mix", params={"well": "A1"}))
    assert time.monotonic() - start < 0.05


def test_registry_and_factories_follow_the_lab_description():
    lab = virtual_lab_description(["P3HT", "D1"], time_scale=0.0)
    world = VirtualWorld()
    for spec in lab.instruments:
        frontend = make_frontend(spec, lab, make_backend(spec, lab, world, seed=0))
        assert set(frontend.allowed_actions) == set(ACTIONS[spec.kind])
    assert isinstance(make_frontend(lab.instruments[0], lab, SpyBackend()), LiquidHandler)
