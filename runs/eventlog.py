"""The run's event log: an append-only, ordered, hash-chained ``events.jsonl``.

Each line is one JSON object with the fields, in this order:

- ``seq``: 0, 1, 2, ... without gaps.
- ``time``: ISO-8601 UTC wall time of writing, e.g. ``2026-11-27T20:15:00.123Z``.
- ``t``: seconds since the run started, from the run clock.
- ``kind``: what happened, e.g. ``reading``.
- ``payload``: a JSON object.
- ``prev_hash``: the previous event's ``hash`` (64 zeros for the first event).
- ``hash``: hex SHA-256 of the canonical JSON (``sort_keys=True``, ``separators=(",", ":")``,
  ``ensure_ascii=False``) of the event without its ``hash`` field.

Every line is flushed and fsynced before :meth:`EventLog.append` returns, so an event that was
recorded survives a crash; a crash can at worst leave one torn line at the end, which reopening
refuses until asked to repair it.

Non-finite floats (NaN, ±infinity) are not valid JSON. They are written as the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"``: unlike ``null`` this keeps what was measured, and pydantic reads
those strings back into floats when a payload is validated into a model.

The chain detects a changed, deleted, inserted or reordered line. It cannot detect lines removed
from the end, nor a log rewritten from scratch with fresh hashes: :mod:`runs.seal` keeps the last
hash outside the run folder (signed, with the lab's key) for that, and :mod:`runs.audit` checks it.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

import numpy as np
from pydantic import BaseModel

from athanor.errors import AthanorError

__all__ = [
    "GENESIS_HASH",
    "LOG_REPAIRED",
    "CorruptLogError",
    "EventLog",
    "VerifyResult",
    "canonical_json",
    "event_hash",
    "is_being_written",
    "read_events",
    "to_json_value",
    "verify_log",
]

#: ``prev_hash`` of the first event.
GENESIS_HASH = "0" * 64
#: Kind of the event written when a torn tail was cut off on reopening.
LOG_REPAIRED = "log_repaired"

_FIELDS = ("seq", "time", "t", "kind", "payload", "prev_hash", "hash")
_PREVIEW_CHARS = 2000
_TAIL_CHUNK = 64 * 1024

_log = logging.getLogger(__name__)


class CorruptLogError(AthanorError):
    """An event log cannot be read or continued because a line is damaged."""


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify_log`.

    Attributes:
        ok: True when every line is intact and the chain is unbroken.
        events: Number of intact events before the first bad line (all of them when ``ok``).
        first_bad_seq: The ``seq`` expected at the first bad line; None when ``ok``.
        reason: What is wrong with that line; empty when ``ok``.
        line: 1-based line number of the first bad line; None when ``ok``.
    """

    ok: bool
    events: int
    first_bad_seq: int | None = None
    reason: str = ""
    line: int | None = None


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value``: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def event_hash(event: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of ``event`` without its ``hash`` field."""
    body = {key: value for key, value in event.items() if key != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def to_json_value(value: Any, where: str = "payload") -> Any:
    """Convert ``value`` to plain JSON data (dict, list, str, int, float, bool, None).

    Pydantic models are dumped with ``model_dump(mode="json")``; numpy scalars and arrays become
    Python numbers and lists; tuples become lists; paths become strings; datetimes become ISO-8601;
    enums become their values; non-finite floats become ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``.

    Args:
        value: The value to convert.
        where: Where the value sits, used in error messages (e.g. ``payload.values``).

    Raises:
        TypeError: A value (or a mapping key) has no JSON form; the message names where it sits.
    """
    if isinstance(value, BaseModel):
        return to_json_value(value.model_dump(mode="json"), where)
    if isinstance(value, enum.Enum):
        return to_json_value(value.value, where)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, (bool, np.bool_)) or not isinstance(key, (str, int, np.integer)):
                raise TypeError(f"{where}: key {key!r} is a {type(key).__name__}; JSON keys must be str")
            name = str(key)
            out[name] = to_json_value(item, f"{where}.{name}")
        return out
    if isinstance(value, (list, tuple)):
        return [to_json_value(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, np.ndarray):
        return to_json_value(value.tolist(), where)
    if isinstance(value, np.generic):
        return to_json_value(value.item(), where)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(
        f"{where}: a {type(value).__name__} cannot be written to the event log; pass JSON data"
        " (dict, list, str, number, bool, None) or a pydantic model"
    )


def _lock_exclusively(handle: Any, path: Path) -> None:
    """Refuse a second writer: two processes appending would fork the chain."""
    if fcntl is None:
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise AthanorError(
            f"{path} is already open for writing (is the run still going?); wait for that process to"
            " finish or stop it, then try again"
        ) from None


def is_being_written(path: Path) -> bool | None:
    """Whether some :class:`EventLog` (in any process on this machine) holds ``path`` open.

    Returns:
        True or False; None when it cannot be told (no ``fcntl``, or the file cannot be opened).
    """
    if fcntl is None:
        return None
    try:
        with open(path, "rb") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return False
    except OSError:
        return None


def _utc_now() -> str:
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _line_of(event: Mapping[str, Any]) -> bytes:
    ordered = {key: event[key] for key in _FIELDS}
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8") + b"\n"


def _check_line(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """Parse one line (without its newline) and check its form and own hash.

    Returns:
        The event and an empty string, or None and what is wrong.
    """
    try:
        event = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"not valid JSON ({exc})"
    if not isinstance(event, dict):
        return None, "not a JSON object"
    if tuple(event) != _FIELDS:
        return None, f"fields are {list(event)}, expected {list(_FIELDS)}"
    if not isinstance(event["seq"], int) or isinstance(event["seq"], bool):
        return None, "seq is not an integer"
    if not isinstance(event["payload"], dict):
        return None, "payload is not a JSON object"
    try:
        if _line_of(event) != raw + b"\n":
            return None, "line is not in canonical form (edited by hand?)"
    except ValueError as exc:
        return None, f"line holds a value JSON does not allow ({exc})"
    if event_hash(event) != event["hash"]:
        return None, "hash does not match the event's content"
    return event, ""


class EventLog:
    """Append-only, hash-chained ``events.jsonl``; safe to append to from several threads.

    Args:
        path: The log file; created (with its folder) if missing, continued if it exists.
        repair: When the last line is torn or corrupt (a crash mid-write), cut it off and record a
            ``log_repaired`` event holding what was cut, instead of refusing to open.

    Raises:
        CorruptLogError: The last line is damaged and ``repair`` is False, or the log is damaged
            beyond its last line.
        AthanorError: Another :class:`EventLog` (in this or another process) is writing the file.
    """

    def __init__(self, path: Path, *, repair: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._subscribers: list[Callable[[dict[str, Any]], None]] = []
        self._next_seq = 0
        self._last_hash = GENESIS_HASH
        self._last_t = 0.0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")
        try:
            _lock_exclusively(self._file, self.path)
            torn = self._open_tail(repair)
        except BaseException:
            self._file.close()
            raise
        if torn is not None:
            self.append(LOG_REPAIRED, torn, self._last_t)

    # -- opening ---------------------------------------------------------------------------------

    def _open_tail(self, repair: bool) -> dict[str, Any] | None:
        """Read the last line to continue the chain; cut a torn tail when repairing.

        Returns:
            The ``log_repaired`` payload when a tail was cut, else None.
        """
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        with open(self.path, "rb") as handle:
            end, last, tail_start = _last_line(handle)
        problem = ""
        event = None
        if end != tail_start + len(last) + 1:
            problem = "the last line has no newline (a write was cut short)"
        else:
            event, problem = _check_line(last)
        if event is not None:
            self._continue_after(event)
            return None
        if not repair:
            raise CorruptLogError(
                f"{self.path}: {problem}; the run most likely crashed while writing it. Reopen with"
                " repair=True to cut the torn line off (its text is kept in a log_repaired event),"
                " or check the whole log with verify_log"
            )
        with open(self.path, "rb") as handle:
            handle.seek(tail_start)
            cut = handle.read()
        with open(self.path, "r+b") as handle:
            handle.truncate(tail_start)
            handle.flush()
            os.fsync(handle.fileno())
        if tail_start > 0:
            with open(self.path, "rb") as handle:
                _, previous, _ = _last_line(handle)
            event, second = _check_line(previous)
            if event is None:
                raise CorruptLogError(
                    f"{self.path}: after cutting the torn last line, the line before it is damaged too"
                    f" ({second}); this is not a crash mid-write. Check the log with verify_log"
                )
            self._continue_after(event)
        return {
            "reason": problem,
            "dropped_bytes": len(cut),
            "dropped_text": cut[:_PREVIEW_CHARS].decode("utf-8", errors="replace"),
        }

    def _continue_after(self, event: Mapping[str, Any]) -> None:
        self._next_seq = int(event["seq"]) + 1
        self._last_hash = str(event["hash"])
        t = event["t"]
        self._last_t = float(t) if isinstance(t, (int, float)) else 0.0

    # -- state -----------------------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next event will get (the number of events so far)."""
        return self._next_seq

    @property
    def last_hash(self) -> str:
        """Hash of the last event (``GENESIS_HASH`` for an empty log)."""
        return self._last_hash

    @property
    def last_t(self) -> float:
        """Run-clock time of the last event, in seconds (0 for an empty log)."""
        return self._last_t

    # -- writing ---------------------------------------------------------------------------------

    def append(self, kind: str, payload: Mapping[str, Any] | BaseModel, t: float) -> dict[str, Any]:
        """Write one event, flushed and fsynced, and pass it to every subscriber.

        Args:
            kind: What happened, e.g. ``reading``; a non-empty string.
            payload: A JSON-ready mapping or a pydantic model (see :func:`to_json_value`).
            t: Run-clock time in seconds since the run started.

        Returns:
            The event as written, ``hash`` included.

        Raises:
            TypeError: ``payload`` is not a mapping or model, or holds a value JSON cannot express.
            ValueError: ``kind`` is empty or ``t`` is not a finite number.
        """
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"event kind must be a non-empty string, got {kind!r}")
        if not isinstance(payload, (Mapping, BaseModel)):
            raise TypeError(f"payload of a {kind!r} event must be a mapping or a pydantic model")
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"t of a {kind!r} event must be a finite number of seconds, got {t}")
        data = to_json_value(payload, f"{kind}.payload")
        with self._lock:
            if self._file.closed:
                raise ValueError(f"{self.path}: the event log is closed")
            event: dict[str, Any] = {
                "seq": self._next_seq,
                "time": _utc_now(),
                "t": round(t, 6),
                "kind": kind,
                "payload": data,
                "prev_hash": self._last_hash,
            }
            event["hash"] = event_hash(event)
            self._file.write(_line_of(event))
            self._file.flush()
            os.fsync(self._file.fileno())
            self._next_seq += 1
            self._last_hash = event["hash"]
            self._last_t = event["t"]
            # Inside the lock so that subscribers see events in seq order.
            for callback in list(self._subscribers):
                try:
                    callback(event)
                except Exception:
                    _log.exception("event-log subscriber %r failed on event %d", callback, event["seq"])
            return event

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``callback(event)`` after each event is written, in seq order.

        Callbacks run on the appending thread while the log is locked: keep them short. An exception
        in a callback is logged and does not stop the run.

        Returns:
            A function that unsubscribes ``callback``.
        """
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def close(self) -> None:
        """Close the file; later appends raise ``ValueError``."""
        with self._lock:
            self._file.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _last_line(handle: Any) -> tuple[int, bytes, int]:
    """Find the last line of a binary file without reading all of it.

    Returns:
        The file size, the last line's bytes (without its newline, if it has one) and the offset it
        starts at. The line has a newline exactly when ``size == start + len(line) + 1``.
    """
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    stop = size
    if size:
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            stop = size - 1
    position = stop
    buffer = b""
    while position > 0:
        step = min(_TAIL_CHUNK, position)
        position -= step
        handle.seek(position)
        buffer = handle.read(step) + buffer
        cut = buffer.rfind(b"\n")
        if cut >= 0:
            return size, buffer[cut + 1 :], position + cut + 1
    return size, buffer, 0


def verify_log(path: Path) -> VerifyResult:
    """Check every line of an event log: form, seq order, hash chain and each event's hash.

    Detects a changed byte, a deleted, inserted or reordered line, a broken ``prev_hash``, a line
    that is not JSON, a wrong ``seq`` and a torn last line.

    Args:
        path: The ``events.jsonl`` file.

    Returns:
        The result; ``first_bad_seq`` is the seq expected where the first problem is.
    """
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    torn = lines.pop() if lines else b""
    previous = GENESIS_HASH
    count = 0
    for number, raw in enumerate(lines, start=1):
        event, problem = _check_line(raw)
        if event is None:
            return VerifyResult(False, count, count, problem, number)
        if event["seq"] != count:
            return VerifyResult(False, count, count, f"seq is {event['seq']}, expected {count}", number)
        if event["prev_hash"] != previous:
            reason = "prev_hash does not match the hash of the event before it"
            return VerifyResult(False, count, count, reason, number)
        previous = event["hash"]
        count += 1
    if torn:
        reason = "the last line has no newline (a write was cut short)"
        return VerifyResult(False, count, count, reason, len(lines) + 1)
    return VerifyResult(True, count)


def read_events(path: Path, kinds: Iterable[str] | str | None = None) -> list[dict[str, Any]]:
    """Read the events of a log, in order, without checking hashes (use :func:`verify_log` for that).

    A last line without a newline (being written, or torn by a crash) is skipped.

    Args:
        path: The ``events.jsonl`` file.
        kinds: Keep only events of these kinds (one kind or several); None keeps all.

    Raises:
        CorruptLogError: A complete line is not a JSON event; the message names the line.
    """
    wanted = {kinds} if isinstance(kinds, str) else (set(kinds) if kinds is not None else None)
    lines = Path(path).read_bytes().split(b"\n")
    lines.pop()
    events = []
    for number, raw in enumerate(lines, start=1):
        try:
            event = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptLogError(
                f"{path}: line {number} is not valid JSON ({exc}); check the log with verify_log"
            ) from exc
        if not isinstance(event, dict) or "kind" not in event:
            raise CorruptLogError(f"{path}: line {number} is not an event; check the log with verify_log")
        if wanted is None or event["kind"] in wanted:
            events.append(event)
    return events
