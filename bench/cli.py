"""The ``athanor bench`` sub-commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, cast

import typer

from athanor.commandline import CommandLine
from athanor.errors import AthanorError
from athanor.terminal import make_console

__all__ = ["bench_app"]

bench_app = CommandLine(
    no_args_is_help=True,
    help="Benchmarks: the optimiser on real data sets, side by side with peer libraries.",
)
OutOption = Annotated[
    Path | None, typer.Option("--out", metavar="FILE.json", help="Write the results as JSON here.")
]
DatasetOption = Annotated[
    Path,
    typer.Option(
        "--dataset", metavar="FILE.csv", help="CSV with a header; inputs first, the objective last."
    ),
]
DirectionOption = Annotated[
    str,
    typer.Option(
        "--direction", metavar="max|min", help="Whether the objective is to be maximised or minimised."
    ),
]
_console = make_console()
_err_console = make_console(stderr=True)


def _fail(error: AthanorError) -> None:
    lines = (str(error) or type(error).__name__).splitlines()
    _err_console.print(f"[bold red]error:[/] {lines[0]}", highlight=False)
    for line in lines[1:]:
        _err_console.print(f"  {line}", highlight=False)
    raise typer.Exit(2)


def _direction(direction: str) -> Literal["min", "max"]:
    """The ``--direction`` option as typed, checked; raises AthanorError naming the choices."""
    if direction not in ("min", "max"):
        raise AthanorError(f"--direction {direction!r} is not understood; use max or min")
    return "min" if direction == "min" else "max"


@bench_app.command("optimiser")
def optimiser(
    dataset: DatasetOption,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds (independent runs) per method.")] = 20,
    budget: Annotated[
        int, typer.Option("--budget", help="Experiments per run, the 2 random initial ones included.")
    ] = 100,
    direction: DirectionOption = "max",
    methods: Annotated[
        str,
        typer.Option(
            "--methods",
            metavar="LIST",
            help=(
                "Comma-separated: random, athanor, athanor-warp-ucb4, athanor-qlognei, athanor-ucb,"
                " athanor-rf, baybe, ax."
            ),
        ),
    ] = "random,athanor,baybe,ax",
    out: OutOption = None,
) -> None:
    """Pool-based benchmark (Liang et al. 2021): experiments to find the top 5 % of a data set."""
    from bench.optimiser import run_cli

    try:
        chosen = _direction(direction)
        names = [m.strip() for m in methods.split(",") if m.strip()]
        run_cli(
            dataset, seeds=seeds, budget=budget, direction=chosen, methods=names, out=out, console=_console
        )
    except AthanorError as error:
        _fail(error)


@bench_app.command("designer")
def designer(
    dataset: DatasetOption,
    direction: DirectionOption = "max",
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds (independent runs) per method.")] = 20,
    budget: Annotated[
        int, typer.Option("--budget", help="Experiments per run, the 2 random initial ones included.")
    ] = 50,
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods",
            metavar="LIST",
            help=(
                "Comma-separated: random, athanor, athanor-warp, athanor-ucb, athanor-warp-ucb, ax."
                " Default: all (ax when installed)."
            ),
        ),
    ] = None,
    noise: Annotated[
        float, typer.Option("--noise", help="Noise on each reading, as a fraction of the data's sd.")
    ] = 0.0,
    batch: Annotated[
        int, typer.Option("--batch", help="Compositions proposed together per cycle (after the initial 2).")
    ] = 1,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            metavar="sync|async",
            help="sync: batches; async: continuous flow, --batch experiments running and one proposed as"
            " each finishes.",
        ),
    ] = "sync",
    out: OutOption = None,
) -> None:
    """Continuous proposals (the designer's `propose`) on an MLP emulator of a data set."""
    from bench.emulator import run_cli

    try:
        chosen = _direction(direction)
        names = None if methods is None else [m.strip() for m in methods.split(",") if m.strip()]
        run_cli(
            dataset,
            seeds=seeds,
            budget=budget,
            direction=chosen,
            methods=names,
            noise=noise,
            batch=batch,
            mode=cast(Literal["sync", "async"], mode),  # run_cli refuses anything else, naming --mode
            out=out,
            console=_console,
        )
    except AthanorError as error:
        _fail(error)


@bench_app.command("utilisation")
def utilisation(
    experiments: Annotated[int, typer.Option(help="Experiments per campaign.")] = 40,
    time_scale: Annotated[
        float, typer.Option(help="Multiplier on the meters' 2, 4, 6 and 8 s measurements.")
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of both campaigns.")] = 0,
    out: OutOption = None,
) -> None:
    """Instrument utilisation with four meters of different speeds: async proposals vs sync batches."""
    import json

    from rich.table import Table

    from bench.utilisation import measure

    try:
        results = measure(experiments=experiments, time_scale=time_scale, seed=seed)
    except AthanorError as error:
        _fail(error)
    table = Table(title="instrument utilisation (busy time / wall time)", title_justify="left")
    table.add_column("mode")
    table.add_column("utilisation", justify="right")
    table.add_column("wall (s)", justify="right")
    for name in results["async"]["per_instrument"]:
        table.add_column(name, justify="right")
    for mode in ("async", "sync"):
        row = results[mode]
        per = [f"{u:.0%}" for u in row["per_instrument"].values()]
        table.add_row(mode, f"{row['utilisation']:.1%}", f"{row['wall_s']:.1f}", *per)
    _console.print(table)
    ratio = results["sync"]["wall_s"] / results["async"]["wall_s"]
    _console.print(f"async finishes the same {experiments} experiments {ratio:.2f}x faster")
    if out is not None:
        summary = {
            mode: {k: results[mode][k] for k in ("utilisation", "wall_s")} for mode in ("async", "sync")
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        _console.print(f"wrote {out}")


@bench_app.command("overhead")
def overhead(
    experiments: Annotated[int, typer.Option(help="Experiments per campaign.")] = 24,
    batch: Annotated[int, typer.Option(help="Batch size (and size of the initial design).")] = 4,
    repeats: Annotated[int, typer.Option(help="Campaigns to run; medians are reported.")] = 3,
    out: OutOption = None,
) -> None:
    """Orchestration overhead: a campaign on instantaneous instruments, split into optimiser and the rest."""
    import json

    from rich.table import Table

    from bench.overhead import measure_overhead

    try:
        results = measure_overhead(experiments=experiments, batch=batch, repeats=repeats)
    except AthanorError as error:
        _fail(error)
    table = Table(
        title=f"{experiments} experiments in batches of {batch}, instruments take no time"
        f" (the median of {repeats} campaigns)",
        title_justify="left",
    )
    table.add_column("part")
    table.add_column("seconds", justify="right")
    table.add_column("per experiment", justify="right")
    table.add_column("share of the campaign", justify="right")
    campaign = results["campaign_s"]
    table.add_row("start-up (Ray, actors)", f"{results['startup_s']:.2f}", "", "")
    for label, key in (("optimiser", "optimiser_s"), ("orchestration", "orchestration_s")):
        seconds = results[key]
        table.add_row(label, f"{seconds:.2f}", f"{seconds / experiments:.3f}", f"{seconds / campaign:.0%}")
    table.add_row("campaign", f"{campaign:.2f}", f"{campaign / experiments:.3f}", "100%")
    _console.print(table)
    _console.print(
        f"{results['events_per_experiment']:.1f} events per experiment;"
        f" one fsynced event append: {results['event_append_s'] * 1e3:.2f} ms (median);"
        f" optimiser calls reproduced from the log: {'yes' if results['reproduced'] else 'NO'}"
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        _console.print(f"wrote {out}")


@bench_app.command("proposal")
def proposal(
    repeats: Annotated[int, typer.Option(help="Timed calls per case, each with its own seed.")] = 5,
    cases: Annotated[
        str,
        typer.Option(
            "--cases",
            metavar="LIST",
            help="Comma-separated: a (one objective, q 4), b (two objectives), c (q 1), d (mixed space).",
        ),
    ] = "a,b,c,d",
    out: OutOption = None,
) -> None:
    """Seconds per proposal on campaign-sized synthetic data, each result checked feasible."""
    import json

    from bench.proposal import measure_proposals, parse_cases, results_table

    try:
        results = measure_proposals(parse_cases(cases), repeats=repeats)
    except AthanorError as error:
        _fail(error)
    _console.print(results_table(results))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        _console.print(f"wrote {out}")
