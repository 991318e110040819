"""Checking a lab description before a campaign: build every instrument and dry-run it.

:func:`check_lab` builds each instrument's front end and back end exactly as its actor does (an
:class:`~instruments.actors.InstrumentHost`, in this process) and dry-runs it:

- ``simulated``: a tiny command sequence on a throwaway copy of the lab (no waiting, no injected
  faults): a liquid handler dispenses its smallest volume of the first stock into the first well and
  mixes it, a meter measures a sample placed in that well, a hot plate reads its temperature; then the
  safe state.
- ``serial``: open the port, ask the device to identify itself (``*IDN?``), then the safe state.
- ``opentrons``: render a one-sample protocol (the smallest volume of every stock into the first well,
  then a mix) and simulate it in the opentrons environment; with ``connect``, ask the robot's
  ``GET /health``. Nothing is sent that would move the robot (its safe state homes it, so it is skipped).

It also checks the safety envelope, each stock's deck position and where the instrument's Ray actor
can run. Every finding is a :class:`Check`: ok / warn / fail, a one-line detail and the fix. What
``athanor run`` refuses about a lab on its own (:mod:`instruments.lab_rules`) fails here in the same
words: an instrument's in :func:`check_lab`, the lab's as a whole in :func:`lab_findings`. A lab
without stocks is valid (a warning): it is a campaign's components that need them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from athanor.errors import AthanorError
from athanor.lab import InstrumentSpec, LabDescription
from athanor.models import Command, Reading
from instruments.actors import InstrumentHost
from instruments.lab_rules import LabProblem, instrument_problems, lab_problems
from instruments.opentrons.protocol import render_protocol
from instruments.opentrons.simulate import PYTHON_ENV_VAR, simulate
from instruments.placement import cluster_nodes, missing_resources
from instruments.virtual_world import VirtualWorld

__all__ = ["Check", "InstrumentCheck", "Status", "check_lab", "lab_findings", "worst"]

Status = Literal["ok", "warn", "fail"]

#: Seconds the robot may take to answer ``GET /health``.
HEALTH_TIMEOUT_S = 3.0
_RANK: dict[str, int] = {"ok": 0, "warn": 1, "fail": 2}
_ROBOT_MODELS = {"OT-2": "OT-2 Standard", "Flex": "OT-3 Standard"}
_WELL = re.compile(r"^[A-Z]{1,2}[0-9]{1,3}$")
_PROTOCOL_LINE = re.compile(r"protocol line (\d+)")
_PORT_FIX = (
    "check serial.port in lab.yaml (`ls /dev/serial/by-id/` lists the adapters plugged in), that the"
    " device is plugged in and powered, and that your user may open it: add it to the dialout group"
    " (`sudo usermod -aG dialout $USER`, then log in again)"
)
_BUILD_FIX = {
    "simulated": "correct the instrument's options and the lab's stocks in lab.yaml",
    "serial": "correct the instrument's serial block (profile, port) and options in lab.yaml",
    "opentrons": "correct the deck in lab.yaml: labware load names and slots, stock positions, tip racks",
}


@dataclass(frozen=True)
class Check:
    """One finding about an instrument.

    Attributes:
        name: What was checked: ``build``, ``dry run``, ``safe state``, ``port``, ``identify``,
            ``robot``, ``envelope``, ``stock <name>``, ``stocks`` or ``placement``.
        status: ``ok``, ``warn`` (works, but look at it) or ``fail`` (a campaign would not run).
        detail: What was found, one line.
        fix: What to change; empty when nothing needs to.
        trace: The traceback of an unexpected error (a bug rather than a lab problem), else None.
    """

    name: str
    status: Status
    detail: str
    fix: str = ""
    trace: str | None = None


@dataclass
class InstrumentCheck:
    """Everything :func:`check_lab` found about one instrument.

    Attributes:
        name: Instrument name.
        kind: Instrument kind.
        backend: Back end name.
        connection: Where it is reached, e.g. ``/dev/ttyUSB0 9600 baud (four_point_probe)``.
        envelope: One-line summary of its safety envelope.
        dry_run: One-line summary of what the dry run did.
        checks: The findings, each with its status.
    """

    name: str
    kind: str
    backend: str
    connection: str
    envelope: str
    dry_run: str
    checks: list[Check] = field(default_factory=list)

    @property
    def status(self) -> Status:
        """The worst status among the findings (``ok`` when there are none)."""
        return worst(c.status for c in self.checks)

    def problems(self) -> list[Check]:
        """The findings that are not ``ok``."""
        return [c for c in self.checks if c.status != "ok"]


def worst(statuses: Any) -> Status:
    """The worst of some statuses: ``fail`` over ``warn`` over ``ok`` (``ok`` for none)."""
    found: Status = "ok"
    for status in statuses:
        if _RANK[status] > _RANK[found]:
            found = status
    return found


def check_lab(lab: LabDescription, *, connect: bool = True, workdir: Path) -> list[InstrumentCheck]:
    """Build and dry-run every instrument of ``lab``; see the module docstring.

    Args:
        lab: The lab description.
        connect: Open serial ports and contact robots; False only builds instruments and simulates
            protocols, so it needs none of the hardware.
        workdir: Folder for protocol simulations (one subfolder per instrument); created if needed.

    Returns:
        One :class:`InstrumentCheck` per instrument, in the lab's order. Problems are findings, never
        exceptions.
    """
    nodes = _ray_nodes()
    results = []
    for spec in lab.instruments:
        folder = Path(workdir) / re.sub(r"[^A-Za-z0-9_.-]", "_", spec.name)
        broken = [_finding(p) for p in instrument_problems(spec, lab)]
        refused_options = [c for c in broken if c.name == "options"]
        checks = refused_options + _envelope_checks(spec, broken)
        if refused_options:  # building it would fail the same way
            dry_run = "not run: options refused"
        else:
            dry_run, found = _dry_run(spec, lab, connect, folder)
            checks += found
        if spec.kind == "liquid_handler" and spec.backend != "opentrons":
            checks += _stock_checks(lab)
        checks.append(_placement_check(spec, nodes))
        results.append(
            InstrumentCheck(
                name=spec.name,
                kind=spec.kind,
                backend=spec.backend,
                connection=_connection(spec),
                envelope=_envelope_summary(spec),
                dry_run=dry_run,
                checks=checks,
            )
        )
    return results


def lab_findings(lab: LabDescription) -> list[Check]:
    """What concerns the lab as a whole rather than one instrument.

    Returns:
        A ``fail`` per lab-wide rule ``athanor run`` would refuse the lab for (e.g. no liquid
        handler), a ``warn`` when it has no stocks, or one ``ok`` finding.
    """
    found = [_finding(p) for p in lab_problems(lab) if p.instrument is None]
    if not lab.stocks:
        found.append(
            Check(
                "stocks",
                "warn",
                "no stocks: every campaign on this lab will be refused until stocks are added",
                "add one stock per component under stocks (name, component, volume_ul)",
            )
        )
    return found or [Check("lab", "ok", f"{len(lab.instruments)} instrument(s), {len(lab.stocks)} stock(s)")]


def _finding(problem: LabProblem) -> Check:
    """A rule the lab breaks, as a failing finding in the rule's own words."""
    return Check(problem.topic, "fail", problem.detail, problem.fix)


# Summaries.


def _connection(spec: InstrumentSpec) -> str:
    if spec.serial is not None and spec.backend == "serial":
        link = spec.serial
        return f"{link.port} {link.baudrate} baud ({link.profile})"
    if spec.robot is not None and spec.backend == "opentrons":
        return f"{spec.robot.host}:{spec.robot.port} ({spec.robot.robot_type})"
    return "in-process"


def _envelope_summary(spec: InstrumentSpec) -> str:
    envelope = spec.envelope
    low, high = envelope.min_volume_ul, envelope.max_volume_ul
    parts = []
    if low is not None and high is not None:
        parts.append(f"{low:g}-{high:g} µL/step")
    elif high is not None:
        parts.append(f"≤{high:g} µL/step")
    elif low is not None:
        parts.append(f"≥{low:g} µL/step")
    if envelope.max_well_volume_ul is not None:
        parts.append(f"≤{envelope.max_well_volume_ul:g} µL/well")
    if envelope.max_temperature_c is not None:
        parts.append(f"≤{envelope.max_temperature_c:g} °C")
    elif spec.kind == "hotplate":
        parts.append("no max °C")
    if envelope.max_ramp_c_per_min is not None:
        parts.append(f"≤{envelope.max_ramp_c_per_min:g} °C/min")
    if not parts:
        actions = [a for a in envelope.allowed_actions if a != "safe_state"]
        parts.append(", ".join(actions) or "safe_state only")
    return ", ".join(parts)


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if not isinstance(error, AthanorError):
        text = f"{type(error).__name__}: {text}"
    return " ".join(text.split())


# Lab-file checks that need no instrument.

#: The actions without which an instrument of each kind cannot take part in a campaign.
_ESSENTIAL = {
    "liquid_handler": ("dispense", "mix"),
    "conductivity_meter": ("measure",),
    "hotplate": ("read_temperature",),
    "spectrometer": ("measure",),
}


def _envelope_checks(spec: InstrumentSpec, broken: list[Check]) -> list[Check]:
    """The envelope rules the instrument breaks (``broken`` holds them), its warnings, or one ``ok``."""
    envelope = spec.envelope
    found = [c for c in broken if c.name == "envelope"]
    if spec.kind == "hotplate" and envelope.max_temperature_c is None:
        found.append(
            Check(
                "envelope",
                "warn",
                "no max_temperature_c: the hot plate refuses every set point",
                "set envelope.max_temperature_c (°C) to the hottest temperature allowed",
            )
        )
    missing = [a for a in _ESSENTIAL[spec.kind] if a not in envelope.allowed_actions]
    if missing:
        found.append(
            Check(
                "envelope",
                "warn",
                f"allowed_actions lacks {', '.join(missing)}: every {' and '.join(missing)} is refused",
                f"add {', '.join(missing)} to envelope.allowed_actions if the instrument should do it",
            )
        )
    return found or [Check("envelope", "ok", f"consistent ({_envelope_summary(spec)})")]


def _stock_checks(lab: LabDescription) -> list[Check]:
    """Deck positions of the stocks, as far as they can be checked without a robot.

    A lab without stocks gets none here: :func:`lab_findings` warns about it.
    """
    labware = {item.name: item for item in lab.labware}
    checks = []
    for index, stock in enumerate(lab.stocks):
        name, where = f"stock {stock.name}", f"stocks[{index}]"
        if stock.labware is None and stock.well is None:
            checks.append(Check(name, "ok", "no deck position (a robot back end needs labware and well)"))
            continue
        if stock.labware is None or stock.well is None:
            half = "labware but no well" if stock.well is None else "a well but no labware"
            checks.append(
                Check(name, "warn", f"has {half}", f"give {where} both labware and well, or neither")
            )
            continue
        if not _WELL.match(stock.well):
            checks.append(
                Check(
                    name,
                    "fail",
                    f"well {stock.well!r} is not a well name",
                    f"set {where}.well to a well like A1",
                )
            )
            continue
        if stock.labware == lab.sample_labware and stock.well in lab.wells:
            checks.append(
                Check(
                    name,
                    "fail",
                    f"sits in well {stock.well} of the sample plate {stock.labware}, which is also a"
                    " sample well",
                    f"remove {stock.well} from wells, or move the stock to another well",
                )
            )
            continue
        item = labware[stock.labware]
        place = f"well {stock.well} of {item.name} ({item.load_name}, slot {item.slot})"
        checks.append(Check(name, "ok", place))
    return checks


def _ray_nodes() -> list[dict[str, Any]] | None:
    """Live nodes of the Ray cluster this process is connected to; None when Ray is not running here."""
    import ray

    return cluster_nodes() if ray.is_initialized() else None


def _placement_check(spec: InstrumentSpec, nodes: Sequence[Mapping[str, Any]] | None) -> Check:
    if not spec.resources:
        return Check("placement", "ok", "no Ray resources: its actor may run on any node")
    needs = ", ".join(f"{k}={v:g}" for k, v in spec.resources.items())
    amounts = {k: int(v) if float(v).is_integer() else v for k, v in spec.resources.items()}
    start = f"`ray start --address=HEAD:6379 --resources='{json.dumps(amounts)}'`"
    if nodes is None:
        return Check(
            "placement",
            "warn",
            f"needs Ray resource(s) {needs}; not checked (not connected to a Ray cluster). A local Ray"
            " (`athanor run` without --ray-address) offers none",
            f"start the PC wired to it with {start} and run with --ray-address HEAD:6379; set RAY_ADDRESS"
            " to check placement here, or remove resources to run on one PC",
        )
    lacking = missing_resources(spec, nodes)
    if lacking is None:
        return Check("placement", "ok", f"a live Ray node offers {needs}")
    short = ", ".join(f"{k}={v:g}" for k, v in lacking.items())
    return Check(
        "placement",
        "fail",
        f"no live Ray node offers {short} ({len(nodes)} node(s) in the cluster)",
        f"start the PC wired to it with {start}, or correct the instrument's resources in lab.yaml",
    )


# Dry runs.

DryRun = Callable[[InstrumentSpec, LabDescription, bool, Path], tuple[str, list[Check]]]


def _dry_run(
    spec: InstrumentSpec, lab: LabDescription, connect: bool, folder: Path
) -> tuple[str, list[Check]]:
    runners: dict[str, DryRun] = {
        "simulated": _dry_run_simulated,
        "serial": _dry_run_serial,
        "opentrons": _dry_run_opentrons,
    }
    try:
        return runners[spec.backend](spec, lab, connect, folder)
    except AthanorError as error:
        return "not run", [Check("build", "fail", _one_line(error), _BUILD_FIX[spec.backend])]
    except Exception as error:  # a bug, not a lab problem: keep checking the other instruments
        return "not run", [
            Check(
                "build",
                "fail",
                _one_line(error),
                "rerun with --debug and report the traceback",
                trace=traceback.format_exc(),
            )
        ]


def _variant(
    lab: LabDescription, name: str, change: Callable[[dict[str, Any], dict[str, Any]], None]
) -> LabDescription:
    """A copy of ``lab`` after ``change(lab_data, instrument_data)`` edited its JSON dump."""
    data = lab.model_dump(mode="json")
    instrument = next(i for i in data["instruments"] if i["name"] == name)
    change(data, instrument)
    return LabDescription.model_validate(data)


@contextlib.contextmanager
def _hosted(lab: LabDescription, name: str) -> Iterator[InstrumentHost]:
    """The instrument built as its actor builds it, released (ports and sessions closed) on exit."""
    host = InstrumentHost(lab, name, VirtualWorld(), seed=0)
    try:
        yield host
    finally:
        backend = host.frontend.backend
        for target in (backend, getattr(backend, "client", None)):
            close = getattr(target, "close", None)
            if callable(close):
                close()
        host.ledger.close()


def _probe_volume(spec: InstrumentSpec) -> float:
    """The smallest volume the envelope lets one step move, µL (1 µL when it sets no minimum)."""
    envelope = spec.envelope
    volume = envelope.min_volume_ul if envelope.min_volume_ul else 1.0
    return min(volume, envelope.max_volume_ul) if envelope.max_volume_ul is not None else volume


def _execute(host: InstrumentHost, command: Command) -> Reading:
    return Reading.model_validate(host.execute(command.model_dump(mode="json")))


def _safe_state(host: InstrumentHost, what: str) -> Check:
    reading = Reading.model_validate(host.safe_state())
    if reading.ok:
        return Check("safe state", "ok", "reached")
    return Check("safe state", "fail", f"not reached: {reading.error}", f"check the {what} before a campaign")


#: Kinds that measure a sample in a well: their simulated dry run needs a sample made first.
_SAMPLE_MEASURING = ("conductivity_meter", "spectrometer")


def _simulated_steps(spec: InstrumentSpec, lab: LabDescription, world: Any) -> list[Command]:
    allowed, well = spec.envelope.allowed_actions, lab.wells[0]
    if spec.kind == "liquid_handler":
        steps = []
        if lab.stocks and "dispense" in allowed:
            params = {"stock": lab.stocks[0].name, "well": well, "volume_ul": _probe_volume(spec)}
            steps.append(Command(instrument=spec.name, action="dispense", params=params))
        if "mix" in allowed:
            steps.append(Command(instrument=spec.name, action="mix", params={"well": well}))
        return steps
    if spec.kind in _SAMPLE_MEASURING:
        if "measure" not in allowed:
            return []
        if lab.stocks:
            world.add(well, lab.stocks[0].component, lab.sample_volume_ul)
        return [Command(instrument=spec.name, action="measure", params={"well": well})]
    return [Command(instrument=spec.name, action="read_temperature")] if "read_temperature" in allowed else []


def _describe(command: Command, reading: Reading) -> str:
    params = command.params
    if command.action == "dispense":
        return f"dispense {params['volume_ul']:g} µL {params['stock']}→{params['well']}"
    if command.action in ("mix", "measure") and not reading.values:
        return f"{command.action} {params['well']}"
    values = ", ".join(f"{v:.4g} {reading.units.get(k, '')}".strip() for k, v in reading.values.items())
    where = f" {params['well']}" if "well" in params else ""
    return f"{command.action}{where} = {values}"


def _dry_run_simulated(
    spec: InstrumentSpec, lab: LabDescription, connect: bool, folder: Path
) -> tuple[str, list[Check]]:
    def throwaway(data: dict[str, Any], instrument: dict[str, Any]) -> None:
        data["time_scale"] = 0.0  # no waiting
        instrument["options"] = {**instrument["options"], "fail_rate": 0.0, "stall_rate": 0.0}

    if spec.kind in _SAMPLE_MEASURING and not lab.stocks:
        # its emulator is made for the stocks' components; the options were checked already
        return "not run: no stocks", [
            Check(
                "dry run",
                "warn",
                "not run: the lab has no stocks, so the simulated meter has no components to emulate",
                "add one stock per component under stocks (name, component, volume_ul)",
            )
        ]
    trial = _variant(lab, spec.name, throwaway)
    with _hosted(trial, spec.name) as host:
        world = host.frontend.backend.world if spec.kind in _SAMPLE_MEASURING else None
        done = []
        for command in _simulated_steps(trial.instrument(spec.name), trial, world):
            reading = _execute(host, command)
            if not reading.ok:
                detail = f"{command.action} failed: {reading.error}"
                return ", ".join([*done, f"{command.action} failed"]), [
                    Check("dry run", "fail", detail, _BUILD_FIX["simulated"])
                ]
            done.append(_describe(command, reading))
        safe = _safe_state(host, "instrument's options")
    summary = ", ".join([*done, "safe state"])
    return summary, [Check("dry run", "ok", summary), safe]


def _dry_run_serial(
    spec: InstrumentSpec, lab: LabDescription, connect: bool, folder: Path
) -> tuple[str, list[Check]]:
    assert spec.serial is not None  # the lab validator guarantees it
    port = spec.serial.port
    checks = []
    if "://" not in port and not os.path.exists(port):
        elsewhere = (
            f"; if it is wired to another PC (it needs Ray resource(s) {', '.join(spec.resources)}), run"
            " `athanor lab check` there"
            if spec.resources
            else ""
        )
        missing = Check(
            "port", "fail" if connect else "warn", f"serial port {port} does not exist", _PORT_FIX + elsewhere
        )
        if connect:
            return "not run: no port", [missing]
        checks.append(missing)
    elif connect and "://" not in port and not os.access(port, os.R_OK | os.W_OK):
        return "not run: port not accessible", [
            Check("port", "fail", f"serial port {port} exists but this user may not open it", _PORT_FIX)
        ]

    if not connect:

        def loopback(data: dict[str, Any], instrument: dict[str, Any]) -> None:
            # pyserial's loopback stands in for the port: building checks profile and options only
            instrument["serial"]["port"] = "loop://"

        try:
            with _hosted(_variant(lab, spec.name, loopback), spec.name):
                pass
        except AthanorError as error:
            checks.append(Check("build", "fail", _one_line(error), _BUILD_FIX["serial"]))
        else:
            built = f"profile {spec.serial.profile} and options valid; port not opened"
            checks.append(Check("build", "ok", built))
        return "not run (--no-connect)", checks

    with _hosted(lab, spec.name) as host:
        try:
            identity = host.frontend.backend.identify()
        except AthanorError as error:
            fix = (
                f"check the cable, the baud rate ({spec.serial.baudrate}) and that serial.profile"
                f" ({spec.serial.profile}) matches the device"
            )
            return "*IDN? failed", [Check("identify", "fail", _one_line(error), fix)]
        safe = _safe_state(host, "device")
    answered = Check("identify", "ok", f"the device answers {identity}")
    return f"*IDN? → {identity}, safe state", [answered, safe]


def _aspirate_lines(text: str) -> list[int]:
    """1-based numbers of the protocol's aspirate lines, in order (one per dispense step)."""
    return [n for n, line in enumerate(text.splitlines(), start=1) if ".aspirate(" in line]


def _dry_run_opentrons(
    spec: InstrumentSpec, lab: LabDescription, connect: bool, folder: Path
) -> tuple[str, list[Check]]:
    def own_workdir(data: dict[str, Any], instrument: dict[str, Any]) -> None:
        instrument["options"] = {**instrument["options"], "workdir": str(folder / "backend")}

    trial = _variant(lab, spec.name, own_workdir)
    with _hosted(trial, spec.name) as host:  # building renders a deck check: labware, slots, positions
        backend = host.frontend.backend
        well, volume = lab.wells[0], _probe_volume(spec)
        steps = [
            Command(
                instrument=spec.name,
                action="dispense",
                params={"stock": stock.name, "well": well, "volume_ul": volume},
            )
            for stock in lab.stocks
        ]
        steps.append(Command(instrument=spec.name, action="mix", params={"well": well}))
        text = render_protocol(steps, trial, backend.robot_type, f"athanor {spec.name} lab check")
        try:
            result = simulate(text, folder / "dry-run", backend.simulation_timeout_s)
        except AthanorError as error:
            fix = f"run `make setup` to create .venv-opentrons, or point {PYTHON_ENV_VAR} at its python"
            return "not simulated", [Check("dry run", "fail", _one_line(error), fix)]
        checks = _simulation_checks(lab, text, result, well, volume)
        summary = (
            f"{len(lab.stocks)} dispense(s) of {volume:g} µL into {well} + mix simulated"
            if result.ok
            else "simulation failed"
        )
        if connect:
            checks.append(_health_check(spec, backend.client))
            summary += "; robot " + ("answers" if checks[-1].status == "ok" else "unreachable")
        else:
            checks.append(Check("robot", "ok", "not contacted (--no-connect)"))
    return summary, checks


def _simulation_checks(lab: LabDescription, text: str, result: Any, well: str, volume: float) -> list[Check]:
    """The simulation's verdict, and each stock's deck position as the simulation saw it."""
    labware = {item.name: item for item in lab.labware}
    if result.ok:
        checks = [Check("dry run", "ok", f"one-sample protocol simulated in {result.seconds:.1f} s")]
        for stock in lab.stocks:
            item = labware[str(stock.labware)]
            place = f"well {stock.well} of {item.name} ({item.load_name}) reached"
            checks.append(Check(f"stock {stock.name}", "ok", place))
        return checks
    match = _PROTOCOL_LINE.search(result.error or "")
    lines = _aspirate_lines(text)
    failed_at = int(match.group(1)) if match else None
    if failed_at in lines:
        index = lines.index(failed_at)
        stock = lab.stocks[index]
        item = labware[str(stock.labware)]
        return [
            Check(
                f"stock {stock.name}",
                "fail",
                f"drawing {volume:g} µL from well {stock.well} of {item.name} ({item.load_name}) failed"
                f" in the simulation: {result.error}",
                f"set stocks[{index}].well to a well that {item.load_name} has, or correct that labware's"
                " load_name",
            )
        ]
    return [
        Check(
            "dry run",
            "fail",
            f"the one-sample protocol for well {well} failed its simulation: {result.error}",
            _BUILD_FIX["opentrons"] + ", and the envelope's volumes",
        )
    ]


def _health_check(spec: InstrumentSpec, client: Any) -> Check:
    assert spec.robot is not None  # the lab validator guarantees it
    try:
        health = client.health(timeout_s=HEALTH_TIMEOUT_S)
    except AthanorError as error:
        return Check(
            "robot",
            "fail",
            _one_line(error),
            f"check that the robot is on and reachable from this PC (`ping {spec.robot.host}`), and"
            " robot.host and robot.port (31950) in lab.yaml",
        )
    model = str(health.get("robot_model", "?"))
    version = health.get("api_version", "?")
    expected = _ROBOT_MODELS[spec.robot.robot_type]
    if model != expected:
        actual = next((t for t, m in _ROBOT_MODELS.items() if m == model), model)
        return Check(
            "robot",
            "fail",
            f"{spec.robot.host} is a {actual} ({model}), but lab.yaml says {spec.robot.robot_type}",
            f"set robot.robot_type to {actual}, or robot.host to the right robot",
        )
    name = health.get("name", spec.robot.host)
    return Check("robot", "ok", f"{name} answers: {model}, robot software {version}")
