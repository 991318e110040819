"""The one style of the figures a run writes: fonts that draw Chinese as well as Latin labels.

Campaign titles, objective names and units may be Chinese (电导率, 硬度). Matplotlib's default font
has no CJK glyphs and draws them as empty boxes; with a list of families it falls back glyph by
glyph. :func:`figure_style` puts DejaVu Sans first and then every CJK font installed on this
machine (``make setup`` installs WenQuanYi Micro Hei on Debian; macOS and Windows have their own).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import matplotlib
from matplotlib import font_manager

__all__ = ["CJK_FONTS", "figure_fonts", "figure_style"]

#: CJK font families, in the order they are preferred when installed.
CJK_FONTS = (
    "WenQuanYi Micro Hei",
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "PingFang SC",
    "Microsoft YaHei",
    "SimHei",
)
_LATIN = "DejaVu Sans"


@functools.cache
def figure_fonts() -> tuple[str, ...]:
    """The font families figures use, in order: DejaVu Sans, then the installed CJK fonts."""
    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    return (_LATIN, *(name for name in CJK_FONTS if name in installed))


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """Make and save figures inside this block to draw Chinese labels (see the module docstring)."""
    with matplotlib.rc_context({"font.family": list(figure_fonts())}):
        yield
