"""The virtual spectrometer: a second measured quantity (transmittance) for multi-objective campaigns."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.analyst import observation_from_readings
from athanor.errors import InstrumentError, SpecError
from athanor.lab import LabDescription
from athanor.models import Command, Proposal
from athanor.spec import CampaignSpec
from instruments.actors import InstrumentHost
from instruments.check import check_lab
from instruments.optics import ABSORBANCE_RANGE, TransmittanceEmulator
from instruments.virtual_lab import LocalLab, virtual_lab_description
from instruments.virtual_world import VirtualWorld
from tools.protocols import compile_protocol

BOTH = ["conductivity", "transmittance"]


def test_transmittance_follows_beer_lambert_with_additive_absorbances():
    emulator = TransmittanceEmulator(["A", "B"], seed=0, absorbance={"A": 0.0, "B": 1.0}, noise_rel=0.0)
    assert emulator.true_value({"A": 1.0}) == pytest.approx(100.0)
    assert emulator.true_value({"B": 1.0}) == pytest.approx(10.0)
    assert emulator.true_value({"A": 0.5, "B": 0.5}) == pytest.approx(100.0 * 10**-0.5)
    assert emulator.true_value({"A": 20.0, "B": 20.0}) == pytest.approx(100.0 * 10**-0.5)  # volumes normalise


def test_drawn_absorbances_are_seeded_and_in_range():
    first = TransmittanceEmulator(["P3HT", "D1", "D2"], seed=4)
    again = TransmittanceEmulator(["P3HT", "D1", "D2"], seed=4)
    other = TransmittanceEmulator(["P3HT", "D1", "D2"], seed=5)
    assert first.absorbance == again.absorbance != other.absorbance
    assert all(ABSORBANCE_RANGE[0] <= a <= ABSORBANCE_RANGE[1] for a in first.absorbance.values())
    partly = TransmittanceEmulator(["P3HT", "D1", "D2"], seed=4, absorbance={"D1": 0.25})
    assert partly.absorbance["D1"] == 0.25 and partly.absorbance["P3HT"] == first.absorbance["P3HT"]
    noisy = [first.measure({"P3HT": 1.0}, np.random.default_rng(i)) for i in range(200)]
    spread = np.std(np.log(noisy))
    assert 0.005 < spread < 0.02  # 1 % relative noise
    with pytest.raises(InstrumentError, match=r"options\.absorbance names XX"):
        TransmittanceEmulator(["A", "B"], seed=0, absorbance={"XX": 1.0})
    with pytest.raises(InstrumentError, match="must be a number >= 0"):
        TransmittanceEmulator(["A", "B"], seed=0, absorbance={"A": -1.0})


def test_the_virtual_lab_gets_a_spectrometer_only_when_a_campaign_measures_transmittance():
    kinds = lambda lab: [i.kind for i in lab.instruments]  # noqa: E731
    assert kinds(virtual_lab_description(["A", "B"])) == ["liquid_handler", "conductivity_meter"]
    assert kinds(virtual_lab_description(["A", "B"], measures=BOTH)) == [
        "liquid_handler",
        "conductivity_meter",
        "spectrometer",
    ]
    assert kinds(virtual_lab_description(["A", "B"], measures=["transmittance"])) == [
        "liquid_handler",
        "spectrometer",
    ]
    # nothing it can measure: every instrument stays, so that the refusal lists what it could measure
    everything = virtual_lab_description(["A", "B"], measures=["hardness"])
    assert everything.measured_quantities() == ["conductivity", "transmittance"]


def test_a_two_objective_protocol_measures_both_and_the_analyst_reads_both():
    spec = CampaignSpec.model_validate(
        {
            "components": [{"name": "A"}, {"name": "B"}],
            "objectives": [{"name": "conductivity"}, {"name": "transmittance", "unit": "%"}],
            "outcome_constraints": [{"name": "transmittance", "operator": ">=", "value": 1}],
            "budget": {"experiments": 4},
        }
    )
    lab = virtual_lab_description(["A", "B"], time_scale=0.0, measures=spec.measured_names)
    protocol = compile_protocol(
        Proposal(experiment_id="E0001", composition={"A": 0.25, "B": 0.75}), spec, lab, "A1"
    )
    measuring = [(c.instrument, c.action) for c in protocol.commands if c.action == "measure"]
    assert measuring == [("conductivity_meter", "measure"), ("spectrometer", "measure")]

    keyed = [c.model_copy(update={"key": f"run/E0001/{i}"}) for i, c in enumerate(protocol.commands)]
    protocol = protocol.model_copy(update={"commands": keyed})
    with LocalLab(lab, seed=3) as local:
        readings = local.run([protocol], lambda reading: None)["E0001"]
    observation = observation_from_readings(spec, protocol, readings, iteration=1)
    assert observation.status == "ok", observation.note
    assert set(observation.values) == {"conductivity", "transmittance"}
    assert 0 < observation.values["transmittance"] < 100
    spectrum = [r for r in readings if r.instrument == "spectrometer"]
    assert spectrum[0].units == {"transmittance": "%"}

    expected = TransmittanceEmulator(["A", "B"], seed=3).true_value({"A": 0.25, "B": 0.75})
    assert math.isclose(observation.values["transmittance"], expected, rel_tol=0.05)


def test_a_lab_without_a_spectrometer_refuses_a_transmittance_objective():
    spec = CampaignSpec.model_validate(
        {
            "components": [{"name": "A"}, {"name": "B"}],
            "objectives": [{"name": "conductivity"}, {"name": "transmittance"}],
            "budget": {"experiments": 4},
        }
    )
    lab = virtual_lab_description(["A", "B"], time_scale=0.0)
    with pytest.raises(SpecError, match="no instrument in this lab measures 'transmittance'"):
        compile_protocol(Proposal(experiment_id="E0001", composition={"A": 0.5, "B": 0.5}), spec, lab, "A1")


def test_the_spectrometer_refuses_an_empty_well_and_passes_the_lab_check(tmp_path):
    lab = virtual_lab_description(["A", "B"], time_scale=0.0, measures=["transmittance"])
    host = InstrumentHost(lab, "spectrometer", VirtualWorld(), seed=0)
    command = Command(instrument="spectrometer", action="measure", params={"well": "A1"}, key="r/E1/0")
    reading = host.execute(command.model_dump())
    assert reading["ok"] is False and "well A1 is empty" in reading["error"]

    results = {r.name: r for r in check_lab(lab, workdir=tmp_path)}
    spectrometer = results["spectrometer"]
    assert spectrometer.status == "ok", spectrometer.problems()
    assert spectrometer.dry_run.startswith("measure A1 = ") and "%" in spectrometer.dry_run


def test_a_lab_file_may_declare_a_spectrometer_and_its_absorbances():
    data = virtual_lab_description(["A", "B"], time_scale=0.0, measures=BOTH).model_dump(mode="json")
    data["instruments"][2]["options"]["absorbance"] = {"A": 0.0, "B": 1.0}
    data["instruments"][2]["options"]["noise_rel"] = 0.0
    lab = LabDescription.model_validate(data)
    world = VirtualWorld()
    world.add("B2", "B", 200.0)
    host = InstrumentHost(lab, "spectrometer", world, seed=0)
    command = Command(instrument="spectrometer", action="measure", params={"well": "B2"}, key="r/E1/0")
    reading = host.execute(command.model_dump())
    assert reading["values"]["transmittance"] == pytest.approx(10.0)
