"""The idempotency ledger of one instrument: what each command key did, kept on disk.

Every keyed command goes through three states: :data:`STARTED` is written (and synced to disk)
*before* the back end is called, then :data:`DONE` with the reading, or :data:`FAILED` with the failed
reading. After a crash, a key left :data:`STARTED` is *in doubt*: the instrument may or may not have
acted, so it must not be silently re-run; the engine asks (:meth:`Ledger.in_doubt`) and settles it
(:meth:`Ledger.resolve`).

The ledger is one SQLite file per instrument (WAL journal, ``synchronous=FULL``), e.g.
``<ATHANOR_HOME>/ledgers/<instrument>.sqlite``; without a path it lives in memory. Keys are
``run/experiment/step`` (see :func:`run_of`), so runs sharing an instrument never clash.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from athanor.errors import InstrumentError

__all__ = ["DONE", "FAILED", "STARTED", "Ledger", "LedgerEntry", "run_of"]

STARTED = "started"
DONE = "done"
FAILED = "failed"
State = Literal["started", "done", "failed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL,
    command TEXT NOT NULL,
    state TEXT NOT NULL,
    reading TEXT,
    attempts INTEGER NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS actions_run ON actions (run_id, seq);
"""
_COLUMNS = "key, run_id, command, state, reading, attempts, started_at, finished_at"


def run_of(key: str) -> str:
    """The run id of an idempotency key ``run/experiment/step`` (the run id may itself hold ``/``).

    Keys with fewer than three parts belong to no run: their run id is ``""``.
    """
    parts = key.rsplit("/", 2)
    return parts[0] if len(parts) == 3 else ""


@dataclass(frozen=True)
class LedgerEntry:
    """One key's record.

    Attributes:
        key: The idempotency key.
        run_id: The run the key belongs to.
        command: The :class:`~athanor.models.Command` as a dict.
        state: ``started``, ``done`` or ``failed``.
        reading: The :class:`~athanor.models.Reading` as a dict (None while started).
        attempts: How many times the back end was called for this key.
        started_at: Wall-clock time (``time.time()``, s) the last attempt began.
        finished_at: Wall-clock time it ended (None while started).
    """

    key: str
    run_id: str
    command: dict[str, Any]
    state: State
    reading: dict[str, Any] | None
    attempts: int
    started_at: float
    finished_at: float | None

    def to_dict(self) -> dict[str, Any]:
        """The entry as a JSON-ready dict."""
        return asdict(self)


class Ledger:
    """Exactly-once bookkeeping of one instrument's keyed commands (thread-safe).

    Args:
        path: The SQLite file (its folder is created); None keeps the ledger in memory.

    Raises:
        athanor.errors.InstrumentError: The file cannot be opened or is not a ledger.
    """

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._lock = threading.Lock()
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            target = ":memory:" if self.path is None else str(self.path)
            self._db = sqlite3.connect(target, timeout=30.0, check_same_thread=False, isolation_level=None)
            if self.path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise InstrumentError(
                f"cannot open the instrument ledger {self.path}: {error}; check that its folder is"
                " writable and that the file is a ledger (or move it away)"
            ) from None

    def lookup(self, key: str, command: dict[str, Any] | None = None) -> LedgerEntry | None:
        """The record of ``key``, or None if it was never begun.

        Args:
            key: The idempotency key.
            command: When given, the command about to run under ``key``; it must be the recorded one.

        Raises:
            athanor.errors.InstrumentError: ``command`` differs from the one recorded under ``key``.
        """
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM actions WHERE key = ?", (key,)).fetchone()
        entry = None if row is None else _entry(row)
        if entry is not None and command is not None and entry.command != json.loads(_dump(command)):
            raise InstrumentError(_clash(key))
        return entry

    def begin(self, key: str, command: dict[str, Any]) -> LedgerEntry:
        """Record that the back end is about to act on ``key`` (synced before returning).

        A key that failed before may begin again (a retry); its attempt count goes up.

        Args:
            key: The idempotency key.
            command: The command as a dict; a key is bound to one command for good.

        Raises:
            athanor.errors.InstrumentError: The key is started or done already, or it was used for a
                different command.
        """
        text = _dump(command)
        now = time.time()
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM actions WHERE key = ?", (key,)).fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO actions (key, run_id, command, state, attempts, started_at)"
                    " VALUES (?, ?, ?, ?, 1, ?)",
                    (key, run_of(key), text, STARTED, now),
                )
            else:
                entry = _entry(row)
                if entry.command != json.loads(text):
                    raise InstrumentError(_clash(key))
                if entry.state != FAILED:
                    raise InstrumentError(
                        f"key {key!r} is already {entry.state}; a key may begin again only after it failed"
                    )
                self._db.execute(
                    "UPDATE actions SET state = ?, reading = NULL, attempts = attempts + 1, started_at = ?,"
                    " finished_at = NULL WHERE key = ?",
                    (STARTED, now, key),
                )
            row = self._db.execute(f"SELECT {_COLUMNS} FROM actions WHERE key = ?", (key,)).fetchone()
        return _entry(row)

    def finish(self, key: str, reading: dict[str, Any]) -> LedgerEntry:
        """Record the outcome of a started key: ``done`` if ``reading["ok"]``, else ``failed``.

        Raises:
            athanor.errors.InstrumentError: The key was never begun.
        """
        state = DONE if reading.get("ok", False) else FAILED
        with self._lock:
            cursor = self._db.execute(
                "UPDATE actions SET state = ?, reading = ?, finished_at = ? WHERE key = ?",
                (state, _dump(reading), time.time(), key),
            )
            if cursor.rowcount == 0:
                raise InstrumentError(f"key {key!r} was never begun; call begin() before finish()")
            row = self._db.execute(f"SELECT {_COLUMNS} FROM actions WHERE key = ?", (key,)).fetchone()
        return _entry(row)

    def resolve(self, key: str, reading: dict[str, Any] | None = None) -> LedgerEntry:
        """Settle an in-doubt key.

        Args:
            key: A key left ``started`` by a crash.
            reading: What the instrument is found to have done (recorded as the key's outcome); None
                marks the key failed, so the next execution acts again.

        Raises:
            athanor.errors.InstrumentError: The key is unknown or not in doubt.
        """
        entry = self.lookup(key)
        if entry is None or entry.state != STARTED:
            state = "unknown" if entry is None else entry.state
            raise InstrumentError(f"key {key!r} is {state}, not in doubt; only started keys can be resolved")
        if reading is None:
            reading = {
                **_stub(entry.command),
                "ok": False,
                "error": "in doubt after a crash; resolved to run again",
            }
        return self.finish(key, reading)

    def in_doubt(self, run_id: str | None = None) -> list[LedgerEntry]:
        """Keys begun but never finished, oldest first (of ``run_id``, or of every run)."""
        return [e for e in self.history(run_id) if e.state == STARTED]

    def history(self, run_id: str | None = None) -> list[LedgerEntry]:
        """Every recorded key in the order first begun (of ``run_id``, or of every run)."""
        with self._lock:
            if run_id is None:
                rows = self._db.execute(f"SELECT {_COLUMNS} FROM actions ORDER BY seq").fetchall()
            else:
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM actions WHERE run_id = ? ORDER BY seq", (run_id,)
                ).fetchall()
        return [_entry(row) for row in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM actions").fetchone()[0])

    def close(self) -> None:
        """Close the file (the ledger is unusable afterwards)."""
        with self._lock:
            self._db.close()


def _dump(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=True)


def _clash(key: str) -> str:
    return f"key {key!r} was already used for a different command; give each command its own key"


def _stub(command: dict[str, Any]) -> dict[str, Any]:
    return {
        "instrument": command.get("instrument", ""),
        "action": command.get("action", ""),
        "key": command.get("key", ""),
    }


def _entry(row: tuple[Any, ...]) -> LedgerEntry:
    key, run_id, command, state, reading, attempts, started_at, finished_at = row
    return LedgerEntry(
        key=key,
        run_id=run_id,
        command=json.loads(command),
        state=state,
        reading=None if reading is None else json.loads(reading),
        attempts=int(attempts),
        started_at=float(started_at),
        finished_at=None if finished_at is None else float(finished_at),
    )
