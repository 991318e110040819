"""A campaign the lab cannot run is refused before any instrument exists."""

from __future__ import annotations

import pytest

import athanor.app as app_module
from athanor.app import RunOptions, choice_notices, run
from athanor.errors import AthanorError, RequestNotUnderstood, SpecError
from athanor.spec import CampaignSpec


class ExplodingLab:
    """Stands in for the Ray lab: any attempt to create instruments fails the test."""

    def __init__(self, *args, **kwargs):
        raise AssertionError("an instrument was created for a refused request")


@pytest.fixture
def no_instruments(monkeypatch, tmp_path):
    monkeypatch.setenv("ATHANOR_HOME", str(tmp_path))
    monkeypatch.setattr(app_module, "RayLab", ExplodingLab)
    monkeypatch.setattr(app_module, "ensure_ray", lambda *a, **k: pytest.fail("Ray was started"))
    return tmp_path


def options(home, **kwargs):
    return RunOptions(literature=False, **kwargs)


@pytest.mark.parametrize(
    ("request_text", "error", "phrase"),
    [
        ("Make something nice", RequestNotUnderstood, "30 experiments"),
        (
            "Maximise the hardness of a blend of A and B (fractions sum to 1), 10 experiments",
            SpecError,
            "no instrument in this lab measures 'hardness'",
        ),
        (
            "Maximise the conductivity of a blend of A and B (fractions sum to 1, A at least 0.7,"
            " B at least 0.5), 10 experiments",
            SpecError,
            "lower bounds add up to 1.2",
        ),
        (
            "Maximise the conductivity of a blend of A and B (fractions sum to 1), 200 experiments",
            SpecError,
            "the lab has 96",
        ),
    ],
)
def test_bad_request_is_refused_before_any_instrument(no_instruments, request_text, error, phrase):
    with pytest.raises(error) as info:
        run(request_text, options(no_instruments))
    assert phrase in str(info.value)
    assert not (no_instruments / "runs").exists() or not any((no_instruments / "runs").iterdir())


def test_unknown_instrument_in_campaign_file_is_refused(no_instruments, tmp_path):
    path = tmp_path / "campaign.yaml"
    path.write_text(
        "components: [{name: A}, {name: B}]\n"
        "objectives: [{name: conductivity}]\n"
        "budget: {experiments: 4}\n"
        "instruments: [liquid_handler, xrd]\n"
    )
    with pytest.raises(SpecError) as info:
        run(str(path), options(no_instruments))
    assert "unknown instrument 'xrd'" in str(info.value)


def test_a_simulator_that_cannot_be_imported_is_refused_before_any_instrument(no_instruments, tmp_path):
    path = tmp_path / "campaign.yaml"
    path.write_text(
        "components: [{name: A}, {name: B}]\n"
        "objectives: [{name: conductivity}]\n"
        "budget: {experiments: 8}\n"
        "fidelities: [{name: experiment, cost: 1},"
        " {name: screen, cost: 0.05, simulator: 'no_such_package.model:predict'}]\n"
    )
    with pytest.raises(SpecError) as info:
        run(str(path), options(no_instruments))
    assert "fidelities (screen): simulator 'no_such_package.model:predict'" in str(info.value)
    assert "cannot be imported" in str(info.value)
    assert not (no_instruments / "runs").exists() or not any((no_instruments / "runs").iterdir())


def test_malformed_campaign_file_names_the_field(no_instruments, tmp_path):
    path = tmp_path / "campaign.yaml"
    path.write_text("components: [{name: A}, {name: B}]\nobjectives: [{name: conductivity}]\nbudget: {}\n")
    with pytest.raises(AthanorError) as info:
        run(str(path), options(no_instruments))
    assert "budget.experiments: Field required" in str(info.value)


def test_a_notice_names_each_categorical_variable_and_a_spec_without_any_gets_none():
    base = {
        "components": [{"name": "A"}, {"name": "B"}],
        "objectives": [{"name": "conductivity"}],
        "budget": {"experiments": 4, "batch_size": 2},
    }
    assert choice_notices(CampaignSpec(**base)) == []
    categories = [
        {"name": "annealing", "choices": ["none", "150C"]},
        {"name": "substrate", "choices": ["glass", "PET"]},
    ]
    notices = choice_notices(CampaignSpec(**base, categories=categories))
    assert [n.split(" (")[0] for n in notices] == ["categories: annealing", "categories: substrate"]
    assert all("the operator applies the chosen option" in n for n in notices)


# the time scale: --time-scale wins over the lab's, and only simulated instruments are scaled

BLEND = CampaignSpec.model_validate(
    {
        "components": [{"name": "P3HT"}, {"name": "D1"}],
        "objectives": [{"name": "conductivity", "unit": "S/cm"}],
        "budget": {"experiments": 6, "batch_size": 2},
    }
)


def lab_file(tmp_path, time_scale: float, name: str = "lab.yaml"):
    import yaml

    from instruments.virtual_lab import virtual_lab_description

    data = virtual_lab_description(["P3HT", "D1"], time_scale=time_scale).model_dump(mode="json")
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_command_line_time_scale_wins_over_the_lab_files_and_says_so(tmp_path):
    from athanor.app import resolve_lab

    path = lab_file(tmp_path, time_scale=1.0)
    lab, scale = resolve_lab(BLEND, RunOptions(lab_file=path, time_scale=0.05))
    assert lab.time_scale == 0.05 and (scale.value, scale.source) == (0.05, "--time-scale")
    assert scale.message == (
        "time scale 0.05 (--time-scale, over the lab file's 1): a simulated 60 s measurement takes 3 s"
    )
    lab, scale = resolve_lab(BLEND, RunOptions(lab_file=path))
    assert lab.time_scale == 1.0 and scale.source == "lab file" and "takes 60 s" in scale.message
    lab, scale = resolve_lab(BLEND, RunOptions(lab_file=path, time_scale=1.0))  # the same value given
    assert scale.source == "lab file"


def test_the_virtual_lab_runs_at_a_hundredth_unless_told_otherwise():
    from athanor.app import VIRTUAL_TIME_SCALE, resolve_lab

    lab, scale = resolve_lab(BLEND, RunOptions())
    assert lab.time_scale == VIRTUAL_TIME_SCALE == 0.01 and scale.source == "virtual lab default"
    lab, scale = resolve_lab(BLEND, RunOptions(time_scale=0))
    assert lab.time_scale == 0 and scale.message == "time scale 0 (--time-scale): no waiting"


def test_a_time_scale_for_a_lab_of_real_instruments_changes_nothing_and_says_so():
    from pathlib import Path

    from athanor.app import resolve_lab

    example = Path(__file__).parents[2] / "instruments" / "labs" / "example-ot2-serial.yaml"
    spec = BLEND.model_copy(update={"instruments": []})
    lab, scale = resolve_lab(spec, RunOptions(lab_file=example, time_scale=0.01))
    assert scale.ignored and scale.value is None
    assert lab.time_scale == 1.0  # the lab file's, as written
    assert scale.message.startswith("--time-scale 0.01 has no effect: this lab has no simulated instrument")
    assert scale.message.endswith(
        "liquid_handler (opentrons), conductivity_meter (serial) and hotplate (serial) run in real time"
    )
    _, quiet = resolve_lab(spec, RunOptions(lab_file=example))
    assert not quiet.ignored and "run in real time" in quiet.message


def test_a_mixed_lab_scales_only_its_simulated_instruments(tmp_path):
    import yaml

    from athanor.app import resolve_lab

    path = lab_file(tmp_path, time_scale=1.0)
    data = yaml.safe_load(path.read_text())
    meter = next(i for i in data["instruments"] if i["kind"] == "conductivity_meter")
    meter.update(backend="serial", serial={"port": "/dev/ttyUSB3", "profile": "four_point_probe"})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    lab, scale = resolve_lab(BLEND, RunOptions(lab_file=path, time_scale=0.2))
    assert lab.time_scale == 0.2 and not scale.ignored
    assert scale.message.endswith(
        f"only the simulated instruments are scaled: {meter['name']} (serial) runs in real time"
    )


@pytest.mark.parametrize("bad", [-0.5, float("inf"), float("nan")])
def test_a_negative_or_endless_time_scale_is_refused_naming_the_option(bad):
    from athanor.app import resolve_lab

    with pytest.raises(SpecError, match=r"--time-scale .*: a time scale is a finite number of 0 or more"):
        resolve_lab(BLEND, RunOptions(time_scale=bad))
