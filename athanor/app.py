"""The composition root: checks a campaign against the lab, wires the recorded ports, runs the graph.

Everything that can be refused is refused here, before Ray starts or any instrument is created.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.analyst import summarise
from agents.graph import run_campaign
from agents.llm import make_llm
from agents.pi import understand
from agents.state import Ports
from athanor.errors import AthanorError, SpecError
from athanor.lab import LabDescription, match_quantity
from athanor.models import Observation
from athanor.ports import LLMPort
from athanor.settings import Settings
from athanor.spec import CampaignSpec
from athanor.yamlfile import load_model
from instruments.virtual_lab import SHARED_NAMESPACE, RayLab, ensure_ray, virtual_lab_description
from runs.context import RunContext, new_run_id
from runs.eventlog import read_events
from runs.manifest import write_manifest
from runs.observations import ObservationsCSV, read_observations
from runs.recorder import RecordingInstruments, RecordingKnowledge, RecordingLLM
from runs.report import write_report
from runs.store import athanor_home, create_run_dir, resolve_run

__all__ = [
    "CampaignResult",
    "RunOptions",
    "check_against_lab",
    "lab_for",
    "llm_from",
    "read_spec",
    "resume",
    "run",
]


@dataclass
class RunOptions:
    """How to run a campaign.

    Attributes:
        settings: Environment settings (LLM endpoint, Ray address).
        llm: Back end name, overriding ``settings.llm``.
        seed: Overrides the spec's seed.
        lab_file: A ``lab.yaml``; None uses the virtual lab.
        lab: A lab description given directly (benchmarks, tests); wins over ``lab_file``.
        time_scale: Multiplier on simulated instrument durations (virtual lab only).
        literature: Ground the campaign in the literature store.
        llm_script: Scripted replies for the ``mock`` back end.
    """

    settings: Settings = field(default_factory=Settings.from_env)
    llm: str | None = None
    seed: int | None = None
    lab_file: Path | None = None
    lab: LabDescription | None = None
    time_scale: float = 0.01
    literature: bool = True
    llm_script: dict[str, list[Any]] | None = None


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


def read_spec(request_or_file: str, llm: LLMPort, seed: int | None) -> CampaignSpec:
    """A spec from a YAML/JSON file path or a plain-language request."""
    if Path(request_or_file).suffix.lower() in {".yaml", ".yml", ".json"}:
        spec = load_model(Path(request_or_file), CampaignSpec, "campaign file")
        return spec.model_copy(update={"seed": seed}) if seed is not None else spec
    return understand(request_or_file, llm, seed)


def lab_for(spec: CampaignSpec, options: RunOptions) -> LabDescription:
    """The lab the campaign runs in: the given ``lab.yaml``, or the virtual lab for its components."""
    if options.lab is not None:
        return options.lab
    if options.lab_file is not None:
        return load_model(options.lab_file, LabDescription, "lab file")
    return virtual_lab_description(spec.component_names, time_scale=options.time_scale)


def check_against_lab(spec: CampaignSpec, lab: LabDescription) -> None:
    """Refuse a campaign the lab cannot run, naming what is missing and the fix.

    Raises:
        athanor.errors.SpecError: An instrument, a stock or a measurable objective is missing.
    """
    problems = []
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
    if spec.budget.experiments > len(lab.wells):
        problems.append(
            f"budget.experiments: {spec.budget.experiments} experiments need as many wells;"
            f" the lab has {len(lab.wells)}"
        )
    if problems:
        raise SpecError("\n".join(problems))


@contextlib.contextmanager
def _ray_lab(lab: LabDescription, options: RunOptions, context: RunContext, home: Path) -> Iterator[RayLab]:
    started = ensure_ray(options.settings.ray_address, home / "ray")
    instruments = RayLab(
        lab,
        seed=context.seed,
        # a described lab's instruments are shared between campaigns; each virtual lab is the run's own
        namespace=SHARED_NAMESPACE if options.lab_file else None,
        ledger_dir=home / "ledgers",
        on_fault=lambda name, reason: context.record(
            "instrument_fault", {"instrument": name, "reason": reason}
        ),
        # the virtual plate keeps its liquid across a crash, as a real one does
        world_path=context.run_dir / "virtual_world.json",
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
    spec = read_spec(request_or_file, _BufferingLLM(llm, buffered), options.seed)
    lab = lab_for(spec, options)
    check_against_lab(spec, lab)

    run_id = new_run_id(spec.title)
    run_dir = create_run_dir(run_id)
    context = RunContext(run_dir, spec.seed, run_id)
    if on_event is not None:
        context.log.subscribe(on_event)
    context.record("run_started", {"run_id": run_id})
    context.record("request", {"text": spec.request or request_or_file, "llm_backend": llm.name})
    for kind, payload in buffered:
        context.record(kind, payload)
    context.record("spec", spec.model_dump(mode="json"))
    context.record("lab", lab.model_dump(mode="json"))
    write_manifest(run_dir, spec, spec.seed, {"request": request_or_file}, llm_backend=llm.name)
    if on_start is not None:
        on_start(run_dir, spec)
    return _execute(spec, lab, llm, context, options, resume=False)


def resume(
    run_ref: str,
    options: RunOptions,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    on_start: Callable[[Path, CampaignSpec], None] | None = None,
) -> CampaignResult:
    """Continue a run that stopped (crash, interrupt, instrument fault) from its last checkpoint.

    The graph restarts from the last super-step on disk. Experiments that were on the instruments are
    submitted again with the same idempotency keys, so every command an instrument's ledger records
    as done answers from the ledger instead of acting twice; observations already in
    ``observations.csv`` are not written again.

    Args:
        run_ref: Run id, unique prefix, or run folder.
        options: How to run it (the LLM back end may differ from the first run's).
        on_event: Called with every event as it is recorded.
        on_start: Called once the run is reopened, before any instrument starts.

    Raises:
        athanor.errors.AthanorError: The run cannot be found, is finished, or its record is damaged.
    """
    run_dir = resolve_run(run_ref)
    events = read_events(run_dir / "events.jsonl")
    kinds = [e["kind"] for e in events]
    if "run_finished" in kinds:
        raise AthanorError(f"run {run_dir.name} already finished; start a new one with `athanor run`")
    spec = CampaignSpec.model_validate(next(e["payload"] for e in events if e["kind"] == "spec"))
    lab = LabDescription.model_validate(next(e["payload"] for e in events if e["kind"] == "lab"))
    llm = llm_from(options)
    context = RunContext(run_dir, spec.seed, repair=True)
    if on_event is not None:
        context.log.subscribe(on_event)
    done = {o.experiment_id for o in read_observations(run_dir / "observations.csv", spec)}
    context.record("run_resumed", {"llm_backend": llm.name, "observations_on_disk": len(done)})
    if on_start is not None:
        on_start(run_dir, spec)
    return _execute(spec, lab, llm, context, options, resume=True, emitted=done)


def _execute(
    spec: CampaignSpec,
    lab: LabDescription,
    llm: LLMPort,
    context: RunContext,
    options: RunOptions,
    *,
    resume: bool,
    emitted: set[str] | None = None,
) -> CampaignResult:
    """Run (or continue) the graph with recorded ports, then write the report."""
    home = athanor_home()
    run_dir = context.run_dir
    csv = ObservationsCSV(run_dir / "observations.csv", spec)

    def on_observation(observation: Observation) -> None:
        csv.append(observation)
        context.record("observation", observation.model_dump(mode="json"))

    knowledge = None
    if options.literature:
        from knowledge.store import default_knowledge_base

        knowledge = RecordingKnowledge(default_knowledge_base(home), context)
    try:
        with _ray_lab(lab, options, context, home) as instruments:
            ports = Ports(
                llm=RecordingLLM(llm, context),
                knowledge=knowledge,
                instruments=RecordingInstruments(instruments, context),
                context=context,
                lab=lab,
                on_observation=on_observation,
                emitted=set(emitted or ()),
            )
            state = run_campaign(spec, ports, run_dir / "checkpoints.sqlite", resume=resume)
    except BaseException as error:
        kind = "run_stopped" if isinstance(error, KeyboardInterrupt) else "run_failed"
        context.record(kind, {"error": f"{type(error).__name__}: {error}"})
        csv.close()
        context.close()
        raise
    observations = [Observation.model_validate(o) for o in state.get("observations", [])]
    summary = summarise(spec, observations)
    decision = state.get("decision", {})
    groundings = read_events(context.log.path, "grounding")
    literature = [passage for event in groundings for passage in event["payload"]["passages"]]
    report = write_report(
        run_dir, spec, observations, {"decision": decision, "summary": summary, "literature": literature}
    )
    context.record("run_finished", {"summary": summary, "decision": decision, "report": report.name})
    csv.close()
    context.close()
    return CampaignResult(run_dir, spec, observations, summary, decision, report)


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
