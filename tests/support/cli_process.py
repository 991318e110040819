"""``athanor`` as a user starts it: a child process with its own ``ATHANOR_HOME`` and its own Ray."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def athanor_command(*args: str) -> list[str]:
    """The command line of ``athanor ARGS...`` with this interpreter and this source tree."""
    return [sys.executable, "-c", "from athanor.cli import main; main()", *args]


def athanor_environment(home: Path) -> dict[str, str]:
    """This process's environment for a child ``athanor``, with ``home`` and no Ray settings of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return env | {"ATHANOR_HOME": str(home), "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
