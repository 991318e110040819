"""Opentrons protocols: rendered batches simulate in the real opentrons environment, faults are clear,
names cannot inject code, and the simulation runs scrubbed and time-limited."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from athanor.errors import AthanorError, InstrumentError
from athanor.lab import LabDescription
from athanor.models import Command, Proposal
from athanor.spec import CampaignSpec
from instruments.opentrons.protocol import render_batch, render_protocol, tips_needed
from instruments.opentrons.simulate import PYTHON_ENV_VAR, simulate
from tools.protocols import compile_protocol

EXAMPLE = Path(__file__).resolve().parents[2] / "instruments" / "labs" / "example-ot2-serial.yaml"
NAMES = ["P3HT", "D1", "D2", "D6", "D8"]
COMPOSITIONS = {
    "A1": (0.613, 0.0335, 0.2035, 0.1, 0.05),  # 122.6, 6.7, 40.7, 20, 10 µL
    "A2": (0.4, 0.3, 0.0, 0.3, 0.0),
    "B7": (0.9, 0.02, 0.03, 0.03, 0.02),
}
FLEX_LABWARE = [
    {"name": "plate", "load_name": "corning_96_wellplate_360ul_flat", "slot": "D1"},
    {"name": "stock_rack", "load_name": "opentrons_15_tuberack_falcon_15ml_conical", "slot": "D2"},
    {"name": "tips_50", "load_name": "opentrons_flex_96_tiprack_50ul", "slot": "C1"},
    {"name": "tips_1000", "load_name": "opentrons_flex_96_tiprack_1000ul", "slot": "C2"},
]


def ot2_lab(**changes) -> LabDescription:
    data = LabDescription.from_file(EXAMPLE).model_dump()
    envelope = changes.pop("envelope", {})
    data["instruments"][0]["envelope"].update(envelope)
    data.update(changes)
    return LabDescription.model_validate(data)


def flex_lab() -> LabDescription:
    data = LabDescription.from_file(EXAMPLE).model_dump()
    data["labware"] = FLEX_LABWARE
    data["instruments"][0]["robot"]["robot_type"] = "Flex"
    return LabDescription.model_validate(data)


def batch(lab: LabDescription):
    spec = CampaignSpec.model_validate(
        {
            "components": [{"name": n} for n in NAMES],
            "objectives": [{"name": "conductivity"}],
            "budget": {"experiments": 10, "batch_size": 3},
        }
    )
    return [
        compile_protocol(
            Proposal(experiment_id=f"E{i:04d}", composition=dict(zip(NAMES, values, strict=True))),
            spec,
            lab,
            well,
        )
        for i, (well, values) in enumerate(COMPOSITIONS.items(), start=1)
    ]


def dispense(stock: str, well: str, volume: float, instrument: str = "liquid_handler") -> Command:
    return Command(
        instrument=instrument, action="dispense", params={"stock": stock, "well": well, "volume_ul": volume}
    )


def mix(well: str) -> Command:
    return Command(instrument="liquid_handler", action="mix", params={"well": well})


def expected_transfers(lab: LabDescription, protocols) -> list[tuple[str, str]]:
    """(aspirate line, dispense line) the simulator must print for each dispense of the batch."""
    wells = {s.name: s.well for s in lab.stocks}
    lines = []
    for protocol in protocols:
        for c in protocol.commands:
            if c.action == "dispense":
                volume = c.params["volume_ul"]
                lines.append(
                    (
                        f"Aspirating {volume:.1f} uL from {wells[c.params['stock']]} of stock_rack",
                        f"Dispensing {volume:.1f} uL into {c.params['well']} of plate",
                    )
                )
    return lines


def test_ot2_batch_simulates_with_the_dispensed_volumes_and_continues_the_tip_racks(tmp_path):
    lab = ot2_lab()
    protocols = batch(lab)
    text = render_batch(protocols, lab, "OT-2", tips_used={"p300_single_gen2": 95})
    result = simulate(text, tmp_path)

    assert result.ok, result.error
    assert result.error is None and result.commands > 0
    log = result.log.splitlines()
    transfers = expected_transfers(lab, protocols)
    for aspirate, dispensed in transfers:
        at = next(i for i, line in enumerate(log) if line.startswith(aspirate))
        assert log[at + 1].startswith(dispensed)  # each aspirate is followed by its own dispense
    assert result.log.count("Picking up tip") == len(transfers) + len(protocols)  # a fresh tip per step
    assert result.log.count("Mixing 3 times") == len(protocols)
    # 95 tips of the first 300 µL rack were used before: the next comes from its last position, then rack 2
    picks = [line for line in log if "Picking up tip" in line and "tips_300" in line]
    assert picks[0].startswith("Picking up tip from H12 of tips_300_a")
    assert picks[1].startswith("Picking up tip from A1 of tips_300_b")
    small = [line for line in log if "Picking up tip" in line and "tips_20" in line]
    assert len(small) == sum(1 for p in protocols for c in p.commands if c.params.get("volume_ul", 99) <= 20)


def test_flex_batch_simulates_with_the_dispensed_volumes(tmp_path):
    lab = flex_lab()
    protocols = batch(lab)
    text = render_batch(protocols, lab, "Flex")
    result = simulate(text, tmp_path)

    assert result.ok, result.error
    for aspirate, dispensed in expected_transfers(lab, protocols):
        assert aspirate in result.log and dispensed in result.log
    assert "Dropping tip into Trash Bin on slot A3" in result.log
    assert "'robotType': 'Flex'" in text and "flex_1channel_50" in text and "flex_1channel_1000" in text


def test_a_volume_beyond_the_largest_pipette_fails_simulation_naming_volume_and_line(tmp_path):
    lab = ot2_lab()
    text = render_protocol([dispense("P3HT_stock", "A1", 450.0), mix("A1")], lab, "OT-2", "too much")
    result = simulate(text, tmp_path)

    assert not result.ok
    assert "Cannot aspirate 450.0 µL" in result.error
    assert "protocol line" in result.error and ".aspirate(450.0" in result.error


def test_a_well_the_plate_does_not_have_fails_simulation_naming_the_well(tmp_path):
    lab = ot2_lab()
    text = render_protocol([dispense("P3HT_stock", "H13", 100.0)], lab, "OT-2", "bad well")
    result = simulate(text, tmp_path)

    assert not result.ok
    assert "'H13'" in result.error and "protocol line" in result.error


def test_an_unknown_labware_load_name_fails_simulation_naming_it(tmp_path):
    data = ot2_lab().model_dump()
    data["labware"][0]["load_name"] = "corning_97_wellplate_360ul_flat"
    lab = LabDescription.model_validate(data)
    result = simulate(render_protocol([mix("A1")], lab, "OT-2", "bad labware"), tmp_path)

    assert not result.ok
    assert 'Labware "corning_97_wellplate_360ul_flat" not found' in result.error


def test_simulation_gets_a_scrubbed_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    protocol = (
        "import os\n"
        "metadata = {'apiLevel': '2.20'}\n"
        "def run(protocol):\n"
        "    protocol.comment(repr(sorted(os.environ.items())))\n"
    )
    result = simulate(protocol, tmp_path)

    assert result.ok, result.error
    env = dict(ast.literal_eval(result.log.strip()))
    assert sorted(env) == ["HOME", "LANG", "OT_API_CONFIG_DIR", "PATH"]
    assert env["HOME"] == str(tmp_path.resolve())
    assert env["OT_API_CONFIG_DIR"] == str(tmp_path.resolve() / "ot-config")
    assert "sk-secret-value" not in result.log


def test_simulation_is_killed_at_its_time_limit(tmp_path):
    result = simulate("import time\ntime.sleep(60)\n", tmp_path, timeout_s=1.0)

    assert not result.ok
    assert "time limit of 1 s" in result.error
    assert result.seconds < 10


def test_a_missing_opentrons_environment_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setenv(PYTHON_ENV_VAR, str(tmp_path / "no-such-python"))
    with pytest.raises(AthanorError, match="make setup"):
        simulate("metadata = {}\n", tmp_path)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("labware_name", "plate'); import os; os.system('id'); ('"),
        ("load_name", "corning_96_wellplate_360ul_flat')\nimport os\n#"),
        ("slot", "1'); __import__('os').system('id'); ('"),
        ("stock_well", "A1'] if __import__('os').system('id') else labware_1['A1"),
        ("sample_well", "A1\nimport os"),
    ],
)
def test_injection_through_names_is_refused(where, value):
    data = ot2_lab().model_dump()
    steps = [dispense("P3HT_stock", "A1", 100.0), mix("A1")]
    if where == "labware_name":
        data["labware"][0]["name"] = value
        data["sample_labware"] = value
    elif where == "load_name":
        data["labware"][0]["load_name"] = value
    elif where == "slot":
        data["labware"][0]["slot"] = value
    elif where == "stock_well":
        data["stocks"][0]["well"] = value
    else:
        steps = [dispense("P3HT_stock", value, 100.0)]
    lab = LabDescription.model_validate(data)

    with pytest.raises(InstrumentError):
        render_protocol(steps, lab, "OT-2", "attack")


def test_a_hostile_title_stays_a_string_literal():
    title = "x'}\nimport os\nos.system('id')\nmetadata = {'a': '"
    text = render_protocol([mix("A1")], ot2_lab(), "OT-2", title)

    module = ast.parse(text)
    kinds = [type(node).__name__ for node in module.body]
    assert kinds == ["ImportFrom", "Assign", "Assign", "FunctionDef"]
    metadata = next(n for n in module.body if isinstance(n, ast.Assign) and n.targets[0].id == "metadata")
    assert ast.literal_eval(metadata.value)["protocolName"] == title


def test_rendering_is_deterministic_and_uses_only_the_given_data():
    lab = ot2_lab()
    protocols = batch(lab)
    first, second = render_batch(protocols, lab, "OT-2"), render_batch(protocols, lab, "OT-2")

    assert first == second
    assert "measure" not in first  # the meter's commands do not run on the robot
    for protocol in protocols:
        assert f"protocol.comment('{protocol.experiment_id}: sample in {protocol.well}')" in first


def test_pipettes_follow_the_envelope():
    small_only = render_protocol([mix("A1")], ot2_lab(envelope={"max_volume_ul": 20}), "OT-2", "t")
    large_only = render_protocol([mix("A1")], ot2_lab(envelope={"min_volume_ul": 20}), "OT-2", "t")
    both = render_protocol([mix("A1")], ot2_lab(), "OT-2", "t")

    assert "p20_single_gen2" in small_only and "p300_single_gen2" not in small_only
    assert "p300_single_gen2" in large_only and "p20_single_gen2" not in large_only
    assert "p20_single_gen2" in both and "p300_single_gen2" in both


def test_tips_are_counted_per_pipette_and_running_out_is_refused():
    lab = ot2_lab()
    steps = [dispense("P3HT_stock", "A1", 150.0), dispense("D1_stock", "A1", 5.0), mix("A1")]

    assert tips_needed(steps, lab, "OT-2") == {"p300_single_gen2": 2, "p20_single_gen2": 1}
    with pytest.raises(InstrumentError, match="refill"):
        render_protocol(steps, lab, "OT-2", "t", tips_used={"p300_single_gen2": 2 * 96 - 1})


def test_a_pipette_without_a_tip_rack_is_refused_naming_the_rack_to_add():
    data = ot2_lab().model_dump()
    data["labware"] = [item for item in data["labware"] if item["name"] != "tips_20"]
    with pytest.raises(InstrumentError, match="opentrons_96_tiprack_20ul"):
        render_protocol([mix("A1")], LabDescription.model_validate(data), "OT-2", "t")


def test_steps_the_robot_cannot_run_are_refused():
    lab = ot2_lab()
    with pytest.raises(InstrumentError, match="only dispense and mix"):
        render_protocol([Command(instrument="liquid_handler", action="safe_state")], lab, "OT-2", "t")
    with pytest.raises(InstrumentError, match="conductivity_meter"):
        render_protocol(
            [dispense("P3HT_stock", "A1", 10.0, instrument="conductivity_meter")], lab, "OT-2", "t"
        )
    with pytest.raises(InstrumentError, match="unknown stock"):
        render_protocol([dispense("water", "A1", 10.0)], lab, "OT-2", "t")
    with pytest.raises(InstrumentError, match="not a deck slot of the Flex"):
        render_protocol([mix("A1")], lab, "Flex", "t")
