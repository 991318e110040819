"""The design space of a campaign as tensors: bounds, constraints, mapping and sampling.

The optimiser works in *unit fractions* (amounts divided by :attr:`CampaignSpec.unit_scale`, so a
percent spec becomes fractions of one) over the *free* components only. A component is free when
the bounds, the sum rule and the linear constraints leave it a range wider than
:data:`FIXED_WIDTH`; the others are pinned to a single value and added back when a tensor is mapped
to a composition. Bounds are the tightest ones the constraints imply (each found by a small LP), so
that a ``Normalize`` over them fills the unit cube.

Constraints follow BoTorch's format: ``(indices, coefficients, rhs)`` meaning
``sum(coefficients * x[indices]) >= rhs`` (inequality) or ``== rhs`` (equality).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import null_space
from scipy.optimize import linprog
from torch import Tensor

from athanor.errors import SpecError
from athanor.spec import CampaignSpec

__all__ = [
    "ACTIVE_TOL",
    "DTYPE",
    "FIXED_WIDTH",
    "BoTorchConstraint",
    "DesignSpace",
    "design_space",
]

#: Dtype of every tensor the optimiser builds.
DTYPE = torch.float64
#: A component whose feasible range (in unit fractions) is narrower than this is pinned.
FIXED_WIDTH = 1e-6
#: Distance (unit fractions) within which a bound or constraint counts as active.
ACTIVE_TOL = 1e-4

#: ``(indices, coefficients, rhs)``: ``sum(coefficients * x[indices]) >= rhs`` (or ``== rhs``).
BoTorchConstraint = tuple[Tensor, Tensor, float]


@dataclass(frozen=True, eq=False)
class DesignSpace:
    """A campaign's feasible compositions in the optimiser's coordinates.

    Coordinates are unit fractions of the free components, in the order of :attr:`names`.
    Treat the tensors as read-only: the instance may be shared.

    Attributes:
        spec: The campaign spec this space was built from.
        names: Free component names; the ``d`` columns of every tensor.
        fixed: Pinned component name to its amount in unit fractions.
        bounds: ``2 x d`` lower and upper bounds (unit fractions), tightened by the constraints.
        equality_constraints: The sum rule over the free components (empty without a sum rule).
        inequality_constraints: Linear constraints as ``>=`` constraints over the free components.
    """

    spec: CampaignSpec
    names: tuple[str, ...]
    fixed: dict[str, float]
    bounds: Tensor
    equality_constraints: list[BoTorchConstraint]
    inequality_constraints: list[BoTorchConstraint]

    @property
    def dim(self) -> int:
        """Number of free components ``d``."""
        return len(self.names)

    def _rows(self, x: Tensor) -> Tensor:
        """``x`` as an ``n x d`` tensor (a single point of shape ``d`` becomes ``1 x d``)."""
        x = x.detach()
        return x.unsqueeze(0) if x.ndim == 1 else x

    # ----------------------------------------------------------------------------- mapping
    def to_tensor(self, compositions: Sequence[dict[str, float]]) -> Tensor:
        """Map compositions (spec unit) to an ``n x d`` tensor of unit fractions.

        Raises:
            SpecError: A composition lacks one of the free components.
        """
        rows = []
        for i, composition in enumerate(compositions):
            missing = [n for n in self.names if n not in composition]
            if missing:
                raise SpecError(
                    f"composition {i} lacks component(s) {', '.join(missing)}; give an amount for every"
                    f" component of the spec ({', '.join(self.spec.component_names)})"
                )
            fractions = self.spec.to_unit_fractions({n: float(composition[n]) for n in self.names})
            rows.append([fractions[n] for n in self.names])
        return torch.tensor(rows, dtype=DTYPE).reshape(len(rows), self.dim)

    def to_compositions(self, x: Tensor) -> list[dict[str, float]]:
        """Map an ``n x d`` tensor of unit fractions to compositions in spec units and spec order."""
        out = []
        for row in self._rows(x).tolist():
            fractions = dict(self.fixed) | dict(zip(self.names, row, strict=True))
            spec_units = self.spec.from_unit_fractions(fractions)
            out.append({n: spec_units[n] for n in self.spec.component_names})
        return out

    def normalise(self, x: Tensor) -> Tensor:
        """Scale ``... x d`` unit fractions to the unit cube over :attr:`bounds` (for distances)."""
        return (x - self.bounds[0]) / (self.bounds[1] - self.bounds[0])

    # ----------------------------------------------------------------------------- feasibility
    def _dense(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``A_ub x <= b_ub`` (constraints only, no bounds) and ``A_eq x == b_eq`` as arrays."""
        return _dense(self.dim, self.inequality_constraints, self.equality_constraints)

    def feasible(self, x: Tensor, tol: float = 1e-6) -> Tensor:
        """Which rows of an ``n x d`` tensor meet bounds and constraints within ``tol`` (unit fractions).

        Returns:
            A boolean tensor of shape ``n``.
        """
        x = self._rows(x)
        ok = ((x >= self.bounds[0] - tol) & (x <= self.bounds[1] + tol)).all(dim=-1)
        a_ub, b_ub, a_eq, b_eq = self._dense()
        xn = x.detach().numpy()
        if len(b_ub):
            ok &= torch.from_numpy((xn @ a_ub.T <= b_ub + tol).all(axis=-1))
        if len(b_eq):
            ok &= torch.from_numpy((np.abs(xn @ a_eq.T - b_eq) <= tol).all(axis=-1))
        return ok

    def project(self, x: Tensor, tol: float = 1e-9) -> Tensor:
        """Move rows of an ``n x d`` tensor onto the feasible set; feasible rows stay as they are.

        A row is clipped to the bounds and its sum restored by spreading the difference over the
        components with room to move; a row that still breaks a linear constraint is replaced by the
        nearest feasible point in L1 distance (a small LP).
        """
        x = self._rows(x).clone()
        lower, upper = self.bounds
        x = torch.minimum(torch.maximum(x, lower), upper)
        if self.equality_constraints:
            rhs = self.equality_constraints[0][2]
            gap = rhs - x.sum(dim=-1, keepdim=True)
            room = torch.where(gap > 0, upper - x, x - lower)
            share = room / room.sum(dim=-1, keepdim=True).clamp_min(1e-300)
            x = torch.minimum(torch.maximum(x + gap * share, lower), upper)
        bad = ~self.feasible(x, tol)
        for i in torch.nonzero(bad).flatten().tolist():
            x[i] = torch.from_numpy(self._nearest_feasible(x[i].numpy()))
        return x

    def _nearest_feasible(self, x0: np.ndarray) -> np.ndarray:
        """The feasible point nearest ``x0`` in L1 distance (LP over ``x`` and ``t >= |x - x0|``)."""
        d = self.dim
        a_ub, b_ub, a_eq, b_eq = self._dense()
        eye = np.eye(d)
        rows = [np.hstack([a_ub, np.zeros((len(b_ub), d))]), np.hstack([eye, -eye]), np.hstack([-eye, -eye])]
        result = linprog(
            c=np.r_[np.zeros(d), np.ones(d)],
            A_ub=np.vstack(rows),
            b_ub=np.r_[b_ub, x0, -x0],
            A_eq=np.hstack([a_eq, np.zeros((len(b_eq), d))]) if len(b_eq) else None,
            b_eq=b_eq if len(b_eq) else None,
            bounds=[*zip(self.bounds[0].tolist(), self.bounds[1].tolist(), strict=True)] + [(0, None)] * d,
            method="highs",
        )
        if result.status != 0:
            raise SpecError(f"no feasible composition near {x0.tolist()}: {result.message}")
        return np.asarray(result.x[:d])

    def active_constraints(self, x: Tensor, tol: float = ACTIVE_TOL) -> list[str]:
        """Spec bounds and linear constraints that one point (``d`` unit fractions) sits on.

        Returns:
            Strings like ``P3HT >= 0.3`` (a bound, spec unit) or ``D1 + D2 <= 0.4`` (a constraint).
        """
        return [label for label, _ in self._active(x, tol)]

    def active_phrases(self, x: Tensor, tol: float = ACTIVE_TOL) -> list[str]:
        """The same as :meth:`active_constraints`, worded for a rationale (``P3HT at its lower bound``)."""
        return [phrase for _, phrase in self._active(x, tol)]

    def _active(self, x: Tensor, tol: float) -> list[tuple[str, str]]:
        """``(label, phrase)`` for each active bound of a free component and each active constraint."""
        spec = self.spec
        composition = self.to_compositions(x)[0]
        slack = tol * spec.unit_scale
        active = []
        for component in spec.components:
            if component.name not in self.names:
                continue
            name, value = component.name, composition[component.name]
            if value <= component.lower + slack:
                active.append((f"{name} >= {component.lower:g}", f"{name} at its lower bound"))
            elif value >= component.upper - slack:
                active.append((f"{name} <= {component.upper:g}", f"{name} at its upper bound"))
        for constraint in spec.constraints:
            lhs = sum(c * composition[n] for n, c in constraint.coefficients.items())
            scale = max(1.0, sum(abs(c) for c in constraint.coefficients.values()))
            if abs(lhs - constraint.rhs) <= slack * scale:
                active.append((constraint.describe(), f"on {constraint.describe()}"))
        return active

    # ----------------------------------------------------------------------------- sampling
    def sample(self, n: int, seed: int, steps: int | None = None) -> Tensor:
        """Draw ``n`` roughly uniform feasible points by hit-and-run, one chain per point.

        All chains start at the centre of the largest ball inside the polytope and take ``steps``
        moves along random directions (default ``20 + 10 * d``), vectorised over chains.

        Args:
            n: Number of points.
            seed: Seed of the random directions and step lengths.
            steps: Hit-and-run moves per chain.

        Returns:
            An ``n x d`` tensor of feasible unit fractions, reproducible for a given seed.
        """
        if self.dim == 0:
            return torch.zeros(n, 0, dtype=DTYPE)
        rng = np.random.default_rng(seed)
        a_ub, b_ub, a_eq, b_eq = self._dense()
        lower, upper = self.bounds.numpy()
        eye = np.eye(self.dim)
        g = np.vstack([a_ub, eye, -eye])
        h = np.r_[b_ub, upper, -lower]
        centre = _chebyshev_centre(g, h, a_eq, b_eq)
        basis = null_space(a_eq) if len(b_eq) else eye
        if basis.shape[1] == 0 or n == 0:
            return torch.from_numpy(np.tile(centre, (n, 1)))
        gb = g @ basis
        slack0 = np.maximum(h - g @ centre, 0.0)
        z = np.zeros((n, basis.shape[1]))
        for _ in range(steps if steps is not None else 20 + 10 * self.dim):
            u = rng.standard_normal(z.shape)
            u /= np.linalg.norm(u, axis=-1, keepdims=True)
            rate = u @ gb.T
            room = np.maximum(slack0 - z @ gb.T, 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = room / rate
            t_hi = np.where(rate > 1e-12, ratio, np.inf).min(axis=-1)
            t_lo = np.where(rate < -1e-12, ratio, -np.inf).max(axis=-1)
            t = t_lo + rng.random(n) * (t_hi - t_lo)
            z += t[:, None] * u
        points = centre + z @ basis.T
        return self.project(torch.from_numpy(points))


def _dense(
    d: int, inequality: list[BoTorchConstraint], equality: list[BoTorchConstraint]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """BoTorch sparse constraints to ``A_ub x <= b_ub`` and ``A_eq x == b_eq`` numpy arrays."""

    def rows(constraints: list[BoTorchConstraint], sign: float) -> tuple[np.ndarray, np.ndarray]:
        a = np.zeros((len(constraints), d))
        b = np.zeros(len(constraints))
        for i, (idx, coef, rhs) in enumerate(constraints):
            a[i, idx.numpy()] = sign * coef.numpy()
            b[i] = sign * rhs
        return a, b

    a_ub, b_ub = rows(inequality, -1.0)
    a_eq, b_eq = rows(equality, 1.0)
    return a_ub, b_ub, a_eq, b_eq


def _chebyshev_centre(g: np.ndarray, h: np.ndarray, a_eq: np.ndarray, b_eq: np.ndarray) -> np.ndarray:
    """Centre of the largest ball in ``{x: g x <= h, a_eq x == b_eq}`` (within the equality plane)."""
    d = g.shape[1]
    norms = np.linalg.norm(g, axis=1)
    result = linprog(
        c=np.r_[np.zeros(d), -1.0],
        A_ub=np.hstack([g, norms[:, None]]),
        b_ub=h,
        A_eq=np.hstack([a_eq, np.zeros((len(b_eq), 1))]) if len(b_eq) else None,
        b_eq=b_eq if len(b_eq) else None,
        bounds=[(None, None)] * d + [(0, None)],
        method="highs",
    )
    if result.status != 0:
        raise SpecError(
            f"the design space is empty ({result.message}); relax a constraint or widen the bounds"
        )
    return np.asarray(result.x[:d])


def _snap(value: float, lower: float, upper: float) -> float:
    """``value`` moved onto a bound it is within :data:`FIXED_WIDTH` of (avoids 0.19999999999999998)."""
    for bound in (lower, upper):
        if abs(value - bound) <= FIXED_WIDTH:
            return float(bound)
    return value


_CACHE: dict[str, DesignSpace] = {}
_CACHE_SIZE = 64


def design_space(spec: CampaignSpec) -> DesignSpace:
    """Build (or reuse) the :class:`DesignSpace` of ``spec``.

    Raises:
        SpecError: No composition satisfies the spec (cannot happen for a validated spec).
    """
    key = spec.model_dump_json()
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _build(spec)
    return _CACHE[key]


def _build(spec: CampaignSpec) -> DesignSpace:
    """Tensors for all components, then the tightest bounds by LP, then pinned components removed."""
    names = spec.component_names
    d = len(names)
    scale = spec.unit_scale
    lower = np.array([c.lower / scale for c in spec.components])
    upper = np.array([c.upper / scale for c in spec.components])
    a_ub = np.zeros((len(spec.constraints), d))
    b_ub = np.zeros(len(spec.constraints))
    for i, constraint in enumerate(spec.constraints):
        sign = 1.0 if constraint.operator == "<=" else -1.0
        for name, coef in constraint.coefficients.items():
            a_ub[i, names.index(name)] = sign * coef
        b_ub[i] = sign * constraint.rhs / scale
    a_eq = np.ones((1, d)) if spec.sum_rule is not None else np.zeros((0, d))
    b_eq = np.ones(1) if spec.sum_rule is not None else np.zeros(0)

    lo, hi = lower.copy(), upper.copy()
    if len(b_ub) or len(b_eq):
        for j in range(d):
            for sign, out in ((1.0, lo), (-1.0, hi)):
                result = linprog(
                    c=sign * np.eye(d)[j],
                    A_ub=a_ub if len(b_ub) else None,
                    b_ub=b_ub if len(b_ub) else None,
                    A_eq=a_eq if len(b_eq) else None,
                    b_eq=b_eq if len(b_eq) else None,
                    bounds=list(zip(lower, upper, strict=True)),
                    method="highs",
                )
                if result.status != 0:
                    raise SpecError(
                        f"no composition satisfies the bounds and constraints ({result.message});"
                        " relax a constraint or widen the bounds"
                    )
                out[j] = result.x[j]
        lo, hi = np.maximum(lo, lower), np.minimum(hi, upper)

    free = [j for j in range(d) if hi[j] - lo[j] > FIXED_WIDTH]
    pinned = {
        names[j]: _snap(float((lo[j] + hi[j]) / 2), lower[j], upper[j]) for j in range(d) if j not in free
    }
    pinned_x = np.array([pinned.get(n, 0.0) for n in names])

    def sparse(a: np.ndarray, b: np.ndarray, sign: float) -> list[BoTorchConstraint]:
        out = []
        for row, rhs in zip(a, b, strict=True):
            idx = [k for k, j in enumerate(free) if row[j] != 0.0]
            if not idx:
                continue
            coef = torch.tensor([sign * row[free[k]] for k in idx], dtype=DTYPE)
            out.append((torch.tensor(idx, dtype=torch.long), coef, float(sign * (rhs - row @ pinned_x))))
        return out

    return DesignSpace(
        spec=spec,
        names=tuple(names[j] for j in free),
        fixed=pinned,
        bounds=torch.tensor(np.array([lo[free], hi[free]]), dtype=DTYPE).reshape(2, len(free)),
        equality_constraints=sparse(a_eq, b_eq, 1.0),
        inequality_constraints=sparse(a_ub, b_ub, -1.0),
    )
