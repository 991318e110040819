"""Prior data: a CSV of earlier experiments is read against the spec, and every mistake is named."""

from __future__ import annotations

import hashlib

import pytest

from athanor.errors import SpecError
from athanor.models import Observation
from athanor.spec import CampaignSpec
from runs.observations import ObservationsCSV, read_observations
from runs.prior import PRIOR_ITERATION, is_usable, load_prior_data

SPEC = CampaignSpec(
    components=[{"name": "P3HT", "lower": 0.3}, {"name": "CNT", "upper": 0.5}, {"name": "D1"}],
    objectives=[{"name": "conductivity", "unit": "S/cm"}],
    budget={"experiments": 10, "batch_size": 2},
)
MIXED = CampaignSpec(
    components=[{"name": "A"}, {"name": "B"}],
    categories=[{"name": "annealing", "choices": ["none", "150C"]}],
    objectives=[{"name": "conductivity"}],
    budget={"experiments": 10},
)


def write(tmp_path, text, name="prior.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(tmp_path, text, spec=SPEC):
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_prior_data(path, spec)
    return str(info.value), path


def test_rows_become_prior_observations_with_their_own_ids_and_the_file_hash(tmp_path):
    text = (
        "P3HT,CNT,D1,conductivity,note\n"
        "0.5,0.2,0.3,120.5,first batch\n"
        "0.6,0.1,0.3,80,\n"
        "0.4,0.3,0.3,,spilled\n"  # no value: kept out of the model, still counted
    )
    path = write(tmp_path, text)

    prior = load_prior_data(path, SPEC)

    assert [o.experiment_id for o in prior.observations] == ["P0001", "P0002", "P0003"]
    assert all(o.iteration == PRIOR_ITERATION < 0 for o in prior.observations)
    assert prior.observations[0].composition == {"P3HT": 0.5, "CNT": 0.2, "D1": 0.3}
    assert prior.observations[0].values == {"conductivity": 120.5}
    assert prior.observations[0].note == "line 2: first batch"
    assert prior.used == ["P0001", "P0002"] and [o.experiment_id for o in prior.usable] == prior.used
    assert prior.kept_out == ["P0003 (line 4): no value of conductivity"]
    assert prior.best(SPEC).experiment_id == "P0001"
    assert prior.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and prior.content == text
    assert (
        prior.describe()
        == "3 rows from prior.csv: 2 used by the model, 1 kept out (failed, outlier or no finite value)"
    )


def test_a_previous_runs_observations_csv_is_valid_prior_data_as_is(tmp_path):
    path = tmp_path / "observations.csv"
    with ObservationsCSV(path, MIXED) as csv_file:
        csv_file.append(
            Observation(
                experiment_id="E0001",
                iteration=0,
                composition={"A": 0.25, "B": 0.75},
                values={"conductivity": 12.0},
                choices={"annealing": "150C"},
            )
        )
        csv_file.append(
            Observation(
                experiment_id="E0002",
                iteration=1,
                composition={"A": 0.5, "B": 0.5},
                status="failed",
                note="pipette clogged",
                choices={"annealing": "none"},
            )
        )

    prior = load_prior_data(path, MIXED)

    first, second = prior.observations
    assert first.choices == {"annealing": "150C"} and first.values == {"conductivity": 12.0}
    assert (second.status, second.note) == ("failed", "line 3 (E0002): pipette clogged")
    assert prior.used == ["P0001"] and prior.kept_out == ["P0002 (line 3): status failed"]
    assert not is_usable(MIXED, second)


def test_a_composition_outside_the_current_bounds_is_kept_and_reported(tmp_path):
    # P3HT below its lower bound 0.3; the second row sums to 0.995, within the tolerance
    path = write(tmp_path, "P3HT,CNT,D1,conductivity\n0.1,0.4,0.5,30\n0.33,0.33,0.335,50\n")

    prior = load_prior_data(path, SPEC)

    assert prior.used == ["P0001", "P0002"]
    assert prior.outside == ["P0001 (line 2): P3HT=0.1 outside [0.3, 1]"]


def test_an_unknown_column_is_refused_with_the_nearest_name_instead_of_being_dropped(tmp_path):
    message, path = refused(tmp_path, "P3HT,CTN,D1,conductivity,iteration\n0.5,0.2,0.3,10,0\n")

    assert f"{path}:1: column 'CTN' is not a component" in message
    assert "did you mean 'CNT'?" in message
    assert "no column 'CNT' (component); add a column 'CNT'" in message


def test_a_missing_objective_column_is_named_with_the_fix(tmp_path):
    message, path = refused(tmp_path, "P3HT,CNT,D1\n0.5,0.2,0.3\n")

    assert message == (
        f"{path}:1: no column 'conductivity' (objective or measured quantity); add a column"
        " 'conductivity' holding the measured value (empty if none)"
    )


def test_a_non_numeric_cell_names_the_line_the_column_and_the_fix(tmp_path):
    message, path = refused(tmp_path, "P3HT,CNT,D1,conductivity\n0.5,0.2,0.3,10\n0.5,abc,0.3,n/a\n")

    lines = message.splitlines()
    assert lines[0] == (
        f"{path}:3: column 'CNT': 'abc' is not a non-negative number; write the amount of CNT in"
        " fractions of one (0 if absent)"
    )
    assert lines[1].startswith(f"{path}:3: column 'conductivity': 'n/a' is not a number; write the measured")
    assert "leave the cell empty" in lines[1]


def test_an_unknown_categorical_option_lists_the_options(tmp_path):
    message, path = refused(tmp_path, "A,B,annealing,conductivity\n0.5,0.5,200C,10\n", MIXED)

    assert message == f"{path}:2: column 'annealing': '200C' is not an option; use one of none, 150C"


def test_a_row_that_breaks_the_sum_rule_says_what_sum_was_found(tmp_path):
    message, path = refused(tmp_path, "P3HT,CNT,D1,conductivity\n0.5,0.2,0.2,10\n50,20,30,12\n")

    lines = message.splitlines()
    assert lines[0].startswith(f"{path}:2: columns P3HT, CNT, D1: the amounts sum to 0.9, not the sum-rule")
    assert "correct the row so that the amounts add up to 1" in lines[0]
    assert "sum to 100" in lines[1] and "look like percent: divide them by 100" in lines[1]


def test_an_unknown_status_and_a_short_row_are_named(tmp_path):
    message, path = refused(tmp_path, "P3HT,CNT,D1,conductivity,status\n0.5,0.2,0.3,10,done\n0.5,0.2\n")

    assert f"{path}:2: column 'status': 'done' is not a status; use ok, failed or outlier" in message
    assert f"{path}:3: the row has 2 cells but the header has 5 columns" in message


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("", "is empty; give a header"),
        ("P3HT,CNT,D1,conductivity\n", "no data rows under the header"),
        ("P3HT;CNT;D1;conductivity\n0.5;0.2;0.3;1\n", "separate the columns with commas"),
        (
            "P3HT,CNT,D1,conductivity,status\n0.5,0.2,0.3,10,failed\n0.5,0.2,0.3,,ok\n",
            "none of its 2 rows can inform the model",
        ),
    ],
)
def test_a_file_without_usable_rows_is_refused(tmp_path, text, phrase):
    message, _ = refused(tmp_path, text)
    assert phrase in message


def test_a_missing_file_names_the_path(tmp_path):
    with pytest.raises(SpecError, match=r"prior data file .*nowhere\.csv does not exist; check the path"):
        load_prior_data(tmp_path / "nowhere.csv", SPEC)


def test_a_multi_fidelity_runs_observations_are_valid_prior_data_with_their_sources(tmp_path):
    spec = CampaignSpec.model_validate(
        {
            "components": [{"name": "A"}, {"name": "B"}],
            "objectives": [{"name": "conductivity"}],
            "budget": {"experiments": 10},
            "fidelities": [
                {"name": "experiment", "cost": 1},
                {"name": "screen", "cost": 0.05, "simulator": "instruments.virtual_world:screen"},
            ],
        }
    )
    path = tmp_path / "observations.csv"
    rows = [
        Observation(
            experiment_id="E0001", iteration=0, composition={"A": 0.2, "B": 0.8}, values={"conductivity": 5}
        ),
        Observation(
            experiment_id="S0001",
            iteration=0,
            composition={"A": 0.2, "B": 0.8},
            values={"conductivity": 4},
            fidelity="screen",
        ),
    ]
    with ObservationsCSV(path, spec) as csv_file:
        for row in rows:
            csv_file.append(row)
    assert path.read_text().splitlines()[0].endswith(",conductivity,fidelity,status,note")
    assert [o.fidelity for o in read_observations(path, spec)] == [None, "screen"]
    prior = load_prior_data(path, spec)
    assert [o.fidelity for o in prior.observations] == [None, "screen"]

    path.write_text("A,B,conductivity,fidelity\n0.5,0.5,3,quick\n")
    with pytest.raises(SpecError, match=r"csv:2: column 'fidelity': 'quick' is not a source.*screen"):
        load_prior_data(path, spec)


def test_a_result_that_is_not_a_finite_number_keeps_its_row_out_and_says_so(tmp_path):
    text = (
        "P3HT,CNT,D1,conductivity\n"
        "0.45,0.25,0.3,64.2\n"
        "0.5,0.2,0.3,inf\n"
        "0.4,0.3,0.3,1e999\n"  # overflows to infinity
        "0.6,0.1,0.3,NaN\n"
        "0.35,0.35,0.3,-Infinity\n"
        "0.55,0.15,0.3,\n"
    )
    prior = load_prior_data(write(tmp_path, text), SPEC)

    assert prior.used == ["P0001"]
    assert prior.kept_out == [
        "P0002 (line 3): conductivity is 'inf', not a finite number",
        "P0003 (line 4): conductivity is '1e999', not a finite number",
        "P0004 (line 5): conductivity is 'NaN', not a finite number",
        "P0005 (line 6): conductivity is '-Infinity', not a finite number",
        "P0006 (line 7): no value of conductivity",
    ]
    assert "5 kept out (failed, outlier or no finite value)" in prior.describe()


def test_a_repeated_row_counts_once_and_is_named_with_the_row_it_repeats(tmp_path):
    text = (
        "experiment_id,P3HT,CNT,D1,conductivity,note\n"
        "run7-01,0.5,0.2,0.3,41.5,\n"
        "run7-02,0.4,0.1,0.5,18,\n"
        "run7-01,0.50,0.20,0.30,41.5,pasted twice\n"  # same id, same data: the same experiment
        ",0.4,0.1,0.5,18,\n"  # no id, same data as run7-02
        "run7-03,0.4,0.1,0.5,19.25,\n"  # a replicate of run7-02 with its own result: kept
    )
    prior = load_prior_data(write(tmp_path, text), SPEC)

    notes = [o.note for o in prior.observations]
    assert notes == ["line 2 (run7-01)", "line 3 (run7-02)", "line 6 (run7-03)"]
    assert prior.used == ["P0001", "P0002", "P0003"] and len(prior.usable) == 3
    assert prior.repeated == [
        "line 4 (run7-01): the same row as P0001 (line 2); used once",
        "line 5: the same row as P0002 (line 3); used once",
    ]
    assert prior.describe() == (
        "5 rows from prior.csv: 3 used by the model, 2 repeating an earlier row (counted once)"
    )


def test_one_experiment_id_on_two_rows_with_different_data_is_refused(tmp_path):
    message, path = refused(
        tmp_path,
        "experiment_id,P3HT,CNT,D1,conductivity\nE0004,0.5,0.2,0.3,41.5\nE0004,0.5,0.2,0.3,44\n",
    )

    assert message == (
        f"{path}:3: column 'experiment_id': 'E0004' is also the id of line 2, whose data differ; an id"
        " names one experiment: keep the right row, or give each its own id"
    )


def test_a_folder_is_refused_as_a_folder_with_the_csv_it_holds(tmp_path):
    with pytest.raises(SpecError) as info:
        load_prior_data(tmp_path, SPEC)
    assert str(info.value) == (
        f"prior data {tmp_path} is a folder, not a file; give the path of a CSV file of earlier experiments"
    )

    (tmp_path / "observations.csv").write_text("P3HT,CNT,D1,conductivity\n0.5,0.2,0.3,1\n")
    with pytest.raises(SpecError, match="is a folder, not a file") as info:
        load_prior_data(tmp_path, SPEC)
    assert f"(a run folder's table of experiments is {tmp_path / 'observations.csv'})" in str(info.value)


def test_a_negative_amount_is_refused_even_when_the_row_sums_to_one(tmp_path):
    # D1 has no lower bound of its own: only the non-negative rule stands between -0.05 and the model
    message, path = refused(tmp_path, "P3HT,CNT,D1,conductivity\n0.55,0.5,-0.05,12\n0.5,0.2,0.3,30\n")

    assert message == (
        f"{path}:2: column 'D1': '-0.05' is not a non-negative number; write the amount of D1 in"
        " fractions of one (0 if absent)"
    )


@pytest.mark.parametrize(("row", "found"), [("0.52,0.2,0.32", "1.04"), ("0.5,0.17,0.3", "0.97")])
def test_a_row_a_few_percent_off_the_sum_is_refused_with_its_line_and_sum(tmp_path, row, found):
    message, path = refused(tmp_path, f"P3HT,CNT,D1,conductivity\n0.5,0.2,0.3,30\n{row},12\n")

    assert message.startswith(
        f"{path}:3: columns P3HT, CNT, D1: the amounts sum to {found}, not the sum-rule total 1 (more than"
        " 1% off)"
    )
