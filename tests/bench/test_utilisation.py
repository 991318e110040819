"""Utilisation is busy time over wall time, per instrument, from recorded readings."""

from __future__ import annotations

import pytest

from bench.utilisation import utilisation_from_events


def reading(instrument, started, finished, ok=True):
    return {
        "kind": "reading",
        "payload": {"instrument": instrument, "started": started, "finished": finished, "ok": ok},
    }


def test_busy_over_wall_per_meter_and_mean():
    events = [
        {"kind": "spec", "payload": {}},
        reading("liquid_handler", 0.0, 1.0),
        reading("m1", 1.0, 3.0),
        reading("m1", 3.0, 5.0),
        reading("m2", 1.0, 5.0),
        reading("m2", 5.0, 9.0, ok=False),  # a failed measurement is not useful busy time
        reading("m1", 5.0, 10.0),
    ]
    figures = utilisation_from_events(events, ["m1", "m2"])
    assert figures["wall_s"] == pytest.approx(10.0)
    assert figures["per_instrument"] == pytest.approx({"m1": 0.9, "m2": 0.4})
    assert figures["utilisation"] == pytest.approx(0.65)


def test_no_readings_gives_zero():
    assert utilisation_from_events([], ["m1"])["utilisation"] == 0.0
