"""An Opentrons robot over its HTTP API, and the liquid-handler back end that drives one.

:class:`OpentronsHTTPClient` speaks the robot server's HTTP API, version 3 (header
``Opentrons-Version: 3`` on every request), port 31950:

- ``POST /protocols``: multipart upload, field ``files``; 201 (200 when the same file was uploaded
  before) with ``{"data": {"id": ...}}``.
- ``POST /runs`` with ``{"data": {"protocolId": ...}}``: 201 with ``{"data": {"id": ..., "status":
  "idle"}}``; 409 while another run is active.
- ``POST /runs/{id}/actions`` with ``{"data": {"actionType": "play" | "stop"}}``: 201.
- ``GET /runs/{id}``: ``{"data": {"status": ..., "errors": [...]}}``; a run ends ``succeeded``,
  ``failed`` or ``stopped``. Errors are occurrences ``{"errorType", "detail", "wrappedErrors"}``.
- ``GET /runs/{id}/commands?cursor=&pageLength=``: ``{"data": [...], "meta": {"cursor",
  "totalLength"}}``; 20 commands a page unless asked otherwise.
- ``POST /commands?waitUntilComplete=true`` with ``{"data": {"commandType": "home", "params": {}}}``:
  homes the robot; refused (409) while a run is active.
- ``GET /health``: ``{"name", "robot_model", "api_version", "fw_version", "system_version", ...}``;
  ``robot_model`` is ``OT-2 Standard`` or ``OT-3 Standard`` (a Flex); 503 while the server starts.

Failed requests answer ``{"errors": [{"id", "title", "detail"}]}``.

:class:`OpentronsLiquidHandlerBackend` buffers the dispenses of each well; ``mix(well)`` turns them
and the mix into one protocol, simulates it in the opentrons environment, refuses it if the
simulation fails, and otherwise runs it on the robot and waits for the end. The protocol, the
simulation log and the robot's command log of every sample are kept in ``records`` for the run
record.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from athanor.errors import InstrumentError, SafetyError
from athanor.lab import InstrumentSpec, LabDescription, RobotConnection
from athanor.models import Command
from instruments.opentrons.protocol import render_protocol, tips_needed
from instruments.opentrons.simulate import simulate

__all__ = [
    "API_VERSION",
    "TERMINAL_STATUSES",
    "OpentronsHTTPClient",
    "OpentronsLiquidHandlerBackend",
    "ProtocolRenderer",
    "ProtocolSimulator",
    "RobotRun",
    "TipCounter",
    "make_opentrons_backend",
]

#: Version of the robot's HTTP API this client speaks.
API_VERSION = "3"
#: Run statuses after which a run does nothing more.
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "stopped"})

_WRAPPER_ERRORS = {"ExceptionInProtocolError", "ProtocolCommandFailedError"}
_OPTIONS = {"workdir", "simulation_timeout_s", "request_timeout_s"}


@dataclass
class RobotRun:
    """What happened to one protocol on the robot.

    Attributes:
        protocol_id: Id the robot gave the uploaded protocol.
        run_id: Id of the run.
        played: Whether the play action was accepted (the robot may have moved).
        status: Last status seen, e.g. ``running`` or ``succeeded``.
        errors: The run's error occurrences as the robot reported them.
        commands: The run's command log, as the robot reported it.
    """

    protocol_id: str | None = None
    run_id: str | None = None
    played: bool = False
    status: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


def _cause(occurrence: Mapping[str, Any]) -> Mapping[str, Any]:
    """The first error under the generic protocol-failure wrappers."""
    while occurrence.get("errorType") in _WRAPPER_ERRORS and occurrence.get("wrappedErrors"):
        occurrence = occurrence["wrappedErrors"][0]
    return occurrence


def _describe_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for error in errors:
        cause = _cause(error)
        kind, detail = str(cause.get("errorType", "error")), str(cause.get("detail", "")).strip()
        parts.append(detail if kind == "PythonException" or detail.startswith(kind) else f"{kind}: {detail}")
    return "; ".join(parts) or "the robot reported no error details"


def _http_error(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        errors = []
    described = [
        ": ".join(str(e[k]) for k in ("title", "detail") if isinstance(e, dict) and e.get(k)) for e in errors
    ]
    text = "; ".join(d for d in described if d) or response.text.strip()[:300]
    return f"HTTP {response.status_code}" + (f" ({text})" if text else "")


class OpentronsHTTPClient:
    """Upload, run and watch protocols on one Opentrons robot.

    Attributes:
        connection: Where the robot is, how often to poll and when a run counts as stalled.
        last_run: The run of the latest :meth:`run_protocol` call, filled in as it progresses.
    """

    def __init__(
        self,
        connection: RobotConnection,
        session: httpx.Client | None = None,
        *,
        request_timeout_s: float = 30.0,
        page_length: int = 100,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create a client.

        Args:
            connection: The robot's address and timing settings.
            session: HTTP client to send requests with; a new ``httpx.Client`` when None.
            request_timeout_s: Limit on one request, s (used for a session this client creates).
            page_length: Commands fetched per request of the command log.
            sleep: Waits between polls, s (tests pass a fake).
            clock: Monotonic seconds, for stall detection.
        """
        self.connection = connection
        self._own_session = session is None
        self._session = session if session is not None else httpx.Client(timeout=request_timeout_s)
        self._page_length = max(1, int(page_length))
        self._sleep = sleep
        self._clock = clock
        self.last_run: RobotRun | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the robot's API."""
        return f"http://{self.connection.host}:{self.connection.port}"

    def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._own_session:
            self._session.close()

    def __enter__(self) -> OpentronsHTTPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        files: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        url = self.base_url + path
        extra: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
        try:
            response = self._session.request(
                method,
                url,
                json=json,
                files=files,
                params=params,
                headers={"Opentrons-Version": API_VERSION},
                **extra,
            )
        except httpx.ConnectError as error:
            raise InstrumentError(
                f"cannot reach the Opentrons robot at {self.base_url} ({error}); check that it is on and on"
                " the network, and that robot.host and robot.port in lab.yaml are right"
            ) from None
        except httpx.TimeoutException:
            raise InstrumentError(
                f"the Opentrons robot at {self.base_url} did not answer {method} {path} in time; check the"
                " robot and the network"
            ) from None
        except httpx.HTTPError as error:
            raise InstrumentError(f"{method} {url} failed: {type(error).__name__}: {error}") from None
        if response.status_code >= 400:
            raise InstrumentError(f"the robot refused {method} {path}: {_http_error(response)}")
        if not response.content:
            return {}
        try:
            body = response.json()
        except ValueError:
            raise InstrumentError(f"the robot answered {method} {path} with text that is not JSON") from None
        if not isinstance(body, dict):
            raise InstrumentError(f"the robot answered {method} {path} with unexpected JSON")
        return body

    def _data_id(self, body: Mapping[str, Any], what: str) -> str:
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise InstrumentError(f"the robot's answer to {what} has no data.id")
        return data["id"]

    def health(self, timeout_s: float | None = 5.0) -> dict[str, Any]:
        """The robot server's ``GET /health`` answer (name, ``robot_model``, ``api_version``, ...).

        Args:
            timeout_s: Limit on the request, s; None uses the client's own limit.

        Raises:
            athanor.errors.InstrumentError: The robot cannot be reached, did not answer in time, or
                answered with an error (e.g. 503 while its server is still starting).
        """
        return self._request("GET", "/health", timeout_s=timeout_s)

    def upload_protocol(self, text: str, filename: str = "protocol.py") -> str:
        """Upload a Python protocol; returns the robot's protocol id."""
        files = {"files": (filename, text.encode("utf-8"), "text/x-python")}
        return self._data_id(self._request("POST", "/protocols", files=files), "POST /protocols")

    def create_run(self, protocol_id: str) -> str:
        """Create a run of an uploaded protocol; returns the run id."""
        body = self._request("POST", "/runs", json={"data": {"protocolId": protocol_id}})
        return self._data_id(body, "POST /runs")

    def action(self, run_id: str, action_type: str) -> None:
        """Send ``play``, ``pause`` or ``stop`` to a run."""
        self._request("POST", f"/runs/{run_id}/actions", json={"data": {"actionType": action_type}})

    def get_run(self, run_id: str) -> dict[str, Any]:
        """The run's ``data``: status, errors, pipettes, labware, ..."""
        data = self._request("GET", f"/runs/{run_id}").get("data")
        if not isinstance(data, dict):
            raise InstrumentError(f"the robot's answer to GET /runs/{run_id} has no data")
        return data

    def command_count(self, run_id: str) -> int:
        """How many commands the run has so far."""
        body = self._request("GET", f"/runs/{run_id}/commands", params={"pageLength": 1})
        return int((body.get("meta") or {}).get("totalLength", 0))

    def commands(self, run_id: str) -> list[dict[str, Any]]:
        """The run's whole command log, page by page."""
        found: list[dict[str, Any]] = []
        while True:
            params = {"cursor": len(found), "pageLength": self._page_length}
            body = self._request("GET", f"/runs/{run_id}/commands", params=params)
            page = body.get("data") or []
            found.extend(page)
            total = int((body.get("meta") or {}).get("totalLength", len(found)))
            if not page or len(found) >= total:
                return found

    def wait(self, run_id: str) -> dict[str, Any]:
        """Poll the run until it ends; returns its final ``data``.

        Raises:
            athanor.errors.InstrumentError: Status and command count stayed the same for
                ``stall_timeout_s``; a stop action was sent first.
        """
        timeout = self.connection.stall_timeout_s
        progress: tuple[Any, int] | None = None
        changed = self._clock()
        while True:
            data = self.get_run(run_id)
            status = data.get("status")
            if self.last_run is not None and self.last_run.run_id == run_id:
                self.last_run.status = status
            if status in TERMINAL_STATUSES:
                return data
            now = (status, self.command_count(run_id))
            if now != progress:
                progress, changed = now, self._clock()
            elif self._clock() - changed >= timeout:
                stopped = "sent a stop action"
                try:
                    self.action(run_id, "stop")
                except InstrumentError as error:
                    stopped = f"the stop action failed too ({error})"
                raise InstrumentError(
                    f"robot run {run_id} stalled: status {status!r} and {now[1]} commands unchanged for"
                    f" {timeout:g} s; {stopped}. Check the robot (door open, paused, waiting for error"
                    " recovery) before running again"
                )
            self._sleep(self.connection.poll_interval_s)

    def run_protocol(self, text: str, filename: str = "protocol.py") -> RobotRun:
        """Upload ``text``, run it, wait for the end and fetch the command log.

        ``last_run`` holds the protocol id, run id, status, errors and commands as far as they got,
        also when this raises.

        Raises:
            athanor.errors.InstrumentError: A request failed, the run stalled, or it ended other than
                ``succeeded`` (the message gives the run's errors).
        """
        run = self.last_run = RobotRun()
        run.protocol_id = self.upload_protocol(text, filename)
        run.run_id = self.create_run(run.protocol_id)
        self.action(run.run_id, "play")
        run.played = True
        try:
            final = self.wait(run.run_id)
        except InstrumentError:
            try:
                run.commands = self.commands(run.run_id)
            except InstrumentError:
                pass  # the stall is the error to report; the log is a bonus
            raise
        run.status = final.get("status")
        run.errors = list(final.get("errors") or [])
        run.commands = self.commands(run.run_id)
        if run.status != "succeeded":
            raise InstrumentError(f"robot run {run.run_id} {run.status}: {_describe_errors(run.errors)}")
        return run

    def stop_active(self) -> None:
        """Stop the latest run if it has not ended, and wait (up to ``stall_timeout_s``) until it has."""
        run = self.last_run
        if run is None or run.run_id is None or run.status in TERMINAL_STATUSES:
            return
        status = self.get_run(run.run_id).get("status")
        if status not in TERMINAL_STATUSES:
            self.action(run.run_id, "stop")
        deadline = self._clock() + self.connection.stall_timeout_s
        while status not in TERMINAL_STATUSES:
            if self._clock() >= deadline:
                raise InstrumentError(
                    f"robot run {run.run_id} is still {status!r} after a stop action; stop it on the robot"
                )
            self._sleep(self.connection.poll_interval_s)
            status = self.get_run(run.run_id).get("status")
        run.status = status

    def home(self) -> None:
        """Home every axis (the robot refuses while a run is active)."""
        body = self._request(
            "POST",
            "/commands",
            params={"waitUntilComplete": "true"},
            json={"data": {"commandType": "home", "params": {}}},
        )
        data = body.get("data") or {}
        if data.get("status") == "failed":
            raise InstrumentError(f"the robot failed to home: {_describe_errors([data.get('error') or {}])}")


class ProtocolRenderer(Protocol):
    """Renders liquid-handler steps as an Opentrons protocol (see ``instruments.opentrons.protocol``)."""

    def __call__(
        self,
        steps: Sequence[Command],
        lab: LabDescription,
        robot_type: Any,
        title: str,
        *,
        tips_used: Mapping[str, int] | None = None,
    ) -> str:
        """The protocol's Python source."""
        ...


class TipCounter(Protocol):
    """Counts the tips a protocol takes, per pipette (see ``instruments.opentrons.protocol.tips_needed``)."""

    def __call__(self, steps: Sequence[Command], lab: LabDescription, robot_type: Any) -> dict[str, int]:
        """Pipette API name to tips."""
        ...


class ProtocolSimulator(Protocol):
    """Simulates a protocol (see ``instruments.opentrons.simulate.simulate``).

    The result has ``ok``, ``log``, ``commands``, ``error`` and ``seconds``.
    """

    def __call__(self, protocol_text: str, workdir: Path, timeout_s: float = ...) -> Any:
        """The simulation's verdict."""
        ...


class OpentronsLiquidHandlerBackend:
    """A liquid-handler back end that makes each sample with one simulated-then-run robot protocol.

    ``dispense`` only records the step (nothing moves yet); ``mix(well)`` makes the sample: the
    buffered dispenses and the mix become one protocol that must pass its simulation before it is
    sent. A failed ``mix`` therefore means the sample may be incomplete.

    Tips are taken from the racks in column order across runs; ``tips_used`` counts them from the
    start of this back end (full racks assumed). A run that was started counts all its tips even if
    it failed, so a tip position is never picked twice.

    Attributes:
        name: Instrument name.
        robot_type: ``OT-2`` or ``Flex``.
        client: The robot's HTTP client.
        records: One dict per sample: ``well``, ``protocol`` (text), ``simulation`` (``ok``, ``log``,
            ``commands``, ``error``, ``seconds``) and ``run`` (:meth:`RobotRun.as_dict`, or None when
            nothing was sent).
        tips_used: Pipette API name to tips taken so far.
    """

    def __init__(
        self,
        spec: InstrumentSpec,
        lab: LabDescription,
        client: OpentronsHTTPClient,
        *,
        render: ProtocolRenderer,
        count_tips: TipCounter,
        simulate: ProtocolSimulator,
        workdir: Path,
        simulation_timeout_s: float = 120.0,
    ) -> None:
        """Create the back end; checks the deck by rendering one dispense per stock (nothing is sent).

        Args:
            spec: The instrument (``backend: opentrons`` with a ``robot`` block).
            lab: The lab: labware, sample labware, stocks with positions.
            client: HTTP client of the robot.
            render: Steps to protocol text.
            count_tips: Steps to tips per pipette.
            simulate: Protocol text and a folder to a verdict.
            workdir: Folder for the simulations (one subfolder per sample).
            simulation_timeout_s: Time limit of one simulation, s.

        Raises:
            athanor.errors.InstrumentError: The instrument has no robot block, or the deck does not fit
                (labware, slots, stock positions, tip racks).
        """
        if spec.robot is None:
            raise InstrumentError(f"instrument {spec.name}: the opentrons back end needs a 'robot:' block")
        self.name = spec.name
        self.robot_type = spec.robot.robot_type
        self.lab = lab
        self.client = client
        self.workdir = Path(workdir)
        self.simulation_timeout_s = float(simulation_timeout_s)
        self._render = render
        self._count_tips = count_tips
        self._simulate = simulate
        self._stocks = [s.name for s in lab.stocks]
        self._pending: dict[str, list[Command]] = {}
        self.records: list[dict[str, Any]] = []
        self.tips_used: dict[str, int] = {}
        well = lab.wells[0]
        check = [self._dispense(stock, well, 1.0) for stock in self._stocks] + [self._mix(well)]
        render(check, lab, self.robot_type, f"athanor {self.name} deck check")

    def _dispense(self, stock: str, well: str, volume_ul: float) -> Command:
        params = {"stock": stock, "well": well, "volume_ul": volume_ul}
        return Command(instrument=self.name, action="dispense", params=params)

    def _mix(self, well: str) -> Command:
        return Command(instrument=self.name, action="mix", params={"well": well})

    def dispense(self, stock: str, well: str, volume_ul: float) -> None:
        """Queue ``volume_ul`` µL of ``stock`` for ``well``; it is pipetted when the well is mixed."""
        if stock not in self._stocks:
            raise InstrumentError(f"{self.name}: no stock {stock!r} on the deck")
        self._pending.setdefault(well, []).append(self._dispense(stock, well, volume_ul))

    def mix(self, well: str) -> None:
        """Make the sample in ``well``: render, simulate, run on the robot, fetch the command log.

        Raises:
            athanor.errors.SafetyError: The protocol failed its simulation; nothing was sent.
            athanor.errors.InstrumentError: The robot could not be reached, refused, failed or stalled.
        """
        steps = [*self._pending.pop(well, []), self._mix(well)]
        title = f"athanor {self.name} {well}"
        text = self._render(steps, self.lab, self.robot_type, title, tips_used=dict(self.tips_used))
        needed = self._count_tips(steps, self.lab, self.robot_type)
        record: dict[str, Any] = {"well": well, "protocol": text, "simulation": None, "run": None}
        self.records.append(record)
        folder = self.workdir / f"{len(self.records):04d}-{well}"
        result = self._simulate(text, folder, self.simulation_timeout_s)
        record["simulation"] = {
            "ok": bool(result.ok),
            "log": result.log,
            "commands": result.commands,
            "error": result.error,
            "seconds": result.seconds,
        }
        if not result.ok:
            raise SafetyError(
                f"{self.name}: the protocol for well {well} failed its simulation, so nothing was sent to"
                f" the robot: {result.error}"
            )
        try:
            self.client.run_protocol(text, filename=f"athanor-{well}.py")
        finally:
            run = self.client.last_run
            record["run"] = run.as_dict() if run is not None else None
            if run is not None and run.played:
                for pipette, count in needed.items():
                    self.tips_used[pipette] = self.tips_used.get(pipette, 0) + count

    def safe_state(self) -> None:
        """Drop queued dispenses, stop the robot's active run and home it."""
        self._pending.clear()
        self.client.stop_active()
        self.client.home()

    @property
    def last_record(self) -> dict[str, Any] | None:
        """The record of the latest sample, or None before the first."""
        return self.records[-1] if self.records else None


def _positive(options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InstrumentError(f"options.{key} must be a positive number of seconds, got {value!r}")
    return float(value)


def make_opentrons_backend(spec: InstrumentSpec, lab: LabDescription) -> OpentronsLiquidHandlerBackend:
    """The opentrons back end for ``spec``, with the Opentrons protocol renderer and simulator.

    Options (``spec.options``): ``workdir`` (folder for simulations; a new temporary folder when
    absent), ``simulation_timeout_s`` (default 120), ``request_timeout_s`` (default 30).

    Raises:
        athanor.errors.InstrumentError: Unknown or bad options, or the deck does not fit.
    """
    if spec.robot is None:
        raise InstrumentError(f"instrument {spec.name}: the opentrons back end needs a 'robot:' block")
    unknown = sorted(set(spec.options) - _OPTIONS)
    if unknown:
        raise InstrumentError(
            f"{spec.name}: unknown option(s) {', '.join(unknown)};"
            f" known options: {', '.join(sorted(_OPTIONS))}"
        )
    workdir = spec.options.get("workdir") or tempfile.mkdtemp(prefix=f"athanor-{spec.name}-")
    client = OpentronsHTTPClient(
        spec.robot, request_timeout_s=_positive(spec.options, "request_timeout_s", 30.0)
    )
    return OpentronsLiquidHandlerBackend(
        spec,
        lab,
        client,
        render=render_protocol,
        count_tips=tips_needed,
        simulate=simulate,
        workdir=Path(workdir),
        simulation_timeout_s=_positive(spec.options, "simulation_timeout_s", 120.0),
    )
