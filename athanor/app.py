"""The composition root: checks a campaign against the lab, wires the recorded ports, runs the graph.

Everything that can be refused is refused here, before Ray starts or any instrument is created.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver

from agents.analyst import summarise
from agents.graph import rewind_checkpoints, run_campaign
from agents.llm import make_llm
from agents.pi import understand
from agents.state import Ports
from athanor.asking import Answer, Ask, Question
from athanor.errors import AthanorError, SpecError, StopRequested
from athanor.lab import LabDescription, match_quantity
from athanor.models import Observation
from athanor.ports import InstrumentsPort, LLMPort
from athanor.settings import Settings
from athanor.spec import CampaignSpec
from athanor.stopping import StopControl
from athanor.yamlfile import load_model
from instruments.lab_rules import lab_problems
from instruments.ray_runtime import ensure_ray
from instruments.virtual_lab import SHARED_NAMESPACE, RayLab, virtual_lab_description
from runs.context import EVENTS_FILE, RunContext, new_run_id
from runs.eventlog import is_being_written, read_events, verify_log
from runs.events import node_name
from runs.lab_hold import LabHold, Plate
from runs.manifest import write_manifest
from runs.observations import (
    OBSERVATION,
    ObservationsCSV,
    logged_observations,
    observations_text,
    write_observations,
)
from runs.prior import PriorData, load_prior_data
from runs.recorder import RecordingInstruments, RecordingKnowledge, RecordingLLM
from runs.refill import REFILLED, apply_refills, check_refills, refill_payloads
from runs.replay import (
    ReplayContext,
    ReplayDivergence,
    ReplayInstruments,
    ReplayKnowledge,
    ReplayLLM,
    ReplaySimulator,
)
from runs.replay_audit import (
    COMPARED_KINDS,
    Attempt,
    Divergence,
    ReplayReport,
    compare_events,
    earliest,
    split_attempts,
)
from runs.report import write_report
from runs.seal import seal_attempt
from runs.store import OBSERVATIONS_FILE, athanor_home, create_run_dir, resolve_run
from tools.optimiser import OptimiserOptions
from tools.simulators import EntryPointSimulator, load_simulator

__all__ = [
    "VIRTUAL_TIME_SCALE",
    "CampaignResult",
    "RunOptions",
    "TimeScale",
    "check_against_lab",
    "choice_notices",
    "is_spec_file",
    "lab_for",
    "llm_from",
    "read_prior",
    "read_spec",
    "replay",
    "resolve_lab",
    "resume",
    "run",
]


#: Time scale of the virtual lab when none is given (a 60 s measurement takes 0.6 s).
VIRTUAL_TIME_SCALE = 0.01


@dataclass
class RunOptions:
    """How to run a campaign.

    Attributes:
        settings: Environment settings (LLM endpoint, Ray address).
        llm: Back end name, overriding ``settings.llm``.
        seed: Overrides the spec's seed.
        lab_file: A ``lab.yaml``; None uses the virtual lab.
        lab: A lab description given directly (benchmarks, tests); wins over ``lab_file``.
        time_scale: Multiplier on simulated instrument durations (``--time-scale``); it wins over a
            lab file's (or a given lab's) ``time_scale``. None: the lab's own, or
            :data:`VIRTUAL_TIME_SCALE` for the virtual lab. Real back ends run in real time.
        literature: Ground the campaign in the literature store.
        llm_script: Scripted replies for the ``mock`` back end.
        prior: A CSV of earlier experiments (``--prior``); wins over the spec's ``prior_data``.
        stop: What a stop signal does (see :mod:`athanor.stopping`); with it, the instruments send
            no new command once a stop is requested. None: a stop aborts running commands.
        wait_for_lab: Wait while another campaign holds the lab, instead of refusing.
        on_wait: Told, with a line for the operator, when the run waits for its lab.
        optimiser: The optimiser's model and acquisition options (None: the defaults); those that
            differ from the defaults are recorded with each optimiser call, and a resume or a replay
            takes them from the record.
        ask: Answers a question about the request (a terminal prompt; see :mod:`athanor.asking`).
            None: no one can be asked, and a request that leaves a question open is refused.
        crash_at_event: A crash drill (tests): the run dies as in a power cut once its log holds
            this many events (see :class:`runs.context.RunContext`); ``athanor resume`` continues it.
    """

    settings: Settings = field(default_factory=Settings.from_env)
    llm: str | None = None
    seed: int | None = None
    lab_file: Path | None = None
    lab: LabDescription | None = None
    time_scale: float | None = None
    literature: bool = True
    llm_script: dict[str, list[Any]] | None = None
    prior: Path | None = None
    stop: StopControl | None = None
    wait_for_lab: bool = False
    on_wait: Callable[[str], None] | None = None
    optimiser: OptimiserOptions | None = None
    ask: Ask | None = None
    crash_at_event: int | None = None


@dataclass
class CampaignResult:
    """What a finished campaign produced.

    Attributes:
        run_dir: The run folder.
        spec: The spec that ran.
        observations: Every experiment, in the order they finished.
        summary: Best overall and best of the initial design (see ``agents.analyst.summarise``).
        decision: The PI's final decision.
        report: Path of the report.
    """

    run_dir: Path
    spec: CampaignSpec
    observations: list[Observation]
    summary: dict[str, Any]
    decision: dict[str, Any]
    report: Path


def llm_from(options: RunOptions) -> LLMPort:
    """The LLM back end the options and settings name."""
    settings = options.settings
    kind = options.llm or settings.llm
    if kind == "openai":
        return make_llm(
            "openai", model=settings.llm_model, base_url=settings.llm_base_url, api_key=settings.llm_api_key
        )
    if kind == "mock":
        return make_llm("mock", script=options.llm_script)
    return make_llm(kind)


def is_spec_file(request_or_file: str) -> bool:
    """Whether ``request_or_file`` names a campaign file (YAML or JSON) rather than being a request."""
    return Path(request_or_file).suffix.lower() in {".yaml", ".yml", ".json"}


def read_spec(request_or_file: str, llm: LLMPort, seed: int | None, ask: Ask | None = None) -> CampaignSpec:
    """A spec from a YAML/JSON file path or a plain-language request (``ask``: see :func:`understand`)."""
    if is_spec_file(request_or_file):
        spec = load_model(Path(request_or_file), CampaignSpec, "campaign file")
        return spec.model_copy(update={"seed": seed}) if seed is not None else spec
    return understand(request_or_file, llm, seed, ask)


def _recording(ask: Ask | None, answers: list[Answer]) -> Ask | None:
    """``ask``, keeping every question and its answer in ``answers`` for the run's log."""
    if ask is None:
        return None

    def asked(question: Question) -> str:
        answer = ask(question)
        answers.append(Answer(question, answer))
        return answer

    return asked


def read_prior(
    spec: CampaignSpec, request_or_file: str, prior: Path | None = None
) -> tuple[CampaignSpec, PriorData | None]:
    """Read and check the campaign's prior data, once, before anything runs.

    Args:
        spec: The campaign spec.
        request_or_file: What the spec was read from: a relative ``spec.prior_data`` is relative to
            the campaign file's folder, or to the working directory for a plain-language request.
        prior: A CSV given on the command line (``--prior``); it wins over ``spec.prior_data`` and is
            written into the returned spec as an absolute path.

    Returns:
        The spec (with ``prior_data`` set when ``prior`` is given) and its prior data, or None when
        the campaign has none.

    Raises:
        athanor.errors.SpecError: The file is missing or does not fit the spec (see
            :func:`runs.prior.load_prior_data`).
    """
    if prior is not None:
        path = Path(prior).expanduser().absolute()
        spec = spec.model_copy(update={"prior_data": str(path)})
    elif spec.prior_data is not None:
        path = Path(spec.prior_data).expanduser()
        if not path.is_absolute() and is_spec_file(request_or_file):
            path = Path(request_or_file).parent / path
    else:
        return spec, None
    return spec, load_prior_data(path, spec)


def _recorded_prior(events: list[dict[str, Any]]) -> PriorData | None:
    """The prior data a run recorded when it started (never the file, which may have changed since)."""
    payload = next((e["payload"] for e in events if e["kind"] == "prior_data"), None)
    return None if payload is None else PriorData.model_validate(payload)


@dataclass(frozen=True)
class TimeScale:
    """The time scale a campaign's simulated instruments run at, and where it comes from.

    Attributes:
        value: Multiplier on simulated durations (0.01 runs a 60 s action in 0.6 s); None when the
            lab has no simulated instrument.
        source: ``--time-scale``, ``lab file``, ``lab description`` (a lab given directly),
            ``virtual lab default`` or ``none`` (no simulated instrument).
        message: One line for the user saying which value is used, why, and what it applies to.
        ignored: A time scale was given but the lab has no simulated instrument, so it has no effect.
    """

    value: float | None
    source: str
    message: str
    ignored: bool = False

    def payload(self) -> dict[str, Any]:
        """The ``time_scale`` event's payload."""
        return {"time_scale": self.value, "source": self.source, "message": self.message}


def _checked_time_scale(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise SpecError(
            f"--time-scale {value:g}: a time scale is a finite number of 0 or more (0: no waiting,"
            " 1: real time, 0.01: a 60 s measurement takes 0.6 s)"
        )
    return value


def _time_scale_of(lab: LabDescription, given: float | None, source: str) -> TimeScale:
    """Describe the time scale of a described lab that ``given`` (``--time-scale``) may override."""
    simulated = [i.name for i in lab.instruments if i.backend == "simulated"]
    real = _in_real_time([f"{i.name} ({i.backend})" for i in lab.instruments if i.backend != "simulated"])
    if not simulated:
        if given is None:
            return TimeScale(None, "none", f"time scale: none, {real}")
        message = f"--time-scale {given:g} has no effect: this lab has no simulated instrument; {real}"
        return TimeScale(None, "none", message, ignored=True)
    value = lab.time_scale if given is None else given
    origin = source if given is None or given == lab.time_scale else "--time-scale"
    over = f", over the {source}'s {lab.time_scale:g}" if origin == "--time-scale" else ""
    message = _time_scale_message(value, origin + over)
    if real:
        message += f"; only the simulated instruments are scaled: {real}"
    return TimeScale(value, origin, message)


def _in_real_time(instruments: list[str]) -> str:
    """``a runs in real time`` or ``a, b and c run in real time``; empty for no instrument."""
    if len(instruments) < 2:
        return f"{instruments[0]} runs in real time" if instruments else ""
    return f"{', '.join(instruments[:-1])} and {instruments[-1]} run in real time"


def _time_scale_message(value: float, origin: str) -> str:
    """E.g. ``time scale 0.01 (virtual lab default): a simulated 60 s measurement takes 0.6 s``."""
    effect = "no waiting" if value == 0 else f"a simulated 60 s measurement takes {60 * value:g} s"
    return f"time scale {value:g} ({origin}): {effect}"


def resolve_lab(spec: CampaignSpec, options: RunOptions) -> tuple[LabDescription, TimeScale]:
    """The lab the campaign runs in, with the time scale it runs at.

    The lab is ``options.lab``, else ``options.lab_file``, else the virtual lab for the spec's
    components. ``options.time_scale`` (``--time-scale``) wins over the lab's own ``time_scale``
    when given; otherwise a described lab keeps its own and the virtual lab runs at
    :data:`VIRTUAL_TIME_SCALE`. Only simulated instruments are scaled; for a lab with none a given
    time scale changes nothing, and the returned :class:`TimeScale` says so.

    Raises:
        athanor.errors.SpecError: The lab file is missing or invalid, or the time scale is negative
            or not finite.
    """
    given = _checked_time_scale(options.time_scale)
    if options.lab is None and options.lab_file is None:
        value = VIRTUAL_TIME_SCALE if given is None else given
        lab = virtual_lab_description(spec.component_names, time_scale=value, measures=spec.measured_names)
        origin = "virtual lab default" if given is None or given == VIRTUAL_TIME_SCALE else "--time-scale"
        return lab, TimeScale(value, origin, _time_scale_message(value, origin))
    if options.lab is not None:
        lab, source = options.lab, "lab description"
    else:
        lab, source = load_model(options.lab_file, LabDescription, "lab file"), "lab file"
    scale = _time_scale_of(lab, given, source)
    if scale.value is not None and scale.value != lab.time_scale:
        lab = lab.model_copy(update={"time_scale": scale.value})
    return lab, scale


def lab_for(spec: CampaignSpec, options: RunOptions) -> LabDescription:
    """The lab the campaign runs in, at its time scale (see :func:`resolve_lab`)."""
    return resolve_lab(spec, options)[0]


def check_against_lab(spec: CampaignSpec, lab: LabDescription) -> None:
    """Refuse a campaign the lab cannot run, naming what is missing and the fix.

    Builds no instrument and starts nothing: the lab's own rules (:mod:`instruments.lab_rules`, the
    ones ``athanor lab check`` fails on too) come first, then what this campaign needs of the lab.

    Raises:
        athanor.errors.SpecError: The lab breaks one of its own rules, or an instrument, a stock or
            a measurable objective is missing.
    """
    problems = [problem.message() for problem in lab_problems(lab)]
    known = {i.name for i in lab.instruments} | {i.kind for i in lab.instruments}
    for name in spec.instruments:
        if name not in known:
            problems.append(
                f"instruments: unknown instrument {name!r}; this lab has {', '.join(sorted(known))}"
            )
    stocked = {s.component for s in lab.stocks}
    for component in spec.component_names:
        if component not in stocked:
            problems.append(
                f"components: no stock supplies {component!r}; add one under stocks in the lab file"
            )
    quantities = lab.measured_quantities()
    for objective in spec.objectives:
        if match_quantity(objective.name, quantities) is None:
            problems.append(
                f"objectives: no instrument in this lab measures {objective.name!r};"
                f" it measures {', '.join(quantities) or 'nothing'}"
            )
    for name in spec.measured_names[len(spec.objectives) :]:
        if match_quantity(name, quantities) is None:
            problems.append(
                f"outcome_constraints: no instrument in this lab measures {name!r};"
                f" it measures {', '.join(quantities) or 'nothing'}"
            )
    if spec.budget.experiments > len(lab.wells):
        problems.append(
            f"budget.experiments: {spec.budget.experiments} experiments need as many wells;"
            f" the lab has {len(lab.wells)}"
        )
    for source in spec.fidelities:
        if source.simulator:
            try:
                load_simulator(source.simulator)
            except SpecError as error:
                problems.append(f"fidelities ({source.name}): {error}")
    if problems:
        raise SpecError("\n".join(problems))


def choice_notices(spec: CampaignSpec) -> list[str]:
    """What the user must know about the spec's categorical choices before the campaign starts.

    A choice (e.g. the annealing route) is part of the design space and is recorded with every
    protocol and observation, but no instrument step carries it out: a message per categorical
    variable says so.
    """
    return [
        f"categories: {variable.name} ({', '.join(variable.choices)}) is chosen per experiment and"
        " recorded with it, but no instrument carries it out; the operator applies the chosen option"
        " (each protocol and observations.csv name it)"
        for variable in spec.categories
    ]


@contextlib.contextmanager
def _ray_lab(
    lab: LabDescription, options: RunOptions, context: RunContext, home: Path, *, shared: bool
) -> Iterator[RayLab]:
    started = ensure_ray(options.settings.ray_address, home / "ray")
    instruments = RayLab(
        lab,
        seed=context.seed,
        # a described lab's instruments are shared between campaigns; each virtual lab is the run's own
        namespace=SHARED_NAMESPACE if shared else None,
        ledger_dir=home / "ledgers",
        on_fault=lambda name, reason: context.record(
            "instrument_fault", {"instrument": name, "reason": reason}
        ),
        # the virtual plate keeps its liquid across a crash, as a real one does
        world_path=context.run_dir / "virtual_world.json",
        stop_sending=options.stop.requested if options.stop is not None else None,
    )
    try:
        instruments.start()
        yield instruments
    finally:
        instruments.close()
        if started:
            import ray

            ray.shutdown()


def run(
    request_or_file: str,
    options: RunOptions,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    on_start: Callable[[Path, CampaignSpec], None] | None = None,
) -> CampaignResult:
    """Run one campaign end to end and return where its record is.

    Args:
        request_or_file: A plain-language request or a campaign YAML file.
        options: How to run it.
        on_event: Called with every event as it is recorded (progress display).
        on_start: Called once the run folder exists, before any instrument starts.

    Raises:
        athanor.errors.AthanorError: The request, the spec or the lab was refused; nothing ran.
    """
    llm = llm_from(options)
    buffered: list[tuple[str, dict[str, Any]]] = []
    answers: list[Answer] = []
    ask = _recording(options.ask, answers)
    spec = read_spec(request_or_file, _BufferingLLM(llm, buffered), options.seed, ask)
    lab, time_scale = resolve_lab(spec, options)
    check_against_lab(spec, lab)
    spec, prior = read_prior(spec, request_or_file, options.prior)

    run_id = new_run_id(spec.title)
    home = athanor_home()
    source = _lab_source(options)
    with _held(lab, source, run_id, options, home):
        run_dir = create_run_dir(run_id)
        lab, plate = _reserve_wells(lab, source, run_id, spec, run_dir, home)
        context = RunContext(run_dir, spec.seed, run_id, crash_at_event=options.crash_at_event)
        if on_event is not None:
            context.log.subscribe(on_event)
        context.record("run_started", {"run_id": run_id, "lab_source": source})
        request = {"text": spec.request or request_or_file, "llm_backend": llm.name}
        if answers:  # what the user was asked is part of the request
            request["answers"] = [a.payload() for a in answers]
        context.record("request", request)
        for kind, payload in buffered:
            context.record(kind, payload)
        context.record("spec", spec.model_dump(mode="json"))
        context.record("lab", lab.model_dump(mode="json"))
        context.record("time_scale", time_scale.payload())
        for message in choice_notices(spec):
            context.record("notice", {"message": message})
        if prior is not None:
            context.record("prior_data", prior.model_dump(mode="json"))
        write_manifest(run_dir, spec, spec.seed, {"request": request_or_file}, llm_backend=llm.name)
        if on_start is not None:
            on_start(run_dir, spec)
        return _execute(
            spec, lab, llm, context, options, resume=False, prior=prior, source=source, plate=plate
        )


def _lab_source(options: RunOptions) -> str:
    """Where a new run's lab comes from: ``file`` (a lab.yaml), ``given`` (in the options) or ``virtual``."""
    if options.lab is not None:
        return "given"
    return "file" if options.lab_file is not None else "virtual"


def _held(lab: LabDescription, source: str, run_id: str, options: RunOptions, home: Path) -> LabHold:
    """The lab, held for the run (see :class:`runs.lab_hold.LabHold`); ``with`` it to let it go."""
    hold = LabHold(lab, described=source != "virtual", home=home)
    hold.acquire(run_id, wait=options.wait_for_lab, on_wait=options.on_wait)
    return hold


def _reserve_wells(
    lab: LabDescription, source: str, run_id: str, spec: CampaignSpec, run_dir: Path, home: Path
) -> tuple[LabDescription, Plate | None]:
    """A described lab's free wells, reserved for the new run (the virtual lab's plate is new)."""
    if source != "file":
        return lab, None
    plate = Plate(lab, home)
    try:
        wells = plate.reserve(run_id, spec.budget.experiments)
    except AthanorError:
        run_dir.rmdir()  # nothing was recorded: leave no run behind
        raise
    return lab.model_copy(update={"wells": wells}), plate


def resume(
    run_ref: str,
    options: RunOptions,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    on_start: Callable[[Path, CampaignSpec], None] | None = None,
    refills: Mapping[str, float] | None = None,
) -> CampaignResult:
    """Continue a run that stopped (crash, interrupt, instrument fault) from its last checkpoint.

    The graph restarts from the last super-step on disk; a run stopped before its first checkpoint
    (while Ray was starting, say) starts from its recorded spec, under its own run id and seed.
    Experiments that were on the instruments are submitted again with the same idempotency keys, so
    every command an instrument's ledger records as done answers from the ledger instead of acting
    twice; observations already in ``observations.csv`` are not written again. Prior data comes
    from the event log, as it was read when the run started; the file is not read again.

    The lab is the one recorded when the run started, with every refill recorded since applied (see
    :mod:`runs.refill`). ``refills`` are recorded as ``stock_refilled`` events before the graph
    restarts, each with what the campaign had drawn from the stock by its last checkpoint.

    Args:
        run_ref: Run id, unique prefix, or run folder.
        options: How to run it (the LLM back end may differ from the first run's).
        on_event: Called with every event as it is recorded.
        on_start: Called once the run is reopened, before any instrument starts.
        refills: Stock name to the µL it holds now, for stocks refilled since the run stopped.

    Raises:
        athanor.errors.AthanorError: The run cannot be found, is finished, its record is damaged,
            its folder is not named after it (a copy), its checkpoints are another run's, or a
            refilled stock is not in its lab; nothing was recorded.
    """
    run_dir = resolve_run(run_ref)
    events = read_events(run_dir / "events.jsonl")
    kinds = [e["kind"] for e in events]
    if "run_finished" in kinds:
        raise AthanorError(f"run {run_dir.name} already finished; start a new one with `athanor run`")
    setup = {e["kind"]: e["payload"] for e in events if e["kind"] in ("run_started", "spec", "lab")}
    if "spec" not in setup or "lab" not in setup:
        raise AthanorError(
            f"run {run_dir.name} stopped before its campaign was recorded (no spec or lab in its event"
            " log); nothing ran: start the campaign again with `athanor run`"
        )
    run_id = _recorded_run_id(run_dir, setup)
    _check_checkpoint_owner(run_dir / "checkpoints.sqlite", run_id)
    spec = CampaignSpec.model_validate(setup["spec"])
    lab = LabDescription.model_validate(setup["lab"])
    check_refills(refills or {}, lab)
    prior = _recorded_prior(events)
    options = _with_recorded_optimiser(options, _recorded_optimiser(events), run_dir.name)
    llm = llm_from(options)
    source = str(setup.get("run_started", {}).get("lab_source", "virtual"))
    with _held(lab, source, run_id, options, athanor_home()):
        context = RunContext(run_dir, spec.seed, run_id, repair=True, crash_at_event=options.crash_at_event)
        if on_event is not None:
            context.log.subscribe(on_event)
        done, rebuilt = _table_from_log(run_dir, spec, events)
        context.record(
            "run_resumed",
            {"llm_backend": llm.name, "observations_on_disk": len(done), "observations_rebuilt": rebuilt},
        )
        if on_start is not None:
            on_start(run_dir, spec)
        refilled = [e for e in events if e["kind"] == REFILLED]
        if refills:
            drawn = _drawn_by_checkpoint(run_dir / "checkpoints.sqlite", context.run_id)
            for payload in refill_payloads(refills, drawn):
                context.record(REFILLED, payload)
                refilled.append({"kind": REFILLED, "payload": payload})
        lab = apply_refills(lab, refilled)
        plate = Plate(lab, athanor_home()) if source == "file" else None
        return _execute(
            spec, lab, llm, context, options, resume=True, emitted=done, prior=prior, source=source,
            plate=plate,
        )


def _table_from_log(run_dir: Path, spec: CampaignSpec, events: list[dict[str, Any]]) -> tuple[set[str], bool]:
    """Make a resumed run's ``observations.csv`` the copy of its log's observations it must be.

    A crash between recording an observation and writing its row leaves the table a row short; the
    log is what was recorded, so the table is rewritten from it when the two differ.

    Returns:
        The experiments already observed, and whether the table was rewritten.
    """
    logged = logged_observations(events)
    table = run_dir / OBSERVATIONS_FILE
    expected = observations_text(spec, logged)
    current = table.read_text(encoding="utf-8") if table.exists() else None
    if current != expected:
        write_observations(table, spec, logged)
    return {o.experiment_id for o in logged}, current is not None and current != expected


def _as_stop(error: BaseException, stop: StopControl | None) -> BaseException:
    """``error``, or the operator's stop it stands for (see :meth:`StopControl.stopped_by`)."""
    if isinstance(error, KeyboardInterrupt) and stop is not None:
        return stop.stopped_by(error)
    return error


def _bring_to_rest(
    lab: RayLab, recorded: InstrumentsPort, error: BaseException, stop: StopControl | None
) -> None:
    """After the campaign stopped or failed: let running commands finish or abort them, then safe state.

    A stop under the ``finish`` policy waits (up to the policy's grace time, or until a second
    signal) for the commands already on the instruments, whose readings are then recorded; no new
    command was sent since the signal. Any other stop or failure aborts them. Every instrument is
    then put in its safe state through the recorded port, so the log says whether that worked; a
    failure to reach it is recorded and does not hide ``error``.
    """
    if isinstance(error, StopRequested) and not error.abort and stop is not None:
        try:
            unfinished = lab.finish_running(stop.grace_s)
        except StopRequested:  # a second signal: abort them now
            unfinished = None
        if unfinished:
            logging.getLogger(__name__).warning(
                "still running after %g s, aborted: %s", stop.grace_s, ", ".join(unfinished)
            )
    with stop.settling() if stop is not None else contextlib.nullcontext():
        try:
            recorded.safe_state()
        except Exception:  # recorded by the port; the campaign's own error is what the user must see
            logging.getLogger(__name__).warning("safe state not reached after %s", type(error).__name__)


def _settle_plate(plate: Plate | None, context: RunContext, *, finished: bool) -> None:
    """Tell the lab's plate record which wells the run's protocols used (see :class:`Plate`)."""
    if plate is not None:
        wells = [e["payload"]["well"] for e in read_events(context.log.path, "protocol")]
        plate.settle(context.run_id, wells, finished=finished)


def _recorded_run_id(run_dir: Path, setup: Mapping[str, Any]) -> str:
    """The run id the run recorded when it started, which must be its folder's name.

    Idempotency keys and the instruments' ledgers are keyed by the run id, and ``athanor runs``
    finds a run by its folder's name: a copied or renamed run folder would resume as another run.

    Raises:
        athanor.errors.AthanorError: The folder is not named after the run it holds.
    """
    recorded = str(setup.get("run_started", {}).get("run_id") or run_dir.name)
    if recorded != run_dir.name:
        raise AthanorError(
            f"run folder {run_dir.name} holds run {recorded} (a copied or renamed run folder);"
            f" a run resumes only in a folder named after it: rename it back to {recorded}, or start"
            " a new run with `athanor run`"
        )
    return recorded


def _check_checkpoint_owner(path: Path, run_id: str) -> None:
    """Refuse a checkpoint file that holds checkpoints, none of them of ``run_id``.

    No file, or an empty one, is fine: the run stopped before its first checkpoint and starts
    again from its recorded spec.

    Raises:
        athanor.errors.AthanorError: The checkpoints belong to another run.
    """
    if not path.exists():
        return
    with contextlib.closing(sqlite3.connect(path)) as connection:
        saver = SqliteSaver(connection)
        if saver.get_tuple({"configurable": {"thread_id": run_id}}) is not None:
            return
        other = next(iter(saver.list(None, limit=1)), None)
    if other is not None:
        owner = other.config["configurable"].get("thread_id")
        raise AthanorError(
            f"{path.name} in run {run_id} holds the checkpoints of run {owner}, not of this run;"
            f" it was copied in from another run folder: put back this run's {path.name}, or start a"
            " new run with `athanor run`"
        )


def _execute(
    spec: CampaignSpec,
    lab: LabDescription,
    llm: LLMPort,
    context: RunContext,
    options: RunOptions,
    *,
    resume: bool,
    emitted: set[str] | None = None,
    prior: PriorData | None = None,
    source: str = "virtual",
    plate: Plate | None = None,
) -> CampaignResult:
    """Run (or continue) the graph with recorded ports, then write the report.

    ``source`` says where the lab came from (see :func:`_lab_source`): a lab file's instruments are
    shared actors; ``plate`` is told, at the end, which of its wells the run used.
    """
    home = athanor_home()
    run_dir = context.run_dir
    csv = ObservationsCSV(run_dir / "observations.csv", spec)

    def on_observation(observation: Observation) -> None:
        # the log first: the table is a copy of it, rebuilt from it on resume
        context.record(OBSERVATION, observation.model_dump(mode="json"))
        csv.append(observation)

    knowledge = None
    if options.literature:
        from knowledge.store import default_knowledge_base

        knowledge = RecordingKnowledge(default_knowledge_base(home), context)
    try:
        with _ray_lab(lab, options, context, home, shared=source == "file") as instruments:
            ports = Ports(
                llm=RecordingLLM(llm, context),
                knowledge=knowledge,
                instruments=RecordingInstruments(instruments, context),
                context=context,
                lab=lab,
                on_observation=on_observation,
                emitted=set(emitted or ()),
                prior=list(prior.observations) if prior is not None else [],
                simulator=EntryPointSimulator(),
                optimiser=options.optimiser,
            )
            try:
                state = run_campaign(spec, ports, run_dir / "checkpoints.sqlite", resume=resume)
            except BaseException as error:
                _bring_to_rest(instruments, ports.instruments, _as_stop(error, options.stop), options.stop)
                raise
    except BaseException as error:
        kind = "run_stopped" if isinstance(error, KeyboardInterrupt) else "run_failed"
        stop = _as_stop(error, options.stop)
        payload: dict[str, Any] = {"error": f"{type(stop).__name__}: {stop}"}
        if isinstance(stop, StopRequested):
            payload |= {"signal": stop.signal_name, "aborted": stop.abort}
        _settle_plate(plate, context, finished=False)
        seal_attempt(context, kind, payload, home)
        csv.close()
        context.close()
        raise
    observations = [Observation.model_validate(o) for o in state.get("observations", [])]
    summary = summarise(spec, observations)
    if prior is not None:
        best_prior = prior.best(spec)
        summary["prior"] = {
            "rows": len(prior.observations),
            "used": len(prior.used),
            "best_value": best_prior.values[spec.primary_objective.name] if best_prior else None,
            "best_experiment": best_prior.experiment_id if best_prior else None,
        }
    decision = state.get("decision", {})
    groundings = read_events(context.log.path, "grounding")
    literature = [passage for event in groundings for passage in event["payload"]["passages"]]
    report = write_report(
        run_dir,
        spec,
        observations,
        {"decision": decision, "summary": summary, "literature": literature},
        prior=prior,
    )
    _settle_plate(plate, context, finished=True)
    ending = {"summary": summary, "decision": decision, "report": report.name}
    seal_attempt(context, "run_finished", ending, home)
    csv.close()
    context.close()
    return CampaignResult(run_dir, spec, observations, summary, decision, report)


def replay(run_ref: str, *, write: bool = True) -> ReplayReport:
    """Re-make a recorded run's decisions with the current code and compare them with the record.

    The graph runs again from the recorded spec, with the run's id and seed (so idempotency keys and
    random streams match), on ports that answer from the record: the LLM gives its recorded replies,
    the literature store its recorded retrievals and the instruments their recorded readings; no
    instrument is touched and Ray is not started. A run that stopped is replayed up to where it
    stopped; a resumed run attempt by attempt, each attempt after the first resumed from the
    replay's own checkpoint as :func:`resume` does, on the recorded lab with the stock refills
    recorded up to that attempt. Prior data comes from the record too. The replay
    works in a scratch folder: nothing is written to the run's folder except, with ``write``, a
    ``replay-<time>.json`` report.

    Args:
        run_ref: Run id, unique prefix, or run folder.
        write: Write the report next to the run's event log.

    Raises:
        athanor.errors.AthanorError: The run cannot be found, is still being written, its log fails
            verification, or it stopped before its campaign began.
    """
    run_dir = resolve_run(run_ref)
    log = run_dir / EVENTS_FILE
    if not log.exists():
        raise AthanorError(f"run {run_dir.name} has no {EVENTS_FILE}; there is nothing to replay")
    if is_being_written(log):
        raise AthanorError(f"run {run_dir.name} is still running; replay it once it has finished or stopped")
    check = verify_log(log)
    if not check.ok:
        raise AthanorError(
            f"run {run_dir.name} cannot be replayed: its event log fails verification at seq"
            f" {check.first_bad_seq} (line {check.line}): {check.reason}. Only an intact log can be"
            " audited; see `athanor verify`"
        )
    events = read_events(log)
    setup = {
        e["kind"]: e["payload"] for e in events if e["kind"] in ("run_started", "spec", "lab", "prior_data")
    }
    if "spec" not in setup or "lab" not in setup:
        raise AthanorError(
            f"run {run_dir.name} stopped before its campaign began (no spec or lab recorded); there is"
            " nothing to replay"
        )
    spec = CampaignSpec.model_validate(setup["spec"])
    lab = LabDescription.model_validate(setup["lab"])
    run_id = str(setup.get("run_started", {}).get("run_id") or run_dir.name)
    prior = PriorData.model_validate(setup["prior_data"]).observations if "prior_data" in setup else []
    optimiser = _recorded_optimiser(events)
    attempts = split_attempts(events)
    literature = any(e["kind"] in ("retrieval", "retrieval_error") for e in events)
    notes: list[str] = []
    problem: Divergence | None = None
    missing_after: int | None = None
    with tempfile.TemporaryDirectory(prefix="athanor-replay-") as scratch:
        folder = Path(scratch) / "run"
        folder.mkdir()
        observed: set[str] = set()
        refilled: list[dict[str, Any]] = []
        for index, attempt in enumerate(attempts):
            if index > 0:
                _resume_where_recorded(folder / "checkpoints.sqlite", run_id, attempt)
            refilled += [e for e in attempt.events if e["kind"] == REFILLED]
            attempt_lab = apply_refills(lab, refilled)  # as resume applied them
            error = _replay_attempt(
                spec, attempt_lab, run_id, folder, attempt, index > 0, literature, observed, prior, optimiser
            )
            problem, note, missing_after = _judge_attempt(attempt, index, error)
            notes.append(note)
            if problem is not None:
                break
        replayed = read_events(folder / EVENTS_FILE)
    tallies, first = compare_events(events, replayed, missing_after=missing_after)
    report = ReplayReport(
        run_id, run_dir, _replay_scope(attempts, len(notes)), tallies, earliest([first, problem]), notes
    )
    if write:
        report.report_path = _write_replay_report(run_dir, report)
    return report


def _replay_attempt(
    spec: CampaignSpec,
    lab: LabDescription,
    run_id: str,
    folder: Path,
    attempt: Attempt,
    resume: bool,
    literature: bool,
    observed: set[str],
    prior: list[Observation],
    optimiser: OptimiserOptions | None = None,
) -> Exception | None:
    """Run the graph on ports that answer from one recorded attempt; return what it stopped with."""
    checkpoints = folder / "checkpoints.sqlite"
    before = _checkpointed_observations(checkpoints, run_id) if resume else 0
    context = ReplayContext(folder, spec.seed, run_id, None if attempt.finished else attempt.limits())

    def on_observation(observation: Observation) -> None:
        # observed once recorded, as a resume counts what its log holds (a cut record holds none)
        context.record(OBSERVATION, observation.model_dump(mode="json"))
        observed.add(observation.experiment_id)

    ports = Ports(
        llm=RecordingLLM(ReplayLLM(attempt.events), context),
        knowledge=RecordingKnowledge(ReplayKnowledge(attempt.events), context) if literature else None,
        instruments=RecordingInstruments(ReplayInstruments(attempt.events, before), context),
        context=context,
        lab=lab,
        on_observation=on_observation,
        emitted=set(observed),  # a resume passes on only what the earlier attempts did not
        prior=prior,  # as recorded when the run started: the file is never read again
        simulator=ReplaySimulator(attempt.events),
        optimiser=optimiser,  # as recorded with the optimiser calls
    )
    try:
        run_campaign(spec, ports, checkpoints, resume=resume)
    except Exception as error:
        return error
    finally:
        context.close()
    return None


def _recorded_optimiser(events: list[dict[str, Any]]) -> OptimiserOptions | None:
    """The optimiser options recorded with the run's optimiser calls (None: the defaults, or no call yet)."""
    for event in events:
        if event["kind"] == "optimiser_call" and "options" in event["payload"]:
            return OptimiserOptions.model_validate(event["payload"]["options"])
    return None


def _with_recorded_optimiser(
    options: RunOptions, recorded: OptimiserOptions | None, run_name: str
) -> RunOptions:
    """``options`` with the run's recorded optimiser options; refuses other options for a resume."""
    if recorded is None:
        return options
    if options.optimiser is not None and options.optimiser != recorded:
        raise AthanorError(
            f"run {run_name} ran with optimiser options {recorded.recorded()}; a resume continues with"
            " them: drop the optimiser options"
        )
    return replace(options, optimiser=recorded)


def _resume_where_recorded(checkpoints: Path, run_id: str, attempt: Attempt) -> None:
    """Before replaying a resumed attempt: rewind the replay's checkpoints to the step it resumed at.

    The attempt's first ``node`` event names the step the recorded resume ran first; a process
    killed between an event and its step's checkpoint resumed from before that step.
    """
    first = next((e for e in attempt.events if e["kind"] == "node"), None)
    if first is not None and checkpoints.exists():
        rewind_checkpoints(checkpoints, run_id, node_name(first["payload"]))


def _checkpointed_observations(path: Path, run_id: str) -> int:
    """How many observations the state in the last checkpoint of ``run_id`` holds."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        saved = SqliteSaver(connection).get_tuple({"configurable": {"thread_id": run_id}})
    return len(saved.checkpoint["channel_values"].get("observations", [])) if saved else 0


def _drawn_by_checkpoint(path: Path, run_id: str) -> dict[str, float]:
    """µL per stock the campaign had drawn by the last checkpoint of ``run_id`` (none without one).

    The coder counts every protocol it compiled. An experiment still running at the checkpoint may
    not have drawn all of it yet, and once resubmitted it draws from the refilled stock, so its
    volumes are not counted here: the refilled stock is then charged with them, which errs on the
    safe side.
    """
    if not path.exists():
        return {}
    with contextlib.closing(sqlite3.connect(path)) as connection:
        saved = SqliteSaver(connection).get_tuple({"configurable": {"thread_id": run_id}})
    values = saved.checkpoint["channel_values"] if saved else {}
    drawn = dict(values.get("stock_used_ul", {}))
    for entry in values.get("running", []):
        for stock, volume in entry["protocol"].get("volumes_ul", {}).items():
            drawn[stock] = drawn.get(stock, 0.0) - volume
    return {stock: max(0.0, volume) for stock, volume in drawn.items()}


def _judge_attempt(
    attempt: Attempt, index: int, error: Exception | None
) -> tuple[Divergence | None, str, int | None]:
    """Whether one replayed attempt ended as its record did.

    Returns:
        The divergence (None if it ended as recorded), a note for the report, and the recorded seq
        after which recorded events the replay never reached are expected (None: none are).
    """
    label = f"attempt {index + 1} (seq {attempt.start_seq}–{attempt.end_seq})"
    recorded = attempt.outcome + (f" with {attempt.error!r}" if attempt.error else "")
    if error is None:
        return None, f"{label}: recorded {recorded}; the replay finished", None
    if isinstance(error, ReplayDivergence):
        stop = error.seq if error.seq is not None else -1
        if not error.end_of_record:
            where = f"seq {error.seq}" if error.seq is not None else "a request never recorded"
            note = f"{label}: the replay diverged at {where} ({error.kind})"
            return Divergence(error.seq, error.kind, str(error)), note, stop
        if not attempt.finished:
            return None, f"{label}: recorded {recorded}; replayed up to where it stopped", None
        message = f"the replay went on past the end of the recorded run: {error}"
        return Divergence(error.seq, error.kind, message), f"{label}: {message}", stop
    text = f"{type(error).__name__}: {error}"
    if not attempt.finished and attempt.error and str(error) == attempt.error:
        return None, f"{label}: recorded {recorded}; the replay failed the same way", None
    message = f"the replay failed with {text}; the recorded attempt {recorded}"
    return Divergence(None, "run_failed", message), f"{label}: {message}", None


def _replay_scope(attempts: list[Attempt], replayed: int) -> str:
    """What a replay covered and compared, in words."""
    last = attempts[-1]
    if len(attempts) == 1:
        reach = (
            f"the whole run (seq 0–{last.end_seq})"
            if last.finished
            else f"seq 0–{last.end_seq}, where the recorded run {last.outcome}; the replay goes no further"
        )
    else:
        starts = ", ".join(str(a.start_seq) for a in attempts[1:])
        reach = (
            f"{len(attempts)} attempts (resumed at seq {starts}), each replayed up to where it stopped"
            " and resumed from the replay's own checkpoint as `athanor resume` does"
        )
        if replayed < len(attempts):
            reach += f"; attempts after attempt {replayed} were not replayed"
    return (
        f"{reach}; compared in order, kind by kind: {', '.join(COMPARED_KINDS)}; checked as the replay"
        " made them: every LLM request, literature search and instrument command"
    )


def _write_replay_report(run_dir: Path, report: ReplayReport) -> Path:
    """Write ``replay-<UTC time>.json`` next to the run's log (never over an earlier one)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    data = {**report.to_json(), "replayed_at": stamp}
    for number in range(1, 1000):
        path = run_dir / (f"replay-{stamp}.json" if number == 1 else f"replay-{stamp}-{number}.json")
        try:
            with open(path, "x", encoding="utf-8") as handle:
                json.dump(data, handle, indent=2, ensure_ascii=False)
                handle.write("\n")
            return path
        except FileExistsError:
            continue
    raise AthanorError(f"{run_dir}: too many replay reports from {stamp}; remove some and try again")


class _BufferingLLM:
    """Records the PI's parse exchange in memory until the run folder exists."""

    def __init__(self, inner: LLMPort, sink: list[tuple[str, dict[str, Any]]]) -> None:
        self.inner = inner
        self.name = inner.name
        self.sink = sink

    def structured(self, task: str, messages: list[dict[str, str]], schema: type) -> Any:
        self.sink.append(("llm_request", {"task": task, "messages": messages, "schema": schema.__name__}))
        reply = self.inner.structured(task, messages, schema)
        self.sink.append(("llm_reply", {"task": task, "reply": reply.model_dump(mode="json")}))
        return reply
