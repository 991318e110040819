"""The coder's tool: compile a proposal into instrument commands, and dry-run a protocol.

The volumes come from :func:`tools.mixing.mixing_plan` on the spec's basis: with stocks of one
concentration on the volume basis a component's share of the sample volume equals its fraction of
one. Volumes are rounded to :data:`RESOLUTION_UL` with largest-remainder rounding so that they always
add up to the sample volume exactly; a share below the liquid handler's minimum volume is left out
and its volume goes to the other components. The protocol reports the composition those rounded
volumes actually make, on the spec's basis.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from athanor.errors import SafetyError, SpecError
from athanor.lab import ACTIONS, MEASURES, NO_LIQUID_HANDLER, InstrumentSpec, LabDescription, match_quantity
from athanor.models import Command, Proposal, Protocol
from athanor.spec import CampaignSpec
from tools.mixing import RESOLUTION_UL, amounts_per_ul, composition_of, mixing_plan

__all__ = ["ACTIONS", "MEASURE_ACTION", "RESOLUTION_UL", "compile_protocol", "validate_protocol"]

#: The action that measures a sample, per measuring instrument kind.
MEASURE_ACTION: dict[str, str] = {"conductivity_meter": "measure", "spectrometer": "measure"}

_SUM_TOL = 1e-6  # fractions of one
_VOLUME_TOL = 1e-6  # µL


def _split(ticks: int, max_ticks: int | None) -> list[int]:
    """Split a volume (in resolution steps) into near-equal parts of at most ``max_ticks``."""
    if max_ticks is None or ticks <= max_ticks:
        return [ticks]
    parts = math.ceil(ticks / max_ticks)
    base, extra = divmod(ticks, parts)
    return [base + 1] * extra + [base] * (parts - extra)


def _pick_instrument(spec: CampaignSpec, lab: LabDescription, kinds: Sequence[str]) -> InstrumentSpec | None:
    """The first instrument of one of ``kinds``: the campaign's own instruments first, then the lab's."""
    by_name = {i.name: i for i in lab.instruments}
    ordered = [by_name[n] for n in spec.instruments if n in by_name] + list(lab.instruments)
    return next((i for i in ordered if i.kind in kinds), None)


def _measuring_instruments(spec: CampaignSpec, lab: LabDescription) -> list[InstrumentSpec]:
    """One instrument per measured quantity (objectives, outcome constraints), without repeats."""
    chosen: list[InstrumentSpec] = []
    objectives = {o.name for o in spec.objectives}
    for name in spec.measured_names:
        kinds = [k for k, quantities in MEASURES.items() if match_quantity(name, quantities)]
        instrument = _pick_instrument(spec, lab, [k for k in kinds if k in MEASURE_ACTION])
        if instrument is None:
            measured = ", ".join(lab.measured_quantities()) or "nothing"
            field = "objectives" if name in objectives else "outcome_constraints"
            raise SpecError(
                f"{field}: no instrument in this lab measures {name!r} (it measures"
                f" {measured}); add an instrument that does to lab.yaml or change the {field[:-1]}"
            )
        if instrument not in chosen:
            chosen.append(instrument)
    return chosen


def _fractions(proposal: Proposal, spec: CampaignSpec) -> tuple[list[float], float]:
    """Each component's amount in fractions of one, and their sum."""
    names = spec.component_names
    missing = [n for n in names if n not in proposal.composition]
    extra = sorted(set(proposal.composition) - set(names))
    if missing or extra:
        raise SpecError(
            f"proposal {proposal.experiment_id}: composition must name exactly the components"
            f" {', '.join(names)} (missing: {', '.join(missing) or 'none'};"
            f" unknown: {', '.join(extra) or 'none'})"
        )
    fractions = []
    for name in names:
        amount = proposal.composition[name]
        if not math.isfinite(amount) or amount < 0:
            raise SpecError(
                f"proposal {proposal.experiment_id}: {name}={amount!r}; amounts must be finite and >= 0"
            )
        fractions.append(amount / spec.unit_scale)
    total = sum(fractions)
    if total <= 0:
        raise SpecError(f"proposal {proposal.experiment_id}: every amount is 0; nothing to dispense")
    if spec.sum_rule is not None and abs(total - 1.0) > _SUM_TOL:
        raise SpecError(
            f"proposal {proposal.experiment_id}: amounts sum to {total * spec.unit_scale:g}, not the"
            f" sum-rule total {spec.unit_scale:g}; rescale the composition"
        )
    return fractions, total


def _volumes(
    proposal: Proposal,
    spec: CampaignSpec,
    lab: LabDescription,
    handler: InstrumentSpec,
    fractions: list[float],
) -> dict[str, float]:
    """Stock name to rounded µL for the proposal (see :func:`tools.mixing.mixing_plan`)."""
    names = spec.component_names
    # the bounds fix the solute amount per sample; proportions without a sum rule have no such bounds
    bounds = None
    if spec.sum_rule is not None:
        bounds = {c.name: (c.lower / spec.unit_scale, c.upper / spec.unit_scale) for c in spec.components}
    try:
        return mixing_plan(
            dict(zip(names, fractions, strict=True)),
            spec.basis,
            lab.stocks,
            lab.sample_volume_ul,
            bounds=bounds,
            min_volume_ul=handler.envelope.min_volume_ul or 0.0,
            resolution_ul=RESOLUTION_UL,
        )
    except (SpecError, SafetyError) as error:
        raise type(error)(f"proposal {proposal.experiment_id}: {error}") from None


def _rounding_tolerance(spec: CampaignSpec, lab: LabDescription, steps: dict[str, int]) -> float:
    """How far (fractions of one) one resolution step per component can move the composition.

    Args:
        spec: The campaign spec.
        lab: The lab.
        steps: Stock name to volume in resolution steps.
    """
    names = spec.component_names
    strength = amounts_per_ul(names, spec.basis, lab.stocks)
    stock_of = {c: lab.stock_for(c).name for c in names}
    made = sum(steps.get(stock_of[c], 0) * strength[c] for c in names)
    return sum(strength[c] for c in names) / made


def compile_protocol(proposal: Proposal, spec: CampaignSpec, lab: LabDescription, well: str) -> Protocol:
    """The commands that make and measure ``proposal`` in ``well``.

    Dispenses (one per component present, split when above the handler's maximum volume), then
    ``mix``, then ``measure`` on the instrument that measures each objective. Command keys are left
    empty for the engine to set. The proposal's categorical choices are checked against the spec and
    carried on the protocol (and from there to the observation); no choice adds a command.

    Args:
        proposal: The composition to make, in the spec's unit.
        spec: The campaign spec (components, bounds, unit, objectives).
        lab: The lab (stocks, sample volume, instruments and their envelopes).
        well: The well that will hold the sample.

    Returns:
        The protocol; ``volumes_ul`` maps stock names to µL (adding up to ``lab.sample_volume_ul``)
        and ``composition`` is what those volumes make, in the spec's unit.

    Raises:
        athanor.errors.SpecError: The proposal does not fit the spec, a component has no stock, a
            share is too small to pipette and may not be left out, a categorical choice is missing or
            not an option, or no instrument measures an objective.
        athanor.errors.SafetyError: The compiled protocol fails :func:`validate_protocol`.
    """
    unstocked = [n for n in spec.component_names if n not in {s.component for s in lab.stocks}]
    if unstocked:
        listed = ", ".join(unstocked)
        raise SpecError(
            f"no stock supplies component(s) {listed}; add a stock for each in lab.yaml"
            f" (stocks: - {{name: {unstocked[0]}_stock, component: {unstocked[0]}, volume_ul: 20000}})"
        )
    handler = _pick_instrument(spec, lab, ["liquid_handler"])
    if handler is None:
        raise SpecError(f"{NO_LIQUID_HANDLER}; add one to lab.yaml")
    choice_problems = spec.choice_problems(proposal.choices)
    if choice_problems:
        raise SpecError(f"proposal {proposal.experiment_id}: {'; '.join(choice_problems)}")
    meters = _measuring_instruments(spec, lab)
    fractions, amount_sum = _fractions(proposal, spec)
    volumes = _volumes(proposal, spec, lab, handler, fractions)

    max_volume = handler.envelope.max_volume_ul
    max_ticks = None if max_volume is None else max(1, math.floor(max_volume / RESOLUTION_UL + 1e-9))
    commands: list[Command] = []
    steps = {stock: round(volume / RESOLUTION_UL) for stock, volume in volumes.items()}
    for stock, count in steps.items():
        for part in _split(count, max_ticks):
            params = {"stock": stock, "well": well, "volume_ul": round(part * RESOLUTION_UL, 1)}
            commands.append(Command(instrument=handler.name, action="dispense", params=params))
    commands.append(Command(instrument=handler.name, action="mix", params={"well": well}))
    for meter in meters:
        commands.append(
            Command(instrument=meter.name, action=MEASURE_ACTION[meter.kind], params={"well": well})
        )

    # Without a sum rule the amounts are proportions: keep their scale.
    scale = spec.unit_scale * (1.0 if spec.sum_rule is not None else amount_sum)
    made = composition_of(steps, spec.component_names, spec.basis, lab.stocks)
    composition = {name: fraction * scale for name, fraction in made.items()}
    protocol = Protocol(
        experiment_id=proposal.experiment_id,
        well=well,
        volumes_ul=volumes,
        composition=composition,
        commands=commands,
        choices=dict(proposal.choices),
    )
    violations = spec.violations(composition, tol=_rounding_tolerance(spec, lab, steps))
    if violations:
        raise SpecError(
            f"proposal {proposal.experiment_id}: after rounding to {RESOLUTION_UL:g} µL steps the sample"
            f" breaks the spec: {'; '.join(violations)}; propose a composition inside the design space"
        )
    problems = validate_protocol(protocol, lab)
    if problems:
        raise SafetyError(f"protocol for {proposal.experiment_id} fails the dry run: " + "; ".join(problems))
    return protocol


def _is_volume(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def validate_protocol(protocol: Protocol, lab: LabDescription) -> list[str]:
    """Dry-run ``protocol`` against the lab: every problem, each naming what and where.

    Checks instruments exist, actions are in the registry and the envelope, parameters are complete,
    wells and stocks exist, volumes are within the envelope, wells do not overflow, stocks suffice,
    every component in the composition has a stock and ``volumes_ul`` matches the dispenses.

    Returns:
        Problems, empty when the protocol may run.
    """
    problems: list[str] = []
    instruments = {i.name: i for i in lab.instruments}
    stocks = {s.name: s for s in lab.stocks}
    stocked = {s.component for s in lab.stocks}
    wells = set(lab.wells)
    if protocol.well not in wells:
        problems.append(
            f"well {protocol.well!r} is not a well of this lab; use one listed under wells in lab.yaml"
        )
    for component, amount in protocol.composition.items():
        if amount > 0 and component not in stocked:
            problems.append(
                f"component {component}: no stock supplies it; add a stock for {component} in lab.yaml"
            )
    for stock in protocol.volumes_ul:
        if stock not in stocks:
            problems.append(
                f"volumes_ul: unknown stock {stock!r}; the lab's stocks are {', '.join(stocks) or 'none'}"
            )

    filled: dict[str, float] = defaultdict(float)
    drawn: dict[str, float] = defaultdict(float)
    capacity: dict[str, float | None] = {}
    for index, command in enumerate(protocol.commands, start=1):
        where = f"command {index} ({command.instrument}.{command.action})"
        instrument = instruments.get(command.instrument)
        if instrument is None:
            problems.append(f"{where}: unknown instrument; this lab has {', '.join(instruments)}")
            continue
        registry = ACTIONS.get(instrument.kind, {})
        allowed = [a for a in instrument.envelope.allowed_actions if a in registry]
        if command.action not in allowed:
            problems.append(
                f"{where}: action not allowed on {instrument.name}; allowed: {', '.join(allowed) or 'none'}"
            )
            continue
        expected = registry[command.action]
        if set(command.params) != set(expected):
            problems.append(
                f"{where}: takes parameters ({', '.join(expected)}),"
                f" got ({', '.join(sorted(command.params))})"
            )
            continue
        well = command.params.get("well")
        if well is not None and well not in wells:
            problems.append(f"{where}: unknown well {well!r}")
        elif well is not None and well != protocol.well:
            problems.append(f"{where}: targets well {well} but the protocol's sample is in {protocol.well}")
        if command.action != "dispense":
            continue
        volume, stock = command.params["volume_ul"], command.params["stock"]
        envelope = instrument.envelope
        if not _is_volume(volume) or volume <= 0:
            problems.append(f"{where}: volume_ul={volume!r} must be a positive number of µL")
            continue
        if envelope.min_volume_ul is not None and volume < envelope.min_volume_ul - _VOLUME_TOL:
            problems.append(
                f"{where}: volume_ul={volume:g} µL is below min_volume_ul ({envelope.min_volume_ul:g} µL)"
            )
        if envelope.max_volume_ul is not None and volume > envelope.max_volume_ul + _VOLUME_TOL:
            problems.append(
                f"{where}: volume_ul={volume:g} µL is above max_volume_ul ({envelope.max_volume_ul:g} µL)"
            )
        if not isinstance(stock, str) or stock not in stocks:
            problems.append(
                f"{where}: unknown stock {stock!r}; the lab's stocks are {', '.join(stocks) or 'none'}"
            )
        else:
            drawn[stock] += volume
        if isinstance(well, str):
            filled[well] += volume
            capacity[well] = envelope.max_well_volume_ul

    for well, total in filled.items():
        limit = capacity.get(well)
        if limit is not None and total > limit + _VOLUME_TOL:
            problems.append(
                f"well {well}: the protocol puts {total:g} µL in it, over max_well_volume_ul ({limit:g} µL)"
            )
    for stock, total in drawn.items():
        if total > stocks[stock].volume_ul + _VOLUME_TOL:
            problems.append(
                f"stock {stock}: the protocol draws {total:g} µL, more than the"
                f" {stocks[stock].volume_ul:g} µL on hand"
            )
    for stock in set(drawn) | set(protocol.volumes_ul):
        listed, dispensed = protocol.volumes_ul.get(stock, 0.0), drawn.get(stock, 0.0)
        if stock in stocks and abs(listed - dispensed) > _VOLUME_TOL * 10:
            problems.append(
                f"volumes_ul: {stock} is listed as {listed:g} µL but its dispenses add up to {dispensed:g} µL"
            )
    return problems
