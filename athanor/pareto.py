"""Pareto optimality of observations under a spec's objectives and outcome constraints.

An observation *counts* when its status is ``ok``, it has a finite value for every objective and it
meets every outcome constraint. Among the counted observations, one *dominates* another when it is
at least as good in every objective (in each objective's direction) and better in one; the *Pareto
front* is the counted observations no other dominates. The designer, the analyst, the PI and the
report all read the front from here, so they agree on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from athanor.models import Observation
from athanor.spec import CampaignSpec

__all__ = ["counts", "dominates", "hypervolume", "pareto_front", "shortfalls", "targets_met"]


def shortfalls(spec: CampaignSpec, observation: Observation) -> list[str]:
    """Why an observation does not count; empty when it does.

    Returns:
        Phrases such as ``"status failed"``, ``"no conductivity"`` or ``"breaks conductivity >= 500"``.
    """
    problems = [] if observation.status == "ok" else [f"status {observation.status}"]
    for objective in spec.objectives:
        value = observation.values.get(objective.name)
        if value is None or not math.isfinite(value):
            problems.append(f"no {objective.name}")
    for constraint in spec.outcome_constraints:
        if not constraint.satisfied_by(observation.values.get(constraint.name)):
            problems.append(f"breaks {constraint.describe()}")
    return problems


def counts(spec: CampaignSpec, observation: Observation) -> bool:
    """Whether an observation is ok, has every objective and meets every outcome constraint."""
    return not shortfalls(spec, observation)


def _signed(spec: CampaignSpec, values: Mapping[str, float]) -> list[float]:
    """Objective values with minimised ones negated, so that larger is better in every coordinate."""
    return [values[o.name] if o.direction == "maximise" else -values[o.name] for o in spec.objectives]


def dominates(spec: CampaignSpec, a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """Whether objective values ``a`` dominate ``b``: no worse in every objective, better in one."""
    pairs = list(zip(_signed(spec, a), _signed(spec, b), strict=True))
    return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)


def pareto_front(spec: CampaignSpec, observations: Sequence[Observation]) -> list[Observation]:
    """The counted observations that no other counted observation dominates.

    Args:
        spec: The campaign spec (objectives, directions, outcome constraints).
        observations: Every observation so far.

    Returns:
        The front, best first by the primary objective. Observations with equal values are all kept.
        With one objective it is the best counted observation(s).
    """
    counted = [o for o in observations if counts(spec, o)]
    front = [o for o in counted if not any(dominates(spec, other.values, o.values) for other in counted)]
    primary = spec.primary_objective
    return sorted(front, key=lambda o: o.values[primary.name], reverse=primary.direction == "maximise")


def targets_met(spec: CampaignSpec, observations: Sequence[Observation]) -> Observation | None:
    """The first counted observation that reaches every target that is set, or None.

    None as well when no objective has a target.
    """
    with_targets = [o for o in spec.objectives if o.target is not None]
    if not with_targets:
        return None
    for observation in observations:
        if counts(spec, observation) and all(o.reached(observation.values[o.name]) for o in with_targets):
            return observation
    return None


def _volume(points: list[list[float]], reference: list[float]) -> float:
    """Hypervolume dominated by ``points`` above ``reference`` (maximisation), by slicing the last axis."""
    points = [p for p in points if all(x > r for x, r in zip(p, reference, strict=True))]
    if not points:
        return 0.0
    if len(reference) == 1:
        return max(p[0] for p in points) - reference[0]
    points = sorted(points, key=lambda p: p[-1], reverse=True)
    total = 0.0
    for i, point in enumerate(points):
        floor = points[i + 1][-1] if i + 1 < len(points) else reference[-1]
        if point[-1] > floor:
            total += (point[-1] - floor) * _volume([p[:-1] for p in points[: i + 1]], reference[:-1])
    return total


def hypervolume(
    spec: CampaignSpec, observations: Sequence[Observation], reference: Mapping[str, float]
) -> float:
    """The objective-space volume the counted observations dominate, bounded by ``reference``.

    Args:
        spec: The campaign spec.
        observations: Every observation; those that do not count are ignored.
        reference: Objective name to the worst value that still counts (e.g. the thresholds), in the
            objective's unit.

    Returns:
        The volume, in the product of the objectives' units (0 when no counted observation is better
        than the reference in every objective). Exact; meant for fronts of up to a few hundred points.

    Raises:
        KeyError: ``reference`` lacks an objective.
    """
    front = pareto_front(spec, observations)
    return _volume([_signed(spec, o.values) for o in front], _signed(spec, reference))
