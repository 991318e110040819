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
