"""``manifest.json``: what a run was asked to do and the software it ran on.

The manifest holds the spec, the seed, the run id, when the run was created, the Python version and
platform, the versions of the key packages, the code revision (when the code is a git checkout) and
the LLM back end. Nothing in it can fail the run: facts that cannot be found are written as null.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from athanor.errors import AthanorError
from athanor.spec import CampaignSpec
from runs.eventlog import to_json_value

__all__ = [
    "KEY_PACKAGES",
    "MANIFEST_FILE",
    "code_revision",
    "package_versions",
    "read_manifest",
    "write_manifest",
]

#: Name of the manifest inside a run folder.
MANIFEST_FILE = "manifest.json"
#: Distributions whose versions are recorded.
KEY_PACKAGES = (
    "athanor-lab",
    "torch",
    "botorch",
    "gpytorch",
    "langgraph",
    "ray",
    "openai",
    "chromadb",
    "pydantic",
    "numpy",
    "scipy",
)
_GIT_TIMEOUT_S = 5.0


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution; None for one that is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(args: list[str], cwd: Path) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(
            [git, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_revision(source: Path | None = None) -> dict[str, Any] | None:
    """The git commit of the code and whether the checkout has uncommitted changes.

    Args:
        source: The folder holding the ``athanor`` package (default: found from the package).

    Returns:
        ``{"commit": <40 hex digits>, "dirty": bool | None}``, or None when that folder is not the
        top of a git checkout (e.g. an installed wheel) or git is not available.
    """
    if source is None:
        import athanor

        source = Path(athanor.__file__).resolve().parent.parent
    top = _git(["rev-parse", "--show-toplevel"], source)
    # The package may sit inside someone else's checkout (a venv in a repo): only trust our own.
    if top is None or Path(top).resolve() != Path(source).resolve():
        return None
    commit = _git(["rev-parse", "HEAD"], source)
    if commit is None:
        return None
    status = _git(["status", "--porcelain"], source)
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def write_manifest(
    run_dir: Path,
    spec: CampaignSpec,
    seed: int,
    extra: dict[str, Any] | None = None,
    *,
    llm_backend: str | None = None,
) -> Path:
    """Write ``manifest.json`` in ``run_dir`` (atomically: a crash leaves the old file or the new).

    Args:
        run_dir: The run folder; its name is the run id.
        spec: The campaign spec.
        seed: The run seed.
        extra: More JSON-ready facts, kept under ``extra`` (e.g. the request text, the lab file).
        llm_backend: Name of the LLM back end; taken from ``extra["llm_backend"]`` when not given.

    Returns:
        The manifest's path.
    """
    run_dir = Path(run_dir)
    extra = dict(extra or {})
    manifest = {
        "run_id": run_dir.name,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "seed": seed,
        "spec": spec.model_dump(mode="json"),
        "llm_backend": llm_backend if llm_backend is not None else extra.get("llm_backend"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "code": code_revision(),
        "extra": extra,
    }
    path = run_dir / MANIFEST_FILE
    temporary = path.with_suffix(".json.tmp")
    text = json.dumps(to_json_value(manifest, "manifest"), indent=2, ensure_ascii=False) + "\n"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of a run.

    Raises:
        AthanorError: The run folder has no readable ``manifest.json``.
    """
    path = Path(run_dir) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AthanorError(
            f"{path} does not exist; is {run_dir} a run folder? List runs with `athanor runs`"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AthanorError(f"{path} cannot be read ({exc}); it may have been edited by hand") from exc
    if not isinstance(data, dict):
        raise AthanorError(f"{path} is not a JSON object; it may have been edited by hand")
    return data
