"""The ``athanor lab`` commands: check a lab description against the instruments it names.

``athanor lab check LAB_FILE`` reads the file (a malformed one is refused naming the line and the
fix, exit 2), builds and dry-runs every instrument (:func:`instruments.check.check_lab`), prints a
table and what to fix, and exits 1 if the lab or any instrument would fail every campaign (0 when
all are ok or only have warnings): whatever ``athanor run`` refuses about a lab on its own fails
here, in the same words (:mod:`instruments.lab_rules`). With ``RAY_ADDRESS`` set it joins that
cluster to check where each instrument's actor can run.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from athanor.commandline import CommandLine
from athanor.errors import AthanorError
from athanor.lab import LabDescription
from athanor.terminal import make_console
from athanor.yamlfile import load_model

if TYPE_CHECKING:
    from instruments.check import Check, InstrumentCheck

__all__ = ["lab_app"]

lab_app = CommandLine(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Describe and check your lab (lab.yaml).",
)

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}
#: Seconds to wait for the Ray cluster named by ``RAY_ADDRESS`` to answer.
_RAY_TIMEOUT_S = 5.0


@contextlib.contextmanager
def _cluster(connect: bool, console: Console) -> Iterator[None]:
    """Join the cluster ``RAY_ADDRESS`` names (when connecting), so that placement is checked."""
    address = os.environ.get("RAY_ADDRESS")
    if not connect or not address:
        yield
        return
    from instruments.ray_runtime import check_ray_address, ensure_ray

    try:
        check_ray_address(address, _RAY_TIMEOUT_S)
        started = ensure_ray(address, None, connect_timeout_s=_RAY_TIMEOUT_S)
    except AthanorError as error:
        console.print(f"[yellow]placement not checked:[/] {error}", highlight=False)
        yield
        return
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()


def _table(lab: LabDescription, results: list[InstrumentCheck]) -> Table:
    table = Table(title=f"lab {lab.name!r}", title_justify="left")
    for column in ("instrument", "kind", "back end", "connection", "envelope", "dry run", "status"):
        table.add_column(column, overflow="fold")
    for r in results:
        status = f"[{_STYLE[r.status]}]{r.status}[/]"
        table.add_row(r.name, r.kind, r.backend, r.connection, r.envelope, r.dry_run, status)
    return table


@lab_app.command()
def check(
    ctx: typer.Context,
    lab_file: Annotated[Path, typer.Argument(metavar="LAB_FILE", help="The lab description (lab.yaml).")],
    no_connect: Annotated[
        bool,
        typer.Option(
            "--no-connect", help="Open no serial port and contact no robot; build and simulate only."
        ),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """Build and dry-run every instrument of a lab file; exit 1 if any would fail a campaign."""
    from instruments.check import check_lab, lab_findings

    debug = debug or bool(ctx.find_root().params.get("debug"))
    console, err_console = make_console(), make_console(stderr=True)
    try:
        lab = load_model(lab_file, LabDescription, "lab file")
    except AthanorError as error:
        if debug:
            err_console.print_exception()
        first, *rest = str(error).splitlines()
        err_console.print(f"[bold red]error:[/] {first}", highlight=False)
        for line in rest:
            err_console.print(f"  {line}", highlight=False)
        raise typer.Exit(2) from None

    connect = not no_connect
    with tempfile.TemporaryDirectory(prefix="athanor-lab-check-") as folder, _cluster(connect, console):
        results = check_lab(lab, connect=connect, workdir=Path(folder))

    console.print(_table(lab, results))
    whole = [c for c in lab_findings(lab) if c.status != "ok"]
    for found in whole:
        _print_finding(console, "lab", found, debug)
    for r in results:
        for found in r.problems():
            _print_finding(console, r.name, found, debug)
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "warn", "fail")}
    lab_failing = sum(c.status == "fail" for c in whole)
    failed = counts["fail"] or lab_failing
    verdict = "[bold red]lab check failed[/]" if failed else "[green]lab check passed[/]"
    console.print(
        f"{verdict}: {len(results)} instrument(s), {counts['ok']} ok, {counts['warn']} with warnings,"
        f" {counts['fail']} failing"
        + (f"; {lab_failing} problem(s) of the lab as a whole" if lab_failing else "")
    )
    if failed:
        raise typer.Exit(1)


def _print_finding(console: Console, where: str, found: Check, debug: bool) -> None:
    """One finding that is not ok: ``status where · what: detail``, its fix, and with ``debug`` its trace."""
    style = _STYLE[found.status]
    console.print(f"[{style}]{found.status}[/] {where} · {found.name}: {found.detail}", highlight=False)
    if found.fix:
        console.print(f"    fix: {found.fix}", highlight=False)
    if debug and found.trace:
        console.print(found.trace, highlight=False, markup=False)


@lab_app.command("cluster-env")
def cluster_env() -> None:
    """Print the environment a Ray node of this lab's cluster is started with (token authentication).

    Every Ray that athanor starts takes a token, kept in $ATHANOR_HOME/ray/auth_token (made here if
    missing). Start each node of a cluster with the same token:
    eval "$(athanor lab cluster-env)" && ray start --head ...; copy the token file to the same path on
    the other PCs.
    """
    import shlex

    from instruments.ray_runtime import cluster_environment

    for name, value in cluster_environment().items():
        print(f"export {name}={shlex.quote(value)}")


@lab_app.command("new-plate")
def new_plate(
    ctx: typer.Context,
    lab_file: Annotated[Path, typer.Argument(metavar="LAB_FILE", help="The lab description (lab.yaml).")],
) -> None:
    """Tell athanor a fresh plate is on the deck: its wells are free again for the next campaign.

    Campaigns on a lab file never dispense into a well an earlier run used; the record of used wells
    is in $ATHANOR_HOME/labs/. Refused while a campaign holds the lab.
    """
    from runs.lab_hold import LabHold, Plate
    from runs.store import athanor_home

    err_console = make_console(stderr=True)
    try:
        lab = load_model(lab_file, LabDescription, "lab file")
        home = athanor_home()
        hold = LabHold(lab, described=True, home=home)
        hold.acquire("lab new-plate")
        with hold:
            forgotten = Plate(lab, home).clear()
    except AthanorError as error:
        first, *rest = str(error).splitlines()
        err_console.print(f"[bold red]error:[/] {first}", highlight=False)
        for line in rest:
            err_console.print(f"  {line}", highlight=False)
        raise typer.Exit(2) from None
    make_console().print(
        f"fresh plate for lab {lab.name!r}: all {len(lab.wells)} wells free"
        f" ({forgotten} used well(s) of the previous plate forgotten)",
        highlight=False,
    )

