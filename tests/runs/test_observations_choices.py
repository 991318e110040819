"""``observations.csv`` with categorical variables: one column each, read back into the choices."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from athanor.models import Observation
from athanor.spec import CampaignSpec
from runs.observations import ObservationsCSV, observation_columns, read_observations

SPEC = CampaignSpec.model_validate(
    {
        "components": [{"name": "Cu"}, {"name": "Ag"}, {"name": "Zr"}],
        "objectives": [{"name": "conductivity", "unit": "S/cm"}],
        "budget": {"experiments": 10, "batch_size": 2},
        "categories": [
            {"name": "annealing", "choices": ["none", "150C"]},
            {"name": "atmosphere", "choices": ["air", "N2, dry"]},
        ],
    }
)
OBSERVATIONS = [
    Observation(
        experiment_id="E0001",
        iteration=0,
        composition={"Cu": 0.5, "Ag": 0.5, "Zr": 0.0},
        values={"conductivity": 12.5},
        choices={"annealing": "150C", "atmosphere": "N2, dry"},
    ),
    Observation(
        experiment_id="E0002",
        iteration=0,
        composition={"Cu": 0.0, "Ag": 0.25, "Zr": 0.75},
        status="failed",
        note="protocol rejected",
        choices={"annealing": "none"},
    ),
]


def test_a_column_per_categorical_variable_between_components_and_objectives():
    assert observation_columns(SPEC) == [
        "experiment_id",
        "iteration",
        "Cu",
        "Ag",
        "Zr",
        "annealing",
        "atmosphere",
        "conductivity",
        "status",
        "note",
    ]


def test_choices_round_trip_through_the_file(tmp_path: Path):
    path = tmp_path / "observations.csv"
    with ObservationsCSV(path, SPEC) as sink:
        for observation in OBSERVATIONS:
            sink.append(observation)
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["annealing"] for r in rows] == ["150C", "none"]
    assert [r["atmosphere"] for r in rows] == ["N2, dry", ""]
    assert read_observations(path, SPEC) == OBSERVATIONS


def test_a_choice_the_spec_has_no_column_for_is_refused(tmp_path: Path):
    stray = OBSERVATIONS[0].model_copy(update={"choices": {"speed": "fast"}})
    with (
        ObservationsCSV(tmp_path / "observations.csv", SPEC) as sink,
        pytest.raises(ValueError, match="speed"),
    ):
        sink.append(stray)


def test_without_categories_the_header_is_unchanged():
    plain = SPEC.model_copy(update={"categories": []})
    assert observation_columns(plain) == [
        "experiment_id",
        "iteration",
        "Cu",
        "Ag",
        "Zr",
        "conductivity",
        "status",
        "note",
    ]
