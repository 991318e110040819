"""Report figures draw Chinese titles and units: no glyph may fall back to an empty box."""

from __future__ import annotations

import warnings

from athanor.models import Observation
from athanor.spec import CampaignSpec
from runs.figures import CJK_FONTS, figure_fonts
from runs.pareto_report import plot_pareto
from runs.report import plot_convergence


def _spec(objectives: list[dict]) -> CampaignSpec:
    return CampaignSpec.model_validate(
        {
            "title": "钙钛矿薄膜的电导率与稳定性",
            "components": [{"name": "PbI2"}, {"name": "MAI"}],
            "objectives": objectives,
            "budget": {"experiments": 4, "batch_size": 2},
        }
    )


def _observations() -> list[Observation]:
    rows = [(0.2, 3.1, 40.0), (0.5, 7.4, 22.0), (0.7, 5.2, 55.0), (0.9, 2.0, 61.0)]
    return [
        Observation(
            experiment_id=f"E{i:04d}",
            iteration=i // 2,
            composition={"PbI2": x, "MAI": 1 - x},
            values={"conductivity": y, "stability": z},
            status="ok",
        )
        for i, (x, y, z) in enumerate(rows, start=1)
    ]


def _missing_glyphs(draw) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        draw()
    return [str(w.message) for w in caught if "missing from font" in str(w.message)]


def test_a_cjk_font_is_installed_and_used_after_the_latin_one():
    fonts = figure_fonts()
    assert fonts[0] == "DejaVu Sans"
    assert set(fonts[1:]) & set(CJK_FONTS), "no CJK font found: `make setup` installs fonts-wqy-microhei"


def test_convergence_and_pareto_plots_draw_every_chinese_glyph(tmp_path):
    one = _spec([{"name": "conductivity", "unit": "西门子/厘米"}])
    assert _missing_glyphs(lambda: plot_convergence(tmp_path / "收敛.png", one, _observations())) == []
    two = _spec([{"name": "conductivity", "unit": "S/cm"}, {"name": "stability", "unit": "小时"}])
    assert _missing_glyphs(lambda: plot_pareto(tmp_path / "pareto.png", two, _observations())) == []
    assert (tmp_path / "收敛.png").stat().st_size > 0 and (tmp_path / "pareto.png").stat().st_size > 0
