from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from athanor.errors import AthanorError
from athanor.models import Observation
from athanor.spec import CampaignSpec
from runs.observations import ObservationsCSV, observation_columns, read_observations

SPEC = CampaignSpec.model_validate(
    {
        "components": [{"name": "P3HT", "lower": 0.3}, {"name": "D1"}, {"name": "D2"}],
        "objectives": [{"name": "conductivity", "unit": "S/cm"}, {"name": "stability"}],
        "budget": {"experiments": 10, "batch_size": 2},
    }
)

OBSERVATIONS = [
    Observation(
        experiment_id="E0001",
        iteration=0,
        composition={"P3HT": 0.5, "D1": 0.25, "D2": 0.25},
        values={"conductivity": 123.456789012345, "stability": 0.9},
    ),
    Observation(
        experiment_id="E0002",
        iteration=0,
        composition={"P3HT": 0.4, "D1": 0.1, "D2": 0.5},
        status="failed",
        note="dispense failed, line 1\nline 2, with a comma",
    ),
    Observation(
        experiment_id="E0003",
        iteration=1,
        composition={"P3HT": 0.3, "D1": 0.6, "D2": 0.1},
        values={"conductivity": math.inf},
        status="outlier",
        note="far above the model",
    ),
]


def test_header_names_components_and_objectives_from_the_spec(tmp_path: Path) -> None:
    path = tmp_path / "observations.csv"
    ObservationsCSV(path, SPEC).close()
    header = path.read_text().splitlines()[0]
    assert header == "experiment_id,iteration,P3HT,D1,D2,conductivity,stability,status,note"
    assert observation_columns(SPEC) == header.split(",")


def test_a_colon_in_a_component_name_is_kept_in_the_header_and_read_back(tmp_path: Path) -> None:
    spec = CampaignSpec.model_validate(
        {
            "components": [{"name": "PEDOT:PSS"}, {"name": "DMSO"}],
            "objectives": [{"name": "conductivity", "unit": "S/cm"}],
            "budget": {"experiments": 4},
        }
    )
    row = Observation(
        experiment_id="E0001",
        iteration=0,
        composition={"PEDOT:PSS": 0.85, "DMSO": 0.15},
        values={"conductivity": 412.5},
    )
    path = tmp_path / "observations.csv"
    with ObservationsCSV(path, spec) as table:
        table.append(row)
    header = path.read_text().splitlines()[0]
    assert header == "experiment_id,iteration,PEDOT:PSS,DMSO,conductivity,status,note"
    assert read_observations(path, spec) == [row]


def test_rows_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "observations.csv"
    with ObservationsCSV(path, SPEC) as table:
        for observation in OBSERVATIONS:
            table.append(observation)
    back = read_observations(path, SPEC)
    assert back[0] == OBSERVATIONS[0]  # full float precision kept
    assert back[1].values == {}
    assert back[1].status == "failed"
    assert back[1].note == "dispense failed, line 1 line 2, with a comma"
    assert back[2].values["conductivity"] == math.inf
    assert [o.experiment_id for o in back] == ["E0001", "E0002", "E0003"]
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[2][5:7] == ["", ""]  # failed: no values


def test_each_row_is_on_disk_before_close(tmp_path: Path) -> None:
    path = tmp_path / "observations.csv"
    table = ObservationsCSV(path, SPEC)
    table.append(OBSERVATIONS[0])
    assert read_observations(path, SPEC) == [OBSERVATIONS[0]]
    table.close()


def test_reopen_appends_without_a_second_header(tmp_path: Path) -> None:
    path = tmp_path / "observations.csv"
    with ObservationsCSV(path, SPEC) as table:
        table.append(OBSERVATIONS[0])
    with ObservationsCSV(path, SPEC) as table:
        table.append(OBSERVATIONS[1])
    lines = path.read_text().splitlines()
    assert sum(line.startswith("experiment_id,") for line in lines) == 1
    assert len(read_observations(path, SPEC)) == 2


def test_reopen_cuts_a_torn_row(tmp_path: Path) -> None:
    path = tmp_path / "observations.csv"
    with ObservationsCSV(path, SPEC) as table:
        table.append(OBSERVATIONS[0])
    with open(path, "a") as handle:
        handle.write("E0002,0,0.4")
    assert len(read_observations(path, SPEC)) == 1  # readers skip the torn row
    with ObservationsCSV(path, SPEC) as table:
        table.append(OBSERVATIONS[2])
    assert [o.experiment_id for o in read_observations(path, SPEC)] == ["E0001", "E0003"]


def test_a_file_of_another_spec_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "observations.csv"
    ObservationsCSV(path, SPEC).close()
    other = SPEC.model_copy(update={"components": SPEC.components[:2]})
    with pytest.raises(AthanorError, match="different spec"):
        ObservationsCSV(path, other)
    with pytest.raises(AthanorError, match="different spec"):
        read_observations(path, other)


def test_unknown_names_are_refused(tmp_path: Path) -> None:
    with ObservationsCSV(tmp_path / "observations.csv", SPEC) as table:
        bad = OBSERVATIONS[0].model_copy(update={"values": {"resistance": 3.0}})
        with pytest.raises(ValueError, match="resistance"):
            table.append(bad)


def test_bad_cell_is_named(tmp_path: Path) -> None:
    path = tmp_path / "observations.csv"
    ObservationsCSV(path, SPEC).close()
    with open(path, "a") as handle:
        handle.write("E0001,0,half,0.25,0.25,1.0,,ok,\n")
    with pytest.raises(AthanorError, match="row 2"):
        read_observations(path, SPEC)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AthanorError, match="does not exist"):
        read_observations(tmp_path / "nope.csv", SPEC)
