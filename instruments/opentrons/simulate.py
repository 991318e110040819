"""Simulate an Opentrons protocol in the separate opentrons environment, in a child process.

opentrons pins numpy 1.26 and an old jsonschema, so it cannot share the main environment; it lives
in ``.venv-opentrons`` (``requirements/opentrons.txt``). :func:`simulate` runs
``opentrons.simulate.simulate`` there through a small runner script and reads back the run log.

The child is also the sandbox for protocol code nobody has reviewed (a protocol an LLM wrote): it is
a separate process of a separate interpreter (started isolated: no ``PYTHON*`` variables, no user
site-packages), in its own process group, with a wall-clock limit, its working directory and
``HOME`` set to ``workdir`` and an environment holding only ``PATH``, ``HOME``, ``LANG`` and
``OT_API_CONFIG_DIR``, so no secret of the parent reaches it. It is not a jail: the code still runs
with the user's file-system and network rights.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from athanor.errors import AthanorError

__all__ = ["PYTHON_ENV_VAR", "SimulationResult", "opentrons_python", "simulate"]

#: Environment variable naming the python of the opentrons environment.
PYTHON_ENV_VAR = "ATHANOR_OPENTRONS_PYTHON"

_PROTOCOL_FILE = "protocol.py"
_RESULT_FILE = "simulation.json"
_LINE = re.compile(r"\[line (\d+)\]")

# Runs inside the opentrons environment: simulate argv[1], write a JSON verdict to argv[2].
_RUNNER = r"""
import json, sys

WRAPPERS = {"ExceptionInProtocolError", "ProtocolCommandFailedError"}

def cause(occurrence):
    while occurrence.errorType in WRAPPERS and getattr(occurrence, "wrappedErrors", None):
        occurrence = occurrence.wrappedErrors[0]
    return occurrence

def main(protocol_path, result_path):
    result = {"ok": False, "log": "", "commands": 0, "error": None, "detail": None}
    try:
        import opentrons.simulate as simulate
        from opentrons.util.entrypoint_util import ProtocolEngineExecuteError
        with open(protocol_path, encoding="utf-8") as handle:
            runlog, _ = simulate.simulate(handle, file_name="protocol.py")
        result.update(ok=True, log=simulate.format_runlog(runlog), commands=len(runlog))
    except ProtocolEngineExecuteError as error:
        occurrences = list(error.args[0]) if error.args else []
        if occurrences:
            top, root = occurrences[0], cause(occurrences[0])
            detail = str(root.detail)
            kind = str(root.errorType)
            if kind == "PythonException" or detail.startswith(kind):
                result["error"] = detail
            else:
                result["error"] = kind + ": " + detail
            result["detail"] = str(top.detail)
        else:
            result["error"] = str(error)
    except BaseException as error:
        result["error"] = type(error).__name__ + ": " + str(error)
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle)

main(sys.argv[1], sys.argv[2])
"""


@dataclass(frozen=True)
class SimulationResult:
    """What the simulation of one protocol found.

    Attributes:
        ok: True when the protocol ran to the end in the simulator.
        log: The simulator's run log, one line per step (nested steps indented by tabs).
        commands: Entries in the run log.
        error: Why it failed, with the protocol line it failed on; None when ``ok``.
        seconds: Wall-clock time of the simulation, s.
    """

    ok: bool
    log: str
    commands: int
    error: str | None
    seconds: float


def opentrons_python() -> Path:
    """The python of the opentrons environment.

    ``$ATHANOR_OPENTRONS_PYTHON`` when set, else ``.venv-opentrons/bin/python`` in the project root
    (the folder that holds the ``instruments`` package).

    Raises:
        athanor.errors.AthanorError: That python does not exist.
    """
    configured = os.environ.get(PYTHON_ENV_VAR)
    root = Path(__file__).resolve().parents[2]
    python = Path(configured) if configured else root / ".venv-opentrons" / "bin" / "python"
    if not python.is_file():
        source = f"${PYTHON_ENV_VAR}" if configured else "the project's .venv-opentrons"
        raise AthanorError(
            f"no opentrons environment: {python} ({source}) does not exist. Run `make setup` to create"
            f" .venv-opentrons (opentrons==9.0.0, see requirements/opentrons.txt), or point"
            f" {PYTHON_ENV_VAR} at a python that has it"
        )
    return python


def _with_source_line(error: str, detail: str | None, protocol_text: str) -> str:
    """Add the protocol line the simulator names (``[line N]``) to the error."""
    match = _LINE.search(detail or error)
    if not match:
        return error
    number = int(match.group(1))
    lines = protocol_text.splitlines()
    if not 1 <= number <= len(lines):
        return error
    return f"{error} (protocol line {number}: {lines[number - 1].strip()})"


def _scrubbed_env(workdir: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(workdir),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "OT_API_CONFIG_DIR": str(workdir / "ot-config"),
    }


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def simulate(protocol_text: str, workdir: Path, timeout_s: float = 120.0) -> SimulationResult:
    """Simulate ``protocol_text`` with opentrons in its own environment.

    Args:
        protocol_text: An Opentrons Python protocol.
        workdir: Folder for the protocol, the verdict and opentrons' configuration; created if needed.
        timeout_s: Wall-clock limit, s; the child's whole process group is killed when it is reached.

    Returns:
        The verdict. A protocol that fails (a volume above the pipette's maximum, a well the labware
        does not have, an unknown labware name, a syntax error, the time limit) gives ``ok=False``
        and a one-line ``error``.

    Raises:
        athanor.errors.AthanorError: The opentrons environment is missing.
    """
    python = opentrons_python()
    workdir = Path(workdir).resolve()
    (workdir / "ot-config").mkdir(parents=True, exist_ok=True)
    protocol = workdir / _PROTOCOL_FILE
    verdict = workdir / _RESULT_FILE
    protocol.write_text(protocol_text, encoding="utf-8")
    verdict.unlink(missing_ok=True)

    started = time.monotonic()
    process = subprocess.Popen(
        [str(python), "-I", "-c", _RUNNER, str(protocol), str(verdict)],
        cwd=workdir,
        env=_scrubbed_env(workdir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        seconds = time.monotonic() - started
        message = f"the simulation exceeded its time limit of {timeout_s:g} s and was killed"
        return SimulationResult(False, "", 0, message, seconds)
    seconds = time.monotonic() - started

    try:
        found = json.loads(verdict.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        message = f"the simulator exited with code {process.returncode} without a verdict"
        if tail:
            message += ": " + " | ".join(tail)
        return SimulationResult(False, "", 0, message, seconds)
    error = found.get("error")
    if error is not None:
        error = _with_source_line(str(error), found.get("detail"), protocol_text)
    ok = bool(found.get("ok")) and error is None
    return SimulationResult(ok, str(found.get("log", "")), int(found.get("commands", 0)), error, seconds)
