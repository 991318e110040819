"""Seconds per proposal: :func:`tools.optimiser.propose` on campaign-sized synthetic data.

Each case is one call shape the designer makes in a campaign:

- ``a``: one objective, 6 components summing to 1, 200 observations, a batch of q = 4 (qLogNEI);
  target 2 s.
- ``b``: two objectives, 5 components, 50 observations, q = 4 (``propose`` hands the spec to
  :func:`tools.optimiser.propose_pareto`: qLogNEHVI); target 5 s.
- ``c``: as ``a`` with q = 1 and nothing pending (a campaign that measures one sample at a time).
- ``d``: the mixed space: at most 3 of 5 components present, a 1 % grid and a categorical choice
  with 3 options, 40 observations, q = 4 (:func:`tools.optimiser.propose_mixed`).

The data are synthetic but shaped like a campaign's: compositions drawn by the spec's own sampler
(hit-and-run on the design space; on the mixed space, its cells snapped to the grid), values from a
smooth seeded function of the composition with a little noise (a conductivity-like peak spanning
decades, and for the second objective a transmittance-like peak elsewhere, so the two conflict). The
data depend only on ``seed``, so reruns see the same observations. Every case times ``propose``
``repeats`` times with different seeds in one process and checks every result: ``q`` suggestions,
each feasible (``spec.violations`` empty) and model-based, so a speed win cannot come from a broken
proposal or the space-filling fallback.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import torch
from rich.table import Table

from athanor.errors import AthanorError
from athanor.models import Observation
from athanor.spec import CampaignSpec
from tools.design_space import design_space
from tools.mixed_space import mixed_space, needs_mixed_space
from tools.optimiser import Suggestion, propose

__all__ = [
    "CASES",
    "Case",
    "make_observations",
    "make_spec",
    "measure_proposals",
    "parse_cases",
    "results_table",
]

#: What is timed: :func:`tools.optimiser.propose` or a function with its signature.
Proposer = Callable[..., list[Suggestion]]
#: Fewest observations a shrunken case keeps (enough for every model to be fitted).
MIN_OBSERVATIONS = 8
#: Options of the mixed case's categorical variable and the factor each puts on the conductivity.
ANNEALING = {"none": 0.75, "150C": 1.0, "200C": 1.25}


@dataclass(frozen=True)
class Case:
    """One proposal shape to time.

    Attributes:
        name: Short name used by ``--cases`` (``a`` to ``d``).
        label: What the case exercises, in two words, for the table.
        observations: Observations (status ok) the optimiser is given.
        components: Components, summing to 1.
        q: Suggestions asked for in one call.
        objectives: 1 (conductivity) or 2 (conductivity and transmittance, both maximised).
        pending: Compositions proposed but not measured yet, passed as ``pending``.
        max_active_components: At most this many components non-zero (None: no limit).
        resolution: Grid step of every amount, as a fraction (None: continuous).
        choices: Options of one categorical variable ``annealing`` (0: no categorical variable).
        target_s: The median time the case should stay under, in seconds (None: no target).
    """

    name: str
    label: str
    observations: int
    components: int
    q: int
    objectives: int = 1
    pending: int = 0
    max_active_components: int | None = None
    resolution: float | None = None
    choices: int = 0
    target_s: float | None = None

    def scaled(self, scale: float) -> Case:
        """The same case with ``scale`` times the observations (at least :data:`MIN_OBSERVATIONS`)."""
        observations = max(MIN_OBSERVATIONS, round(self.observations * scale))
        return replace(self, observations=observations)


CASES: dict[str, Case] = {
    "a": Case("a", "one objective", 200, 6, 4, target_s=2.0),
    "b": Case("b", "two objectives", 50, 5, 4, objectives=2, target_s=5.0),
    "c": Case("c", "one point", 200, 6, 1),
    "d": Case(
        "d",
        "mixed space",
        40,
        5,
        4,
        max_active_components=3,
        resolution=0.01,
        choices=3,
    ),
}

_NAMES = ("P3HT", "CNT", "D1", "D2", "D3", "D4", "D5", "D6")


def make_spec(case: Case) -> CampaignSpec:
    """The campaign spec of ``case``: its components summing to 1, objectives and mixed features."""
    if not 2 <= case.components <= len(_NAMES):
        raise AthanorError(f"case {case.name}: components={case.components}; use 2 to {len(_NAMES)}")
    objectives = [{"name": "conductivity", "direction": "maximise", "unit": "S/cm"}]
    if case.objectives == 2:
        objectives.append({"name": "transmittance", "direction": "maximise", "unit": "%"})
    elif case.objectives != 1:
        raise AthanorError(f"case {case.name}: objectives={case.objectives}; use 1 or 2")
    experiments = case.observations + case.pending + case.q
    data: dict[str, Any] = {
        "title": f"proposal benchmark, case {case.name}",
        "components": [{"name": name} for name in _NAMES[: case.components]],
        "objectives": objectives,
        "budget": {"experiments": experiments, "batch_size": case.q},
        "max_active_components": case.max_active_components,
        "resolution": case.resolution,
    }
    if case.choices:
        data["categories"] = [{"name": "annealing", "choices": list(ANNEALING)[: case.choices]}]
    return CampaignSpec.model_validate(data)


def _draw(spec: CampaignSpec, n: int, seed: int) -> list[tuple[dict[str, float], dict[str, str]]]:
    """``n`` feasible compositions with choices, drawn by the spec's own sampler (seeded)."""
    if not needs_mixed_space(spec):
        space = design_space(spec)
        return [(c, {}) for c in space.to_compositions(space.sample(n, seed))]
    mixed = mixed_space(spec)
    points, _ = mixed.pool(mixed.cells(seed), 2 * n, seed)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(points), n, replace=len(points) < n)
    return [(points[i].composition, dict(points[i].choices)) for i in picks]


class _Landscape:
    """Smooth seeded test functions of a composition (fractions of one, spec order)."""

    def __init__(self, spec: CampaignSpec, seed: int) -> None:
        centres = [c for c, _ in _draw(spec, 2, seed + 7919)]
        names = spec.component_names
        self.names = names
        self.peak = np.array([centres[0][n] for n in names]) / spec.unit_scale
        self.other = np.array([centres[1][n] for n in names]) / spec.unit_scale

    def values(
        self, composition: dict[str, float], choices: dict[str, str], rng: np.random.Generator, scale: float
    ) -> dict[str, float]:
        """Conductivity (S/cm, 5 to ~1250, 3 % noise) and transmittance (%, 20 to 95, noise 0.5)."""
        x = np.array([composition[n] for n in self.names]) / scale
        near = math.exp(-float(np.sum((x - self.peak) ** 2)) / (2 * 0.2**2))
        factor = ANNEALING.get(choices.get("annealing", "150C"), 1.0)
        conductivity = (5.0 + 995.0 * near) * factor * math.exp(0.03 * rng.standard_normal())
        far = math.exp(-float(np.sum((x - self.other) ** 2)) / (2 * 0.35**2))
        transmittance = 20.0 + 75.0 * far + 0.5 * rng.standard_normal()
        return {"conductivity": conductivity, "transmittance": transmittance}


def make_observations(spec: CampaignSpec, n: int, seed: int, batch: int = 4) -> list[Observation]:
    """``n`` synthetic observations (status ok) at feasible compositions, the same for the same seed.

    Args:
        spec: The campaign spec; its objectives name the values recorded.
        n: Number of observations.
        seed: Seed of the compositions, the test functions and the noise.
        batch: Observations per iteration (for the ``iteration`` field only).

    Returns:
        Observations whose compositions (and choices) meet the spec, with a value for each objective.
    """
    landscape = _Landscape(spec, seed)
    rng = np.random.default_rng(seed)
    wanted = [o.name for o in spec.objectives]
    out = []
    for i, (composition, choices) in enumerate(_draw(spec, n, seed)):
        problems = spec.violations(composition, choices=choices if spec.categories else None)
        if problems:
            raise AthanorError(f"the sampler drew an infeasible composition: {'; '.join(problems)}")
        values = landscape.values(composition, choices, rng, spec.unit_scale)
        out.append(
            Observation(
                experiment_id=f"E{i + 1:04d}",
                iteration=i // batch,
                composition=composition,
                values={name: values[name] for name in wanted},
                choices=choices,
            )
        )
    return out


def _check(spec: CampaignSpec, suggestions: list[Suggestion], q: int) -> dict[str, Any]:
    """How many suggestions came back, how many are feasible and model-based, and every problem."""
    problems = []
    feasible = 0
    for i, s in enumerate(suggestions):
        found = spec.violations(s.composition, choices=s.choices if spec.categories else None)
        feasible += not found
        problems += [f"suggestion {i}: {p}" for p in found]
    if len(suggestions) != q:
        problems.append(f"{len(suggestions)} suggestions, {q} asked for")
    return {
        "suggestions": len(suggestions),
        "feasible": feasible,
        "model": sum(s.source == "model" for s in suggestions),
        "problems": problems,
    }


def _time_case(case: Case, repeats: int, seed: int, proposer: Proposer) -> dict[str, Any]:
    """Build the case's data once, then time ``repeats`` calls of ``propose`` with seeds seed, seed+1, ..."""
    spec = make_spec(case)
    observations = make_observations(spec, case.observations + case.pending, seed, batch=case.q)
    pending = [o.composition for o in observations[case.observations :]]
    pending_choices = [o.choices for o in observations[case.observations :]] if spec.categories else []
    observations = observations[: case.observations]
    walls, checks = [], []
    for r in range(repeats):
        start = time.perf_counter()
        suggestions = proposer(spec, observations, case.q, seed + r, pending, pending_choices=pending_choices)
        walls.append(time.perf_counter() - start)
        checks.append({"seed": seed + r} | _check(spec, suggestions, case.q))
    median = statistics.median(walls)
    feasible = all(not c["problems"] for c in checks)
    model = all(c["model"] == case.q for c in checks)
    return asdict(case) | {
        "seeds": [seed + r for r in range(repeats)],
        "wall_s": walls,
        "median_s": median,
        "min_s": min(walls),
        "max_s": max(walls),
        "checks": checks,
        "all_feasible": feasible,
        "all_model": model,
        "met": None if case.target_s is None else bool(median <= case.target_s and feasible and model),
    }


def _versions() -> dict[str, str]:
    found = {}
    for package in ("torch", "botorch", "gpytorch", "athanor-lab"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def parse_cases(text: str) -> list[str]:
    """Case names from ``"a,b"``; raises :class:`AthanorError` naming the valid ones for an unknown one."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown or not names:
        what = f"unknown case(s) {', '.join(repr(n) for n in unknown)}" if unknown else "no case given"
        raise AthanorError(f"--cases: {what}; choose from {', '.join(CASES)} (comma-separated, e.g. a,b)")
    return list(dict.fromkeys(names))


def measure_proposals(
    cases: list[str] | tuple[str, ...] = tuple(CASES),
    repeats: int = 5,
    seed: int = 0,
    scale: float = 1.0,
    *,
    proposer: Proposer = propose,
) -> dict[str, Any]:
    """Time :func:`tools.optimiser.propose` on each case and check every result.

    Args:
        cases: Names in :data:`CASES`, timed in this order.
        repeats: Timed calls per case, with seeds ``seed``, ``seed + 1``, ...
        seed: Seed of the data (the same for every rerun) and of the first call.
        scale: Multiplier on every case's observations (at least :data:`MIN_OBSERVATIONS` are kept);
            below 1 for a quick check of the benchmark itself, never for the recorded figures.
        proposer: The function timed (:func:`tools.optimiser.propose`; another one checks the checks).

    Returns:
        ``{"benchmark", "repeats", "seed", "scale", "torch_threads", "cpu_count", "omp_num_threads",
        "python", "versions", "cases"}``; each case holds its parameters (:class:`Case`), ``seeds``,
        every ``wall_s``, ``median_s``, ``min_s``, ``max_s`` (seconds), ``checks`` (per call:
        ``suggestions``, ``feasible``, ``model``, ``problems``), ``all_feasible``, ``all_model`` and
        ``met`` (median within the target and every check passed; None without a target).

    Raises:
        AthanorError: An unknown case, ``repeats`` below 1 or a non-positive ``scale``.
    """
    names = parse_cases(",".join(cases))
    if repeats < 1:
        raise AthanorError(f"--repeats is {repeats}; time each case at least once (e.g. --repeats 5)")
    if not (math.isfinite(scale) and scale > 0):
        raise AthanorError(f"scale is {scale}; give a positive multiplier on the observations")
    results = [_time_case(CASES[name].scaled(scale), repeats, seed, proposer) for name in names]
    return {
        "benchmark": "proposal",
        "repeats": repeats,
        "seed": seed,
        "scale": scale,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
        "versions": _versions(),
        "cases": results,
    }


def results_table(results: dict[str, Any]) -> Table:
    """The results as a rich table: case, observations, components, q, median, min–max, target, met."""
    table = Table(
        title=f"seconds per proposal (median of {results['repeats']} calls; torch threads:"
        f" {results['torch_threads']}, cores: {results['cpu_count']})",
        title_justify="left",
    )
    for column in ("case", "observations", "components", "q", "median s", "min–max s", "target s", "met?"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for row in results["cases"]:
        if not row["all_feasible"]:
            met = "[red]NO: infeasible result[/]"
        elif not row["all_model"]:
            met = "[red]NO: space-filling fallback[/]"
        elif row["met"] is None:
            met = "—"
        else:
            met = "yes" if row["met"] else "[red]no[/]"
        table.add_row(
            f"{row['name']}: {row['label']}",
            str(row["observations"]),
            str(row["components"]),
            str(row["q"]),
            f"{row['median_s']:.2f}",
            f"{row['min_s']:.2f}–{row['max_s']:.2f}",
            "—" if row["target_s"] is None else f"{row['target_s']:g}",
            met,
        )
    return table
