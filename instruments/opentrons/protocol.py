"""Render liquid-handler steps as an Opentrons Python API protocol for an OT-2 or a Flex.

The protocol loads every piece of labware the lab description lists, one or two single-channel
pipettes sized to the liquid handler's safety envelope, and their tip racks. Each ``dispense`` step
becomes pick up a fresh tip, aspirate from the stock's well, dispense into the sample well, drop the
tip; each ``mix`` step mixes the sample with a fresh tip.

Pipettes (the smallest one whose capacity covers a volume does the step; a volume above every
capacity goes to the largest, and the simulation then refuses it):

- OT-2: ``p20_single_gen2`` (left mount, 1-20 µL) and ``p300_single_gen2`` (right, 20-300 µL).
- Flex: ``flex_1channel_50`` (left, 1-50 µL) and ``flex_1channel_1000`` (right, 5-1000 µL).

Only the small one is loaded when the envelope's ``max_volume_ul`` fits it, only the large one when
the envelope's ``min_volume_ul`` is at least the large one's minimum, both otherwise. A tip rack
(load name ``..._tiprack_<N>ul``) serves the smallest loaded pipette of its robot family that takes
its tips; a pipette's capacity is the smaller of its own maximum and its smallest tip.

The rendered text is a pure function of its arguments: the same steps and lab give the same bytes.
Names reach the code only as ``repr()`` literals after matching a strict pattern, so a stock, labware,
well or slot name cannot inject code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from athanor.errors import InstrumentError
from athanor.lab import ACTIONS, LabDescription, Labware
from athanor.models import Command, Protocol

__all__ = [
    "API_LEVEL",
    "MIX_FRACTION",
    "MIX_REPETITIONS",
    "PIPETTES",
    "TIPS_PER_RACK",
    "PipetteModel",
    "RobotType",
    "render_batch",
    "render_protocol",
    "tips_needed",
]

RobotType = Literal["OT-2", "Flex"]

#: Protocol API version; opentrons 9.0.0 simulates it for both robots, robot software 8.0+ runs it.
API_LEVEL = "2.20"
#: Times each sample is pipetted up and down when mixed.
MIX_REPETITIONS = 3
#: Mixing volume as a fraction of the sample's volume (capped at the pipette's capacity).
MIX_FRACTION = 0.5
#: Tips in one Opentrons tip rack.
TIPS_PER_RACK = 96
#: Deck slot of the Flex trash bin (the OT-2's fixed trash in slot 12 is loaded automatically).
FLEX_TRASH_SLOT = "A3"


@dataclass(frozen=True)
class PipetteModel:
    """A single-channel pipette the renderer may load.

    Attributes:
        api_name: Name for ``load_instrument``, e.g. ``p300_single_gen2``.
        mount: ``left`` or ``right``.
        min_volume_ul: Smallest volume it moves accurately, µL.
        max_volume_ul: Largest volume it holds, µL.
        tip_volumes_ul: Tip sizes it takes, µL.
    """

    api_name: str
    mount: str
    min_volume_ul: float
    max_volume_ul: float
    tip_volumes_ul: tuple[int, ...]


#: The small and the large single-channel pipette of each robot, smallest first.
PIPETTES: dict[str, tuple[PipetteModel, PipetteModel]] = {
    "OT-2": (
        PipetteModel("p20_single_gen2", "left", 1.0, 20.0, (10, 20)),
        PipetteModel("p300_single_gen2", "right", 20.0, 300.0, (200, 300)),
    ),
    "Flex": (
        PipetteModel("flex_1channel_50", "left", 1.0, 50.0, (50,)),
        PipetteModel("flex_1channel_1000", "right", 5.0, 1000.0, (50, 200, 1000)),
    ),
}

_LABWARE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")
_LOAD_NAME = re.compile(r"^[a-z0-9][a-z0-9_.]{0,127}$")
_WELL = re.compile(r"^[A-Z]{1,2}[0-9]{1,3}$")
_TIP_RACK = re.compile(r"tiprack_(\d+)ul$")
_SLOTS: dict[str, frozenset[str]] = {
    "OT-2": frozenset(str(n) for n in range(1, 12)),
    "Flex": frozenset(f"{row}{col}" for row in "ABCD" for col in "123"),
}
_VOLUME_TOL = 1e-9  # µL


@dataclass(frozen=True)
class _Pipette:
    model: PipetteModel
    racks: tuple[str, ...]  # variables of its tip racks, in lab order
    capacity_ul: float

    @property
    def var(self) -> str:
        return f"{self.model.mount}_pipette"


@dataclass(frozen=True)
class _Deck:
    labware_vars: dict[str, str]  # labware name -> variable
    labware: tuple[Labware, ...]
    pipettes: tuple[_Pipette, ...]  # by capacity, smallest first

    def pick(self, volume_ul: float) -> _Pipette:
        """The smallest pipette whose capacity covers ``volume_ul``, else the largest."""
        for pipette in self.pipettes:
            if volume_ul <= pipette.capacity_ul + _VOLUME_TOL:
                return pipette
        return self.pipettes[-1]


@dataclass(frozen=True)
class _Transfer:
    pipette: _Pipette
    volume_ul: float
    source: tuple[str, str]  # (labware variable, well)
    target: tuple[str, str]


@dataclass(frozen=True)
class _Mix:
    pipette: _Pipette
    volume_ul: float
    target: tuple[str, str]


@dataclass(frozen=True)
class _Comment:
    text: str


_Operation = _Transfer | _Mix | _Comment


def _checked(pattern: re.Pattern[str], value: Any, what: str, example: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise InstrumentError(
            f"{what} {value!r} is not allowed in a robot protocol; use a name like {example!r}"
            f" (pattern {pattern.pattern})"
        )
    return value


def _tip_volume(load_name: str) -> int | None:
    match = _TIP_RACK.search(load_name)
    return int(match.group(1)) if match else None


def _takes(model: PipetteModel, robot_type: str, load_name: str) -> bool:
    volume = _tip_volume(load_name)
    same_family = ("_flex_" in load_name) == (robot_type == "Flex")
    return volume is not None and same_family and volume in model.tip_volumes_ul


def _pipette_models(lab: LabDescription, handler: str, robot_type: str) -> list[PipetteModel]:
    small, large = PIPETTES[robot_type]
    envelope = lab.instrument(handler).envelope
    low = envelope.min_volume_ul if envelope.min_volume_ul is not None else 0.0
    high = envelope.max_volume_ul if envelope.max_volume_ul is not None else large.max_volume_ul
    if high <= small.max_volume_ul + _VOLUME_TOL:
        return [small]
    if low >= large.min_volume_ul - _VOLUME_TOL:
        return [large]
    return [small, large]


def _deck(lab: LabDescription, handler: str, robot_type: str) -> _Deck:
    """Check the labware against the robot and choose pipettes and their tip racks."""
    if robot_type not in PIPETTES:
        raise InstrumentError(f"robot_type {robot_type!r} is not supported; use 'OT-2' or 'Flex'")
    slots = _SLOTS[robot_type]
    used: dict[str, str] = {}
    labware_vars: dict[str, str] = {}
    for index, item in enumerate(lab.labware):
        _checked(_LABWARE_NAME, item.name, "labware name", "stock_rack")
        _checked(_LOAD_NAME, item.load_name, f"labware {item.name}: load_name", "opentrons_96_tiprack_300ul")
        if item.slot not in slots:
            raise InstrumentError(
                f"labware {item.name}: slot {item.slot!r} is not a deck slot of the {robot_type};"
                f" use one of {', '.join(sorted(slots, key=lambda s: (len(s), s)))}"
            )
        if robot_type == "Flex" and item.slot == FLEX_TRASH_SLOT:
            raise InstrumentError(
                f"labware {item.name}: slot {FLEX_TRASH_SLOT} holds the Flex trash bin;"
                " move the labware to another slot"
            )
        if item.slot in used:
            raise InstrumentError(
                f"labware {item.name} and {used[item.slot]} are both in slot {item.slot};"
                " give each its own slot"
            )
        used[item.slot] = item.name
        labware_vars[item.name] = f"labware_{index}"

    models = _pipette_models(lab, handler, robot_type)
    racks: dict[str, list[tuple[str, int]]] = {m.api_name: [] for m in models}
    for item in lab.labware:
        owner = next((m for m in models if _takes(m, robot_type, item.load_name)), None)
        if owner is not None:
            racks[owner.api_name].append((labware_vars[item.name], _tip_volume(item.load_name) or 0))
    pipettes = []
    for model in models:
        held = racks[model.api_name]
        if not held:
            family = "opentrons_flex_96_tiprack" if robot_type == "Flex" else "opentrons_96_tiprack"
            sizes = " or ".join(f"{family}_{v}ul" for v in model.tip_volumes_ul)
            raise InstrumentError(
                f"the {model.api_name} pipette (chosen for the envelope of {handler}) has no tip rack;"
                f" add a {sizes} to labware in lab.yaml"
            )
        capacity = min(model.max_volume_ul, float(min(volume for _, volume in held)))
        pipettes.append(_Pipette(model, tuple(var for var, _ in held), capacity))
    pipettes.sort(key=lambda p: p.capacity_ul)
    return _Deck(labware_vars, tuple(lab.labware), tuple(pipettes))


def _volume(value: Any, where: str) -> float:
    number = not isinstance(value, bool) and isinstance(value, int | float)
    if not number or not math.isfinite(value) or value <= 0:
        raise InstrumentError(f"{where}: volume_ul must be a positive number of µL, got {value!r}")
    return float(value)


def _handler(steps: Sequence[Command], lab: LabDescription) -> str:
    names = sorted({step.instrument for step in steps})
    if len(names) != 1:
        raise InstrumentError(
            "a robot protocol drives one liquid handler; the steps name "
            + (", ".join(names) if names else "no instrument (there are no steps)")
        )
    try:
        spec = lab.instrument(names[0])
    except KeyError as error:
        raise InstrumentError(str(error.args[0])) from None
    if spec.kind != "liquid_handler":
        raise InstrumentError(f"{spec.name} is a {spec.kind}; only a liquid_handler runs robot protocols")
    return spec.name


def _operations(
    sections: Sequence[tuple[str | None, Sequence[Command]]], lab: LabDescription, deck: _Deck
) -> list[_Operation]:
    """Turn dispense and mix steps into transfers and mixes, checking every name on the way."""
    if lab.sample_labware is None:
        raise InstrumentError("lab.yaml has no sample_labware; name the labware that holds the samples")
    plate = deck.labware_vars[lab.sample_labware]
    stocks = {s.name: s for s in lab.stocks}
    filled: dict[str, float] = {}
    operations: list[_Operation] = []
    number = 0
    for label, steps in sections:
        if label is not None:
            operations.append(_Comment(label))
        for step in steps:
            number += 1
            where = f"step {number} ({step.action})"
            if step.action not in ("dispense", "mix"):
                raise InstrumentError(f"{where}: a robot protocol runs only dispense and mix steps")
            expected = ACTIONS["liquid_handler"][step.action]
            if set(step.params) != set(expected):
                raise InstrumentError(f"{where}: takes parameters ({', '.join(expected)})")
            well = _checked(_WELL, step.params["well"], f"{where}: well", "A1")
            if step.action == "mix":
                sample = filled.get(well, 0.0) or lab.sample_volume_ul
                largest = deck.pipettes[-1].capacity_ul
                volume = max(round(min(MIX_FRACTION * sample, largest), 1), 0.1)
                operations.append(_Mix(deck.pick(volume), volume, (plate, well)))
                continue
            volume = _volume(step.params["volume_ul"], where)
            stock = stocks.get(step.params["stock"])
            if stock is None:
                raise InstrumentError(
                    f"{where}: unknown stock {step.params['stock']!r}; the lab's stocks are"
                    f" {', '.join(stocks) or 'none'}"
                )
            if stock.labware is None or stock.well is None:
                raise InstrumentError(
                    f"stock {stock.name} has no deck position; give it labware and well in lab.yaml"
                )
            source = _checked(_WELL, stock.well, f"stock {stock.name}: well", "A1")
            filled[well] = filled.get(well, 0.0) + volume
            origin = (deck.labware_vars[stock.labware], source)
            operations.append(_Transfer(deck.pick(volume), volume, origin, (plate, well)))
    return operations


def _count_tips(operations: Sequence[_Operation]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in operations:
        if isinstance(op, _Transfer | _Mix):
            counts[op.pipette.model.api_name] = counts.get(op.pipette.model.api_name, 0) + 1
    return counts


def _starting_tips(deck: _Deck, needed: Mapping[str, int], tips_used: Mapping[str, int]) -> list[str]:
    lines = []
    for pipette in deck.pipettes:
        name = pipette.model.api_name
        used = int(tips_used.get(name, 0))
        held = TIPS_PER_RACK * len(pipette.racks)
        if used < 0 or used + needed.get(name, 0) > held:
            raise InstrumentError(
                f"the {name} pipette needs {needed.get(name, 0)} tip(s) but {max(held - used, 0)} of the"
                f" {held} in its tip rack(s) are left; refill its tip racks and restart, or add a tip rack"
            )
        if used:
            rack, position = divmod(used, TIPS_PER_RACK)
            lines.append(f"    {pipette.var}.starting_tip = {pipette.racks[rack]}.wells()[{position}]")
    return lines


def _render(
    sections: Sequence[tuple[str | None, Sequence[Command]]],
    lab: LabDescription,
    robot_type: str,
    title: str,
    tips_used: Mapping[str, int] | None,
) -> tuple[str, dict[str, int]]:
    handler = _handler([step for _, steps in sections for step in steps], lab)
    deck = _deck(lab, handler, robot_type)
    operations = _operations(sections, lab, deck)
    needed = _count_tips(operations)
    requirements = {"robotType": robot_type, "apiLevel": API_LEVEL}
    lines = [
        "# Generated by athanor from a lab description; edit the lab description, not this file.",
        "from opentrons import protocol_api",
        "",
        f"metadata = {{'protocolName': {title!r}, 'author': 'athanor'}}",
        f"requirements = {requirements!r}",
        "",
        "",
        "def run(protocol: protocol_api.ProtocolContext) -> None:",
    ]
    if robot_type == "Flex":
        lines.append(f"    protocol.load_trash_bin({FLEX_TRASH_SLOT!r})")
    for item in deck.labware:
        var = deck.labware_vars[item.name]
        lines.append(
            f"    {var} = protocol.load_labware({item.load_name!r}, {item.slot!r}, label={item.name!r})"
        )
    for pipette in deck.pipettes:
        racks = ", ".join(pipette.racks)
        lines.append(
            f"    {pipette.var} = protocol.load_instrument({pipette.model.api_name!r},"
            f" {pipette.model.mount!r}, tip_racks=[{racks}])"
        )
    lines.extend(_starting_tips(deck, needed, tips_used or {}))
    for op in operations:
        if isinstance(op, _Comment):
            lines.append(f"    protocol.comment({op.text!r})")
        elif isinstance(op, _Transfer):
            p, volume = op.pipette.var, repr(op.volume_ul)
            lines += [
                f"    {p}.pick_up_tip()",
                f"    {p}.aspirate({volume}, {op.source[0]}[{op.source[1]!r}])",
                f"    {p}.dispense({volume}, {op.target[0]}[{op.target[1]!r}])",
                f"    {p}.drop_tip()",
            ]
        else:
            p = op.pipette.var
            lines += [
                f"    {p}.pick_up_tip()",
                f"    {p}.mix({MIX_REPETITIONS}, {op.volume_ul!r}, {op.target[0]}[{op.target[1]!r}])",
                f"    {p}.drop_tip()",
            ]
    return "\n".join(lines) + "\n", needed


def render_protocol(
    steps: Sequence[Command],
    lab: LabDescription,
    robot_type: RobotType,
    title: str,
    *,
    tips_used: Mapping[str, int] | None = None,
) -> str:
    """An Opentrons Python protocol that performs ``steps`` on the lab's deck.

    Args:
        steps: ``dispense(stock, well, volume_ul)`` and ``mix(well)`` commands of one liquid handler
            of ``lab``, in order; volumes in µL.
        lab: The lab: labware and slots, the sample labware, stock positions, the handler's envelope.
        robot_type: ``"OT-2"`` or ``"Flex"``.
        title: Protocol name shown by the robot.
        tips_used: Pipette API name to tips already taken from its racks (they are used in column
            order, so the next run starts after them); None when the racks are full.

    Returns:
        The protocol's Python source.

    Raises:
        athanor.errors.InstrumentError: A step, name, slot, stock position or tip rack does not fit;
            the message names it and the fix.
    """
    text, _ = _render([(None, steps)], lab, robot_type, title, tips_used)
    return text


def tips_needed(steps: Sequence[Command], lab: LabDescription, robot_type: RobotType) -> dict[str, int]:
    """Tips the protocol for ``steps`` takes, per pipette API name (one per dispense and per mix)."""
    _, needed = _render([(None, steps)], lab, robot_type, "count", None)
    return needed


def _handler_steps(protocol: Protocol, lab: LabDescription) -> list[Command]:
    kinds = {i.name: i.kind for i in lab.instruments}
    return [c for c in protocol.commands if kinds.get(c.instrument) == "liquid_handler"]


def render_batch(
    protocols: Sequence[Protocol],
    lab: LabDescription,
    robot_type: RobotType,
    *,
    title: str | None = None,
    tips_used: Mapping[str, int] | None = None,
) -> str:
    """One Opentrons protocol that makes every sample of a batch, with a comment per experiment.

    Measurements and other instruments' commands are left out: they do not run on the robot.

    Args:
        protocols: Compiled protocols (see :func:`tools.protocols.compile_protocol`).
        lab: The lab.
        robot_type: ``"OT-2"`` or ``"Flex"``.
        title: Protocol name; defaults to the batch's experiment ids.
        tips_used: As in :func:`render_protocol`.

    Raises:
        athanor.errors.InstrumentError: As :func:`render_protocol`, or the batch is empty.
    """
    if not protocols:
        raise InstrumentError("render_batch got no protocols; give at least one")
    ids = [p.experiment_id for p in protocols]
    name = title or (f"athanor {ids[0]}" if len(ids) == 1 else f"athanor {ids[0]}-{ids[-1]}")
    sections = [(f"{p.experiment_id}: sample in {p.well}", _handler_steps(p, lab)) for p in protocols]
    text, _ = _render(sections, lab, robot_type, name, tips_used)
    return text
