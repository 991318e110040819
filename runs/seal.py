"""Sealing a run when an attempt ends, so that a cut tail, an edited file or a rewritten chain shows.

The chain of ``events.jsonl`` (:mod:`runs.eventlog`) shows an edited, deleted, inserted or reordered
event, but not events cut off its end, nor a log rewritten with fresh hashes, nor the other files of
the run folder. So every end of an attempt (``run_finished``, ``run_failed``, ``run_stopped``):

1. records, in the ending event's ``files``, the SHA-256 of every file of the run folder (but
   ``events.jsonl`` itself; ``manifest.json``: of its content without its ``final`` member);
2. takes the chain's head (the number of events and the ending event's hash) as a :class:`Head`,
   signed with the lab's key when it has one (:mod:`runs.signing`);
3. writes the head outside the run folder, appended to ``$ATHANOR_HOME/run-index.jsonl``, and
   into the run folder, as ``final`` in ``manifest.json``.

:mod:`runs.audit` checks all of it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from runs.context import EVENTS_FILE, RunContext
from runs.eventlog import canonical_json
from runs.manifest import MANIFEST_FILE
from runs.signing import fingerprint, lab_signing_key, sign

__all__ = [
    "FINAL",
    "INDEX_FILE",
    "Head",
    "file_digests",
    "manifest_digest",
    "recorded_head",
    "seal_attempt",
]

#: The run index under ``$ATHANOR_HOME``: one :class:`Head` per line, each end of each run.
INDEX_FILE = "run-index.jsonl"
#: The member of ``manifest.json`` holding the head of the run's last end.
FINAL = "final"
_CHUNK = 1 << 20

_log = logging.getLogger(__name__)


class Head(BaseModel):
    """The head of a run's chain when an attempt ended.

    Attributes:
        run_id: The run.
        events: Events in the log then.
        head: Hash of the last of them (the ending event).
        ended: Its kind: ``run_finished``, ``run_failed`` or ``run_stopped``.
        at: When it was written (the ending event's ``time``).
        key: Fingerprint of the key that signed it (None: unsigned).
        signature: Hex Ed25519 signature of :meth:`signed_bytes` (None: unsigned).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    events: int
    head: str
    ended: str
    at: str
    key: str | None = None
    signature: str | None = None

    def signed_bytes(self) -> bytes:
        """What the signature covers: the canonical JSON of every field but ``key`` and ``signature``."""
        return canonical_json(self.model_dump(exclude={"key", "signature"})).encode("utf-8")


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of a manifest's canonical JSON without its ``final`` member (written after the seal)."""
    body = {key: value for key, value in manifest.items() if key != FINAL}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def file_digests(run_dir: Path) -> dict[str, str]:
    """The SHA-256 of every file of a run folder, by path relative to it (``/``-separated).

    ``events.jsonl`` (the chain holds itself) and unfinished ``*.tmp`` files are left out;
    ``manifest.json`` is digested as :func:`manifest_digest` says.
    """
    run_dir = Path(run_dir)
    digests = {}
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        name = path.relative_to(run_dir).as_posix()
        if name == EVENTS_FILE or name.endswith(".tmp"):
            continue
        if name == MANIFEST_FILE:
            try:
                digests[name] = manifest_digest(json.loads(path.read_text(encoding="utf-8")))
                continue
            except (ValueError, AttributeError):
                pass  # not a JSON object: its bytes are digested, and the audit says it is broken
        digests[name] = _sha256_of(path)
    return digests


def _append_index(home: Path, head: Head) -> None:
    path = Path(home) / INDEX_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(head.model_dump(), ensure_ascii=False) + "\n").encode("utf-8")
    with open(path, "ab") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # whole lines from campaigns ending together
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def _write_final(run_dir: Path, head: Head) -> None:
    path = Path(run_dir) / MANIFEST_FILE
    if not path.exists():
        return
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest[FINAL] = head.model_dump()
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _signed(head: Head, home: Path) -> Head:
    """``head`` signed with the lab's key; unsigned (and a warning) when it has none or it fails."""
    try:
        key = lab_signing_key(home)
    except Exception as error:  # an unreadable key must not stop the record of how the run ended
        _log.warning("the head of run %s is not signed: %s", head.run_id, error)
        return head
    if key is None:
        return head
    update = {"key": fingerprint(key.public_key()), "signature": sign(key, head.signed_bytes())}
    return head.model_copy(update=update)


def seal_attempt(context: RunContext, kind: str, payload: Mapping[str, Any], home: Path) -> Head:
    """End an attempt: record ``kind`` with the folder's digests, then keep its head in two places.

    Args:
        context: The run's context (its log is still open).
        kind: ``run_finished``, ``run_failed`` or ``run_stopped``.
        payload: The ending event's payload without ``files``.
        home: ``$ATHANOR_HOME``, which holds the run index and the lab's key.

    Returns:
        The head as recorded (signed when the lab has a key).

    Raises:
        runs.events.EventPayloadError: The payload does not match ``kind`` (nothing is written).
    """
    event = context.record(kind, {**payload, "files": file_digests(context.run_dir)})
    count, last = event["seq"] + 1, event["hash"]
    head = _signed(Head(run_id=context.run_id, events=count, head=last, ended=kind, at=event["time"]), home)
    for write in (_write_final, _append_index):
        target = context.run_dir if write is _write_final else home
        try:
            write(target, head)
        except OSError as error:  # the run ended all the same; the audit will say the head is missing
            _log.warning("the head of run %s was not written to %s: %s", head.run_id, target, error)
    return head


def recorded_head(run_id: str, home: Path) -> Head | None:
    """The last head the run index holds for ``run_id`` (None: none, or no index).

    Lines that are not a head (a torn line from a crash) are skipped.
    """
    path = Path(home) / INDEX_FILE
    if not path.exists():
        return None
    found = None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            head = Head.model_validate_json(line)
        except ValidationError:
            continue
        if head.run_id == run_id:
            found = head
    return found
