"""One campaign per deck: the lab hold, and a plate whose used wells are never used again."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from athanor.errors import AthanorError, SpecError
from athanor.lab import LabDescription
from instruments.virtual_lab import virtual_lab_description
from runs.lab_hold import VIRTUAL_LAB, LabHold, Plate, lab_keys

ROOT = Path(__file__).resolve().parents[2]


def bench_lab(name: str = "Thin-film bench", port: str = "/dev/ttyUSB3") -> LabDescription:
    data = virtual_lab_description(["ZnO", "Al2O3"], time_scale=0.0).model_dump(mode="json")
    data["name"] = name
    meter = next(i for i in data["instruments"] if i["kind"] == "conductivity_meter")
    meter.update(backend="serial", options={}, serial={"port": port, "profile": "four_point_probe"})
    data["wells"] = ["A1", "A2", "A3", "A4", "A5", "A6"]
    return LabDescription.model_validate(data)


def test_a_lab_is_held_under_its_name_and_every_port_it_drives():
    keys = lab_keys(bench_lab(), described=True)
    assert keys == ["lab-thin-film-bench", "serial-dev-ttyusb3"]
    assert VIRTUAL_LAB in lab_keys(bench_lab(), described=False)


def test_a_second_campaign_is_refused_naming_the_run_that_holds_the_lab(tmp_path):
    first = LabHold(bench_lab(), described=True, home=tmp_path)
    first.acquire("20261208-220000-night-run-ab12")
    # another lab file, another name, but the same meter on the same port: the same deck
    other = LabHold(bench_lab(name="bench copy"), described=True, home=tmp_path)
    holder = r"is in use by run 20261208-220000-night-run-ab12 \(pid \d+"
    with pytest.raises(AthanorError, match=holder) as refused:
        other.acquire("second")
    assert "one campaign drives a deck at a time" in str(refused.value)
    assert "athanor schedule add" in str(refused.value)
    with pytest.raises(AthanorError, match="in use"):  # and it took no part of the lab meanwhile
        LabHold(bench_lab(port="/dev/ttyUSB9"), described=True, home=tmp_path).acquire("third")
    first.release()
    other.acquire("second")  # free once the first let go
    other.release()


def test_a_hold_goes_with_its_process(tmp_path):
    script = (
        "import sys; from pathlib import Path; from runs.lab_hold import LabHold;"
        "from instruments.virtual_lab import virtual_lab_description as v;"
        f"h = LabHold(v(['A']), described=False, home=Path({str(tmp_path)!r})); h.acquire('crashed-run');"
        "print('held', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        held = "the virtual lab of this ATHANOR_HOME is in use by run crashed-run"
        with pytest.raises(AthanorError, match=held):
            LabHold(virtual_lab_description(["B"]), described=False, home=tmp_path).acquire("mine")
    finally:
        holder.kill()  # a crash: nothing is released by hand
        holder.wait(timeout=30)
    hold = LabHold(virtual_lab_description(["B"]), described=False, home=tmp_path)
    hold.acquire("mine")
    hold.release()


def test_a_campaign_told_to_wait_starts_when_the_holder_lets_go(tmp_path):
    holder = LabHold(bench_lab(), described=True, home=tmp_path)
    holder.acquire("first")
    told: list[str] = []
    threading.Timer(1.5, holder.release).start()
    started = time.monotonic()
    waiting = LabHold(bench_lab(), described=True, home=tmp_path)
    waiting.acquire("second", wait=True, on_wait=told.append)
    assert time.monotonic() - started >= 1.4
    assert told == [f"lab {'Thin-film bench'!r} is in use by run first ({told[0].split('(', 1)[1]}"]
    assert told[0].endswith("; waiting for it to finish")
    waiting.release()


def test_a_plate_gives_each_run_wells_no_earlier_run_used(tmp_path):
    lab = bench_lab()
    plate = Plate(lab, tmp_path)
    assert plate.reserve("run-1", 3) == ["A1", "A2", "A3", "A4", "A5", "A6"]
    plate.settle("run-1", ["A1", "A2"], finished=True)  # stopped early: A3 goes back
    assert Plate(lab, tmp_path).free_wells() == ["A3", "A4", "A5", "A6"]

    assert plate.reserve("run-2", 2) == ["A3", "A4", "A5", "A6"]
    plate.settle("run-2", ["A3"], finished=False)  # stopped, may resume: keeps A4 reserved
    assert plate.free_wells() == ["A5", "A6"]
    short = r"budget.experiments: 3 experiments need as many free wells; .* 2 of 6 free"
    with pytest.raises(SpecError, match=short):
        plate.reserve("run-3", 3)
    assert plate.free_wells() == ["A5", "A6"]  # a refused run reserves nothing

    assert plate.clear() == 4
    assert plate.free_wells() == lab.wells


def test_a_damaged_plate_record_is_refused_with_the_fix(tmp_path):
    plate = Plate(bench_lab(), tmp_path)
    plate.path.parent.mkdir(parents=True)
    plate.path.write_text("{not json", encoding="utf-8")
    with pytest.raises(AthanorError, match="lab new-plate"):
        plate.free_wells()
