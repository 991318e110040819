"""One run's clock, random streams, experiment ids and event log (:class:`athanor.ports.RunContextPort`).

Every event goes through :meth:`RunContext.record`, which refuses a payload that does not match its
kind (:mod:`runs.events`).

Random streams are named (``"designer"``, ``"emulator"``, ...). Each stream's seed is derived from the
run seed and the stream's name with SHA-256, so a stream gives the same numbers in every process and
on every machine, and adding a stream never shifts the numbers of another.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from runs.eventlog import EventLog, read_events, to_json_value
from runs.events import check_payload

__all__ = ["EVENTS_FILE", "EXPERIMENT_ID", "PowerCut", "RunContext", "new_run_id", "slugify"]

#: Name of the event log inside a run folder.
EVENTS_FILE = "events.jsonl"
#: Kind of the event recorded for each experiment id handed out.
EXPERIMENT_ID = "experiment_id"

_ID_PATTERN = re.compile(r"^E(\d+)$")
_SLUG_CHARS = 40
_issued_lock = threading.Lock()
_issued_run_ids: set[str] = set()


def slugify(text: str, max_chars: int = _SLUG_CHARS) -> str:
    """A lowercase ASCII slug of ``text``: words joined by ``-``, cut at a word boundary.

    Args:
        text: Any title, e.g. ``"Maximise conductivity (P3HT/CNT)"``.
        max_chars: Longest slug returned.

    Returns:
        E.g. ``maximise-conductivity-p3ht-cnt``; ``run`` when nothing usable is left.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > max_chars:
        slug = slug[: max_chars + 1].rsplit("-", 1)[0] if "-" in slug[:max_chars] else slug[:max_chars]
    return slug.strip("-") or "run"


def new_run_id(
    title: str,
    *,
    now: dt.datetime | None = None,
    taken: Callable[[str], bool] | None = None,
) -> str:
    """A new run id: UTC time, a slug of the title and 4 random hex digits.

    Ids handed out by this process never repeat; ``taken`` lets the caller also avoid ids already
    on disk (the run folder is created exclusively anyway).

    Args:
        title: Campaign title, e.g. ``"Maximise conductivity"``.
        now: The time to stamp (default: now); naive datetimes are taken as UTC.
        taken: Returns True for an id that is already in use.

    Returns:
        E.g. ``20261127-201500-maximise-conductivity-3f9a``.
    """
    moment = now or dt.datetime.now(dt.UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    stem = f"{moment:%Y%m%d-%H%M%S}-{slugify(title)}"
    with _issued_lock:
        while True:
            run_id = f"{stem}-{uuid.uuid4().hex[:4]}"
            if run_id not in _issued_run_ids and not (taken is not None and taken(run_id)):
                _issued_run_ids.add(run_id)
                return run_id


class PowerCut(BaseException):
    """A crash drill's power cut: the run's record takes no more events (see ``crash_at_event``).

    Not an :class:`Exception`, so that nothing that handles errors records it or carries on.
    """


class RunContext:
    """Clock, named random streams, experiment ids and the event log of one run.

    Opening a folder that already holds a log continues it (resume): the clock continues from the
    last event's time and experiment ids continue after the last one handed out.

    Args:
        run_dir: The run folder; ``events.jsonl`` is created in it.
        seed: The run seed every random stream derives from (0 ≤ seed < 2**32).
        run_id: The run id; defaults to the folder's name.
        repair: Cut a torn last line of the log (from a crash) instead of refusing to open it.
        crash_at_event: A crash drill: once the log holds this many events, the run dies as in a
            power cut. The log is closed (its lock released, as a dead process's is) and every
            later :meth:`record`, from any thread, raises :class:`PowerCut` and writes nothing.
            None (the default): no drill.

    Raises:
        ValueError: ``seed`` is out of range.
        runs.eventlog.CorruptLogError: The log is damaged (see :class:`runs.eventlog.EventLog`).
    """

    def __init__(
        self,
        run_dir: Path,
        seed: int,
        run_id: str | None = None,
        *,
        repair: bool = False,
        crash_at_event: int | None = None,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
        self.run_dir = Path(run_dir)
        self.run_id = run_id or self.run_dir.name
        self.seed = int(seed)
        self.log = EventLog(self.run_dir / EVENTS_FILE, repair=repair)
        self.crash_at_event = crash_at_event
        self._drill_lock = threading.Lock()
        self._clock_offset = self.log.last_t
        self._started = time.monotonic()
        self._rng_lock = threading.Lock()
        self._id_lock = threading.Lock()
        self._rngs: dict[str, np.random.Generator] = {}
        self._experiments = self._last_experiment_number()

    def _last_experiment_number(self) -> int:
        if self.log.next_seq == 0:
            return 0
        numbers = [0]
        for event in read_events(self.log.path, kinds=EXPERIMENT_ID):
            match = _ID_PATTERN.match(str(event["payload"].get("experiment_id", "")))
            if match:
                numbers.append(int(match.group(1)))
        return max(numbers)

    def now(self) -> float:
        """Seconds since the run started, from a monotonic clock (time while stopped not counted)."""
        return self._clock_offset + (time.monotonic() - self._started)

    def seed_for(self, stream: str) -> int:
        """The seed of a named random stream, in [0, 2**32).

        Derived with SHA-256 from the run seed and ``stream``: stable across processes and machines,
        unlike Python's ``hash()``.

        Raises:
            ValueError: ``stream`` is empty.
        """
        if not isinstance(stream, str) or not stream:
            raise ValueError(f"a random stream needs a non-empty name, got {stream!r}")
        digest = hashlib.sha256(f"athanor:{self.seed}:{stream}".encode()).digest()
        return int.from_bytes(digest[:4], "big")

    def rng(self, stream: str) -> np.random.Generator:
        """The generator of a named stream, ``numpy.random.default_rng(seed_for(stream))``.

        The same generator object is returned on every call, so draws continue where they left off.
        """
        with self._rng_lock:
            generator = self._rngs.get(stream)
            if generator is None:
                generator = np.random.default_rng(self.seed_for(stream))
                self._rngs[stream] = generator
            return generator

    def record(self, kind: str, payload: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
        """Append an event stamped with :meth:`now`; see :meth:`runs.eventlog.EventLog.append`.

        Raises:
            runs.events.EventPayloadError: ``kind`` is not registered or ``payload`` does not match
                its model (:data:`runs.events.EVENT_PAYLOADS`); nothing is written.
        """
        data = to_json_value(payload, f"{kind}.payload")
        check_payload(kind, data)
        if self.crash_at_event is None:
            return self.log.append(kind, data, self.now())
        with self._drill_lock:  # the count and the write at once: no thread writes past the cut
            if self.log.next_seq >= self.crash_at_event:
                self.log.close()
                raise PowerCut(f"crash drill: the power went at event {self.crash_at_event}, before a {kind}")
            return self.log.append(kind, data, self.now())

    def next_experiment_id(self) -> str:
        """A new experiment id, ``E0001``, ``E0002``, ...; recorded, so a resumed run continues."""
        with self._id_lock:
            self._experiments += 1
            experiment_id = f"E{self._experiments:04d}"
            self.record(EXPERIMENT_ID, {"experiment_id": experiment_id})
            return experiment_id

    def continue_ids_after(self, number: int) -> None:
        """Hand out ``E<number + 1>`` next.

        A run resumed from a checkpoint calls it with the highest id the checkpoint's state knows:
        ids handed out after that checkpoint went into a step that never finished (the crash cut
        it), reached no instrument, and are handed out again to the same proposals, so that the
        resumed campaign names its experiments as the uninterrupted one does.
        """
        with self._id_lock:
            self._experiments = int(number)

    def close(self) -> None:
        """Close the event log."""
        self.log.close()

    def __enter__(self) -> RunContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
