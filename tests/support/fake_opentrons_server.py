"""A fake Opentrons robot server on 127.0.0.1 for tests, with scriptable behaviour.

It implements the endpoints :class:`instruments.backends.opentrons_http.OpentronsHTTPClient` uses,
with the robot server's shapes, and records every request. Behaviours (``FakeRobot.mode``):

- ``"succeed"``: a played run is ``running`` for ``running_polls`` status polls, then ``succeeded``.
- ``"fail"``: the run ends ``failed`` with an error occurrence.
- ``"stall"``: the run stays ``running`` with a fixed command count until a stop action.
- ``"upload_500"``: ``POST /protocols`` answers HTTP 500.

``GET /health`` answers like the robot server, with ``robot_model`` (``OT-2 Standard``, or ``OT-3
Standard`` for a Flex).

The command log is made from the uploaded protocol's pipetting lines, one command per call, so a
test can check the volumes that reached the "robot".
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeRobot", "Request"]

_CALL = re.compile(r"^\s*\w+\.(pick_up_tip|aspirate|dispense|drop_tip|mix)\(([^)]*)\)", re.MULTILINE)
_COMMAND_TYPES = {
    "pick_up_tip": "pickUpTip",
    "aspirate": "aspirate",
    "dispense": "dispense",
    "drop_tip": "dropTip",
    "mix": "mix",
}
TERMINAL = {"succeeded", "failed", "stopped"}


@dataclass
class Request:
    """One request the fake robot received (header names in lower case)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any = None


@dataclass
class _Run:
    run_id: str
    protocol_id: str
    status: str = "idle"
    polls: int = 0
    actions: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)


def _commands_from(text: str) -> list[dict[str, Any]]:
    commands = []
    for index, match in enumerate(_CALL.finditer(text)):
        kind = _COMMAND_TYPES[match.group(1)]
        params: dict[str, Any] = {}
        args = [a.strip() for a in match.group(2).split(",") if a.strip()]
        if kind in ("aspirate", "dispense") and args:
            params["volume"] = float(args[0])
        if kind == "mix" and len(args) > 1:
            params["repetitions"], params["volume"] = int(args[0]), float(args[1])
        commands.append(
            {
                "id": f"cmd-{index}",
                "key": f"key-{index}",
                "commandType": kind,
                "status": "succeeded",
                "params": params,
                "error": None,
            }
        )
    return commands


class FakeRobot:
    """A fake robot server running in a background thread.

    Attributes:
        mode: ``succeed``, ``fail``, ``stall`` or ``upload_500``.
        running_polls: Status polls a succeeding run answers ``running`` before ``succeeded``.
        requests: Every request received, in order.
        protocols: Protocol id to uploaded text.
        runs: Run id to its state.
        robot_model: What ``GET /health`` reports as ``robot_model``.
    """

    def __init__(
        self, mode: str = "succeed", running_polls: int = 2, robot_model: str = "OT-2 Standard"
    ) -> None:
        self.mode = mode
        self.running_polls = running_polls
        self.robot_model = robot_model
        self.requests: list[Request] = []
        self.protocols: dict[str, str] = {}
        self.runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        robot = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                robot._handle(self, "GET")

            def do_POST(self) -> None:
                robot._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self._server.server_address[1]

    def start(self) -> FakeRobot:
        """Start serving; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeRobot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def calls(self) -> list[str]:
        """``"METHOD /path"`` of each request, ids replaced by ``{id}``."""
        out = []
        for r in self.requests:
            path = re.sub(r"/runs/[^/]+", "/runs/{id}", r.path)
            out.append(f"{r.method} {path}")
        return out

    # -- request handling -------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        content_type = handler.headers.get("Content-Type", "")
        body: Any = None
        if content_type.startswith("application/json") and raw:
            body = json.loads(raw)
        elif content_type.startswith("multipart/form-data"):
            message = BytesParser(policy=HTTP).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
            )
            body = {
                part.get_param("name", header="content-disposition"): (
                    part.get_filename(),
                    part.get_payload(decode=True).decode("utf-8"),
                )
                for part in message.iter_parts()
            }
        headers = {k.lower(): v for k, v in handler.headers.items()}
        request = Request(method, url.path, parse_qs(url.query), headers, body)
        with self._lock:
            self.requests.append(request)
            status, answer = self._answer(request)
        payload = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _error(self, status: int, error_id: str, title: str, detail: str) -> tuple[int, dict[str, Any]]:
        return status, {"errors": [{"id": error_id, "title": title, "detail": detail}]}

    def _answer(self, request: Request) -> tuple[int, dict[str, Any]]:
        if request.headers.get("opentrons-version") is None:
            return self._error(422, "OpentronsVersionHeaderMissing", "Missing header", "Opentrons-Version")
        parts = [p for p in request.path.split("/") if p]
        if request.method == "GET" and parts == ["health"]:
            return 200, self._health()
        if request.method == "POST" and parts == ["protocols"]:
            return self._upload(request)
        if request.method == "POST" and parts == ["runs"]:
            return self._create_run(request)
        if len(parts) >= 2 and parts[0] == "runs":
            run = self.runs.get(parts[1])
            if run is None:
                return self._error(404, "RunNotFound", "Run Not Found", f"run {parts[1]} not found")
            if request.method == "POST" and parts[2:] == ["actions"]:
                return self._action(run, request.body["data"]["actionType"])
            if request.method == "GET" and parts[2:] == []:
                return 200, {"data": self._poll(run)}
            if request.method == "GET" and parts[2:] == ["commands"]:
                return 200, self._commands(run, request.query)
        if request.method == "POST" and parts == ["commands"]:
            active = [r for r in self.runs.values() if r.status not in TERMINAL and r.status != "idle"]
            if active:
                return self._error(409, "RunActive", "Run Active", "There is an active run.")
            return 201, {"data": {"id": "home-1", "commandType": "home", "status": "succeeded"}}
        return self._error(404, "NotFound", "Not Found", request.path)

    def _health(self) -> dict[str, Any]:
        return {
            "name": "fake-robot",
            "robot_model": self.robot_model,
            "api_version": "8.0.0",
            "fw_version": "v1.1.0",
            "system_version": "8.0.0",
            "robot_serial": "FAKE0001",
            "links": {"apiLog": "/logs/api.log", "serialLog": "/logs/serial.log"},
        }

    def _upload(self, request: Request) -> tuple[int, dict[str, Any]]:
        if self.mode == "upload_500":
            return self._error(500, "UnexpectedError", "Unexpected Internal Error", "disk full")
        filename, text = request.body["files"]
        protocol_id = f"protocol-{len(self.protocols) + 1}"
        self.protocols[protocol_id] = text
        return 201, {"data": {"id": protocol_id, "files": [{"name": filename, "role": "main"}]}}

    def _create_run(self, request: Request) -> tuple[int, dict[str, Any]]:
        protocol_id = request.body["data"]["protocolId"]
        if protocol_id not in self.protocols:
            return self._error(404, "ProtocolNotFound", "Protocol Not Found", protocol_id)
        run = _Run(f"run-{len(self.runs) + 1}", protocol_id)
        self.runs[run.run_id] = run
        return 201, {"data": {"id": run.run_id, "status": run.status, "protocolId": protocol_id}}

    def _action(self, run: _Run, action: str) -> tuple[int, dict[str, Any]]:
        run.actions.append(action)
        if action == "play":
            run.status = "running"
            run.commands = _commands_from(self.protocols[run.protocol_id])
            if self.mode == "stall":
                run.commands = run.commands[:3]
        elif action == "stop" and run.status not in TERMINAL:
            run.status = "stopped"
        return 201, {"data": {"id": f"action-{len(run.actions)}", "actionType": action}}

    def _poll(self, run: _Run) -> dict[str, Any]:
        if run.status == "running" and self.mode in ("succeed", "fail"):
            run.polls += 1
            if run.polls > self.running_polls:
                run.status = "succeeded" if self.mode == "succeed" else "failed"
                if self.mode == "fail":
                    run.commands = run.commands[:2]
                    run.errors = [
                        {
                            "id": "error-1",
                            "errorType": "ExceptionInProtocolError",
                            "errorCode": "4000",
                            "detail": "ProtocolCommandFailedError [line 12]: tip not attached",
                            "wrappedErrors": [
                                {
                                    "id": "error-2",
                                    "errorType": "TipNotAttachedError",
                                    "errorCode": "3005",
                                    "detail": "Pipette should have a tip attached, but does not.",
                                    "wrappedErrors": [],
                                }
                            ],
                        }
                    ]
        return {"id": run.run_id, "protocolId": run.protocol_id, "status": run.status, "errors": run.errors}

    def _commands(self, run: _Run, query: dict[str, list[str]]) -> dict[str, Any]:
        length = int(query.get("pageLength", ["20"])[0])
        default = max(len(run.commands) - length, 0)
        cursor = int(query.get("cursor", [str(default)])[0])
        page = run.commands[cursor : cursor + length]
        return {"data": page, "meta": {"cursor": cursor, "totalLength": len(run.commands)}, "links": {}}
