"""Auditing a run: everything a reader of its folder relies on, checked against its record.

:func:`audit_run` checks, each as a :class:`Check`:

- ``event log``: the hash chain (:func:`runs.eventlog.verify_log`);
- ``record format``: every payload matches its kind (:mod:`runs.events`);
- ``head``: the log ends where the head recorded outside the run folder says it ended (the run
  index, or an export's ``export.json``), and where the manifest's ``final`` says, so a cut tail, a
  log continued past its end or a chain rewritten with fresh hashes shows;
- ``signature``: with the lab's public key, the head's Ed25519 signature (:mod:`runs.signing`);
- ``files``: every file the ending event digested is there with that SHA-256
  (:mod:`runs.seal`); ``observations.csv`` is rebuilt from the log's observation events and
  compared byte for byte (the differences named cell by cell); ``manifest.json`` says what the
  ``spec`` and ``run_started`` events say.

Files that appeared after the seal (a replay report) are listed without failing the audit: nothing
in the record vouches for them. :func:`provenance` traces each experiment from the request to the
decision made after it. :func:`export_run` and :func:`open_export` carry a run to another machine.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from athanor.errors import AthanorError
from athanor.spec import CampaignSpec
from runs.context import EVENTS_FILE
from runs.eventlog import CorruptLogError, read_events, verify_log
from runs.events import END_KINDS, payload_problem
from runs.manifest import MANIFEST_FILE
from runs.observations import OBSERVATION, logged_observations, observations_text
from runs.seal import FINAL, Head, file_digests
from runs.signing import fingerprint, public_key_pem, verify
from runs.store import OBSERVATIONS_FILE, check_observations

__all__ = [
    "EXPORT_FILE",
    "AuditReport",
    "Check",
    "ProvenanceRow",
    "audit_run",
    "export_run",
    "open_export",
    "provenance",
]

#: The member of an export archive that says what the archive holds and the run's head.
EXPORT_FILE = "export.json"
#: Files SQLite keeps beside a database and reads as part of it.
_SQLITE_SIDECARS = ("-wal", "-journal", "-shm")
#: Most problems of one check that are listed.
_SHOWN = 8


@dataclass(frozen=True)
class Check:
    """One thing the audit checked.

    Attributes:
        name: What was checked (``event log``, ``head``, ...).
        ok: Whether it holds.
        detail: What was found, one line each.
        fatal: Whether a failure fails the audit (False: said, not failed on).
    """

    name: str
    ok: bool
    detail: list[str]
    fatal: bool = True


@dataclass(frozen=True)
class ProvenanceRow:
    """One experiment, from the optimiser call that proposed it to the decision made after it.

    Each field is ``seq N: what`` (an empty string when the record has none).
    """

    experiment_id: str
    proposal: str
    protocol: str
    readings: str
    observation: str
    decision: str


@dataclass
class AuditReport:
    """What :func:`audit_run` found.

    Attributes:
        run_id: The run.
        run_dir: Its folder (for an archive: where it was unpacked).
        checks: Every check, in order.
        origin: Where the run's request and spec are in the log (``request`` and ``spec`` lines).
        provenance: One row per experiment.
    """

    run_id: str
    run_dir: Path
    checks: list[Check]
    origin: list[str] = field(default_factory=list)
    provenance: list[ProvenanceRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every check that counts holds."""
        return all(check.ok for check in self.checks if check.fatal)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON data (``athanor audit --json``)."""
        return {
            "run_id": self.run_id,
            "path": str(self.run_dir),
            "ok": self.ok,
            "checks": [
                {"name": c.name, "ok": c.ok, "fatal": c.fatal, "detail": c.detail} for c in self.checks
            ],
            "origin": self.origin,
            "provenance": [row.__dict__ for row in self.provenance],
        }


def _listed(problems: Sequence[str]) -> list[str]:
    shown = list(problems[:_SHOWN])
    if len(problems) > _SHOWN:
        shown.append(f"... and {len(problems) - _SHOWN} more")
    return shown


def _chain_check(log: Path) -> Check:
    result = verify_log(log)
    if result.ok:
        return Check("event log", True, [f"{result.events} events, hash chain intact"])
    where = f"seq {result.first_bad_seq} (line {result.line}): {result.reason}"
    return Check("event log", False, [f"altered at {where}"])


def _format_check(events: list[dict[str, Any]]) -> Check:
    problems = []
    for event in events:
        problem = payload_problem(str(event.get("kind")), event.get("payload") or {})
        if problem:
            problems.append(f"seq {event.get('seq')} ({event.get('kind')}): {problem}")
    if problems:
        return Check("record format", False, _listed(problems))
    return Check("record format", True, [f"every payload matches its kind ({len(events)} events)"])


def _head_problems(events: list[dict[str, Any]], head: Head, where: str) -> list[str]:
    """How the log differs from a head recorded ``where``; empty when it ends exactly there."""
    count = len(events)
    if head.run_id != (events[0]["payload"].get("run_id") if events else None):
        return [f"{where} is the head of run {head.run_id}, not of this log's run"]
    if count < head.events:
        cut = head.events - count
        return [
            f"the log has {count} events; {where} says the run ended with {head.events}:"
            f" its last {cut} event(s) were cut off"
        ]
    at_end = events[head.events - 1]
    if at_end["hash"] != head.head:
        return [
            f"event seq {head.events - 1} has hash {at_end['hash'][:16]}..., {where} says"
            f" {head.head[:16]}...: the log was rewritten"
        ]
    if count > head.events:
        return [
            f"the log goes on {count - head.events} event(s) past the end {where} records"
            f" (seq {head.events - 1}): a later attempt never ended, or events were added"
        ]
    return []


def _head_check(
    events: list[dict[str, Any]], head: Head | None, head_origin: str, manifest: dict[str, Any]
) -> Check:
    problems = []
    if head is None:
        problems.append(
            f"{head_origin} holds no head for this run: it never ended cleanly (killed, or still"
            " running), it was recorded before heads were kept, or the record of it was removed"
        )
    else:
        problems += _head_problems(events, head, head_origin)
    final = manifest.get(FINAL)
    if final is None:
        problems.append(f"{MANIFEST_FILE} has no '{FINAL}' head")
    else:
        try:
            recorded = Head.model_validate(final)
        except ValidationError:
            problems.append(f"{MANIFEST_FILE}: its '{FINAL}' member is not a head")
        else:
            problems += _head_problems(events, recorded, f"{MANIFEST_FILE}'s '{FINAL}'")
            if head is not None and recorded != head:
                problems.append(f"{MANIFEST_FILE}'s '{FINAL}' differs from the head in {head_origin}")
    if problems:
        return Check("head", False, problems)
    assert head is not None
    where = f"seq {head.events - 1} ({head.ended})"
    return Check("head", True, [f"the log ends at {where}, as {head_origin} and {MANIFEST_FILE} say"])


def _signature_check(head: Head | None, key: Ed25519PublicKey | None, key_origin: str) -> Check:
    if key is None:
        signed = head is not None and head.signature is not None
        note = "signed by " + str(head.key) if signed else "unsigned"
        return Check(
            "signature",
            True,
            [f"not checked: no public key ({note}); a lab signs its runs after `athanor keys init`"],
            fatal=False,
        )
    print_key = f"{fingerprint(key)} ({key_origin})"
    if head is None:
        return Check("signature", False, [f"no head to check against {print_key}"])
    if head.signature is None:
        return Check(
            "signature",
            False,
            [
                f"the head is not signed, but the lab has a key ({print_key}): it was recorded before"
                " `athanor keys init`, or the head was rewritten"
            ],
        )
    if not verify(key, head.signed_bytes(), head.signature):
        return Check("signature", False, [f"the head's signature is not {print_key}'s: forged or altered"])
    return Check("signature", True, [f"the head is signed by {print_key}"])


def _manifest_problems(manifest: dict[str, Any], events: list[dict[str, Any]]) -> list[str]:
    """Where ``manifest.json`` contradicts the run's ``spec`` and ``run_started`` events."""
    problems = []
    spec_event = next((e["payload"] for e in events if e["kind"] == "spec"), None)
    started = next((e["payload"] for e in events if e["kind"] == "run_started"), {})
    if spec_event is not None and manifest.get("spec") != spec_event:
        problems.append(f"{MANIFEST_FILE}: its spec differs from the spec event's")
    if spec_event is not None and manifest.get("seed") != spec_event.get("seed"):
        seeds = f"seed {manifest.get('seed')}, the spec event's is {spec_event.get('seed')}"
        problems.append(f"{MANIFEST_FILE}: {seeds}")
    if started.get("run_id") and manifest.get("run_id") != started["run_id"]:
        ids = f"run_id {manifest.get('run_id')}, the log's is {started['run_id']}"
        problems.append(f"{MANIFEST_FILE}: {ids}")
    return problems


def _table_problems(run_dir: Path, events: list[dict[str, Any]]) -> list[str]:
    """Where ``observations.csv`` differs from the table the log's observation events make."""
    spec_event = next((e["payload"] for e in events if e["kind"] == "spec"), None)
    if spec_event is None:
        return []
    try:
        spec = CampaignSpec.model_validate(spec_event)
        expected = observations_text(spec, logged_observations(events))
    except (ValidationError, ValueError) as error:
        return [f"{OBSERVATIONS_FILE}: the log's observations do not make a table ({error})"]
    path = run_dir / OBSERVATIONS_FILE
    if not path.exists():
        return [f"{OBSERVATIONS_FILE} is missing"] if any(e["kind"] == OBSERVATION for e in events) else []
    if path.read_bytes() == expected.encode("utf-8"):
        return []
    try:
        differences = check_observations(run_dir, spec).differences
    except AthanorError as error:
        differences = [str(error)]
    lines = differences or ["rows or formatting differ from the table rebuilt from the log"]
    return [f"{OBSERVATIONS_FILE}: {line}" for line in lines]


def _digest_problems(recorded: dict[str, str], present: dict[str, str], seq: int) -> list[str]:
    """Files the ending event (``seq``) digested that are missing or changed now."""
    problems = []
    for name, digest in sorted(recorded.items()):
        if name not in present:
            problems.append(f"{name}: missing (its digest is in the ending event, seq {seq})")
        elif present[name] != digest:
            problems.append(f"{name}: changed since the run ended (its SHA-256 is not the one at seq {seq})")
    return problems


def _files_check(
    run_dir: Path, events: list[dict[str, Any]], manifest: dict[str, Any]
) -> tuple[Check, Check]:
    """The ``files`` check, and the (never fatal) list of files the record does not cover."""
    last = events[-1] if events else None
    ended = last is not None and last["kind"] in END_KINDS
    recorded = last["payload"].get("files") if ended else None
    present = file_digests(run_dir)
    if not ended:
        problems = ["the log does not end with the end of an attempt, so no digest covers the files"]
    elif recorded is None:
        problems = [f"the ending event (seq {last['seq']}) holds no file digests (recorded before they were)"]
    else:
        problems = _digest_problems(recorded, present, last["seq"])
    extra = sorted(set(present) - set(recorded or {}))
    problems += [
        f"{name}: a SQLite journal that changes {name.rsplit('-', 1)[0]} as SQLite reads it, written after"
        " the run ended"
        for name in extra
        if name.endswith(_SQLITE_SIDECARS) and name.rsplit("-", 1)[0] in (recorded or {})
    ]
    problems += _table_problems(run_dir, events) + _manifest_problems(manifest, events)
    if problems:
        files = Check("files", False, _listed(problems))
    else:
        files = Check("files", True, [f"{len(recorded or {})} files as digested at seq {last['seq']}"])
    extra = [name for name in extra if not name.endswith(_SQLITE_SIDECARS)]
    unlisted = Check(
        "not in the record",
        not extra,
        [f"{name}: no digest in the record covers it (a replay report comes after the run)" for name in extra]
        or ["every file is one the record covers"],
        fatal=False,
    )
    return files, unlisted


def audit_run(
    run_dir: Path,
    head: Head | None,
    head_origin: str,
    key: Ed25519PublicKey | None = None,
    key_origin: str = "",
) -> AuditReport:
    """Check a run folder against its record and the head kept for it.

    Args:
        run_dir: The run folder.
        head: The head recorded outside the folder (the run index, or an export's); None: none.
        head_origin: Where ``head`` comes from, in words (``the run index``).
        key: The lab's public key; None checks no signature (and says so).
        key_origin: Where ``key`` comes from, in words.

    Raises:
        AthanorError: The folder has no event log.
    """
    run_dir = Path(run_dir)
    log = run_dir / EVENTS_FILE
    if not log.exists():
        raise AthanorError(f"{run_dir} has no {EVENTS_FILE}; there is nothing to audit")
    chain = _chain_check(log)
    try:
        events = read_events(log)
    except CorruptLogError as error:
        return AuditReport(run_dir.name, run_dir, [chain, Check("record format", False, [str(error)])])
    try:
        manifest = json.loads((run_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
        manifest = manifest if isinstance(manifest, dict) else {}
    except (OSError, ValueError):
        manifest = {}
    files, unlisted = _files_check(run_dir, events, manifest)
    checks = [
        chain,
        _format_check(events),
        _head_check(events, head, head_origin, manifest),
        _signature_check(head, key, key_origin),
        files,
        unlisted,
    ]
    if not manifest:
        checks.append(Check("manifest", False, [f"{MANIFEST_FILE} is missing or not a JSON object"]))
    return AuditReport(run_dir.name, run_dir, checks, _origin(events), provenance(events))


def _origin(events: list[dict[str, Any]]) -> list[str]:
    lines = []
    for event in events:
        payload = event["payload"]
        if event["kind"] == "request":
            lines.append(f"request (seq {event['seq']}): {payload.get('text', '')}")
        elif event["kind"] == "spec":
            lines.append(f"spec (seq {event['seq']}): {payload.get('title', '')}, seed {payload.get('seed')}")
        elif event["kind"] == "lab":
            lines.append(f"lab (seq {event['seq']}): {payload.get('name', '')}")
    return lines


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def provenance(events: list[dict[str, Any]]) -> list[ProvenanceRow]:
    """Each experiment's trail through the log: proposal, protocol, readings, observation, decision.

    The proposal names the optimiser call (method, seed, iteration) and the observations the model
    had seen by then; the decision is the first one recorded after the experiment's observation.
    Experiments run again after a resume show their last protocol and every reading.
    """
    proposed: dict[str, str] = {}
    protocols: dict[str, str] = {}
    readings: dict[str, list[str]] = {}
    observed: dict[str, tuple[int, str]] = {}
    decisions: list[tuple[int, str]] = []
    seen: list[str] = []
    for event in events:
        kind, payload, seq = event["kind"], event["payload"], event["seq"]
        if kind == "optimiser_call":
            basis = ", ".join(seen) if len(seen) <= 4 else f"{seen[0]}..{seen[-1]}"
            based = f"{len(seen)} observations ({basis})" if seen else "no observations"
            for proposal in payload.get("proposals", []):
                proposed.setdefault(
                    proposal.get("experiment_id", ""),
                    f"seq {seq}: {payload.get('method')}, seed {payload.get('seed')},"
                    f" iteration {payload.get('iteration')}, on {based}",
                )
        elif kind == "protocol":
            protocols[payload.get("experiment_id", "")] = f"seq {seq}: well {payload.get('well')}"
        elif kind == "protocol_rejected":
            protocols[payload.get("experiment_id", "")] = f"seq {seq}: rejected by the dry run"
        elif kind == "reading":
            experiment = str(payload.get("key", "")).rsplit("/", 2)[-2:-1]
            if experiment:
                readings.setdefault(experiment[0], []).append(str(seq))
        elif kind == OBSERVATION:
            experiment = payload.get("experiment_id", "")
            values = ", ".join(f"{k} {_number(v)}" for k, v in payload.get("values", {}).items())
            observed.setdefault(experiment, (seq, f"seq {seq}: {payload.get('status')} {values}".rstrip()))
            seen.append(experiment)
        elif kind == "decision":
            verdict = f"{payload.get('action')} (iteration {payload.get('iteration')})"
            decisions.append((seq, f"seq {seq}: {verdict}"))
    rows = []
    for experiment in sorted(set(proposed) | set(observed)):
        at = observed.get(experiment, (None, ""))
        decision = next((text for seq, text in decisions if at[0] is not None and seq > at[0]), "")
        seqs = readings.get(experiment, [])
        rows.append(
            ProvenanceRow(
                experiment_id=experiment,
                proposal=proposed.get(experiment, ""),
                protocol=protocols.get(experiment, ""),
                readings=f"seq {', '.join(seqs)}" if seqs else "",
                observation=at[1],
                decision=decision,
            )
        )
    return rows


def export_run(run_dir: Path, out: Path, head: Head | None, key: Ed25519PublicKey | None) -> Path:
    """Write one ``.tar.gz`` holding the run folder and what auditing it elsewhere needs.

    The archive holds ``<run id>/`` (every file of the run folder) and ``export.json``: the run id,
    the head the run index holds for it, and the lab's public key (PEM) when it has one.

    Args:
        run_dir: The run folder.
        out: The archive to write (refused when it exists).
        head: The run's head from the run index (None: none; the audit of the archive will fail).
        key: The lab's public key, or None.

    Raises:
        AthanorError: ``out`` exists already.
    """
    run_dir, out = Path(run_dir), Path(out)
    info = {
        "run_id": run_dir.name,
        "head": head.model_dump() if head is not None else None,
        "public_key": public_key_pem(key).decode("ascii") if key is not None else None,
    }
    try:
        handle = open(out, "xb")
    except FileExistsError:
        raise AthanorError(f"{out} exists; choose another file with --output, or remove it") from None
    with handle, tarfile.open(fileobj=handle, mode="w:gz") as archive:
        data = (json.dumps(info, indent=2) + "\n").encode("utf-8")
        member = tarfile.TarInfo(EXPORT_FILE)
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
        archive.add(run_dir, arcname=run_dir.name, recursive=True)
    return out


def open_export(archive: Path, into: Path) -> tuple[Path, Head | None, bytes | None]:
    """Unpack an export into ``into``; only plain files and folders are taken out.

    Returns:
        The unpacked run folder, the head the archive carries, and its public key's PEM (or None).

    Raises:
        AthanorError: Not an export of athanor (no readable ``export.json``, or no run folder).
    """
    try:
        with tarfile.open(archive, mode="r:gz") as handle:
            handle.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise AthanorError(f"{archive} cannot be read as a .tar.gz ({error})") from None
    try:
        info = json.loads((Path(into) / EXPORT_FILE).read_text(encoding="utf-8"))
        run_dir = Path(into) / str(info["run_id"])
        head = Head.model_validate(info["head"]) if info.get("head") is not None else None
    except (OSError, ValueError, KeyError, TypeError, ValidationError) as error:
        raise AthanorError(
            f"{archive} is not an export of `athanor export` (its {EXPORT_FILE} cannot be read: {error})"
        ) from None
    if not run_dir.is_dir() or run_dir.parent != Path(into):
        raise AthanorError(f"{archive} holds no folder of run {info['run_id']}")
    pem = info.get("public_key")
    return run_dir, head, pem.encode("ascii") if isinstance(pem, str) else None
