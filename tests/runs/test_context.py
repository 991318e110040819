from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from athanor.ports import RunContextPort
from runs.context import RunContext, new_run_id, slugify
from runs.eventlog import read_events, verify_log


def test_implements_the_port(tmp_path: Path) -> None:
    with RunContext(tmp_path / "run", seed=3) as ctx:
        assert isinstance(ctx, RunContextPort)
        assert ctx.run_id == "run"


def test_streams_are_reproducible_and_independent(tmp_path: Path) -> None:
    with RunContext(tmp_path / "a", seed=7) as a, RunContext(tmp_path / "b", seed=7) as b:
        assert a.seed_for("designer") == b.seed_for("designer")
        assert a.seed_for("designer") != a.seed_for("emulator")
        np.testing.assert_array_equal(a.rng("designer").random(5), b.rng("designer").random(5))
        # Drawing from one stream does not shift another.
        a.rng("noise").random(100)
        np.testing.assert_array_equal(a.rng("emulator").random(3), b.rng("emulator").random(3))
        assert not np.allclose(a.rng("x").random(8), a.rng("y").random(8))
    with RunContext(tmp_path / "c", seed=8) as c:
        assert c.seed_for("designer") != RunContext.seed_for(a, "designer")


def test_rng_is_cached_and_continues(tmp_path: Path) -> None:
    with RunContext(tmp_path / "run", seed=1) as ctx:
        assert ctx.rng("s") is ctx.rng("s")
        first = ctx.rng("s").random()
        assert ctx.rng("s").random() != first
        assert first == np.random.default_rng(ctx.seed_for("s")).random()


def test_seed_for_is_stable_across_processes(tmp_path: Path) -> None:
    with RunContext(tmp_path / "run", seed=42) as ctx:
        here = ctx.seed_for("designer")
    code = (
        "import sys, pathlib; from runs.context import RunContext;"
        "c = RunContext(pathlib.Path(sys.argv[1]), seed=42); print(c.seed_for('designer')); c.close()"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "other")],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert int(out.stdout.strip()) == here
    assert 0 <= here < 2**32


def test_bad_seed_and_stream_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seed"):
        RunContext(tmp_path / "run", seed=-1)
    with RunContext(tmp_path / "run", seed=0) as ctx, pytest.raises(ValueError, match="stream"):
        ctx.seed_for("")


def test_record_stamps_run_clock(tmp_path: Path) -> None:
    with RunContext(tmp_path / "run", seed=0) as ctx:
        time.sleep(0.02)
        event = ctx.record("notice", {"message": "the plate is on the deck"})
        assert 0.02 <= event["t"] <= ctx.now()
    events = read_events(tmp_path / "run" / "events.jsonl")
    assert events[0]["kind"] == "notice"
    assert events[0]["payload"] == {"message": "the plate is on the deck"}


def test_experiment_ids_count_up_and_continue_after_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with RunContext(run_dir, seed=0) as ctx:
        assert [ctx.next_experiment_id() for _ in range(3)] == ["E0001", "E0002", "E0003"]
        last = ctx.record("protocol_rejected", {"experiment_id": "E0099", "problems": ["no well"]})
        # only issued ids count
    with RunContext(run_dir, seed=0) as resumed:
        assert resumed.now() >= last["t"]  # the run clock continues, it does not restart at 0
        assert resumed.next_experiment_id() == "E0004"
    assert verify_log(run_dir / "events.jsonl").ok


def test_new_run_id_format_and_uniqueness() -> None:
    moment = dt.datetime(2026, 11, 27, 20, 15, 0, tzinfo=dt.UTC)
    run_id = new_run_id("Maximise conductivity!", now=moment)
    assert re.fullmatch(r"20261127-201500-maximise-conductivity-[0-9a-f]{4}", run_id)
    ids = {new_run_id("Same title", now=moment) for _ in range(500)}
    assert len(ids) == 500


def test_new_run_id_converts_to_utc_and_avoids_taken_ids() -> None:
    moment = dt.datetime(2026, 11, 27, 21, 15, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert new_run_id("x", now=moment).startswith("20261127-201500-x-")
    taken: list[str] = []

    def is_taken(run_id: str) -> bool:
        taken.append(run_id)
        return len(taken) < 3

    run_id = new_run_id("x", now=moment, taken=is_taken)
    assert run_id == taken[-1]
    assert len(taken) == 3


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Maximise the conductivity of a P3HT/CNT blend", "maximise-the-conductivity-of-a-p3ht-cnt"),
        ("Élan — café", "elan-cafe"),
        ("***", "run"),
        ("a" * 60, "a" * 40),
    ],
)
def test_slugify(title: str, slug: str) -> None:
    assert slugify(title) == slug
    assert len(slugify(title)) <= 40
