"""``athanor audit``, ``athanor export`` and ``athanor keys``: a run's record, checked and carried.

- ``athanor audit RUN`` checks a run folder against its record (:func:`runs.audit.audit_run`), with
  the head kept in ``$ATHANOR_HOME/run-index.jsonl`` and the lab's public key when it has one, prints
  every check and the provenance of each experiment, and exits 0 only when every check holds (1
  otherwise; 2 when the run cannot be found or read).
- ``athanor audit ARCHIVE.tar.gz`` audits an export on any machine, with the head it carries and
  the public key it carries, or (better) the one given with ``--public-key``.
- ``athanor export RUN`` writes that archive (:func:`runs.audit.export_run`).
- ``athanor keys init`` makes the lab's Ed25519 signing key; ``athanor keys show`` prints its public
  key and fingerprint, to hand to auditors.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from athanor.commandline import CommandLine
from athanor.errors import AthanorError
from athanor.terminal import make_console

if TYPE_CHECKING:
    from runs.audit import AuditReport

__all__ = ["add_audit_commands", "keys_app"]

keys_app = CommandLine(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="The lab's signing key: every run's head is signed with it once it exists.",
)
console = make_console()
err_console = make_console(stderr=True)
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


def _fail(error: BaseException) -> None:
    lines = (str(error) or type(error).__name__).splitlines()
    err_console.print(f"[bold red]error:[/] {lines[0]}", highlight=False)
    for line in lines[1:]:
        err_console.print(f"  {line}", highlight=False)
    raise typer.Exit(2)


def _is_archive(target: str) -> bool:
    return target.endswith(_ARCHIVE_SUFFIXES) and Path(target).is_file()


def audit(
    target: Annotated[
        str, typer.Argument(metavar="RUN|ARCHIVE", help="Run id, prefix or folder, or an export .tar.gz.")
    ],
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            metavar="KEY.pem",
            help="The lab's public key, obtained from the lab (`athanor keys show`), to check the"
            " head's signature with; default: the lab's own key, or the one an archive carries.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check a run against its record, its recorded head and its signature; exit 1 if any fails."""
    from athanor.settings import athanor_home
    from runs.audit import EXPORT_FILE, audit_run, open_export
    from runs.seal import recorded_head
    from runs.signing import lab_public_key, public_key_from_pem
    from runs.store import resolve_run

    try:
        given = None if public_key is None else public_key_from_pem(public_key.read_bytes(), str(public_key))
        if _is_archive(target):
            with tempfile.TemporaryDirectory(prefix="athanor-audit-") as scratch:
                run_dir, head, pem = open_export(Path(target), Path(scratch))
                carried = None if pem is None else public_key_from_pem(pem, f"{target}'s public key")
                key, origin = (given, str(public_key)) if given else (carried, "carried by the archive")
                report = audit_run(run_dir, head, f"{Path(target).name}'s {EXPORT_FILE}", key, origin)
                _print_report(report, as_json)
        else:
            run_dir = resolve_run(target)
            home = athanor_home()
            own = lab_public_key(home)
            key, origin = (given, str(public_key)) if given is not None else (own, "the lab's key")
            head = recorded_head(run_dir.name, home)
            report = audit_run(run_dir, head, "the run index", key, origin)
            _print_report(report, as_json)
    except (AthanorError, OSError) as error:
        _fail(error)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report: AuditReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        return
    console.print(f"[bold]audit[/] {report.run_id}", highlight=False)
    for check in report.checks:
        mark = "[green]ok[/]" if check.ok else ("[bold red]FAIL[/]" if check.fatal else "[yellow]note[/]")
        console.print(f"  {mark}  {check.name}: {escape(check.detail[0])}", highlight=False)
        for line in check.detail[1:]:
            console.print(f"        {escape(line)}", highlight=False)
    for line in report.origin:
        console.print(f"  {escape(line)}", highlight=False)
    table = Table(title="provenance", title_justify="left")
    for column in ("experiment", "proposed by", "protocol", "readings", "observation", "decision after it"):
        table.add_column(column, overflow="fold")
    for row in report.provenance:
        table.add_row(
            row.experiment_id, row.proposal, row.protocol, row.readings, row.observation, row.decision
        )
    if report.provenance:
        console.print(table)
    verdict = "[green]every check holds[/]" if report.ok else "[bold red]the audit failed[/]"
    console.print(verdict)


def export(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id, unique prefix, or run folder.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE.tar.gz", help="The archive (default: RUN_ID.tar.gz)."),
    ] = None,
) -> None:
    """Write one .tar.gz holding the run and what auditing it on another machine needs."""
    from athanor.settings import athanor_home
    from runs.audit import export_run
    from runs.seal import recorded_head
    from runs.signing import lab_public_key
    from runs.store import resolve_run

    try:
        run_dir = resolve_run(run_ref)
        home = athanor_home()
        head = recorded_head(run_dir.name, home)
        path = export_run(run_dir, output or Path(f"{run_dir.name}.tar.gz"), head, lab_public_key(home))
    except (AthanorError, OSError) as error:
        _fail(error)
    if head is None:
        err_console.print(
            "[yellow]note[/]: the run index holds no head for this run (it never ended cleanly): the"
            " archive's audit will fail on it",
            highlight=False,
        )
    console.print(f"exported {run_dir.name}: audit it anywhere with `athanor audit {path.name}`")
    print(path)


@keys_app.command("init")
def keys_init() -> None:
    """Make the lab's Ed25519 signing key; every run that ends afterwards has its head signed."""
    from athanor.settings import athanor_home
    from runs.signing import create_signing_key, fingerprint, lab_public_key

    home = athanor_home()
    try:
        path = create_signing_key(home)
        key = lab_public_key(home)
    except (AthanorError, OSError) as error:
        _fail(error)
    assert key is not None
    console.print(f"signing key made; public key: {path}", highlight=False)
    console.print(f"fingerprint: {fingerprint(key)}", highlight=False)
    console.print("give the public key to auditors (`athanor keys show`); keep the folder's private key safe")


@keys_app.command("show")
def keys_show() -> None:
    """Print the lab's public key (PEM) and its fingerprint."""
    from athanor.settings import athanor_home
    from runs.signing import fingerprint, lab_public_key, public_key_pem

    try:
        key = lab_public_key(athanor_home())
    except AthanorError as error:
        _fail(error)
    if key is None:
        _fail(AthanorError("this lab has no signing key; make one with `athanor keys init`"))
    assert key is not None
    err_console.print(f"fingerprint: {fingerprint(key)}", highlight=False)
    print(public_key_pem(key).decode("ascii"), end="")


def add_audit_commands(app: typer.Typer) -> None:
    """Add ``audit``, ``export`` and ``keys`` to the ``athanor`` application."""
    app.command()(audit)
    app.command()(export)
    app.add_typer(keys_app, name="keys")
