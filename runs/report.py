"""The end-of-run report: ``report.md`` and its figure ``convergence.png``.

Only observations with status ``ok`` and a finite value of the primary objective count towards
"best"; outliers are plotted but not counted, failed experiments are listed. Observations of
iteration 0 are the initial design. With outcome constraints only the experiments that meet them
count. With several objectives the best-compositions table gives way to the Pareto front and its
figure ``pareto.png`` (see :mod:`runs.pareto_report`). Prior data (earlier experiments, see
:mod:`runs.prior`) is reported apart: how many rows the model used and their best, never in "best
overall"; the figure shows them left of experiment 1 with their own marker. With a cheap source
(``spec.fidelities``) only experiments count and are plotted; the simulated evaluations get their
own section with the advice on whether the source pays (``extra["summary"]["fidelity_advice"]``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from athanor.models import Decision, Observation
from athanor.pareto import counts
from athanor.spec import CampaignSpec, Objective
from runs.figures import figure_style
from runs.pareto_report import PARETO_FILE, pareto_lines, plot_pareto
from runs.prior import PriorData

__all__ = ["CONVERGENCE_FILE", "REPORT_FILE", "plot_convergence", "render_report", "write_report"]

#: Name of the report inside a run folder.
REPORT_FILE = "report.md"
#: Name of the convergence figure inside a run folder.
CONVERGENCE_FILE = "convergence.png"

_TOP = 5
_DIGITS = re.compile(r"(\d+)$")


def _numbered(observations: list[Observation]) -> list[tuple[int, Observation]]:
    """Pair each observation with its experiment number (``E0007`` -> 7; else its position)."""
    numbers = [_DIGITS.search(o.experiment_id) for o in observations]
    if all(numbers) and len({m.group(1) for m in numbers if m}) == len(numbers):
        pairs = [(int(m.group(1)), o) for m, o in zip(numbers, observations, strict=True) if m]
    else:
        pairs = [(i + 1, o) for i, o in enumerate(observations)]
    return sorted(pairs, key=lambda pair: pair[0])


def _value(observation: Observation, objective: Objective) -> float | None:
    value = observation.values.get(objective.name)
    return value if value is not None and math.isfinite(value) else None


def _counts(observation: Observation, objective: Objective) -> bool:
    return observation.status == "ok" and _value(observation, objective) is not None


def _ranked(
    observations: list[Observation], objective: Objective, spec: CampaignSpec | None = None
) -> list[Observation]:
    """Counted observations, best first (those meeting ``spec``'s outcome constraints, when given)."""
    usable = [o for o in observations if _counts(o, objective)]
    if spec is not None and spec.outcome_constraints:
        usable = [o for o in usable if counts(spec, o)]
    return sorted(
        usable, key=lambda o: _value(o, objective) or 0.0, reverse=objective.direction == "maximise"
    )


def _label(objective: Objective) -> str:
    return f"{objective.name} ({objective.unit})" if objective.unit else objective.name


def _with_unit(value: float, objective: Objective) -> str:
    return f"{value:.4g} {objective.unit}".rstrip()


@figure_style()
def plot_convergence(
    path: Path, spec: CampaignSpec, observations: list[Observation], prior: list[Observation] = ()
) -> Path:
    """Draw each measured value by experiment number and the running best; save as PNG.

    Args:
        path: Where to write the PNG.
        spec: The campaign spec (primary objective, its unit and target).
        observations: Every finished experiment.
        prior: Prior observations the model used, drawn at numbers ``1 - k .. 0`` (left of the
            campaign's first experiment) and left out of the running best.

    Returns:
        ``path``.
    """
    objective = spec.primary_objective
    figure = Figure(figsize=(7.0, 4.2), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    numbered = _numbered(observations)

    def points(keep: Any) -> tuple[list[int], list[float]]:
        chosen = [(n, v) for n, o in numbered if keep(o) and (v := _value(o, objective)) is not None]
        return [n for n, _ in chosen], [v for _, v in chosen]

    values = [v for o in prior if (v := _value(o, objective)) is not None]
    if values:
        x = list(range(1 - len(values), 1))
        axes.scatter(x, values, marker="^", s=30, color="tab:purple", alpha=0.6, label="prior data")
    x, y = points(lambda o: o.status == "ok" and o.iteration == 0)
    first = "first batch" if prior else "initial design"
    if x:
        axes.scatter(x, y, marker="s", s=36, facecolors="none", edgecolors="tab:gray", label=first)
    x, y = points(lambda o: o.status == "ok" and o.iteration > 0)
    if x:
        axes.scatter(x, y, marker="o", s=30, color="tab:blue", label="model-guided")
    x, y = points(lambda o: o.status == "outlier")
    if x:
        axes.scatter(x, y, marker="D", s=30, facecolors="none", edgecolors="tab:orange", label="outlier")
    failed = [n for n, o in numbered if o.status == "failed"]
    if failed:
        axes.plot(
            failed,
            [0.03] * len(failed),
            "x",
            color="tab:red",
            transform=axes.get_xaxis_transform(),
            label="failed (no value)",
        )
    steps_x, steps_y, best = [], [], None
    for n, o in numbered:
        value = _value(o, objective) if _counts(o, objective) else None
        if value is not None and (best is None or (value > best) == (objective.direction == "maximise")):
            best = value
        if best is not None:
            steps_x.append(n)
            steps_y.append(best)
    if steps_x:
        axes.step(steps_x, steps_y, where="post", color="black", linewidth=1.4, label="best so far")
    else:
        axes.text(0.5, 0.5, "no successful measurement", transform=axes.transAxes, ha="center", va="center")
    if objective.target is not None:
        axes.axhline(
            objective.target,
            linestyle="--",
            color="tab:green",
            linewidth=1.0,
            label=f"target {_with_unit(objective.target, objective)}",
        )
    axes.set_xlabel("Experiment number")
    axes.set_ylabel(_label(objective))
    axes.set_title(spec.title)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", fontsize="small", frameon=False)
    figure.tight_layout()
    figure.savefig(path)
    return path


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _amount(value: float | None, spec: CampaignSpec) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if spec.unit_scale == 100.0 else f"{value:.3f}"


def _decision_text(decision: Any) -> str:
    if isinstance(decision, dict):
        try:
            decision = Decision(action=decision.get("action"), reason=decision.get("reason"))
        except ValueError:
            return _cell(str(decision))
    if isinstance(decision, Decision):
        return f"**{decision.action.capitalize()}.** {_cell(decision.reason)}"
    return _cell(str(decision))


def _prior_rows(spec: CampaignSpec, prior: PriorData) -> list[tuple[str, str]]:
    """Summary rows about the prior data: how many rows the model used, and their best."""
    rows = len(prior.observations) + len(prior.repeated)
    text = f"{len(prior.used)} of {rows} rows used by the model"
    text += f" ({len(prior.kept_out)} failed, outlier or without a finite value)" if prior.kept_out else ""
    text += f"; {len(prior.repeated)} repeating an earlier row (counted once)" if prior.repeated else ""
    text += f"; {len(prior.outside)} outside the current design space" if prior.outside else ""
    rows = [("Prior data (not in the budget)", f"{text}; `{_cell(Path(prior.path).name)}`")]
    best = prior.best(spec)
    value = _value(best, spec.primary_objective) if best else None
    if best is not None and value is not None:
        rows.append(
            ("Best of the prior data", f"{_with_unit(value, spec.primary_objective)} ({best.experiment_id})")
        )
    return rows


def _summary_rows(
    spec: CampaignSpec, observations: list[Observation], prior: PriorData | None = None
) -> list[tuple[str, str]]:
    objective = spec.primary_objective
    ranked = _ranked(observations, objective, spec)
    initial = _ranked([o for o in observations if o.iteration == 0], objective, spec)
    failed = [o.experiment_id for o in observations if o.status == "failed"]
    outliers = [o.experiment_id for o in observations if o.status == "outlier"]
    n_initial = sum(o.iteration == 0 for o in observations)
    first_batch = "in the first batch" if prior is not None else "initial design"
    rows = [
        (
            "Experiments",
            f"{len(observations)} of {spec.budget.experiments} budgeted ({n_initial} {first_batch})",
        ),
        ("Failed", f"{len(failed)}" + (f": {', '.join(failed)}" if failed else "")),
    ]
    if outliers:
        rows.append(("Flagged as outliers (not counted)", f"{len(outliers)}: {', '.join(outliers)}"))
    if spec.outcome_constraints:
        rules = " and ".join(c.describe() for c in spec.outcome_constraints)
        rows.append((f"Meeting {rules}", f"{sum(counts(spec, o) for o in observations)}"))
    first = initial[0] if initial else None
    best = ranked[0] if ranked else None
    first_value = _value(first, objective) if first else None
    best_value = _value(best, objective) if best else None
    baseline = "the initial design"
    if prior is not None:
        # with prior data the first batch is not a pure initial design: compare with the prior rows
        baseline, best_prior = "the prior data", prior.best(spec)
        first_value = _value(best_prior, objective) if best_prior else None
        rows += _prior_rows(spec, prior)
    else:
        rows.append(
            (
                "Best of the initial design",
                f"{_with_unit(first_value, objective)} ({first.experiment_id})"
                if first and first_value is not None
                else "none succeeded",
            )
        )
    rows.append(
        (
            "Best overall",
            f"{_with_unit(best_value, objective)} ({best.experiment_id}, iteration {best.iteration})"
            if best and best_value is not None
            else "none succeeded",
        )
    )
    if first_value is not None and best_value is not None:
        gain = best_value - first_value if objective.direction == "maximise" else first_value - best_value
        relative = f" ({100.0 * gain / abs(first_value):+.1f} %)" if first_value != 0 else ""
        rows.append((f"Gain over {baseline}", f"{gain:+.4g} {objective.unit}".rstrip() + relative))
    if objective.target is not None:
        reached = best_value is not None and objective.reached(best_value)
        rows.append(
            (
                "Target",
                f"{_with_unit(objective.target, objective)}, {'reached' if reached else 'not reached'}",
            )
        )
    return rows


def _best_lines(spec: CampaignSpec, observations: list[Observation]) -> list[str]:
    """The best-compositions section of a single-objective report."""
    objective = spec.primary_objective
    lines: list[str] = []
    ranked = _ranked(observations, objective, spec)[:_TOP]
    lines += [f"## Best compositions (top {min(_TOP, len(ranked))})", ""]
    if ranked:
        objectives = spec.objectives
        header = ["Rank", "Experiment", "Iteration", *spec.component_names, *(_label(o) for o in objectives)]
        lines += ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
        for rank, o in enumerate(ranked, start=1):
            amounts = [_amount(o.composition.get(name), spec) for name in spec.component_names]
            values = [f"{o.values[ob.name]:.4g}" if ob.name in o.values else "–" for ob in objectives]
            lines.append(
                "| " + " | ".join([str(rank), o.experiment_id, str(o.iteration), *amounts, *values]) + " |"
            )
        unit = "percent" if spec.unit_scale == 100.0 else "fractions of one"
        lines += ["", f"Amounts are {unit}."]
    else:
        lines.append("No experiment succeeded.")
    lines.append("")
    return lines


def _split_sources(
    spec: CampaignSpec, observations: list[Observation]
) -> tuple[list[Observation], list[Observation]]:
    """The experiments (the target source) and the cheap source's simulated evaluations."""
    target = spec.target_fidelity
    experiments = [o for o in observations if o.fidelity is None or o.fidelity == target]
    return experiments, [o for o in observations if o.fidelity is not None and o.fidelity != target]


def _fidelity_lines(spec: CampaignSpec, simulated: list[Observation], extra: dict[str, Any]) -> list[str]:
    """The cheap-source section: what it cost, and whether it pays."""
    cheap = next(f for f in spec.fidelities if f.cost < 1.0)
    failed = sum(o.status == "failed" for o in simulated)
    text = f"{len(simulated)} evaluations by `{_cell(cheap.name)}` (`{_cell(str(cheap.simulator))}`), each"
    text += f" costing {cheap.cost:g} of an experiment: {len(simulated) * cheap.cost:.3g} experiments in all"
    text += f"; {failed} failed." if failed else "."
    lines = ["## Cheap source", "", text, ""]
    advice = (extra.get("summary") or {}).get("fidelity_advice")
    if isinstance(advice, dict) and advice.get("message"):
        message = _cell(advice["message"])
        lines += [f"**Does it pay?** {message[:1].upper()}{message[1:]}.", ""]
    return lines


def render_report(
    spec: CampaignSpec,
    observations: list[Observation],
    extra: dict[str, Any] | None = None,
    *,
    run_id: str = "",
    figure: str = CONVERGENCE_FILE,
    prior: PriorData | None = None,
) -> str:
    """The report's Markdown text.

    Args:
        spec: The campaign spec.
        observations: Every finished experiment.
        extra: Optional facts: ``literature`` (a list of ``{"chunk_id", "citation"}`` the PI retrieved),
            ``decision`` (the PI's final :class:`~athanor.models.Decision`, its
            dump, or text) and ``run_id``.
        run_id: The run id shown under the title (``extra["run_id"]`` wins).
        figure: File name of the convergence figure, relative to the report.
        prior: The campaign's prior data, reported apart from its own experiments.
    """
    extra = extra or {}
    observations, simulated = _split_sources(spec, observations)
    objective = spec.primary_objective
    run_id = str(extra.get("run_id") or run_id)
    lines = [f"# {spec.title}", ""]
    if spec.request:
        lines += [f"> {_cell(spec.request)}", ""]
    facts = [f"Run `{run_id}`"] if run_id else []
    facts += [f"{o.direction} **{o.name}**" + (f" ({o.unit})" if o.unit else "") for o in spec.objectives]
    facts += [f"seed {spec.seed}"]
    lines += [" · ".join(facts), "", "## Summary", "", "| Item | Value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in _summary_rows(spec, observations, prior)]
    lines += ["", f"![Measured {objective.name} by experiment number, with the best so far]({figure})", ""]

    if len(spec.objectives) > 1:
        lines += pareto_lines(spec, observations, PARETO_FILE)
    else:
        lines += _best_lines(spec, observations)

    if spec.fidelities:
        lines += _fidelity_lines(spec, simulated, extra)

    if extra.get("decision") is not None:
        lines += ["## Final decision", "", _decision_text(extra["decision"]), ""]

    passages = extra.get("literature") or []
    if passages:
        lines += ["## Literature the campaign was grounded in", ""]
        lines += [f"- `{p['chunk_id']}` — {_cell(p['citation'])}" for p in passages]
        lines.append("")

    failed = [o for o in observations if o.status == "failed"]
    if failed:
        lines += ["## Failed experiments", "", "| Experiment | Iteration | Note |", "|---|---:|---|"]
        lines += [f"| {o.experiment_id} | {o.iteration} | {_cell(o.note) or '–'} |" for o in failed]
        lines.append("")
    return "\n".join(lines)


def write_report(
    run_dir: Path,
    spec: CampaignSpec,
    observations: list[Observation],
    extra: dict[str, Any] | None = None,
    *,
    prior: PriorData | None = None,
) -> Path:
    """Write ``report.md`` and ``convergence.png`` into ``run_dir``.

    Args:
        run_dir: The run folder (its name is the run id).
        spec: The campaign spec.
        observations: Every finished experiment.
        extra: See :func:`render_report`.
        prior: The campaign's prior data, if any (see :func:`render_report`).

    Returns:
        The path of ``report.md``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    experiments, _ = _split_sources(spec, observations)
    plot_convergence(run_dir / CONVERGENCE_FILE, spec, experiments, prior.usable if prior else [])
    if len(spec.objectives) > 1:
        plot_pareto(run_dir / PARETO_FILE, spec, observations)
    path = run_dir / REPORT_FILE
    text = render_report(spec, observations, extra, run_id=run_dir.name, figure=CONVERGENCE_FILE, prior=prior)
    path.write_text(text, encoding="utf-8")
    return path
