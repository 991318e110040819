"""A campaign's sources and budget, without torch: what each evaluation costs and whether a cheap one pays.

A spec with :attr:`~athanor.spec.CampaignSpec.fidelities` names the target (the lab's experiment,
cost 1) and one cheap source (a simulator, cost < 1 of an experiment). The budget stays counted in
experiments: a cheap evaluation spends its ``cost`` of one (:func:`budget_spent`). The roles (PI,
designer, analyst, experimenter) add up costs here; the optimiser that spends them is
:mod:`tools.optimiser.multifidelity`.

:func:`advise` checks the published guidance (Nat. Comput. Sci. best-practice study of
multi-fidelity BO): a cheap source pays only when it costs under about 0.1 of the expensive one and
predicts it well (R² above about 0.8). Both are measured on the compositions evaluated at both
sources, on the optimiser's scale (:func:`tools.modelling.log_sign`).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from athanor.errors import SpecError
from athanor.models import Observation
from athanor.spec import CampaignSpec, Fidelity
from tools.modelling import is_usable, log_sign, signed_logs
from tools.simulators import load_simulator

__all__ = [
    "COST_LIMIT",
    "MIN_PAIRS",
    "PAIR_TOLERANCE",
    "R2_LIMIT",
    "Advice",
    "advise",
    "budget_spent",
    "cheap_source",
    "check_fidelities",
    "cost_of",
    "is_target",
    "paired_values",
    "target_name",
    "usable_evaluations",
]

#: A cheap source pays only below this cost, as a fraction of one experiment (the published guidance).
COST_LIMIT = 0.1
#: ... and only when it explains more than this share of the experiment's variance.
R2_LIMIT = 0.8
#: Compositions measured at both sources needed before :func:`advise` judges the correlation.
MIN_PAIRS = 5
#: Two observations are of the same composition when no amount differs by more than this (unit
#: fractions); pipette rounding moves a made composition by about 1e-3.
PAIR_TOLERANCE = 0.01


class Advice(BaseModel):
    """Whether the cheap source is worth using, by the published guidance.

    Attributes:
        fidelity: Name of the cheap source.
        cost: Its cost as a fraction of one experiment.
        pairs: Compositions evaluated at both the cheap source and the target.
        r2: Share of the target's variance the cheap source explains on those pairs (squared Pearson
            correlation, on the model's scale); None with fewer than :data:`MIN_PAIRS` pairs.
        log_scale: Whether ``r2`` was computed on log values.
        verdict: ``"pays"`` (cost < :data:`COST_LIMIT` and r2 > :data:`R2_LIMIT`), ``"does_not_pay"``
            or ``"too_few_pairs"`` (cheap enough, but the correlation cannot be judged yet).
        message: One sentence for the user.
    """

    model_config = ConfigDict(extra="forbid")

    fidelity: str
    cost: float
    pairs: int
    r2: float | None
    log_scale: bool
    verdict: Literal["pays", "does_not_pay", "too_few_pairs"]
    message: str


# ----------------------------------------------------------------------------------- sources and budget
def cheap_source(spec: CampaignSpec) -> Fidelity | None:
    """The spec's cheap source (cost below one experiment), or None."""
    return next((f for f in spec.fidelities if f.cost < 1.0), None)


def target_name(spec: CampaignSpec) -> str | None:
    """The name the spec gives the target (the source of cost 1), or None."""
    return next((f.name for f in spec.fidelities if f.cost == 1.0), None)


def is_target(spec: CampaignSpec, fidelity: str | None) -> bool:
    """Whether an observation or proposal of ``fidelity`` is an experiment (None is the target)."""
    return fidelity is None or fidelity == target_name(spec)


def cost_of(spec: CampaignSpec, fidelity: str | None) -> float:
    """What one evaluation at ``fidelity`` spends, in experiments (1 for the target).

    Raises:
        SpecError: ``fidelity`` is not a source of the spec.
    """
    if is_target(spec, fidelity):
        return 1.0
    for source in spec.fidelities:
        if source.name == fidelity:
            return float(source.cost)
    known = ", ".join(f.name for f in spec.fidelities) or "none"
    raise SpecError(f"fidelity {fidelity!r} is not a source of this campaign; its sources are: {known}")


def budget_spent(spec: CampaignSpec, observations: Sequence[Observation], running: int = 0) -> float:
    """Experiments spent: each observation's cost, plus ``running`` experiments still on the instruments.

    Without fidelities this is the number of observations plus ``running``.
    """
    return sum(cost_of(spec, o.fidelity) for o in observations) + running


def check_fidelities(spec: CampaignSpec) -> list[str]:
    """Plan-time check of the spec's sources: refuse what cannot run, warn about what may not pay.

    Returns:
        Warnings, one sentence each (empty without a cheap source).

    Raises:
        SpecError: A simulator cannot be imported or is not callable.
    """
    cheap = cheap_source(spec)
    if cheap is None:
        return []
    load_simulator(cheap.simulator)
    warnings = []
    if cheap.cost >= COST_LIMIT:
        warnings.append(
            f"fidelities: {cheap.name} costs {cheap.cost:g} of an experiment; multi-fidelity optimisation"
            f" pays only below ~{COST_LIMIT:g} (Nat. Comput. Sci. best-practice study), so it may spend"
            " budget for little; consider dropping it"
        )
    warnings.append(
        f"fidelities: how well {cheap.name} predicts {spec.primary_objective.name} is not known yet; it is"
        f" measured on the initial design (both sources) and reported once {MIN_PAIRS} compositions have"
        " both"
    )
    return warnings


# ----------------------------------------------------------------------------------- advice
def usable_evaluations(spec: CampaignSpec, observations: Sequence[Observation]) -> list[Observation]:
    """The observations of any source a model may learn from (primary objective and every component)."""
    names = [spec.primary_objective.name]
    return [o for o in observations if is_usable(o, names, spec.component_names)]


def paired_values(spec: CampaignSpec, observations: Sequence[Observation]) -> list[tuple[float, float]]:
    """``(cheap value, target value)`` for each composition evaluated at both sources.

    Two observations are of one composition when no amount differs by more than
    :data:`PAIR_TOLERANCE` (fractions of the total); each cheap observation pairs at most once.
    """
    cheap = cheap_source(spec)
    if cheap is None:
        return []
    name = spec.primary_objective.name
    usable = usable_evaluations(spec, observations)
    targets = [o for o in usable if is_target(spec, o.fidelity)]
    cheaps = [o for o in usable if o.fidelity == cheap.name]
    scale = spec.unit_scale
    pairs, taken = [], set()
    for target in targets:
        best, gap = None, PAIR_TOLERANCE
        for i, other in enumerate(cheaps):
            if i in taken:
                continue
            distance = max(
                abs(target.composition[c] - other.composition[c]) / scale for c in spec.component_names
            )
            if distance <= gap:
                best, gap = i, distance
        if best is not None:
            taken.add(best)
            pairs.append((cheaps[best].values[name], target.values[name]))
    return pairs


def _squared_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Squared Pearson correlation of ``x`` and ``y`` (0 when either is constant)."""
    if statistics.stdev(x) == 0 or statistics.stdev(y) == 0:
        return 0.0
    return statistics.correlation(x, y) ** 2


def advise(spec: CampaignSpec, observations: Sequence[Observation]) -> Advice | None:
    """Whether the cheap source pays, from its cost and its R² against the target on paired compositions.

    Args:
        spec: The campaign spec.
        observations: Every observation so far (both sources).

    Returns:
        The advice, or None when the spec has no cheap source.
    """
    cheap = cheap_source(spec)
    if cheap is None:
        return None
    pairs = paired_values(spec, observations)
    objective = spec.primary_objective.name
    log = bool(log_sign([v for pair in pairs for v in pair]))
    r2 = None
    if len(pairs) >= MIN_PAIRS:
        cheap_values, target_values = zip(*pairs, strict=True)
        r2 = _squared_correlation(signed_logs(cheap_values, log), signed_logs(target_values, log))
    guidance = (
        f"multi-fidelity pays only below ~{COST_LIMIT:g} and above ~{R2_LIMIT:g} (Nat. Comput. Sci."
        " best-practice study)"
    )
    lead = f"the {cheap.name} costs {cheap.cost:.2g} of an experiment"
    if r2 is None:
        verdict: Literal["pays", "does_not_pay", "too_few_pairs"] = (
            "does_not_pay" if cheap.cost >= COST_LIMIT else "too_few_pairs"
        )
        message = (
            f"{lead}; {len(pairs)} of the {MIN_PAIRS} compositions needed are measured at both sources, too"
            f" few to judge how well it predicts {objective}; {guidance}"
        )
        if verdict == "does_not_pay":
            message += "; at that cost consider dropping it"
    else:
        verdict = "pays" if cheap.cost < COST_LIMIT and r2 > R2_LIMIT else "does_not_pay"
        scale = " (log values)" if log else ""
        message = (
            f"{lead} and explains {100 * r2:.0f} % of its variance{scale} on {len(pairs)} paired"
            f" compositions; {guidance}; " + ("it pays here" if verdict == "pays" else "consider dropping it")
        )
    return Advice(
        fidelity=cheap.name,
        cost=float(cheap.cost),
        pairs=len(pairs),
        r2=r2,
        log_scale=log,
        verdict=verdict,
        message=message,
    )
