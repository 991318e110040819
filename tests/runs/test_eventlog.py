from __future__ import annotations

import itertools
import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest

from athanor.errors import AthanorError
from athanor.models import Reading
from runs.eventlog import (
    GENESIS_HASH,
    LOG_REPAIRED,
    CorruptLogError,
    EventLog,
    event_hash,
    is_being_written,
    read_events,
    verify_log,
)


def _write(path: Path, n: int) -> list[dict]:
    with EventLog(path) as log:
        return [log.append("step", {"i": i, "name": f"event {i}"}, t=0.5 * i) for i in range(n)]


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_events_form_a_verifiable_chain(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = _write(path, 5)
    assert [e["seq"] for e in events] == [0, 1, 2, 3, 4]
    assert events[0]["prev_hash"] == GENESIS_HASH
    for before, after in itertools.pairwise(events):
        assert after["prev_hash"] == before["hash"]
    for event in events:
        assert event["hash"] == event_hash(event)
        assert event["time"].endswith("Z")
    on_disk = [json.loads(line) for line in _lines(path)]
    assert on_disk == events
    assert list(on_disk[0]) == ["seq", "time", "t", "kind", "payload", "prev_hash", "hash"]
    assert verify_log(path).ok
    assert verify_log(path).events == 5


def test_hash_covers_canonical_json_without_hash_field(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        event = log.append("note", {"b": "µL", "a": 1}, t=1.0)
    body = {k: v for k, v in event.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert event["hash"] == hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_flipped_byte_is_detected_and_named(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _write(path, 6)
    lines = _lines(path)
    target = bytearray(lines[3])
    position = target.index(b"event 3") + len(b"event ")
    target[position] ^= 0x01  # "3" -> "2"
    lines[3] = bytes(target)
    path.write_bytes(b"".join(lines))
    result = verify_log(path)
    assert not result.ok
    assert result.first_bad_seq == 3
    assert result.events == 3
    assert result.line == 4
    assert "hash" in result.reason


def test_flipped_byte_in_hash_breaks_the_next_link(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _write(path, 4)
    data = bytearray(path.read_bytes())
    data[len(data) - 5] ^= 0x02  # inside the last event's own hash
    path.write_bytes(bytes(data))
    result = verify_log(path)
    assert not result.ok
    assert result.first_bad_seq == 3


@pytest.mark.parametrize(
    ("edit", "bad_seq"),
    [
        (lambda lines: lines[:2] + lines[3:], 2),  # deleted line
        (lambda lines: [lines[0], lines[2], lines[1], *lines[3:]], 1),  # swapped lines
        (lambda lines: [*lines[:2], lines[1], *lines[2:]], 2),  # duplicated (inserted) line
        (lambda lines: [*lines[:4], b"not json\n", *lines[4:]], 4),  # inserted garbage
        (lambda lines: [*lines[:-1], lines[-1][:20]], 4),  # torn tail
    ],
    ids=["deleted", "reordered", "duplicated", "garbage", "torn-tail"],
)
def test_structural_edits_are_detected(tmp_path: Path, edit, bad_seq: int) -> None:
    path = tmp_path / "events.jsonl"
    _write(path, 5)
    path.write_bytes(b"".join(edit(_lines(path))))
    result = verify_log(path)
    assert not result.ok
    assert result.first_bad_seq == bad_seq
    assert result.reason


def test_forged_seq_with_fresh_hash_still_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _write(path, 4)
    lines = _lines(path)
    forged = json.loads(lines[2])
    forged["payload"]["i"] = 99
    forged["hash"] = event_hash(forged)  # a consistent event, but the chain still points at the old one
    lines[2] = (json.dumps(forged, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
    path.write_bytes(b"".join(lines))
    result = verify_log(path)
    assert result.first_bad_seq == 3
    assert "prev_hash" in result.reason


def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    first = _write(path, 3)
    with EventLog(path) as log:
        assert log.next_seq == 3
        assert log.last_t == pytest.approx(1.0)
        event = log.append("more", {}, t=2.0)
    assert event["seq"] == 3
    assert event["prev_hash"] == first[-1]["hash"]
    assert verify_log(path).ok
    assert verify_log(path).events == 4


def test_reopen_refuses_torn_tail_unless_repairing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    first = _write(path, 3)
    torn = b'{"seq":3,"time":"2026-'
    with open(path, "ab") as handle:
        handle.write(torn)
    with pytest.raises(CorruptLogError, match="repair=True"):
        EventLog(path)
    with EventLog(path, repair=True) as log:
        after = log.append("next", {}, t=5.0)
    events = read_events(path)
    assert [e["kind"] for e in events] == ["step", "step", "step", LOG_REPAIRED, "next"]
    repaired = events[3]
    assert repaired["prev_hash"] == first[-1]["hash"]
    assert repaired["payload"]["dropped_text"] == torn.decode()
    assert repaired["payload"]["dropped_bytes"] == len(torn)
    assert after["seq"] == 4
    assert verify_log(path).ok


def test_reopen_refuses_corrupt_complete_last_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _write(path, 2)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError):
        EventLog(path)


def test_repair_does_not_hide_damage_deeper_in_the_log(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _write(path, 3)
    lines = _lines(path)
    lines[2] = lines[2].replace(b'"i":2', b'"i":7')
    path.write_bytes(b"".join(lines) + b'{"seq":3')
    with pytest.raises(CorruptLogError, match="not a crash"):
        EventLog(path, repair=True)


def test_concurrent_appends_keep_seq_and_chain_in_order(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    seen: list[int] = []
    with EventLog(path) as log:
        log.subscribe(lambda event: seen.append(event["seq"]))

        def work(worker: int) -> None:
            for i in range(40):
                log.append("reading", {"worker": worker, "i": i}, t=float(i))

        threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    result = verify_log(path)
    assert result.ok, result.reason
    assert result.events == 240
    assert seen == list(range(240))
    events = read_events(path)
    for worker in range(6):
        assert [e["payload"]["i"] for e in events if e["payload"]["worker"] == worker] == list(range(40))


def test_payload_conversion_models_numpy_and_non_finite(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    reading = Reading(
        instrument="meter", action="measure", key="r/E0001/2", values={"conductivity": math.nan}
    )
    with EventLog(path) as log:
        log.append("reading", reading, t=0.0)
        log.append(
            "numbers", {"a": np.float64(1.5), "b": np.int64(3), "c": np.arange(3), "d": -math.inf}, t=0.0
        )
    first, second = read_events(path)
    assert first["payload"]["values"] == {"conductivity": "NaN"}
    assert math.isnan(Reading.model_validate(first["payload"]).values["conductivity"])
    assert second["payload"] == {"a": 1.5, "b": 3, "c": [0, 1, 2], "d": "-Infinity"}
    assert verify_log(path).ok


def test_bad_payloads_are_refused_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        with pytest.raises(TypeError, match=r"payload\.obj"):
            log.append("bad", {"obj": object()}, t=0.0)
        with pytest.raises(TypeError):
            log.append("bad", [1, 2], t=0.0)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            log.append("", {}, t=0.0)
        assert log.next_seq == 0
    assert path.read_bytes() == b""


def test_subscriber_errors_do_not_stop_recording(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    received: list[str] = []
    with EventLog(path) as log:
        log.subscribe(lambda event: 1 / 0)
        unsubscribe = log.subscribe(lambda event: received.append(event["kind"]))
        log.append("one", {}, t=0.0)
        unsubscribe()
        log.append("two", {}, t=0.0)
    assert received == ["one"]
    assert len(read_events(path)) == 2


def test_read_events_filters_and_skips_a_line_being_written(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        for kind in ["a", "b", "a", "c"]:
            log.append(kind, {}, t=0.0)
    with open(path, "ab") as handle:
        handle.write(b'{"seq":4,')
    assert [e["seq"] for e in read_events(path, kinds="a")] == [0, 2]
    assert [e["seq"] for e in read_events(path, kinds=["b", "c"])] == [1, 3]
    assert len(read_events(path)) == 4


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        log.append("x", {}, t=0.0)
        assert is_being_written(path) is True
        with pytest.raises(AthanorError, match="already open"):
            EventLog(path)
    assert is_being_written(path) is False
