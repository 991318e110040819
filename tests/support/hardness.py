"""A synthetic alloy hardness for mixed-space optimiser tests: a bump at PEAK, doubled by a 150C anneal."""

from __future__ import annotations

import math

import numpy as np

from athanor.models import Observation

#: Where the synthetic hardness peaks: two of the five elements (fractions of one), annealed at 150C.
PEAK = {"Ag": 0.65, "Ni": 0.35}


def hardness(spec, point):
    """1-101 HV: a bump at PEAK (fractions of one), doubled by the 150C anneal."""
    x = np.array([spec.to_unit_fractions(point.composition)[n] for n in spec.component_names])
    p = np.array([PEAK.get(n, 0.0) for n in spec.component_names])
    bump = 1 + 50 * math.exp(-((x - p) ** 2).sum() / (2 * 0.2**2))
    return float(bump * (2.0 if point.choices.get("annealing") == "150C" else 1.0))


def observe(spec, points, start=0, iteration=0):
    """Observations of ``points`` (mixed points) with their synthetic hardness, ids from ``E{start}``."""
    return [
        Observation(
            experiment_id=f"E{start + i:04d}",
            iteration=iteration,
            composition=p.composition,
            choices=p.choices,
            values={"hardness": hardness(spec, p)},
        )
        for i, p in enumerate(points)
    ]
