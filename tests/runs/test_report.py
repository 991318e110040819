from __future__ import annotations

from pathlib import Path

from matplotlib.image import imread

from athanor.models import Decision, Observation
from athanor.spec import CampaignSpec
from runs.report import render_report, write_report

SPEC = CampaignSpec.model_validate(
    {
        "title": "P3HT blend",
        "request": "Maximise the conductivity of a P3HT/CNT blend",
        "components": [{"name": "P3HT"}, {"name": "CNT"}],
        "objectives": [{"name": "conductivity", "unit": "S/cm", "target": 900.0}],
        "budget": {"experiments": 8, "batch_size": 2},
    }
)


def _obs(i: int, iteration: int, value: float | None, cnt: float, status: str = "ok") -> Observation:
    return Observation(
        experiment_id=f"E{i:04d}",
        iteration=iteration,
        composition={"P3HT": round(1 - cnt, 3), "CNT": cnt},
        values={} if value is None else {"conductivity": value},
        status=status,  # type: ignore[arg-type]
        note="meter fault" if status == "failed" else "",
    )


OBSERVATIONS = [
    _obs(1, 0, 120.0, 0.10),
    _obs(2, 0, 310.0, 0.25),
    _obs(3, 1, None, 0.30, "failed"),
    _obs(4, 1, 505.5, 0.35),
    _obs(5, 2, 2000.0, 0.40, "outlier"),
    _obs(6, 2, 640.25, 0.45),
    _obs(7, 3, 590.0, 0.50),
    _obs(8, 3, 430.0, 0.55),
]


def test_writes_report_and_a_valid_png(tmp_path: Path) -> None:
    run_dir = tmp_path / "20261127-201500-p3ht-blend-abcd"
    decision = Decision(action="stop", reason="The budget is spent.")
    path = write_report(run_dir, SPEC, OBSERVATIONS, {"decision": decision})
    assert path == run_dir / "report.md"
    png = run_dir / "convergence.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(png)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # something was drawn
    text = path.read_text()
    assert "# P3HT blend" in text
    assert "20261127-201500-p3ht-blend-abcd" in text
    assert "(convergence.png)" in text
    assert "**Stop.** The budget is spent." in text


def test_best_composition_and_summary(tmp_path: Path) -> None:
    text = write_report(tmp_path, SPEC, OBSERVATIONS).read_text()
    table = text.split("## Best compositions")[1].split("##")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "Rank" not in line]
    # The outlier (2000) does not count; E0006 is best, then E0007, E0004, E0008, E0002.
    assert [row.split("|")[2].strip() for row in rows] == ["E0006", "E0007", "E0004", "E0008", "E0002"]
    assert "| 1 | E0006 | 2 | 0.550 | 0.450 | 640.2 |" in text
    assert "Best of the initial design | 310 S/cm (E0002)" in text
    assert "Best overall | 640.2 S/cm (E0006, iteration 2)" in text
    assert "8 of 8 budgeted (2 initial design)" in text
    assert "Failed | 1: E0003" in text
    assert "E0005" in text.split("## Summary")[1].split("## Best")[0]  # flagged as an outlier
    assert "900 S/cm, not reached" in text
    assert "| E0003 | 1 | meter fault |" in text


def test_minimise_picks_the_smallest(tmp_path: Path) -> None:
    spec = SPEC.model_copy(
        update={
            "objectives": [SPEC.objectives[0].model_copy(update={"direction": "minimise", "target": None})]
        }
    )
    text = render_report(spec, OBSERVATIONS)
    assert "Best overall | 120 S/cm (E0001, iteration 0)" in text
    assert "Target" not in text


def test_report_without_successes_still_renders(tmp_path: Path) -> None:
    failed = [_obs(1, 0, None, 0.2, "failed")]
    path = write_report(
        tmp_path, SPEC, failed, {"decision": {"iteration": 1, "action": "stop", "reason": "r"}}
    )
    text = path.read_text()
    assert "No experiment succeeded." in text
    assert "none succeeded" in text
    assert "**Stop.** r" in text
    assert (tmp_path / "convergence.png").stat().st_size > 0


def test_report_cites_the_literature_it_was_grounded_in() -> None:
    citation = "D. Bash et al. Adv. Funct. Mater. (2021)."
    passages = [{"chunk_id": "p3ht-cnt-conductivity#0", "citation": citation}]
    text = render_report(SPEC, OBSERVATIONS, {"literature": passages})
    assert "## Literature" in text
    assert "`p3ht-cnt-conductivity#0` — D. Bash et al." in text
    assert "## Literature" not in render_report(SPEC, OBSERVATIONS, {})
