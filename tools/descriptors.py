"""Physics descriptors of a composition, as a differentiable function and as extra model inputs.

A spec whose components are elements or chemical formulas (``Cu``, ``TiO2``; parsed with pymatgen's
``Composition``) may list :attr:`CampaignSpec.descriptors`. Each is computed from the *atomic
fractions* ``c_i`` of the elements in a composition and element data ``p_i`` from pymatgen:

- ``radius_mean``: ``r_mean = sum_i c_i r_i``, Å.
- ``radius_mismatch``: ``delta = sqrt(sum_i c_i (1 - r_i / r_mean)^2)``, dimensionless (x100 for the
  percentage the alloy literature quotes).
- ``electronegativity_mean``: ``chi_mean = sum_i c_i chi_i``, Pauling units.
- ``electronegativity_spread``: ``sqrt(sum_i c_i (chi_i - chi_mean)^2)``, Pauling units.
- ``valence_electrons_mean``: ``sum_i c_i VEC_i``, electrons per atom.
- ``mixing_entropy``: ideal mixing entropy ``-sum_i c_i ln c_i`` (``0 ln 0 = 0``), in units of the gas
  constant R per mole of atoms (x8.314 for J/(mol K)).

Element data: ``r_i`` is ``Element.atomic_radius`` (pymatgen's empirical atomic radius, Å);
``chi_i`` is ``Element.X`` (Pauling electronegativity); ``VEC_i`` follows the valence-electron count
of the alloy literature (Guo et al., J. Appl. Phys. 109, 103505, 2011) from ``Element.group``: the
group number for groups 1-12, the group minus 10 for groups 13-18, at most the atomic number (H 1,
He 2, Fe 8, Cu 11, Al 3, Sn 4; pymatgen puts lanthanides and actinides in group 3, so they count 3).
An element pymatgen lacks a value for is refused.

Atomic fractions: the amounts (fractions of one on the spec's :attr:`CampaignSpec.basis`, the fixed
components included) are turned into moles of formula units and then into atoms, and normalised to
sum to one (so a spec without a sum rule works with the proportions):

- ``mole``: the amounts are moles of formula units (at.% for elements).
- ``mass``: moles are ``w_k / M_k``, with ``M_k`` the formula's molar mass from pymatgen.
- ``volume``: the amounts are read as moles of formula units, which holds when every stock has the
  same molar concentration (what :mod:`tools.mixing` assumes when no stock states one). Otherwise
  use the ``mole`` or ``mass`` basis so the descriptors describe the sample.

Atoms of element ``e`` are ``sum_k n_k * atoms_ke``; ``c_e`` is that over the sum for all elements.
Every step is a torch operation, so gradients flow from descriptors to the amounts; at a pure
corner the square roots and ``ln`` are guarded so values are exact and gradients finite.

:func:`descriptor_inputs` builds the model's input transform: it appends the spec's descriptors,
each scaled to ``[0, 1]`` over its range on the design space, to the amounts, and normalises the
amounts over the design-space bounds. The acquisition is still optimised over the amounts.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from functools import lru_cache

import torch
from botorch.models.transforms.input import ChainedInputTransform, InputTransform, Normalize
from torch import Tensor

from athanor.errors import SpecError
from athanor.spec import DESCRIPTOR_NAMES, CampaignSpec, DescriptorName, formula_elements
from tools.design_space import DTYPE, DesignSpace

__all__ = [
    "DESCRIPTOR_NAMES",
    "DESCRIPTOR_UNITS",
    "CompositionDescriptors",
    "DescriptorFeatures",
    "DescriptorName",
    "descriptor_inputs",
    "descriptor_table",
    "valence_electrons",
]

#: Unit of each descriptor.
DESCRIPTOR_UNITS: dict[str, str] = {
    "radius_mean": "Å",
    "radius_mismatch": "1",
    "electronegativity_mean": "Pauling",
    "electronegativity_spread": "Pauling",
    "valence_electrons_mean": "e/atom",
    "mixing_entropy": "R",
}
#: Feasible points sampled to find each descriptor's range on a design space.
_RANGE_SAMPLES = 256
#: Below this a sum of squares is treated as 0 (sqrt has an infinite slope there).
_TINY = 1e-30
#: Atomic fractions are clamped to this inside ``ln`` (the term ``c ln c`` itself is 0 at 0).
_LOG_FLOOR = 1e-12


def valence_electrons(symbol: str) -> int:
    """Valence electron count of an element from pymatgen's ``Element.group`` (see the module doc)."""
    from pymatgen.core import Element

    element = Element(symbol)
    group = int(element.group)
    return min(group if group <= 12 else group - 10, int(element.Z))


def _element_values(symbol: str) -> tuple[float, float, float]:
    """Atomic radius (Å), Pauling electronegativity and valence electrons of one element (NaN if unknown)."""
    from pymatgen.core import Element

    element = Element(symbol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns before answering NaN for noble gases
        radius = element.atomic_radius
        chi = float(element.X)
    return (float(radius) if radius is not None else math.nan, chi, float(valence_electrons(symbol)))


class CompositionDescriptors:
    """The descriptors of compositions of one spec's components, as a differentiable torch function.

    Attributes:
        spec: The campaign spec.
        names: The descriptors computed, in order (the spec's, or every one when it lists none).
        elements: Element symbols, the columns of :attr:`atoms`.
        atoms: ``n_components x n_elements``: atoms of each element per unit amount of each component
            (per mole of formula units on the mole and volume bases, per gram on the mass basis).
        radius: Atomic radius of each element, Å (``n_elements``).
        electronegativity: Pauling electronegativity of each element (``n_elements``).
        valence: Valence electron count of each element (``n_elements``).
    """

    def __init__(self, spec: CampaignSpec, names: Sequence[str] | None = None) -> None:
        """Look up the element data of ``spec``'s components.

        Args:
            spec: The campaign spec; its components must be elements or chemical formulas.
            names: Descriptors to compute; default the spec's, or every one when it lists none.

        Raises:
            SpecError: A name is not a descriptor, a component is not an element or a formula, or
                pymatgen lacks an element value a chosen descriptor needs.
        """
        chosen = list(names) if names is not None else list(spec.descriptors or DESCRIPTOR_NAMES)
        unknown = [n for n in chosen if n not in DESCRIPTOR_NAMES]
        if unknown:
            raise SpecError(
                f"unknown descriptor(s) {', '.join(map(repr, unknown))}; choose from"
                f" {', '.join(DESCRIPTOR_NAMES)}"
            )
        self.spec = spec
        self.names: tuple[str, ...] = tuple(chosen)
        parsed = {c: formula_elements(c) for c in spec.component_names}
        bad = [c for c, atoms in parsed.items() if atoms is None]
        if bad:
            raise SpecError(
                f"component(s) {', '.join(bad)} are not elements or chemical formulas, and descriptors"
                " need chemical formulas (Cu, TiO2) to look up element data; rename the components to"
                " their formulas or drop descriptors from the spec"
            )
        formulas = {c: atoms or {} for c, atoms in parsed.items()}
        self.elements: tuple[str, ...] = tuple(dict.fromkeys(e for atoms in formulas.values() for e in atoms))
        rows = []
        for component, atoms in formulas.items():
            per_unit = 1.0
            if spec.basis == "mass":
                from pymatgen.core import Composition

                per_unit = 1.0 / float(Composition(component).weight)  # mol of formula units per gram
            rows.append([atoms.get(e, 0.0) * per_unit for e in self.elements])
        self.atoms = torch.tensor(rows, dtype=DTYPE)
        values = {e: _element_values(e) for e in self.elements}
        needs = {"radius": 0, "electronegativity": 1}
        for prefix, column in needs.items():
            used = [n for n in self.names if n.startswith(prefix)]
            lacking = [e for e in self.elements if not math.isfinite(values[e][column])]
            if used and lacking:
                what = "atomic radius" if prefix == "radius" else "Pauling electronegativity"
                raise SpecError(
                    f"pymatgen has no {what} for {', '.join(lacking)}, so {', '.join(used)} cannot be"
                    " computed; drop those descriptors"
                )
        table = torch.tensor([values[e] for e in self.elements], dtype=DTYPE).reshape(-1, 3)
        self.radius, self.electronegativity, self.valence = table.unbind(-1)

    def atomic_fractions(self, fractions: Tensor) -> Tensor:
        """Atomic fractions (``... x n_elements``, summing to 1) of ``... x n_components`` amounts."""
        counts = fractions @ self.atoms
        return counts / counts.sum(dim=-1, keepdim=True).clamp_min(_TINY)

    def __call__(self, fractions: Tensor) -> Tensor:
        """The descriptors of compositions.

        Args:
            fractions: ``... x n_components`` amounts as fractions of one on the spec's basis, in
                spec component order (every component, the fixed ones included).

        Returns:
            ``... x len(names)`` descriptor values, in :attr:`names` order, in the units of
            :data:`DESCRIPTOR_UNITS`; differentiable in ``fractions``.
        """
        c = self.atomic_fractions(fractions)
        columns = {}
        for name in self.names:
            columns[name] = self._one(name, c)
        return torch.stack([columns[n] for n in self.names], dim=-1)

    def _one(self, name: str, c: Tensor) -> Tensor:
        """One descriptor (shape ``...``) of atomic fractions ``c`` (``... x n_elements``)."""
        if name == "mixing_entropy":
            return 0.0 - (c * c.clamp_min(_LOG_FLOOR).log()).sum(dim=-1)  # 0 - (-0.0) is +0.0 at a corner
        if name == "valence_electrons_mean":
            return c @ self.valence
        if name.startswith("radius"):
            mean = c @ self.radius
            if name == "radius_mean":
                return mean
            return _sqrt(((1.0 - self.radius / mean.unsqueeze(-1)) ** 2 * c).sum(dim=-1))
        mean = c @ self.electronegativity
        if name == "electronegativity_mean":
            return mean
        return _sqrt(((self.electronegativity - mean.unsqueeze(-1)) ** 2 * c).sum(dim=-1))

    def of_compositions(self, compositions: Sequence[Mapping[str, float]]) -> Tensor:
        """``n x len(names)`` descriptors of compositions given in the spec's unit.

        Raises:
            SpecError: A composition lacks a component of the spec.
        """
        rows = []
        for i, composition in enumerate(compositions):
            missing = [n for n in self.spec.component_names if n not in composition]
            if missing:
                raise SpecError(
                    f"composition {i} lacks component(s) {', '.join(missing)}; give an amount for every"
                    f" component of the spec ({', '.join(self.spec.component_names)})"
                )
            fractions = self.spec.to_unit_fractions(
                {n: float(composition[n]) for n in self.spec.component_names}
            )
            rows.append([fractions[n] for n in self.spec.component_names])
        x = torch.tensor(rows, dtype=DTYPE).reshape(len(rows), len(self.spec.component_names))
        with torch.no_grad():
            return self(x)


def _sqrt(value: Tensor) -> Tensor:
    """``sqrt(value)`` that is exactly 0, with a zero gradient, where ``value`` is (about) 0."""
    positive = value > _TINY
    return torch.where(positive, value.clamp_min(_TINY).sqrt(), torch.zeros_like(value))


def descriptor_table(
    spec: CampaignSpec, compositions: Sequence[Mapping[str, float]], names: Sequence[str] | None = None
) -> list[dict[str, float]]:
    """The descriptors of some compositions, for a report.

    Args:
        spec: The campaign spec; its components must be elements or chemical formulas.
        compositions: Component name to amount in the spec's unit, e.g. the observed compositions.
        names: Descriptors to compute; default the spec's, or every one when it lists none.

    Returns:
        One ``{descriptor name: value}`` per composition, values in :data:`DESCRIPTOR_UNITS`.

    Raises:
        SpecError: As :class:`CompositionDescriptors`, or a composition lacks a component.
    """
    calc = CompositionDescriptors(spec, names)
    values = calc.of_compositions(compositions)
    return [dict(zip(calc.names, row, strict=True)) for row in values.tolist()]


class DescriptorFeatures(InputTransform):
    """Appends scaled descriptors to model inputs whose first ``d`` columns are a space's amounts.

    ``X`` (``batch x n x m``, ``m >= d``) becomes ``batch x n x (m + k)``: the ``k`` descriptors of
    the composition in the first ``d`` columns (unit fractions of the free components; the fixed
    components are added back), each mapped to ``(value - lower) / width``.
    """

    def __init__(
        self, calc: CompositionDescriptors, space: DesignSpace, lower: Tensor, width: Tensor
    ) -> None:
        """Build the transform.

        Args:
            calc: The descriptors of the space's spec.
            space: The design space whose free components are the first ``d`` input columns.
            lower: ``k`` values mapped to 0, in descriptor units.
            width: ``k`` positive ranges mapped to 1, in descriptor units.
        """
        super().__init__()
        self.transform_on_train = True
        self.transform_on_eval = True
        self.transform_on_fantasize = True
        self.calc = calc
        self.dim = space.dim
        names = space.spec.component_names
        embed = torch.zeros(space.dim, len(names), dtype=DTYPE)
        for i, name in enumerate(space.names):
            embed[i, names.index(name)] = 1.0
        offset = torch.tensor([space.fixed.get(n, 0.0) for n in names], dtype=DTYPE)
        self.register_buffer("embed", embed)
        self.register_buffer("offset", offset)
        self.register_buffer("lower", lower.to(DTYPE))
        self.register_buffer("width", width.to(DTYPE))

    @property
    def n_features(self) -> int:
        """Number ``k`` of appended columns."""
        return len(self.calc.names)

    @property
    def names(self) -> list[str]:
        """The appended descriptors, in column order."""
        return list(self.calc.names)

    def fractions(self, x: Tensor) -> Tensor:
        """Every component's unit fraction (``... x n_components``) from ``... x m`` inputs."""
        return x[..., : self.dim] @ self.embed + self.offset

    def transform(self, X: Tensor) -> Tensor:
        """``... x m`` inputs with the scaled descriptors appended (``... x (m + k)``)."""
        scaled = (self.calc(self.fractions(X)) - self.lower) / self.width
        return torch.cat([X, scaled], dim=-1)


@lru_cache(maxsize=32)
def _space_range(space: DesignSpace, names: tuple[str, ...]) -> tuple[Tensor, Tensor]:
    """Smallest and largest value (``k`` each) of each descriptor over feasible samples of ``space``."""
    calc = CompositionDescriptors(space.spec, names)
    probe = DescriptorFeatures(calc, space, torch.zeros(len(names)), torch.ones(len(names)))
    with torch.no_grad():
        values = calc(probe.fractions(space.sample(_RANGE_SAMPLES, seed=0)))
    return values.min(dim=0).values, values.max(dim=0).values


def descriptor_inputs(space: DesignSpace, x: Tensor) -> ChainedInputTransform:
    """The model's input transform for a spec with descriptors.

    Appends the spec's descriptors, each scaled to ``[0, 1]`` over its range on feasible samples of
    ``space`` and the training inputs (a constant descriptor is only shifted), then normalises the
    amounts over ``space.bounds``. Gradients flow through the descriptors to the amounts.

    Args:
        space: The design space; its spec lists the descriptors.
        x: ``n x m`` training inputs whose first ``d = space.dim`` columns are unit fractions of the
            free components (further columns are passed through).

    Returns:
        A transform from ``... x m`` inputs to ``... x (m + k)`` model inputs.

    Raises:
        SpecError: As :class:`CompositionDescriptors`.
    """
    names = tuple(space.spec.descriptors)
    calc = CompositionDescriptors(space.spec, names)
    lower, upper = _space_range(space, names)
    if x.shape[0]:
        probe = DescriptorFeatures(calc, space, lower, torch.ones_like(lower))
        with torch.no_grad():
            seen = calc(probe.fractions(x))
        lower = torch.minimum(lower, seen.min(dim=0).values)
        upper = torch.maximum(upper, seen.max(dim=0).values)
    width = upper - lower
    width = torch.where(width > 1e-9 * upper.abs().clamp_min(1.0), width, torch.ones_like(width))
    features = DescriptorFeatures(calc, space, lower, width)
    m = x.shape[-1]
    normalize = Normalize(m + features.n_features, indices=list(range(space.dim)), bounds=space.bounds)
    return ChainedInputTransform(descriptors=features, normalize=normalize)
