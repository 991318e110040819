"""What the benchmark runners share for their output: the JSON file, the progress bar and the table."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["run_progress", "run_with_progress", "write_json"]

#: Called after each run with ``(method, seed)``.
OnRun = Callable[[str, int], None]
#: Called after each seed with the document so far.
OnSeed = Callable[[dict[str, Any]], None]


def write_json(document: Mapping[str, Any], path: Path) -> None:
    """Write ``document`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


def run_progress(console: Console) -> Progress:
    """A progress bar over runs: what runs now, done of total, time spent and time left."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def run_with_progress(
    console: Console,
    runs: int,
    out: Path | None,
    run: Callable[[OnRun, OnSeed], dict[str, Any]],
    table: Callable[[dict[str, Any]], RenderableType],
) -> dict[str, Any]:
    """Run a benchmark under a progress bar, keep its JSON up to date, then print its table.

    Args:
        console: Where to print.
        runs: Runs in all (seeds times methods), the bar's total.
        out: The JSON file, rewritten after every seed so that an interrupted benchmark keeps the
            seeds done (None: no file).
        run: Runs the benchmark given its two callbacks (after each run, after each seed) and returns
            the final document.
        table: Renders a document as a table.

    Returns:
        The final document.
    """
    progress = run_progress(console)
    with progress:
        task = progress.add_task("seeds x methods", total=runs)

        def on_run(method: str, seed: int) -> None:
            progress.update(task, advance=1, description=f"seed {seed} {method}")

        def on_seed(document: dict[str, Any]) -> None:
            if out is not None:
                write_json(document, out)

        result = run(on_run, on_seed)
    if out is not None:
        write_json(result, out)
    console.print(table(result))
    if out is not None:
        console.print(f"results: {out}")
    return result
