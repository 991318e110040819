"""The ``athanor`` command line: run, resume, replay, plan, runs, show, verify, lab, bench.

Errors a user can act on print one red line (or several, one per problem) and exit 2; ``--debug``
shows the traceback as well.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from athanor.asking import Ask, Question
from athanor.audit_cli import add_audit_commands
from athanor.commandline import DISTRIBUTION, CommandLine, TimeScaleOption, distribution_version
from athanor.errors import AthanorError, RequestNotUnderstood
from athanor.lab_cli import lab_app
from athanor.models import Observation
from athanor.pareto import counts, pareto_front
from athanor.schedule_cli import schedule_app
from athanor.spec import CampaignSpec
from athanor.stopping import StopControl
from athanor.terminal import make_console
from bench.cli import bench_app

if TYPE_CHECKING:
    from agents.llm.reader import Explanation
    from runs.store import ObservationsCheck, RunSummary

__all__ = ["app", "main"]

app = CommandLine(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="athanor: an autonomous-lab orchestrator. Plan, run and audit optimisation campaigns.",
)
app.add_typer(bench_app, name="bench")
app.add_typer(lab_app, name="lab")
app.add_typer(schedule_app, name="schedule")
add_audit_commands(app)
#: The files of a run folder that ``show`` lists.
RUN_FILES = ("report.md", "convergence.png", "pareto.png", "observations.csv")
console = make_console()
err_console = make_console(stderr=True)
_state = {"debug": False}

LLMOption = Annotated[
    str | None,
    typer.Option("--llm", metavar="BACKEND", help="LLM back end: offline (default), openai or mock."),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address", metavar="HOST:PORT", help="Join this Ray cluster; overrides RAY_ADDRESS."
    ),
]
RunArgument = Annotated[
    str, typer.Argument(metavar="RUN", help="Run id, unique prefix, or run folder.")
]
RequestArgument = Annotated[
    str, typer.Argument(metavar="REQUEST", help="A plain-language request, or a campaign YAML file.")
]
JSONOption = Annotated[bool, typer.Option("--json", help="Print JSON (its shape is in the README).")]
OnStopOption = Annotated[
    str,
    typer.Option(
        "--on-stop",
        metavar="finish|abort",
        help="On SIGTERM or Ctrl-C: let the instruments' running commands finish (a second signal"
        " aborts them), or abort them at once; either way the instruments end in their safe state.",
    ),
]
StopGraceOption = Annotated[
    float,
    typer.Option(
        "--stop-grace",
        metavar="SECONDS",
        help="Longest wait for running commands to finish on a stop before they are aborted.",
    ),
]
WaitOption = Annotated[
    bool,
    typer.Option(
        "--wait", help="If another campaign holds the lab, wait for it to finish instead of refusing."
    ),
]
YesOption = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        help="Never ask: a request that leaves a question open (its budget, its batch size, whether its"
        " amounts add up to 1 or 100) is refused with the question, as without a terminal.",
    ),
]
PriorOption = Annotated[
    Path | None,
    typer.Option(
        "--prior",
        metavar="FILE.csv",
        help="Earlier experiments the optimiser learns from first (not in the budget); overrides"
        " the spec's prior_data.",
    ),
]


def _print_version(asked: bool) -> None:
    if asked:
        print(f"{DISTRIBUTION} {distribution_version()}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    _state["debug"] = debug
    from instruments.ray_runtime import use_athanor_token

    use_athanor_token()  # before any command imports Ray, which reads it once


def _asker(yes: bool) -> Ask | None:
    """Terminal prompts for what a request leaves open; None with ``--yes`` or without a terminal."""
    return None if yes or not sys.stdin.isatty() else _prompt


def _prompt(question: Question) -> str:
    """Ask ``question`` on the terminal (on stderr, so that stdout stays the command's output)."""
    kind = click.Choice(list(question.choices)) if question.choices else int
    return str(typer.prompt(question.text, default=question.default, type=kind, err=True))


def _print_explanation(explanation: Explanation) -> None:
    """Which words became which field, as a table on stderr, then what the spec takes by default."""
    table = Table(title="How the offline reader reads the request", title_justify="left")
    for column in ("Words", "Became", "Value"):
        table.add_column(column, overflow="fold")
    for words, field, value in explanation.rows:
        style = "red" if field == "not read" else None
        table.add_row(escape(words), escape(field), escape(value), style=style)
    for field, value in explanation.defaults:
        table.add_row("[dim](not stated)[/]", escape(field), escape(value))
    err_console.print(table)


def _fail(error: BaseException) -> None:
    if _state["debug"]:
        err_console.print_exception()
    message = str(error) or type(error).__name__
    lines = message.splitlines()
    err_console.print(f"[bold red]error:[/] {lines[0]}", highlight=False)
    for line in lines[1:]:
        err_console.print(f"  {line}", highlight=False)
    raise typer.Exit(2)


def _composition_table(spec: CampaignSpec, rows: list[Any], title: str) -> Table:
    # with several objectives the rows are the Pareto front (see best_rows), with every objective
    objectives = spec.objectives if len(spec.objectives) > 1 else [spec.primary_objective]
    title = "Pareto front" if len(objectives) > 1 else title
    table = Table(title=title, title_justify="left")
    table.add_column("experiment")
    for name in spec.component_names:
        table.add_column(name, justify="right")
    for objective in objectives:
        unit = f" ({objective.unit})" if objective.unit else ""
        table.add_column(f"{objective.name}{unit}", justify="right", style="bold")
    for row in rows:
        cells = [f"{row.composition.get(n, 0.0):.3f}" for n in spec.component_names]
        table.add_row(row.experiment_id, *cells, *(f"{row.values[o.name]:.4g}" for o in objectives))
    return table


def best_rows(spec: CampaignSpec, observations: list[Any], n: int = 5) -> list[Any]:
    """The ``n`` best successful observations, best first; with several objectives, the Pareto front.

    With outcome constraints only the observations that meet them count.
    """
    if len(spec.objectives) > 1:
        return pareto_front(spec, observations)
    objective = spec.primary_objective
    ok = [o for o in observations if o.status == "ok" and objective.name in o.values]
    ok = [o for o in ok if counts(spec, o)] if spec.outcome_constraints else ok
    return sorted(ok, key=lambda o: o.values[objective.name], reverse=objective.direction == "maximise")[:n]


@app.command()
def run(
    request: RequestArgument,
    seed: Annotated[
        int | None, typer.Option(metavar="N", help="Seed every random stream (reproducible run).")
    ] = None,
    llm: LLMOption = None,
    lab: Annotated[
        Path | None, typer.Option(metavar="LAB.yaml", help="A lab description; default: the virtual lab.")
    ] = None,
    time_scale: TimeScaleOption = None,
    literature: Annotated[bool, typer.Option(help="Ground the campaign in the literature store.")] = True,
    ray_address: RayAddressOption = None,
    prior: PriorOption = None,
    on_stop: OnStopOption = "finish",
    stop_grace: StopGraceOption = 60.0,
    wait: WaitOption = False,
    yes: YesOption = False,
) -> None:
    """Run a campaign end to end and record it.

    On a terminal, what the request leaves open (its budget, its batch size, whether its amounts add
    up to 1 or 100) is asked, and the answers are recorded as part of the request.
    """
    ask = _asker(yes)
    stop = _stop_control(on_stop, stop_grace)
    settings = _settings(ray_address)
    display = _CampaignDisplay()

    def start() -> Any:  # imports inside, so that a stop while they load is a clean stop too
        from athanor.app import RunOptions
        from athanor.app import run as run_campaign

        options = RunOptions(
            settings=settings,
            llm=llm,
            seed=seed,
            lab_file=lab,
            time_scale=time_scale,
            literature=literature,
            prior=prior,
            stop=stop,
            wait_for_lab=wait,
            on_wait=_say_waiting,
            ask=ask,
        )
        return run_campaign(request, options, on_event=display.on_event, on_start=display.on_start)

    _finish(display, start, stop)


@app.command()
def resume(
    run_ref: RunArgument,
    llm: LLMOption = None,
    literature: Annotated[bool, typer.Option(help="Ground the campaign in the literature store.")] = True,
    ray_address: RayAddressOption = None,
    refill: Annotated[
        list[str] | None,
        typer.Option(
            "--refill",
            metavar="STOCK=UL",
            help="Stock STOCK was refilled and now holds UL µL, e.g. --refill A_stock=5000 (repeatable).",
        ),
    ] = None,
    on_stop: OnStopOption = "finish",
    stop_grace: StopGraceOption = 60.0,
    wait: WaitOption = False,
) -> None:
    """Continue a stopped run from its last checkpoint; no instrument action runs twice."""
    from runs.refill import parse_refills

    try:
        refills = parse_refills(refill or [])
    except AthanorError as error:
        _fail(error)
    stop = _stop_control(on_stop, stop_grace)
    settings = _settings(ray_address)
    display = _CampaignDisplay()

    def start() -> Any:  # imports inside, so that a stop while they load is a clean stop too
        from athanor.app import RunOptions
        from athanor.app import resume as resume_campaign

        options = RunOptions(
            settings=settings,
            llm=llm,
            literature=literature,
            stop=stop,
            wait_for_lab=wait,
            on_wait=_say_waiting,
        )
        return resume_campaign(
            run_ref, options, on_event=display.on_event, on_start=display.on_start, refills=refills
        )

    _finish(display, start, stop)


def _say_waiting(line: str) -> None:
    err_console.print(f"[yellow]{line}[/] (Ctrl-C to give up)", highlight=False)


def _stop_control(policy: str, grace_s: float) -> StopControl:
    """The stop policy the options ask for, telling the operator what each signal does."""
    try:
        return StopControl(
            policy,  # type: ignore[arg-type]  # checked by StopControl
            grace_s,
            on_notice=lambda line: err_console.print(f"[bold yellow]{line}[/]", highlight=False),
        )
    except ValueError as error:
        _fail(AthanorError(f"--on-stop / --stop-grace: {error}"))
        raise  # not reached: _fail exits


def _settings(ray_address: str | None) -> Any:
    """Settings from the environment, with ``--ray-address`` winning over ``RAY_ADDRESS``."""
    from athanor.settings import Settings

    settings = Settings.from_env()
    return dataclasses.replace(settings, ray_address=ray_address) if ray_address else settings


@app.command()
def replay(
    run_ref: RunArgument,
    report: Annotated[
        bool, typer.Option(help="Write replay-<time>.json next to the run's event log.")
    ] = True,
) -> None:
    """Re-make a recorded run's decisions with the current code, from its record; exit 1 if any differs."""
    from athanor.app import replay as replay_run

    try:
        result = replay_run(run_ref, write=report)
    except AthanorError as error:
        _fail(error)
    console.print(f"[bold]replay[/] {result.run_id}", highlight=False)
    table = Table(title="decisions", title_justify="left")
    for column in ("kind", "recorded", "replayed", "matched"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for tally in result.tallies:
        style = "" if tally.matched == tally.recorded == tally.replayed else "red"
        table.add_row(tally.kind, str(tally.recorded), str(tally.replayed), str(tally.matched), style=style)
    console.print(table)
    console.print(f"replayed: {result.scope}", highlight=False)
    for note in result.notes:
        console.print(f"  {note}", highlight=False)
    if result.report_path is not None:
        console.print(f"report: {result.report_path}", highlight=False)
    if result.divergence is None:
        console.print(f"[green]every decision matched[/] ({result.matched} events)")
        return
    lines = result.divergence.describe().splitlines()
    err_console.print(f"[bold red]diverged[/] at {lines[0]}", highlight=False)
    for line in lines[1:]:
        err_console.print(line, highlight=False)
    raise typer.Exit(1)


class _CampaignDisplay:
    """Live progress of a campaign: a bar over experiments, the PI's decisions, the literature cited.

    A resumed run's bar starts from the experiments already in its ``observations.csv``, and its
    best (or, with several objectives, its Pareto front) counts them.
    """

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[best]}"),
            console=console,
            transient=False,
        )
        self.spec: CampaignSpec | None = None
        self.run_id: str | None = None
        self.prior_lines: list[str] = []
        self.time_scale_line: str | None = None
        self.task: Any = None
        self.observations: list[Observation] = []

    def on_start(self, run_dir: Path, spec: CampaignSpec) -> None:
        console.print(f"[bold]campaign[/] {spec.title}  [dim]({run_dir.name})[/]")
        bounds = ", ".join(f"{c.name} {c.lower:g}–{c.upper:g}" for c in spec.components)
        console.print(f"  components: {bounds}" + (f"; sum {spec.sum_rule.total:g}" if spec.sum_rule else ""))
        for constraint in spec.constraints:
            console.print(f"  constraint: {constraint.describe()}")
        budget = spec.budget
        pace = (
            f"{budget.batch_size} kept running"
            if budget.mode == "async"
            else f"in batches of {budget.batch_size}"
        )
        label = "objectives" if len(spec.objectives) > 1 else "objective"
        aims = ", ".join(objective.describe() for objective in spec.objectives)
        console.print(
            f"  {label}: {aims}; budget {budget.experiments} experiments, {pace}", highlight=False
        )
        self.time_scale_line = self.time_scale_line or _recorded_time_scale(run_dir)
        for line in ([self.time_scale_line] if self.time_scale_line else []) + self.prior_lines:
            console.print(f"  {line}", highlight=False)
        self.spec, self.run_id = spec, run_dir.name
        self.observations = _done_observations(run_dir, spec)
        if self.observations:
            console.print(
                f"  resumed with {len(self.observations)} of {budget.experiments} experiments done",
                highlight=False,
            )
        self.progress.start()
        self.task = self.progress.add_task(
            "experiments",
            total=budget.experiments,
            completed=len(self.observations),
            best=_standing(spec, self.observations),
        )

    def interrupted_message(self, signal_name: str) -> str:
        """What to tell the user after a stop (Ctrl-C, SIGTERM): how to continue the run, naming it."""
        if self.run_id is None:
            return f"[bold yellow]stopped[/] by {signal_name} before the campaign started; no instrument ran"
        return (
            f"[bold yellow]stopped[/] by {signal_name}: instruments were put in their safe state;"
            f" continue with `athanor resume {self.run_id}`"
        )

    def on_event(self, event: dict[str, Any]) -> None:
        kind, payload = event["kind"], event["payload"]
        if kind == "observation" and self.spec is not None:
            self.observations.append(Observation.model_validate(payload))
            self.progress.update(self.task, advance=1, best=_standing(self.spec, self.observations))
        elif kind == "time_scale":
            # recorded before the campaign starts: printed with the campaign header
            self.time_scale_line = payload["message"]
        elif kind == "decision":
            self.progress.console.print(
                f"  iteration {payload['iteration']}: [bold]{payload['action']}[/] — {payload['reason']}",
                highlight=False,
            )
        elif kind == "prior_data":
            # recorded before the campaign starts: the summary is printed with the campaign header
            self.prior_lines = _prior_lines(payload)
        elif kind == "grounding":
            cited = ", ".join(p["chunk_id"] for p in payload["passages"]) or "none found"
            self.progress.console.print(f"  literature: {cited}", highlight=False)
        elif kind == "notice":
            self.progress.console.print(f"  [yellow]note[/]: {payload['message']}", highlight=False)
        elif kind in {"instrument_fault", "stock_low", "stock_warning"}:
            self.progress.console.print(f"  [yellow]{kind}[/]: {payload}", highlight=False)
        elif kind == "stock_refilled":
            from runs.refill import describe_refill

            self.progress.console.print(f"  [green]refilled[/]: {describe_refill(payload)}", highlight=False)


def _done_observations(run_dir: Path, spec: CampaignSpec) -> list[Observation]:
    """The experiments a reopened run has already done (none for a new run, or an unreadable file)."""
    from runs.observations import read_observations
    from runs.store import OBSERVATIONS_FILE

    path = run_dir / OBSERVATIONS_FILE
    if not path.exists():
        return []
    try:
        return read_observations(path, spec)
    except AthanorError:
        return []


def _recorded_time_scale(run_dir: Path) -> str | None:
    """The time scale line a reopened run recorded when it started (None if it recorded none)."""
    from runs.eventlog import read_events

    try:
        events = read_events(run_dir / "events.jsonl", "time_scale")
    except (AthanorError, OSError):
        return None
    return events[-1]["payload"]["message"] if events else None


def _standing(spec: CampaignSpec, observations: list[Observation]) -> str:
    """The progress bar's text: the best so far, or with several objectives the Pareto front's size."""
    if len(spec.objectives) > 1:
        size = len(pareto_front(spec, observations))
        return f"Pareto front: {size} experiment{'s' if size != 1 else ''}" if size else ""
    from agents.pi import best_value

    best = best_value(spec, observations)
    return "" if best is None else f"best {best:.4g} {spec.primary_objective.unit}".rstrip()


def _finish(display: _CampaignDisplay, start: Any, stop: StopControl) -> None:
    """Run a campaign under the live display, then print its best compositions and its folder.

    SIGTERM and SIGINT stop it as ``stop`` says; the command then exits 0 after SIGTERM (a service
    manager's ordinary stop) and 130 after Ctrl-C, with the instruments in their safe state.
    """
    try:
        with stop.installed():
            result = start()
    except AthanorError as error:
        display.progress.stop()
        _fail(error)
    except KeyboardInterrupt as interrupt:
        display.progress.stop()
        name = stop.stopped_by(interrupt).signal_name
        err_console.print(display.interrupted_message(name), highlight=False)
        raise typer.Exit(0 if name == "SIGTERM" else 130) from None
    display.progress.stop()
    spec, summary = result.spec, result.summary
    console.print(_composition_table(spec, best_rows(spec, result.observations), "best compositions"))
    unit = spec.primary_objective.unit
    initial, overall = summary["best_initial_value"], summary["best_value"]
    first = "best of the first batch:    " if "prior" in summary else "best of the initial design: "
    console.print(f"{first}{_fmt(initial)} {unit}")
    console.print(f"best measured:              {_fmt(overall)} {unit}  ({summary['best_experiment']})")
    if "prior" in summary:
        prior = summary["prior"]
        where = f"  ({prior['best_experiment']}, not in the budget)" if prior["best_experiment"] else ""
        console.print(f"best of the prior data:     {_fmt(prior['best_value'])} {unit}{where}")
    console.print(f"experiments: {summary['experiments']}, failed: {summary['failed']}")
    console.print(f"report: {result.report}")
    print(result.run_dir)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _prior_lines(payload: dict[str, Any]) -> list[str]:
    """What the user is told about the prior data, from its ``PriorData`` dump.

    Returns:
        A summary line, then one line per row kept out of the model, repeated, or outside the design
        space.
    """
    from runs.prior import PriorData

    prior = PriorData.model_validate(payload)
    return [
        f"prior data: {prior.describe()}",
        *(f"  kept out of the model: {line}" for line in prior.kept_out),
        *(f"  repeated (counted once): {line}" for line in prior.repeated),
        *(f"  outside the design space (kept): {line}" for line in prior.outside),
    ]


@app.command()
def plan(
    request: RequestArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print the spec's JSON model dump.")] = False,
    llm: LLMOption = None,
    seed: Annotated[int | None, typer.Option(metavar="N", help="Seed to put in the spec.")] = None,
    prior: PriorOption = None,
    lab: Annotated[
        Path | None, typer.Option(help="Check against this lab.yaml; default: the virtual lab.")
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show which words became which field (on stderr).")
    ] = False,
    yes: YesOption = False,
) -> None:
    """Show what the PI understood from a request, as YAML (or JSON); runs nothing.

    The spec is checked against the lab ``run`` would use (``--lab``, else the virtual lab) as
    ``run`` checks it, without building an instrument, starting Ray or contacting anything. With
    prior data (``--prior`` or the spec's ``prior_data``) the file is read and checked, and what it
    holds is summarised on stderr. On a terminal, what the request leaves open is asked.
    """
    from agents.llm.reader import explain as explain_request
    from athanor.app import (
        RunOptions,
        check_against_lab,
        is_spec_file,
        lab_for,
        llm_from,
        read_prior,
        read_spec,
    )

    options = RunOptions(llm=llm, lab_file=lab)
    explaining = explain and not is_spec_file(request)
    try:
        spec = read_spec(request, llm_from(options), seed, _asker(yes))
        if explaining:
            _print_explanation(explain_request(spec.request or request))
        check_against_lab(spec, lab_for(spec, options))
        spec, prior_data = read_prior(spec, request, prior)
    except AthanorError as error:
        if explaining and isinstance(error, RequestNotUnderstood):
            _print_explanation(explain_request(request))
        _fail(error)
    if prior_data is not None:
        for line in _prior_lines(prior_data.model_dump(mode="json")):
            err_console.print(line, highlight=False)
    if as_json:
        print(json.dumps(spec.model_dump(mode="json"), indent=2))
    else:
        print(spec.to_yaml(), end="")


@app.command("runs")
def list_runs(as_json: JSONOption = False) -> None:
    """List recorded runs, newest first, each with its status and whether its event log verifies."""
    from runs.store import list_runs as stored_runs

    summaries = stored_runs()
    if as_json:
        print(json.dumps([s.to_json() for s in summaries], indent=2, ensure_ascii=False))
        return
    if not summaries:
        console.print('no runs yet: try `athanor run "..."`')
        return
    table = Table(title="runs", title_justify="left")
    table.add_column("run", overflow="fold")
    for column in ("status", "experiments", "best"):
        table.add_column(column, no_wrap=True)
    for s in summaries:
        best = "—" if s.best_value is None else f"{s.objective} {s.best_value:.4g} {s.unit or ''}"
        status = f"[red]{s.shown_status}[/]" if s.verified is False else s.shown_status
        table.add_row(s.run_id, status, str(s.experiments_done), best)
    console.print(table)
    broken = [s for s in summaries if s.verified is False]
    for s in broken:
        console.print(f"[red]{s.run_id}[/]: event log altered at {escape(s.chain_problem)}", highlight=False)
    if broken:
        console.print("see `athanor verify RUN`")


@app.command()
def show(run_ref: RunArgument, as_json: JSONOption = False) -> None:
    """Summarise one run: spec, best compositions, event chain, observations table, files."""
    from runs.observations import read_observations
    from runs.store import check_observations, resolve_run, summarise_run

    try:
        run_dir = resolve_run(run_ref)
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        spec = CampaignSpec.model_validate(manifest["spec"])
        observations = read_observations(run_dir / "observations.csv", spec)
    except AthanorError as error:
        _fail(error)
    summary = summarise_run(run_dir)
    try:
        table_check: ObservationsCheck | str = check_observations(run_dir, spec)
    except AthanorError as error:
        table_check = str(error)
    if as_json:
        data = _show_json(run_dir, spec, observations, summary, table_check)
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    console.print(f"[bold]{run_dir.name}[/]  {spec.title}")
    if spec.request:
        console.print(f"  request: {spec.request}", highlight=False)
    failed = sum(o.status == "failed" for o in observations)
    console.print(f"  status: {summary.shown_status}", highlight=False)
    console.print(f"  experiments: {len(observations)} of {spec.budget.experiments}, failed: {failed}")
    console.print(_composition_table(spec, best_rows(spec, observations), "best compositions"))
    if summary.verified is None:
        console.print("  event log: [red]none[/] (no events.jsonl)")
    else:
        broken = f"[red]BROKEN at {escape(summary.chain_problem)}[/]"
        verdict = "[green]verified[/]" if summary.verified else broken
        console.print(f"  event log: {summary.events} events, chain {verdict}")
    for line in _table_check_lines(table_check, summary.verified):
        console.print(f"  {line}", highlight=False)
    for line in _stock_lines(run_dir / "events.jsonl"):
        console.print(f"  {line}", highlight=False)
    for name in RUN_FILES:
        if (run_dir / name).exists():
            console.print(f"  {name}: {run_dir / name}")


def _table_check_lines(check: ObservationsCheck | str, chain_verified: bool | None) -> list[str]:
    """What ``show`` says about ``observations.csv`` against the log (``check``: a result or an error)."""
    if isinstance(check, str):
        return [f"[red]observations.csv: not verified against the event log[/]: {escape(check)}"]
    if check.ok and chain_verified:
        return [f"observations.csv: {check.rows} rows, as in the event log"]
    if check.ok:
        return ["[red]observations.csv: not verified[/]: the event log it is compared with is altered"]
    lines = [
        f"[red]observations.csv: not verified against the event log[/]: {len(check.differences)}"
        " difference(s); the table above is read from observations.csv"
    ]
    return lines + [f"  {escape(difference)}" for difference in check.differences]


def _show_json(
    run_dir: Path,
    spec: CampaignSpec,
    observations: list[Observation],
    summary: RunSummary,
    check: ObservationsCheck | str,
) -> dict[str, Any]:
    """``athanor show --json``: the run as one JSON object (the README documents the shape)."""
    table = (
        {"rows": None, "logged": None, "matches_event_log": False, "differences": [], "problem": check}
        if isinstance(check, str)
        else {
            "rows": check.rows,
            "logged": check.logged,
            "matches_event_log": check.ok,
            "differences": check.differences,
            "problem": "",
        }
    )
    return {
        "run_id": run_dir.name,
        "path": str(run_dir),
        "title": spec.title,
        "request": spec.request,
        "status": summary.status,
        "experiments": {
            "done": len(observations),
            "budget": spec.budget.experiments,
            "failed": sum(o.status == "failed" for o in observations),
        },
        "objectives": [{"name": o.name, "direction": o.direction, "unit": o.unit} for o in spec.objectives],
        "best": [
            {
                "experiment_id": o.experiment_id,
                "iteration": o.iteration,
                "composition": o.composition,
                "values": o.values,
            }
            for o in best_rows(spec, observations)
        ],
        "event_log": {
            "events": summary.events,
            "verified": summary.verified,
            "problem": summary.chain_problem,
        },
        "observations_csv": table,
        "stock": _stock_lines(run_dir / "events.jsonl"),
        "files": {
            name: str(run_dir / name)
            for name in RUN_FILES
            if (run_dir / name).exists()
        },
    }


def _stock_lines(log: Path) -> list[str]:
    """A line per stock alarm and refill of a run, in log order (none when the log cannot be read)."""
    from runs.eventlog import read_events
    from runs.refill import REFILLED, describe_refill

    try:
        events = read_events(log, ("stock_low", REFILLED))
    except (AthanorError, OSError):
        return []
    return [
        f"refilled: {describe_refill(e['payload'])}"
        if e["kind"] == REFILLED
        else f"stock low: {'; '.join(e['payload']['problems'])}"
        for e in events
    ]


@app.command()
def verify(
    run_ref: RunArgument,
) -> None:
    """Check a run's hash-chained event log; exit 1 if it was altered."""
    from runs.eventlog import verify_log
    from runs.store import resolve_run

    try:
        run_dir = resolve_run(run_ref)
    except AthanorError as error:
        _fail(error)
    check = verify_log(run_dir / "events.jsonl")
    if check.ok:
        console.print(f"[green]ok[/]: {check.events} events, hash chain intact")
        console.print("the chain only: `athanor audit RUN` checks its end and the run's files too")
        return
    err_console.print(f"[bold red]altered:[/] first bad event seq {check.first_bad_seq}: {check.reason}")
    raise typer.Exit(1)


def main() -> None:
    """Entry point that never shows a traceback for an unexpected error unless ``--debug``."""
    try:
        app()
    except SystemExit:
        raise
    except Exception as error:  # a bug or an environment fault: say what, not a wall of frames
        if "--debug" in sys.argv:
            raise
        err_console.print(
            f"[bold red]error:[/] {type(error).__name__}: {error} (rerun with --debug for details)"
        )
        sys.exit(1)
