"""The report of a campaign with several objectives: the Pareto figure and table; CSV columns."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from matplotlib.image import imread

from athanor.models import Observation
from athanor.spec import CampaignSpec
from runs.observations import ObservationsCSV, observation_columns, read_observations
from runs.pareto_report import pareto_figure, plot_pareto
from runs.report import render_report, write_report

TWO = CampaignSpec.model_validate(
    {
        "title": "clear conductor",
        "components": [{"name": "P3HT"}, {"name": "CNT"}],
        "objectives": [
            {"name": "conductivity", "unit": "S/cm", "threshold": 50},
            {"name": "transmittance", "unit": "%", "threshold": 20},
        ],
        "outcome_constraints": [{"name": "conductivity", "operator": ">=", "value": 20, "unit": "S/cm"}],
        "budget": {"experiments": 8, "batch_size": 2},
    }
)


def _obs(
    i: int, iteration: int, conductivity: float | None, transmittance: float, status: str = "ok"
) -> Observation:
    values = {"transmittance": transmittance} | (
        {} if conductivity is None else {"conductivity": conductivity}
    )
    return Observation(
        experiment_id=f"E{i:04d}",
        iteration=iteration,
        composition={"P3HT": 0.8 - 0.1 * i, "CNT": 0.2 + 0.1 * i},
        values=values if status == "ok" else {},
        status=status,  # type: ignore[arg-type]
        note="meter fault" if status == "failed" else "",
    )


OBSERVATIONS = [
    _obs(1, 0, 30.0, 80.0),  # front
    _obs(2, 0, 25.0, 60.0),  # dominated by E0001
    _obs(3, 1, None, 0.0, "failed"),
    _obs(4, 1, 300.0, 40.0),  # front
    _obs(5, 2, 10.0, 95.0),  # breaks conductivity >= 20
    _obs(6, 2, 120.0, 55.0),  # front
]


def test_a_two_objective_report_has_the_pareto_figure_and_table_instead_of_best(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    text = write_report(run_dir, TWO, OBSERVATIONS).read_text()

    image = imread(run_dir / "pareto.png")
    assert image.shape[0] > 200 and image.std() > 0
    assert (run_dir / "convergence.png").exists()
    assert "maximise **conductivity** (S/cm) · maximise **transmittance** (%)" in text
    assert "## Pareto front (3 of 4 experiments that count)" in text
    assert "(pareto.png)" in text
    assert "Only experiments that meet conductivity >= 20 S/cm count." in text
    assert "Thresholds (worst acceptable values): conductivity 50 S/cm, transmittance 20 %." in text
    assert "| Meeting conductivity >= 20 S/cm | 4 |" in text
    assert "## Best compositions" not in text
    table = text.split("## Pareto front")[1].split("\n\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| E0")]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows] == ["E0004", "E0006", "E0001"]
    assert "| E0004 | 1 | 0.400 | 0.600 | 300 | 40 |" in rows


def test_three_objectives_get_one_panel_per_pair(tmp_path: Path) -> None:
    three = TWO.model_copy(
        update={
            "objectives": [
                *TWO.objectives,
                TWO.objectives[0].model_copy(update={"name": "cost", "threshold": None}),
            ]
        }
    )
    observations = [o.model_copy(update={"values": {**o.values, "cost": 1.0}}) for o in OBSERVATIONS]
    path = plot_pareto(tmp_path / "pareto.png", three, observations)
    wide = imread(path)
    two = imread(plot_pareto(tmp_path / "two.png", TWO, OBSERVATIONS))
    assert wide.shape[1] > 2.5 * two.shape[1]  # three panels side by side


def test_a_single_objective_report_is_unchanged_by_the_pareto_part(tmp_path: Path) -> None:
    one = TWO.model_copy(update={"objectives": [TWO.objectives[0].model_copy(update={"threshold": None})]})
    one = CampaignSpec.model_validate(one.model_dump() | {"outcome_constraints": []})
    text = render_report(one, OBSERVATIONS)
    assert "## Best compositions (top 5)" in text and "Pareto" not in text
    assert not (tmp_path / "pareto.png").exists()
    write_report(tmp_path, one, OBSERVATIONS)
    assert not (tmp_path / "pareto.png").exists()


def test_a_single_objective_with_an_outcome_constraint_ranks_only_feasible_experiments() -> None:
    spec = CampaignSpec.model_validate(
        TWO.model_dump()
        | {
            "objectives": [{"name": "transmittance", "unit": "%"}],
            "outcome_constraints": [{"name": "conductivity", "operator": ">=", "value": 20, "unit": "S/cm"}],
        }
    )
    text = render_report(spec, OBSERVATIONS)
    best = text.split("## Best compositions")[1]
    assert "E0005" not in best  # 95 % but only 10 S/cm
    assert "| Best overall | 80 % (E0001, iteration 0) |" in text


def test_observations_csv_has_a_column_per_constrained_quantity(tmp_path: Path) -> None:
    spec = CampaignSpec.model_validate(
        TWO.model_dump()
        | {
            "objectives": [{"name": "transmittance", "unit": "%"}],
            "outcome_constraints": [{"name": "conductivity", "operator": ">=", "value": 20}],
        }
    )
    assert observation_columns(spec) == [
        "experiment_id",
        "iteration",
        "P3HT",
        "CNT",
        "transmittance",
        "conductivity",
        "status",
        "note",
    ]
    with ObservationsCSV(tmp_path / "observations.csv", spec) as csv:
        for observation in OBSERVATIONS:
            csv.append(observation)
    assert read_observations(tmp_path / "observations.csv", spec) == OBSERVATIONS


def _spread(spec: CampaignSpec, ranges: list[tuple[float, float]], seed: int) -> list[Observation]:
    """Twelve experiments whose objectives fill the given ranges, both ends included."""
    rng = random.Random(seed)
    observations = []
    for i in range(12):
        values = {}
        for objective, (low, high) in zip(spec.objectives, ranges, strict=True):
            values[objective.name] = low if i == 0 else high if i == 1 else low + (high - low) * rng.random()
        observations.append(
            Observation(
                experiment_id=f"E{i + 1:04d}",
                iteration=i // 4,
                composition={"P3HT": 0.5, "CNT": 0.5},
                values=values,
            )
        )
    return observations


def _drawn_labels(axis) -> list:
    """Boxes of the tick labels a drawn axis shows: non-empty and inside the axes' span (pixels)."""
    renderer = axis.figure.canvas.get_renderer()
    frame = axis.axes.get_window_extent(renderer)
    boxes = []
    for label in [*axis.get_majorticklabels(), *axis.get_minorticklabels()]:
        box = label.get_window_extent(renderer)
        middle = box.intervalx.mean() if axis.axis_name == "x" else box.intervaly.mean()
        low, high = frame.intervalx if axis.axis_name == "x" else frame.intervaly
        if label.get_visible() and label.get_text() and low <= middle <= high:
            boxes.append(box)
    return boxes


WIDE_NUMBERS = [
    # three objectives side by side: six-digit sheet conductances squeezed under a 5 in panel
    (
        [("sheet_conductance", "S", "maximise"), ("haze", "%", "minimise"), ("cost", "EUR/g", "minimise")],
        [(110000.0, 190000.0), (2.0, 9.5), (0.8, 4.2)],
    ),
    # a log axis spanning 1.4 decades labels its minor ticks
    (
        [
            ("conductivity", "S/cm", "maximise"),
            ("mobility", "cm2/Vs", "maximise"),
            ("cost", "元/g", "minimise"),
        ],
        [(15.0, 400.0), (15.0, 400.0), (3.0, 80.0)],
    ),
    (
        [("conductivity", "S/cm", "maximise"), ("transmittance", "%", "maximise")],
        [(3.0, 80.0), (20.0, 92.0)],
    ),
    (
        [("seebeck", "uV/K", "maximise"), ("conductivity", "S/cm", "maximise")],
        [(0.00012, 0.00031), (2.0, 25.0)],
    ),
]


@pytest.mark.parametrize(("objectives", "ranges"), WIDE_NUMBERS)
def test_no_two_tick_labels_of_an_axis_overlap_in_the_rendered_figure(
    objectives: list[tuple[str, str, str]], ranges: list[tuple[float, float]], tmp_path: Path
) -> None:
    spec = CampaignSpec.model_validate(
        {
            "title": "wide numbers",
            "components": [{"name": "P3HT"}, {"name": "CNT"}],
            "objectives": [{"name": n, "unit": u, "direction": d} for n, u, d in objectives],
            "budget": {"experiments": 12, "batch_size": 4},
        }
    )
    observations = _spread(spec, ranges, seed=len(objectives))
    figure = pareto_figure(spec, observations)
    figure.canvas.draw()
    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            boxes = _drawn_labels(axis)
            assert len(boxes) >= 2, f"{axes.get_xlabel()} / {axes.get_ylabel()}: {axis.axis_name} unlabelled"
            clashes = [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]
            assert not clashes, f"{axes.get_xlabel()} / {axes.get_ylabel()}: {axis.axis_name} labels overlap"
    path = plot_pareto(tmp_path / "pareto.png", spec, observations)
    assert imread(path).shape[1] >= 500
