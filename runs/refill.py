"""Stock refills: what a refilled stock holds, recorded in the run's log and applied to its lab.

A campaign that would run a stock dry stops before anything reaches an instrument (event
``stock_low``). Once the stock is refilled, ``athanor resume RUN --refill STOCK=UL`` records a
``stock_refilled`` event (the stock, the µL it holds now, the µL the campaign had drawn from it until
then) before the graph restarts.

The campaign counts what is left in a stock from the stock's ``volume_ul`` in the lab description:
the coder's forecast subtracts every protocol it compiled, the liquid handler's volume book every
dispense. A refill is therefore applied by setting ``volume_ul`` to what had been drawn plus what the
stock holds now, so that what is left becomes the refilled volume minus what is drawn after the
refill; a stock's ``capacity_ul``, when given, shifts by the same amount. Resume and replay derive
the lab from the recorded one and every ``stock_refilled`` event (the latest refill of a stock
wins), so a later crash and resume, and a replay, use the same volumes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from athanor.errors import AthanorError
from athanor.lab import LabDescription

__all__ = [
    "REFILLED",
    "apply_refills",
    "check_refills",
    "describe_refill",
    "parse_refills",
    "refill_payloads",
]

#: Event kind of a refill.
REFILLED = "stock_refilled"
_FIX = "give the stock's name and the µL it holds now, e.g. --refill A_stock=5000"
_UNIT = re.compile(r"\s*[uµ]l$", re.IGNORECASE)


def parse_refills(items: Sequence[str]) -> dict[str, float]:
    """Read ``--refill`` options, each ``STOCK=UL``: stock ``STOCK`` now holds ``UL`` µL.

    Args:
        items: The option values as typed, e.g. ``["A_stock=5000", "B_stock=2500uL"]`` (a trailing
            ``uL`` or ``µL`` is allowed).

    Returns:
        Stock name to the µL it holds now, in the order given.

    Raises:
        athanor.errors.AthanorError: An item is not ``STOCK=UL``, its volume is not a positive finite
            number, or a stock is given twice; the message names ``--refill`` and the fix.
    """
    refills: dict[str, float] = {}
    for item in items:
        name, sep, amount = item.partition("=")
        name, amount = name.strip(), _UNIT.sub("", amount.strip())
        if not sep or not name or not amount:
            raise AthanorError(f"--refill {item!r} is not STOCK=UL; {_FIX}")
        try:
            volume = float(amount)
        except ValueError:
            raise AthanorError(f"--refill {item!r}: {amount!r} is not a number of µL; {_FIX}") from None
        if not math.isfinite(volume) or volume <= 0:
            raise AthanorError(
                f"--refill {item!r}: the volume must be a positive number of µL, not {amount}; {_FIX}"
            )
        if name in refills:
            raise AthanorError(f"--refill: stock {name} is given twice; give each stock once ({_FIX})")
        refills[name] = volume
    return refills


def check_refills(refills: Mapping[str, float], lab: LabDescription) -> None:
    """Refuse a refill of a stock the run's lab does not have, or more than its container holds.

    Raises:
        athanor.errors.AthanorError: A stock is unknown (the message names it and the lab's stocks),
            or a refill is above the stock's ``capacity_ul`` (the message names both volumes).
    """
    stocks = {stock.name: stock for stock in lab.stocks}
    unknown = [name for name in refills if name not in stocks]
    if unknown:
        raise AthanorError(
            f"--refill: this run's lab has no stock {', '.join(repr(n) for n in unknown)}; its stocks are"
            f" {', '.join(stocks) or 'none'}"
        )
    for name, volume in refills.items():
        capacity = stocks[name].capacity_ul
        if capacity is not None and volume > capacity:
            raise AthanorError(
                f"--refill {name}={volume:g}: its container holds at most {capacity:g} µL (capacity_ul in"
                f" the lab description); give the volume it holds now, at most {capacity:g} µL"
            )


def refill_payloads(refills: Mapping[str, float], drawn_ul: Mapping[str, float]) -> list[dict[str, Any]]:
    """The ``stock_refilled`` payloads of ``refills``, in the order given.

    Args:
        refills: Stock name to the µL it holds now.
        drawn_ul: Stock name to the µL the campaign has drawn from it so far (a stock not listed: none).

    Returns:
        One ``{"stock", "volume_ul", "used_ul"}`` per refill, volumes in µL.
    """
    return [
        {"stock": name, "volume_ul": float(volume), "used_ul": round(float(drawn_ul.get(name, 0.0)), 6)}
        for name, volume in refills.items()
    ]


def apply_refills(lab: LabDescription, events: Iterable[dict[str, Any]]) -> LabDescription:
    """The lab with every recorded refill applied (``volume_ul`` = drawn before + held after).

    Args:
        lab: The lab the run recorded when it started.
        events: Events of the run, in log order; only ``stock_refilled`` ones are read.

    Returns:
        ``lab`` itself when nothing was refilled, else a copy with the refilled stocks' ``volume_ul``
        set from each stock's latest refill, and their ``filled_ul`` (what low-stock warnings are
        measured against) set to the refilled volume.
    """
    latest = {e["payload"]["stock"]: e["payload"] for e in events if e["kind"] == REFILLED}
    if not latest:
        return lab
    stocks = []
    for stock in lab.stocks:
        refill = latest.get(stock.name)
        if refill is not None:
            update = {"volume_ul": refill["used_ul"] + refill["volume_ul"], "filled_ul": refill["volume_ul"]}
            if stock.capacity_ul is not None:  # the count runs on from what was drawn, and so does the limit
                update["capacity_ul"] = refill["used_ul"] + stock.capacity_ul
            stock = stock.model_copy(update=update)
        stocks.append(stock)
    return lab.model_copy(update={"stocks": stocks})


def describe_refill(payload: Mapping[str, Any]) -> str:
    """One line about a refill, e.g. ``A_stock now holds 5000 µL (820 µL drawn before the refill)``."""
    return (
        f"{payload['stock']} now holds {payload['volume_ul']:g} µL"
        f" ({payload['used_ul']:g} µL drawn before the refill)"
    )
