"""Refills: reading ``--refill STOCK=UL``, refusing unknown stocks, and applying recorded refills to a lab."""

from __future__ import annotations

import pytest

from athanor.errors import AthanorError
from instruments.virtual_lab import virtual_lab_description
from runs.refill import (
    REFILLED,
    apply_refills,
    check_refills,
    describe_refill,
    parse_refills,
    refill_payloads,
)

LAB = virtual_lab_description(["A", "B", "C"], time_scale=0.0)


def refilled(stock, volume_ul, used_ul):
    return {"kind": REFILLED, "payload": {"stock": stock, "volume_ul": volume_ul, "used_ul": used_ul}}


def test_refills_are_read_in_order_with_an_optional_unit():
    refills = parse_refills(["B_stock=2500", " A_stock = 1e3uL ", "C_stock=750.5 µL"])
    assert refills == {"B_stock": 2500.0, "A_stock": 1000.0, "C_stock": 750.5}
    assert list(refills) == ["B_stock", "A_stock", "C_stock"]
    assert parse_refills([]) == {}


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("A_stock", "is not STOCK=UL"),
        ("=5000", "is not STOCK=UL"),
        ("A_stock=", "is not STOCK=UL"),
        ("A_stock=lots", "'lots' is not a number of µL"),
        ("A_stock=5000=6000", "is not a number of µL"),
        ("A_stock=0", "positive number of µL, not 0"),
        ("A_stock=-200", "positive number of µL, not -200"),
        ("A_stock=nan", "positive number of µL, not nan"),
        ("A_stock=inf", "positive number of µL, not inf"),
    ],
)
def test_a_bad_refill_names_the_option_and_the_fix(item, says):
    with pytest.raises(AthanorError) as caught:
        parse_refills([item])
    message = str(caught.value)
    assert message.startswith(f"--refill {item!r}")
    assert says in message and "--refill A_stock=5000" in message


def test_a_stock_given_twice_is_refused():
    with pytest.raises(AthanorError, match="--refill: stock A_stock is given twice; give each stock once"):
        parse_refills(["A_stock=100", "B_stock=100", "A_stock=200"])


def test_an_unknown_stock_is_named_with_the_labs_stocks():
    check_refills({"A_stock": 100.0, "C_stock": 5.0}, LAB)
    with pytest.raises(AthanorError) as caught:
        check_refills({"A_stock": 100.0, "P3HT_stock": 100.0}, LAB)
    assert str(caught.value) == (
        "--refill: this run's lab has no stock 'P3HT_stock'; its stocks are A_stock, B_stock, C_stock"
    )


def test_payloads_carry_what_was_drawn_before_the_refill():
    drawn = {"A_stock": 412.30000001, "C_stock": 9.0}
    payloads = refill_payloads({"B_stock": 5000.0, "A_stock": 300.0}, drawn)
    assert payloads == [
        {"stock": "B_stock", "volume_ul": 5000.0, "used_ul": 0.0},
        {"stock": "A_stock", "volume_ul": 300.0, "used_ul": 412.3},
    ]


def test_a_refill_sets_the_stock_to_what_was_drawn_plus_what_it_holds_now_and_the_latest_wins():
    events = [
        {"kind": "stock_low", "payload": {"problems": [], "left_ul": {}}},
        refilled("A_stock", 5000.0, 19_800.0),
        {"kind": "run_resumed", "payload": {}},
        refilled("B_stock", 1000.0, 19_950.0),
        refilled("A_stock", 2000.0, 24_500.0),
    ]
    lab = apply_refills(LAB, events)
    volumes = {s.name: s.volume_ul for s in lab.stocks}
    assert volumes == {"A_stock": 26_500.0, "B_stock": 20_950.0, "C_stock": 20_000.0}
    # low-stock warnings are measured against the latest fill; an unrefilled stock keeps its start
    assert [s.filled_ul for s in lab.stocks] == [2000.0, 1000.0, None]
    assert [s.warning_base_ul for s in lab.stocks] == [2000.0, 1000.0, 20_000.0]
    # what the campaign counts as left after drawing nothing more: the refilled volume
    assert volumes["A_stock"] - 24_500.0 == 2000.0
    assert [s.volume_ul for s in LAB.stocks] == [20_000.0] * 3  # the recorded lab is left as it was
    assert lab.instruments == LAB.instruments and lab.wells == LAB.wells
    assert apply_refills(LAB, events[:1]) is LAB


def test_a_refill_reads_as_one_line():
    payload = refilled("A_stock", 5000.0, 820.5)["payload"]
    assert describe_refill(payload) == "A_stock now holds 5000 µL (820.5 µL drawn before the refill)"


def test_a_refill_above_the_stocks_capacity_is_refused_and_the_limit_moves_with_the_count():
    stocks = [s.model_copy(update={"capacity_ul": 25_000.0}) for s in LAB.stocks]
    lab = LAB.model_copy(update={"stocks": stocks})
    check_refills({"A_stock": 25_000.0}, lab)
    with pytest.raises(AthanorError) as caught:
        check_refills({"A_stock": 250_000.0}, lab)
    assert str(caught.value) == (
        "--refill A_stock=250000: its container holds at most 25000 µL (capacity_ul in the lab"
        " description); give the volume it holds now, at most 25000 µL"
    )

    refilled_lab = apply_refills(lab, [refilled("A_stock", 25_000.0, 19_800.0)])
    a_stock = refilled_lab.stocks[0]
    assert (a_stock.volume_ul, a_stock.capacity_ul) == (44_800.0, 44_800.0)
    # the refilled lab is still a valid lab description (actors and replays re-validate it)
    assert type(LAB).model_validate(refilled_lab.model_dump(mode="json")).stocks[0] == a_stock
