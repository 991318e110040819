"""The mixing plan: which volume of which stock makes a composition, and when stocks run out.

A composition is a set of fractions on a *basis*:

- ``volume`` (vol.%): each component's share of the mixed stock volumes. Concentrations do not enter.
- ``mole`` (mol.%, at.% for elements) and ``mass`` (wt.%): each component's share of the amount of
  substance or of the mass the stocks deliver. A stock supplies its component at its
  ``concentration`` (``mol/L``, ``mmol/L``, ``mg/mL`` or ``g/L``); converting between mass and amount
  needs the component's molar mass, from the stock's ``molar_mass_g_mol`` or, for element and formula
  names (``Cu``, ``TiO2``), from pymatgen's element data. When no stock states a concentration the
  stocks share one, and volume shares are composition shares on every basis.

Each component's stock volume is proportional to its fraction divided by its stock's strength. How
the sample volume is filled (the rule):

1. With a ``solvent`` stock (``component: solvent``), every sample holds the same amount of solute:
   the most that fits in the sample volume for every composition within the bounds. A composition
   that needs less stock volume is topped up with solvent.
2. Without a solvent stock, when the top-up would be below the pipette minimum, or when topping up
   would make a component its lower bound keeps in too small to pipette, the stock volumes are scaled
   to fill the sample: the composition stays right, the solute amount varies.

With stocks of equal strength (the volume basis, or no concentrations) both rules give the same
volumes. Volumes are rounded to the pipette resolution with largest-remainder rounding, so they add up
to the sample volume exactly; a component whose volume is below the pipette minimum is left out (its
share goes to the others) unless its lower bound forbids it. :func:`composition_of` reports what the
rounded volumes actually make.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Literal

from athanor.errors import SafetyError, SpecError
from athanor.lab import Stock

__all__ = [
    "CONCENTRATION_UNITS",
    "LOW_STOCK_FRACTION",
    "RESOLUTION_UL",
    "SOLVENT",
    "Basis",
    "amounts_per_ul",
    "apportion",
    "composition_of",
    "mixing_plan",
    "molar_mass",
    "running_low",
    "stock_forecast",
]

Basis = Literal["volume", "mole", "mass"]

#: Volume resolution of the liquid handler, µL.
RESOLUTION_UL = 0.1
#: The ``component`` of a stock of pure solvent.
SOLVENT = "solvent"
#: A stock is running low below this fraction of its starting volume.
LOW_STOCK_FRACTION = 0.1
#: Concentration unit to (what it counts, that amount in one µL of a stock at concentration 1).
CONCENTRATION_UNITS: dict[str, tuple[Literal["mole", "mass"], float]] = {
    "mol/L": ("mole", 1e-6),
    "mmol/L": ("mole", 1e-9),
    "g/L": ("mass", 1e-6),
    "mg/mL": ("mass", 1e-6),
}
_UNIT_ALIASES = {"M": "mol/L", "mM": "mmol/L"} | {unit.lower(): unit for unit in CONCENTRATION_UNITS}
# Hydrogen isotopes pymatgen would read into names such as D1 or P3HT.
_NOT_ELEMENTS = {"D", "T"}
_VOLUME_TOL = 1e-6  # µL
_TICK_TOL = 1e-9  # resolution steps


def apportion(weights: Sequence[float], total: int) -> list[int]:
    """Split ``total`` integer units in proportion to ``weights`` (largest-remainder method).

    Args:
        weights: Non-negative weights with a positive sum.
        total: Units to hand out, e.g. the sample volume in resolution steps.

    Returns:
        Non-negative integers that add up to ``total``; a zero weight gets zero.
    """
    weight_sum = sum(weights)
    exact = [w / weight_sum * total for w in weights]
    counts = [math.floor(e + 1e-9) for e in exact]
    remainders = sorted(
        (i for i, w in enumerate(weights) if w > 0),
        key=lambda i: (-(exact[i] - counts[i]), -weights[i], i),
    )
    for i in remainders[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _formula_mass(name: str) -> float | None:
    """Molar mass (g/mol) of an element or formula name, or None when the name is not one."""
    symbols = re.findall(r"[A-Z][a-z]?", name)
    if not symbols or _NOT_ELEMENTS & set(symbols):
        return None
    from pymatgen.core import Composition, Element

    if not all(Element.is_valid_symbol(s) for s in symbols):
        return None
    try:
        return float(Composition(name).weight)
    except (ValueError, KeyError, AttributeError, TypeError):
        return None


def molar_mass(
    component: str, stock: Stock | None = None, component_data: Mapping[str, float] | None = None
) -> float:
    """Molar mass of a component, g/mol.

    Taken from, in order: the stock's ``molar_mass_g_mol``, ``component_data``, and pymatgen for a
    component named by an element or a formula (``Cu``, ``TiO2``). A name that also reads as a formula
    (``PS``) is taken as one: give ``molar_mass_g_mol`` for such names.

    Args:
        component: Component name.
        stock: The stock that supplies it, if any.
        component_data: Molar masses already known, g/mol, by component.

    Raises:
        athanor.errors.SpecError: None of these gives a molar mass; names the stock and the fix.
    """
    if stock is not None and stock.molar_mass_g_mol is not None:
        return stock.molar_mass_g_mol
    if component_data and component in component_data:
        return float(component_data[component])
    mass = _formula_mass(component)
    if mass is None:
        where = f"stock {stock.name}" if stock is not None else f"component {component}"
        raise SpecError(
            f"{where}: {component!r} is not an element or a chemical formula, so its molar mass is unknown;"
            f" add molar_mass_g_mol (g/mol) to the stock that supplies it in lab.yaml"
            f" (e.g. molar_mass_g_mol: 166.3 for the P3HT repeat unit)"
        )
    return mass


def _stocks_by_component(components: Sequence[str], stocks: Sequence[Stock]) -> dict[str, Stock]:
    """The stock that supplies each component (the first one listed)."""
    chosen: dict[str, Stock] = {}
    for stock in stocks:
        chosen.setdefault(stock.component, stock)
    missing = [c for c in components if c not in chosen]
    if missing:
        raise SpecError(
            f"no stock supplies component(s) {', '.join(missing)}; add a stock for each under stocks in"
            f" lab.yaml (stocks: - {{name: {missing[0]}_stock, component: {missing[0]}, volume_ul: 20000}})"
        )
    return {c: chosen[c] for c in components}


def _unit_of(stock: Stock) -> str:
    raw = (stock.concentration_unit or "").replace(" ", "")
    unit = _UNIT_ALIASES.get(raw) or _UNIT_ALIASES.get(raw.lower())
    if unit is None:
        raise SpecError(
            f"stock {stock.name}: concentration_unit {stock.concentration_unit!r} is not known; use one of"
            f" {', '.join(CONCENTRATION_UNITS)}"
        )
    return unit


def amounts_per_ul(
    components: Sequence[str],
    basis: Basis,
    stocks: Sequence[Stock],
    component_data: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """How much of each component one µL of its stock delivers, on ``basis``.

    Args:
        components: Component names.
        basis: ``volume``, ``mole`` or ``mass``.
        stocks: The lab's stocks; the first stock of a component supplies it.
        component_data: Molar masses already known, g/mol, by component (see :func:`molar_mass`).

    Returns:
        Component to amount per µL: µL on the volume basis, mol on the mole basis, g on the mass
        basis; 1.0 for every component when none of their stocks states a concentration.

    Raises:
        athanor.errors.SpecError: A component has no stock, some stocks state a concentration and
            others do not, a unit is unknown, or a needed molar mass is unknown.
    """
    if basis not in ("volume", "mole", "mass"):
        raise SpecError(f"basis {basis!r} is not known; use volume, mole or mass")
    supply = _stocks_by_component(components, stocks)
    given = [s for s in supply.values() if s.concentration is not None]
    if basis == "volume" or not given:
        return dict.fromkeys(components, 1.0)
    lacking = sorted({s.name for s in supply.values() if s.concentration is None})
    if lacking:
        raise SpecError(
            f"the {basis} basis needs every stock's concentration, and stock(s) {', '.join(lacking)}"
            f" give none; add concentration and concentration_unit to them in lab.yaml"
        )
    amounts = {}
    for component, stock in supply.items():
        counts, per_ul = CONCENTRATION_UNITS[_unit_of(stock)]
        amount = float(stock.concentration or 0.0) * per_ul
        if counts != basis:
            mass = molar_mass(component, stock, component_data)
            amount = amount * mass if basis == "mass" else amount / mass
        amounts[component] = amount
    return amounts


def _largest_demand(per_amount: list[float], bounds: list[tuple[float, float]] | None) -> float:
    """Most stock volume per unit of solute any composition within ``bounds`` needs (a greedy LP)."""
    if bounds is None:
        return max(per_amount)
    lows = [min(max(low, 0.0), 1.0) for low, _ in bounds]
    highs = [min(max(high, low), 1.0) for low, high in zip(lows, (h for _, h in bounds), strict=True)]
    room = 1.0 - sum(lows)
    if room < -_TICK_TOL or sum(highs) < 1.0 - _TICK_TOL:
        return max(per_amount)
    amounts = list(lows)
    for i in sorted(range(len(amounts)), key=lambda i: -per_amount[i]):
        extra = min(highs[i] - lows[i], max(room, 0.0))
        amounts[i] += extra
        room -= extra
    return sum(a * p for a, p in zip(amounts, per_amount, strict=True))


def _below_minimum(
    exact: list[float],
    names: list[str],
    lowers: list[float],
    min_ticks: int,
    n_ticks: int,
    resolution_ul: float,
    min_volume_ul: float,
    fractions: list[float],
) -> list[int]:
    """Indices of components too small to pipette; refuses one whose lower bound keeps it in."""
    dropped = []
    for i, ticks in enumerate(exact):
        if 0 < ticks < min_ticks - _TICK_TOL:
            if lowers[i] > 1.0 / n_ticks:
                needed = fractions[i] / sum(fractions) * min_ticks / ticks
                raise SpecError(
                    f"{names[i]} needs {ticks * resolution_ul:.2f} µL, below the pipette's minimum of"
                    f" {min_volume_ul:g} µL, and its lower bound ({lowers[i]:g} of the total) forbids"
                    f" leaving it out; raise its amount to at least {needed:.3g} of the total, lower its"
                    " bound to 0, raise sample_volume_ul or use a more dilute stock"
                )
            dropped.append(i)
    return dropped


def mixing_plan(
    target: Mapping[str, float],
    basis: Basis,
    stocks: Sequence[Stock],
    total_volume_ul: float,
    component_data: Mapping[str, float] | None = None,
    *,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    min_volume_ul: float = 0.0,
    resolution_ul: float = RESOLUTION_UL,
) -> dict[str, float]:
    """Stock volumes that make ``target`` in a sample of ``total_volume_ul`` (see the module rule).

    Args:
        target: Component to amount on ``basis``, as fractions of one (proportions are normalised).
        basis: ``volume``, ``mole`` or ``mass``.
        stocks: The lab's stocks, a ``solvent`` stock included if there is one.
        total_volume_ul: Sample volume, µL; a multiple of ``resolution_ul``.
        component_data: Molar masses already known, g/mol, by component (see :func:`molar_mass`).
        bounds: Component to (lower, upper) bounds in fractions of one. Lower bounds above one
            resolution step keep a component in; the bounds also fix the solute amount per sample
            when a solvent tops samples up (None: any composition, from 0 to 1 each).
        min_volume_ul: Smallest volume the pipette may move, µL.
        resolution_ul: Volume step of the pipette, µL.

    Returns:
        Stock name to volume in µL, components in ``target`` order then the solvent, each a multiple
        of ``resolution_ul`` and at least ``min_volume_ul``; the volumes add up to
        ``total_volume_ul``. Stocks with nothing to give are left out.

    Raises:
        athanor.errors.SpecError: A bad target or sample volume, a missing stock, concentration or
            molar mass, or a component below the pipette minimum that its lower bound keeps in.
        athanor.errors.SafetyError: The composition needs more stock volume than fits in the sample.
    """
    names = list(target)
    fractions = [float(target[n]) for n in names]
    bad = [n for n, f in zip(names, fractions, strict=True) if not math.isfinite(f) or f < 0]
    if bad or sum(fractions) <= 0:
        raise SpecError(
            f"target: {', '.join(bad) or 'every amount'} must be finite, >= 0 and not all 0;"
            f" got {dict(target)}"
        )
    n_ticks = round(total_volume_ul / resolution_ul)
    if n_ticks <= 0 or abs(n_ticks * resolution_ul - total_volume_ul) > _VOLUME_TOL:
        raise SpecError(
            f"sample volume {total_volume_ul:g} µL is not a positive multiple of the {resolution_ul:g} µL"
            " pipetting resolution; round lab.sample_volume_ul"
        )
    strength = amounts_per_ul(names, basis, stocks, component_data)
    supply = _stocks_by_component(names, stocks)
    top = max(strength.values())
    per_amount = [top / strength[n] for n in names]  # µL per unit of solute; exactly 1.0 when equal
    min_ticks = max(1, math.ceil(min_volume_ul / resolution_ul - _TICK_TOL))
    bound_list = None if bounds is None else [bounds.get(n, (0.0, 1.0)) for n in names]
    lowers = [0.0] * len(names) if bound_list is None else [low for low, _ in bound_list]
    solvent = next((s for s in stocks if s.component == SOLVENT and SOLVENT not in target), None)

    ticks = None
    if solvent is not None:
        ticks = _filled(
            fractions, per_amount, bound_list, lowers, names, n_ticks, min_ticks, min_volume_ul, resolution_ul
        )
    if ticks is None:
        weights = [f * p for f, p in zip(fractions, per_amount, strict=True)]
        weight_sum = sum(weights)
        shares = [w / weight_sum for w in weights]
        exact = [s * n_ticks for s in shares]
        dropped = _below_minimum(
            exact, names, lowers, min_ticks, n_ticks, resolution_ul, min_volume_ul, fractions
        )
        for i in dropped:
            shares[i] = 0.0
        if sum(shares) <= 0:
            raise SpecError(
                f"every component is below the pipette's minimum volume of {min_volume_ul:g} µL;"
                " raise sample_volume_ul"
            )
        ticks = [*apportion(shares, n_ticks), 0]

    plan = {}
    for name, count in zip(names, ticks, strict=False):
        if count:
            plan[supply[name].name] = round(count * resolution_ul, 9)
    if ticks[-1] and solvent is not None:
        plan[solvent.name] = round(ticks[-1] * resolution_ul, 9)
    return plan


def _filled(
    fractions: list[float],
    per_amount: list[float],
    bounds: list[tuple[float, float]] | None,
    lowers: list[float],
    names: list[str],
    n_ticks: int,
    min_ticks: int,
    min_volume_ul: float,
    resolution_ul: float,
) -> list[int] | None:
    """Rounded ticks of each component plus the solvent top-up.

    Returns None (scale instead) when the top-up would be below the pipette minimum, or when topping up
    would make a component that its lower bound keeps in too small to pipette.
    """
    capacity = _largest_demand(per_amount, bounds)
    total = sum(fractions)
    exact = [f / total * p / capacity * n_ticks for f, p in zip(fractions, per_amount, strict=True)]
    try:
        dropped = set(
            _below_minimum(exact, names, lowers, min_ticks, n_ticks, resolution_ul, min_volume_ul, fractions)
        )
    except SpecError:
        return None  # too dilute to pipette once topped up: scaling may still make it
    kept = sum(f for i, f in enumerate(fractions) if i not in dropped)
    if kept <= 0:
        return None
    exact = [
        0.0 if i in dropped else f / kept * p / capacity * n_ticks
        for i, (f, p) in enumerate(zip(fractions, per_amount, strict=True))
    ]
    demand = sum(exact)
    if demand > n_ticks * (1 + 1e-9):
        raise SafetyError(
            f"the composition needs {demand * resolution_ul:.1f} µL of stock, more than the"
            f" {n_ticks * resolution_ul:g} µL sample holds; keep it within the bounds the solute amount"
            " per sample was set for, or use more concentrated stocks"
        )
    top_up = n_ticks - demand
    if top_up < min_ticks - _TICK_TOL:
        return None
    return apportion([*exact, top_up], n_ticks)


def composition_of(
    volumes_ul: Mapping[str, float],
    components: Sequence[str],
    basis: Basis,
    stocks: Sequence[Stock],
    component_data: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """The composition some stock volumes make, as fractions of one on ``basis``.

    Args:
        volumes_ul: Stock name to volume, µL or any one unit (e.g. resolution steps): only ratios
            count. A solvent stock's volume is ignored.
        components: Every component to report, in order; absent ones are 0.
        basis: ``volume``, ``mole`` or ``mass``.
        stocks: The lab's stocks.
        component_data: Molar masses already known, g/mol, by component (see :func:`molar_mass`).

    Raises:
        athanor.errors.SpecError: As :func:`amounts_per_ul`, or no component is in the volumes.
    """
    strength = amounts_per_ul(components, basis, stocks, component_data)
    supply = _stocks_by_component(components, stocks)
    amounts = [volumes_ul.get(supply[c].name, 0.0) * strength[c] for c in components]
    total = sum(amounts)
    if total <= 0:
        raise SpecError(f"the volumes {dict(volumes_ul)} hold none of the components {', '.join(components)}")
    return {c: a / total for c, a in zip(components, amounts, strict=True)}


def stock_forecast(
    plans: Sequence[Mapping[str, float]],
    on_hand: Mapping[str, float],
    labels: Sequence[str] | None = None,
) -> list[str]:
    """Stocks that would run dry if ``plans`` were made in order, one message each.

    Args:
        plans: Stock name to µL drawn, per sample, in the order they will be made.
        on_hand: Stock name to µL left now; a stock not listed has none.
        labels: A name per plan (e.g. experiment ids); default ``sample 1``, ``sample 2``, ...

    Returns:
        For each stock that runs out, in the order they do, a message naming the stock, what is left
        before the first sample it cannot supply, what that sample needs and the fix. Empty when
        every plan can be made.
    """
    names = list(labels) if labels is not None else [f"sample {i + 1}" for i in range(len(plans))]
    left = dict(on_hand)
    short: dict[str, str] = {}
    for index, plan in enumerate(plans):
        for stock, volume in plan.items():
            if stock in short:
                continue
            available = left.get(stock, 0.0)
            if volume > available + _VOLUME_TOL:
                after = f" after {names[index - 1]}" if index else ""
                short[stock] = (
                    f"stock {stock} has {max(available, 0.0):g} µL left{after}; {names[index]} needs"
                    f" {volume:g} µL: refill it and resume with `athanor resume RUN --refill {stock}=<µL>`"
                )
            left[stock] = available - volume
    return list(short.values())


def running_low(
    before: Mapping[str, float],
    after: Mapping[str, float],
    start: Mapping[str, float],
    fraction: float = LOW_STOCK_FRACTION,
) -> list[str]:
    """Stocks that fall below ``fraction`` of their filled volume between ``before`` and ``after``.

    Args:
        before: Stock name to µL left before some samples are made.
        after: Stock name to µL left after them.
        start: Stock name to µL it held when last filled (the campaign's start, or its latest refill).
        fraction: The warning level, as a fraction of ``start``.

    Returns:
        A message per stock that crossed the level, naming what is left.
    """
    messages = []
    for stock, initial in start.items():
        level = fraction * initial
        now, then = after.get(stock, initial), before.get(stock, initial)
        if now < level <= then:
            messages.append(
                f"stock {stock} is running low: {max(now, 0.0):g} µL left of {initial:g} µL"
                f" (below {fraction:.0%}); refill it soon"
            )
    return messages
