"""YAML files are refused with the file, the line and the field of each problem."""

from __future__ import annotations

import pytest

from athanor.errors import SpecError
from athanor.lab import LabDescription
from athanor.spec import CampaignSpec
from athanor.yamlfile import load_model

LAB = """\
name: bench
wells: [A1, A2]
sample_volume_ul: 200
instruments:
  - name: lh
    kind: liquid_handler
    envelope:
      allowed_actions: [dispense, mix]
      min_volume_ul: 1
  - name: meter
    kind: conductivity_meter
    envelope:
      allowed_actions: [measure, fly]
"""


def test_lab_error_names_file_line_and_field(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text(LAB)
    with pytest.raises(SpecError) as info:
        load_model(path, LabDescription, "lab file")
    message = str(info.value)
    assert message.startswith(f"{path}:10: instruments.1: ")
    assert "fly" in message and "known actions: measure, safe_state" in message


def test_nested_field_error_points_at_its_own_line(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text(LAB.replace("min_volume_ul: 1", "min_volume_ul: -1").replace(", fly", ""))
    with pytest.raises(SpecError) as info:
        load_model(path, LabDescription, "lab file")
    assert str(info.value).startswith(f"{path}:9: instruments.0.envelope.min_volume_ul: ")


def test_campaign_file_missing_field_and_bad_yaml(tmp_path):
    path = tmp_path / "campaign.yaml"
    path.write_text("components: [{name: A}, {name: B}]\nobjectives: [{name: c}]\n")
    with pytest.raises(SpecError, match=r"campaign.yaml:1: budget: Field required"):
        load_model(path, CampaignSpec, "campaign file")
    path.write_text("components: [{name: A}\n  objectives: x\n")
    with pytest.raises(SpecError, match=r"campaign.yaml:\d+: not valid YAML"):
        load_model(path, CampaignSpec, "campaign file")
    with pytest.raises(SpecError, match="does not exist"):
        load_model(tmp_path / "nope.yaml", CampaignSpec, "campaign file")


def test_a_stock_above_its_containers_capacity_is_refused_with_both_volumes(tmp_path):
    path = tmp_path / "lab.yaml"
    stocks = "stocks:\n  - {name: A_stock, component: A, volume_ul: 60000, capacity_ul: 50000}\n"
    path.write_text(LAB.replace(", fly", "") + stocks)
    with pytest.raises(SpecError) as info:
        load_model(path, LabDescription, "lab file")
    message = str(info.value)
    assert message.startswith(f"{path}:15: stocks.0: ")
    assert "volume_ul=60000 µL is more than its container holds (capacity_ul=50000 µL)" in message
    path.write_text(LAB.replace(", fly", "") + stocks.replace("60000", "50000"))
    assert load_model(path, LabDescription, "lab file").stocks[0].capacity_ul == 50000


def test_a_filled_volume_above_the_stocks_volume_is_refused_naming_the_fix(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text(
        LAB.replace(", fly", "")
        + "stocks:\n  - {name: A_stock, component: A, volume_ul: 500, filled_ul: 800}\n"
    )
    with pytest.raises(SpecError) as info:
        load_model(path, LabDescription, "lab file")
    assert "filled_ul=800 µL is more than volume_ul=500 µL; leave filled_ul out" in str(info.value)
