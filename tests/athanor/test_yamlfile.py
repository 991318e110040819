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


CAMPAIGN = """\
title: 掺杂薄膜
components:
  - {name: PEDOT, upper: 0.8}
  - {name: PSS}
objectives:
  - {name: conductivity, unit: S/cm}
budget:
  experiments: 24
  batch_size: 4
"""


def test_a_key_written_twice_is_refused_with_both_lines_instead_of_the_last_winning(tmp_path):
    path = tmp_path / "campaign.yaml"
    path.write_text(CAMPAIGN + "  batch_size: 8\nbudget:\n  experiments: 6\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_model(path, CampaignSpec, "campaign file")
    assert str(info.value).splitlines() == [
        f"{path}:10: 'batch_size' appears a second time (first on line 9); keep one of them"
        " (YAML would silently use the last)",
        f"{path}:11: 'budget' appears a second time (first on line 7); keep one of them"
        " (YAML would silently use the last)",
    ]
    path.write_text(CAMPAIGN, encoding="utf-8")
    assert load_model(path, CampaignSpec, "campaign file").budget.batch_size == 4


def test_a_nested_repeated_key_names_its_own_line(tmp_path):
    path = tmp_path / "lab.yaml"
    twice = "min_volume_ul: 1\n      min_volume_ul: 5\n"
    path.write_text(LAB.replace(", fly", "").replace("min_volume_ul: 1\n", twice))
    with pytest.raises(SpecError) as info:
        load_model(path, LabDescription, "lab file")
    assert str(info.value) == (
        f"{path}:10: 'min_volume_ul' appears a second time (first on line 9); keep one of them"
        " (YAML would silently use the last)"
    )


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "written"),
    [
        ("experiments: 24", "experiments: true", 8, "budget.experiments", "true is a yes/no value"),
        ("batch_size: 4", "batch_size: yes", 9, "budget.batch_size", "true is a yes/no value"),
        ("experiments: 24", "experiments: '24'", 8, "budget.experiments", "'24' is text"),
        ("upper: 0.8", "upper: on", 3, "components.0.upper", "true is a yes/no value"),
        ("title: 掺杂薄膜", "title: 掺杂\nsum_rule: {total: yes}", 2, "sum_rule.total", "true is a yes/no"),
    ],
)
def test_a_yes_no_or_text_value_where_a_campaign_needs_a_number_is_refused(
    tmp_path, old, new, line, field, written
):
    path = tmp_path / "campaign.yaml"
    path.write_text(CAMPAIGN.replace(old, new), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_model(path, CampaignSpec, "campaign file")
    assert str(info.value).startswith(f"{path}:{line}: {field}: {written}")


@pytest.mark.parametrize(
    ("old", "new", "line", "field"),
    [
        ("sample_volume_ul: 200", "sample_volume_ul: true", 3, "sample_volume_ul"),
        ("min_volume_ul: 1", "min_volume_ul: false", 9, "instruments.0.envelope.min_volume_ul"),
        ("min_volume_ul: 1", "min_volume_ul: 1\n      tips: yes", 10, "instruments.0.envelope.tips"),
    ],
)
def test_a_yes_no_value_where_a_lab_needs_a_number_is_refused(tmp_path, old, new, line, field):
    path = tmp_path / "lab.yaml"
    path.write_text(LAB.replace(", fly", "").replace(old, new))
    with pytest.raises(SpecError) as info:
        load_model(path, LabDescription, "lab file")
    assert str(info.value).startswith(f"{path}:{line}: {field}: ")
    assert "is a yes/no value, not a number; write a number" in str(info.value)


def test_a_whole_number_is_still_a_number_and_a_stock_volume_a_float(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text(LAB.replace(", fly", "") + "stocks:\n  - {name: S, component: PEDOT, volume_ul: 5000}\n")
    lab = load_model(path, LabDescription, "lab file")
    assert lab.sample_volume_ul == 200.0 and isinstance(lab.stocks[0].volume_ul, float)
    assert lab.instruments[0].envelope.min_volume_ul == 1.0
