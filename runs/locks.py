"""Exclusive locks that go with their process: an ``flock`` on a file that names its holder.

A process that dies (a crash, ``kill -9``, a power cut) releases its locks, so nothing has to be
cleaned up by hand. The file holds a JSON line about the holder (pid, host, and what the caller
adds, e.g. a run id) for the message a refused process prints.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

from athanor.errors import AthanorError

__all__ = ["FileLock", "LockHeld", "describe_holder"]


class LockHeld(AthanorError):
    """Another live process holds the lock.

    Attributes:
        holder: What the holder wrote about itself (``pid``, ``host``, ...); empty if unreadable.
    """

    def __init__(self, message: str, holder: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.holder = dict(holder)


class FileLock:
    """An exclusive, non-blocking ``flock`` on ``path``, held from :meth:`acquire` to :meth:`release`.

    Args:
        path: The lock file (its folder is created).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._handle is not None

    def acquire(self, about: Mapping[str, Any] | None = None) -> None:
        """Take the lock at once, writing ``about`` (with this pid and host) into the file.

        Raises:
            LockHeld: Another process holds it; ``holder`` says who, as its file says.
            athanor.errors.AthanorError: This system has no ``flock``.
        """
        if fcntl is None:  # pragma: no cover - not on Windows
            raise AthanorError("locks need fcntl (Linux or macOS)")
        if self._handle is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # held until release()
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _parse(handle.read())
            handle.close()
            raise LockHeld(f"{self.path} is held by {describe_holder(holder)}", holder) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), **(about or {})}) + "\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Give the lock up (and clear the holder's name)."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        handle.truncate(0)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock now, as its file says; None when nobody does."""
        if fcntl is None or not self.path.exists():
            return None
        with open(self.path, encoding="utf-8") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _parse(handle.read())
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def describe_holder(holder: Mapping[str, Any]) -> str:
    """``run R (pid 4242 on labpc, since 2026-12-08 22:00 UTC)``, or what is known of it."""
    where = f"pid {holder['pid']} on {holder.get('host', '?')}" if "pid" in holder else "another process"
    since = f", since {holder['since']}" if holder.get("since") else ""
    return f"run {holder['run_id']} ({where}{since})" if holder.get("run_id") else f"{where}{since}"


def _parse(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text.strip().splitlines()[0]) if text.strip() else {}
    except (json.JSONDecodeError, IndexError):
        return {}
    return data if isinstance(data, dict) else {}
