"""The report's Pareto part, for campaigns with several objectives: ``pareto.png`` and its table.

With two objectives the figure is one scatter of every successful experiment with the Pareto front
highlighted and joined, and each objective's threshold and target drawn; with three or four it has
one such panel per pair of objectives, with the front highlighted but not joined (a point on the
front need not look optimal in every pair). Experiments that break an outcome constraint are drawn
hollow and never join the front. An axis whose positive values span more than a decade is
logarithmic.
"""

from __future__ import annotations

import functools
import itertools
import math
import textwrap
from collections.abc import Callable
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backend_bases import RendererBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, ScalarFormatter
from matplotlib.transforms import Bbox

from athanor.models import Observation
from athanor.pareto import counts, pareto_front
from athanor.spec import CampaignSpec, Objective
from runs.figures import figure_style

__all__ = ["PARETO_FILE", "pareto_figure", "pareto_lines", "plot_pareto"]

#: Name of the Pareto figure inside a run folder.
PARETO_FILE = "pareto.png"
#: How many labelled ticks a linear axis whose labels overlap is thinned to, step by step.
_LINEAR_BINS = (6, 5, 4, 3)
#: Where a log axis whose labels overlap is labelled, step by step: at 1, 2 and 5 times each power
#: of ten, then 1 and 3, then the powers of ten alone.
_LOG_SUBS = ((1.0, 2.0, 5.0), (1.0, 3.0), (1.0,))
#: Rounds of fitting the tick labels and laying the figure out again.
_LAYOUT_PASSES = 3


def _label(objective: Objective) -> str:
    arrow = "↑" if objective.direction == "maximise" else "↓"
    unit = f" ({objective.unit})" if objective.unit else ""
    return f"{objective.name}{unit} {arrow}"


def _finite(observation: Observation, names: list[str]) -> bool:
    values = [observation.values.get(name) for name in names]
    return all(v is not None and math.isfinite(v) for v in values)


def _panel(
    axes: Axes,
    spec: CampaignSpec,
    observations: list[Observation],
    front: list[Observation],
    pair: tuple[Objective, Objective],
    legend: bool,
) -> None:
    """One scatter of two objectives: experiments, the front (joined with two objectives), thresholds."""
    a, b = pair
    names = [a.name, b.name]
    shown = [o for o in observations if o.status == "ok" and _finite(o, names)]
    on_front = {o.experiment_id for o in front}
    groups = [
        (
            "initial design",
            lambda o: o.iteration == 0 and counts(spec, o),
            {"marker": "s", "color": "tab:gray"},
        ),
        ("model-guided", lambda o: o.iteration > 0 and counts(spec, o), {"marker": "o", "color": "tab:blue"}),
        (
            "breaks an outcome constraint",
            lambda o: not counts(spec, o),
            {"marker": "o", "facecolors": "none", "edgecolors": "tab:orange"},
        ),
    ]
    for label, keep, style in groups:
        chosen = [o for o in shown if keep(o) and o.experiment_id not in on_front]
        if chosen:
            axes.scatter(
                [o.values[a.name] for o in chosen],
                [o.values[b.name] for o in chosen],
                s=28,
                label=label,
                **style,
            )
    if front and len(spec.objectives) == 2:
        ordered = sorted(front, key=lambda o: o.values[a.name])
        axes.plot(
            [o.values[a.name] for o in ordered],
            [o.values[b.name] for o in ordered],
            "-",
            color="tab:red",
            linewidth=1.0,
            alpha=0.6,
        )
    if front:
        axes.scatter(
            [o.values[a.name] for o in front],
            [o.values[b.name] for o in front],
            s=56,
            marker="*",
            color="tab:red",
            zorder=3,
            label=f"Pareto front ({len(front)})",
        )
    for objective, line in ((a, axes.axvline), (b, axes.axhline)):
        if objective.threshold is not None:
            line(objective.threshold, linestyle="--", color="tab:purple", linewidth=1.0, label="threshold")
        if objective.target is not None:
            line(objective.target, linestyle=":", color="tab:green", linewidth=1.0, label="target")
    if not shown:
        axes.text(0.5, 0.5, "no successful measurement", transform=axes.transAxes, ha="center", va="center")
    for objective, scale in ((a, axes.set_xscale), (b, axes.set_yscale)):
        values = [o.values[objective.name] for o in shown]
        if values and min(values) > 0 and max(values) > 10 * min(values):
            scale("log")
    axes.set_xlabel(_label(a))
    axes.set_ylabel(_label(b))
    axes.grid(alpha=0.3)
    if legend:
        handles, labels = axes.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        if unique:
            axes.legend(unique.values(), unique.keys(), loc="best", fontsize="small", frameon=False)


def _shown_labels(axis: Axis, renderer: RendererBase) -> list[tuple[Text, Bbox]]:
    """The tick labels an axis draws (non-empty, within the axes' span), each with its box in pixels."""
    frame = axis.axes.get_window_extent(renderer)
    low, high = (frame.x0, frame.x1) if axis.axis_name == "x" else (frame.y0, frame.y1)
    shown = []
    for label in axis.get_ticklabels(which="both"):
        if not label.get_text():
            continue
        box = label.get_window_extent(renderer)
        middle = (box.x0 + box.x1) / 2 if axis.axis_name == "x" else (box.y0 + box.y1) / 2
        if low - 0.5 <= middle <= high + 0.5:
            shown.append((label, box))
    return shown


def _overlap(axis: Axis, renderer: RendererBase) -> bool:
    """Whether two of the tick labels an axis draws overlap, as rendered."""
    boxes = [box for _, box in _shown_labels(axis, renderer)]
    return any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))


def _plain(value: float, _position: float | None = None) -> str:
    return f"{value:g}"


def _log_ticks(axis: Axis, subs: tuple[float, ...]) -> None:
    """Label a log axis at ``subs`` times each power of ten, as plain numbers, and no minor tick."""
    axis.set_major_locator(LogLocator(subs=subs))
    axis.set_major_formatter(FuncFormatter(_plain))
    axis.set_minor_formatter(NullFormatter())


def _thinnings(axis: Axis) -> list[Callable[[], None]]:
    """Ways to label ``axis`` with fewer, shorter tick labels, mildest first."""
    if axis.get_scale() == "log":
        return [functools.partial(_log_ticks, axis, subs) for subs in _LOG_SUBS]
    return [
        functools.partial(axis.set_major_locator, MaxNLocator(nbins=bins, min_n_ticks=2))
        for bins in _LINEAR_BINS
    ]


def _fit_tick_labels(figure: Figure) -> bool:
    """Thin out, then slant, the tick labels of every axis whose labels overlap; True if any did.

    A log axis spanning under two decades labels minor ticks too: those go first, for labels at 1, 2
    and 5 times each power of ten.
    """
    renderer = figure.canvas.get_renderer()
    changed = False
    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            for thin in _thinnings(axis):
                if not _overlap(axis, renderer):
                    break
                thin()
                changed = True
            if axis is axes.xaxis and _overlap(axis, renderer):
                axis.set_tick_params(which="both", labelrotation=30)
                for label in axis.get_ticklabels(which="both"):
                    label.set_horizontalalignment("right")
                changed = True
    return changed


@figure_style()
def pareto_figure(spec: CampaignSpec, observations: list[Observation]) -> Figure:
    """The measured trade-off between the objectives and the Pareto front, laid out and drawn.

    Args:
        spec: The campaign spec (two to four objectives, thresholds, targets, outcome constraints).
        observations: Every finished experiment.

    Returns:
        The figure, on an Agg canvas: one panel per pair of objectives, at most three a row. Large
        numbers print as a mantissa with the power of ten at the axis's end; an axis whose tick
        labels would overlap gets fewer ticks, and an x axis slanted labels as a last resort.
    """
    pairs = list(itertools.combinations(spec.objectives, 2)) or [(spec.objectives[0], spec.objectives[0])]
    columns = min(3, len(pairs))
    rows = math.ceil(len(pairs) / columns)
    figure = Figure(figsize=(5.2 * columns, 4.4 * rows), dpi=110)
    FigureCanvasAgg(figure)
    front = pareto_front(spec, observations)
    for index, pair in enumerate(pairs):
        axes = figure.add_subplot(rows, columns, index + 1)
        _panel(axes, spec, observations, front, pair, legend=index == 0)
        for axis in (axes.xaxis, axes.yaxis):
            formatter = axis.get_major_formatter()
            if isinstance(formatter, ScalarFormatter):
                formatter.set_powerlimits((-3, 4))
                formatter.set_useMathText(True)
    title = f"{spec.title}: measured trade-off and Pareto front"
    figure.suptitle(textwrap.fill(title, 55 * columns), fontsize="medium")
    figure.tight_layout()
    # the layout changes each axis's length, and so how many ticks fit on it
    for _ in range(_LAYOUT_PASSES):
        if not _fit_tick_labels(figure):
            break
        figure.tight_layout()
    return figure


@figure_style()
def plot_pareto(path: Path, spec: CampaignSpec, observations: list[Observation]) -> Path:
    """Draw :func:`pareto_figure` and save it as a PNG.

    Args:
        path: Where to write the PNG.
        spec: The campaign spec (two to four objectives, thresholds, targets, outcome constraints).
        observations: Every finished experiment.

    Returns:
        ``path``.
    """
    pareto_figure(spec, observations).savefig(path)
    return path


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def pareto_lines(spec: CampaignSpec, observations: list[Observation], figure: str = PARETO_FILE) -> list[str]:
    """The report's Markdown section on the Pareto front: what counts, the figure and the table.

    Args:
        spec: The campaign spec.
        observations: Every finished experiment.
        figure: File name of the Pareto figure, relative to the report.
    """
    front = pareto_front(spec, observations)
    counted = sum(counts(spec, o) for o in observations)
    names = [o.name for o in spec.objectives]
    lines = [f"## Pareto front ({len(front)} of {counted} experiments that count)", ""]
    aims = ", ".join(f"{o.direction} {o.name}" for o in spec.objectives)
    lines.append(
        f"The campaign's objectives are: {aims}. An experiment is on the front when no other is at least as"
        " good in every objective and better in one."
    )
    rules = [c.describe() for c in spec.outcome_constraints]
    if rules:
        lines.append(f"Only experiments that meet {' and '.join(rules)} count.")
    thresholds = [
        f"{o.name} {o.threshold:g} {o.unit}".rstrip() for o in spec.objectives if o.threshold is not None
    ]
    if thresholds:
        lines.append(f"Thresholds (worst acceptable values): {', '.join(thresholds)}.")
    lines += ["", f"![Measured trade-off between the objectives, Pareto front highlighted]({figure})", ""]
    if not front:
        lines += ["No experiment counts yet.", ""]
        return lines
    extra = spec.measured_names[len(names) :]
    header = ["Experiment", "Iteration", *spec.component_names, *names, *extra]
    lines += ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    amount = "{:.1f}" if spec.unit_scale == 100.0 else "{:.3f}"
    for o in front:
        cells = [o.experiment_id, str(o.iteration)]
        cells += [
            amount.format(o.composition[n]) if n in o.composition else "–" for n in spec.component_names
        ]
        cells += [_cell(o.values.get(n)) for n in [*names, *extra]]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines
