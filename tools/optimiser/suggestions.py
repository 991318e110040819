"""What the optimiser returns: checked suggestions with their rationale, and the space-filling fallback.

A strategy never stops a campaign: with too few observations, or when the fit or the acquisition
fails numerically, it returns space-filling points far from the measured ones (:func:`fallback`,
:func:`mixed_fallback`) and says why in the rationale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor

from tools.design_space import DesignSpace
from tools.initial_design import space_filling
from tools.mixed_space import MixedPoint, MixedSpace, mixed_initial_design

__all__ = ["Suggestion", "fallback", "mixed_fallback", "mixed_suggestion", "searched_cells", "suggestion"]


class Suggestion(BaseModel):
    """One composition the optimiser proposes, with why.

    Attributes:
        composition: Component name to amount, in the spec's unit.
        predicted_mean: Model mean of the primary objective, in its unit (None without a model).
        predicted_std: Model standard deviation of the primary objective, in its unit.
        acquisition_value: Log expected improvement of this point on its own, given the pending
            points, in log standardised units (None without a model).
        rationale: One line saying why this point was chosen.
        active_constraints: Spec bounds and constraints the point sits on, e.g. ``P3HT >= 0.3``.
        source: ``"model"`` (acquisition optimum) or ``"initial"`` (space-filling point).
        active_components: Components with a non-zero amount (set on the mixed path, see
            :mod:`tools.optimiser.mixed`; empty otherwise).
        choices: Categorical variable name to the chosen option (empty when the spec has none).
        model_inputs: The input columns of the fitted model that chose the point, read from the
            model: the free components, the categorical variables, then the features its input
            transform appends (the spec's descriptors). With several objectives, those of the primary
            objective's model; empty without a model.
        raw_candidate: The acquisition optimiser's own output this point came from, in spec units,
            before any repair (projection onto the constraints, snapping to the grid); None when the
            point did not come from the gradient optimiser (a space-filling point, a random-forest
            pick, a screening sample of the mixed search, a replacement of a near-duplicate).
    """

    model_config = ConfigDict(extra="forbid")

    composition: dict[str, float]
    predicted_mean: float | None = None
    predicted_std: float | None = None
    acquisition_value: float | None = None
    rationale: str
    active_constraints: list[str] = []
    source: Literal["model", "initial"] = "model"
    active_components: list[str] = []
    choices: dict[str, str] = {}
    model_inputs: list[str] = []
    raw_candidate: dict[str, float] | None = None


def suggestion(
    space: DesignSpace,
    point: Tensor,
    rationale: str,
    *,
    source: Literal["model", "initial"],
    predicted: tuple[float, float] | None = None,
    acquisition_value: float | None = None,
    model_inputs: Sequence[str] = (),
    raw_candidate: Tensor | None = None,
) -> Suggestion:
    """A checked :class:`Suggestion` for one point (``d`` unit fractions) of the continuous space.

    ``raw_candidate`` is the optimiser's output the point came from (``d`` unit fractions), kept
    unrepaired; ``model_inputs`` the model's input columns (see :class:`Suggestion`).

    Raises:
        ValueError: The point breaks the spec even after projection onto the constraints.
    """
    composition = space.to_compositions(point)[0]
    problems = space.spec.violations(composition)
    if problems:
        point = space.project(point.reshape(1, -1))[0]
        composition = space.to_compositions(point)[0]
        problems = space.spec.violations(composition)
    if problems:
        raise ValueError(f"proposal breaks the spec after projection: {'; '.join(problems)}")
    phrases = space.active_phrases(point)
    if phrases:
        rationale += "; " + ", ".join(phrases)
    return Suggestion(
        composition=composition,
        predicted_mean=predicted[0] if predicted else None,
        predicted_std=predicted[1] if predicted else None,
        acquisition_value=acquisition_value,
        rationale=rationale,
        active_constraints=space.active_constraints(point),
        source=source,
        model_inputs=list(model_inputs),
        raw_candidate=None if raw_candidate is None else space.to_compositions(raw_candidate)[0],
    )


def fallback(
    space: DesignSpace, x: Tensor, pending_x: Tensor, n: int, seed: int, reason: str
) -> list[Suggestion]:
    """Space-filling points far from the observed (``x``) and pending ones; the rationale says ``reason``."""
    points = space_filling(space, n, seed, avoid=torch.cat([x, pending_x]))
    lead = "space-filling point far from measured ones" if x.shape[0] else "space-filling initial design"
    return [suggestion(space, p, f"{lead}: {reason}", source="initial") for p in points]


def searched_cells(mixed: MixedSpace, n_cells: int) -> str:
    """What a search over ``n_cells`` cells covered, e.g. ``10 subsets of components x 3 combinations``."""
    parts = []
    if mixed.spec.max_active_components is not None and mixed.n_subsets > 1:
        parts.append(f"{mixed.n_subsets} subsets of components")
    if mixed.spec.categories:
        parts.append(f"{mixed.n_combinations} combinations of choices")
    if not parts:
        return "the design space"
    total = mixed.n_subsets * mixed.n_combinations
    sampled = f" ({n_cells} of {total} searched)" if n_cells < total else ""
    return " x ".join(parts) + sampled


def mixed_suggestion(
    mixed: MixedSpace,
    point: MixedPoint,
    rationale: str,
    *,
    source: str,
    predicted: tuple[float, float] | None = None,
    acquisition_value: float | None = None,
    model_inputs: Sequence[str] = (),
    raw_candidate: Tensor | None = None,
) -> Suggestion:
    """A checked :class:`Suggestion` for an admissible point, saying what it holds and sits on.

    ``raw_candidate`` is the optimiser's output the point was snapped from (``input_dim`` model
    inputs), kept unrepaired; ``model_inputs`` the model's input columns (see :class:`Suggestion`).

    Raises:
        ValueError: The point breaks the spec.
    """
    spec = mixed.spec
    problems = spec.violations(point.composition, choices=point.choices)
    if problems:
        raise ValueError(f"proposal breaks the spec: {'; '.join(problems)}")
    present = list(mixed.present_in(point.composition))
    x = mixed.space.to_tensor([point.composition])[0]
    labels, phrases = [], []
    absent = set(spec.component_names) - set(present)
    for label, phrase in zip(mixed.space.active_constraints(x), mixed.space.active_phrases(x), strict=True):
        if any(label.startswith(f"{name} >= ") for name in absent):
            continue  # an absent component sits on its zero bound by choice, not as a constraint
        labels.append(label)
        phrases.append(phrase)
    k = spec.max_active_components
    notes = []
    if k is not None:
        notes.append(f"components {', '.join(present)} ({len(present)} of at most {k})")
        if len(present) == k and len(mixed.optional) > mixed.choose:
            labels.append(f"max_active_components = {k}")
    if point.choices:
        notes.append(", ".join(f"{name}={choice}" for name, choice in point.choices.items()))
    if spec.resolution is not None:
        notes.append(f"on the {spec.resolution:g} grid")
    rationale = "; ".join([rationale, *notes, *([", ".join(phrases)] if phrases else [])])
    return Suggestion(
        composition=point.composition,
        predicted_mean=predicted[0] if predicted else None,
        predicted_std=predicted[1] if predicted else None,
        acquisition_value=acquisition_value,
        rationale=rationale,
        active_constraints=labels,
        source="model" if source == "model" else "initial",
        active_components=present,
        choices=dict(point.choices),
        model_inputs=list(model_inputs),
        raw_candidate=None if raw_candidate is None else mixed.decode(raw_candidate)[0].composition,
    )


def mixed_fallback(
    mixed: MixedSpace, avoid: Sequence[MixedPoint], measured: int, n: int, seed: int, reason: str
) -> list[Suggestion]:
    """The mixed space-filling design away from ``avoid`` (measured and pending points), with ``reason``.

    ``measured`` is how many usable observations there are (the rationale says whether any were).
    """
    points = mixed_initial_design(mixed.spec, n, seed, avoid=avoid)
    lead = "space-filling point far from measured ones" if measured else "space-filling initial design"
    return [mixed_suggestion(mixed, p, f"{lead}: {reason}", source="initial") for p in points]
