"""Ray as athanor starts it: token authentication, a private folder, no connection without the token."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from athanor.errors import InstrumentError
from instruments.ray_runtime import (
    TOKEN_FILE,
    TOKEN_PATH_VARIABLE,
    cluster_environment,
    prepare_ray_dir,
    session_dir,
)

ROOT = Path(__file__).resolve().parents[2]

# A driver of another process that attaches to a running Ray and runs one task on it.
ATTACH = textwrap.dedent(
    """
    import json, logging, sys
    import ray
    try:
        ray.init(address=sys.argv[1], log_to_driver=False, logging_level=logging.ERROR)

        @ray.remote
        def where():
            return "ran on the cluster"

        print("RESULT " + json.dumps({"connected": ray.get(where.remote(), timeout=60)}))
    except Exception as error:
        print("RESULT " + json.dumps({"refused": f"{type(error).__name__}: {error}"}))
    """
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_ray_folder_is_private_and_keeps_one_token(tmp_path):
    ray_dir = tmp_path / "home" / "ray"
    token = prepare_ray_dir(ray_dir)
    assert token == ray_dir / TOKEN_FILE
    assert _mode(ray_dir) == 0o700 and _mode(token) == 0o600
    secret = token.read_text()
    assert len(secret) == 64 and int(secret, 16) >= 0  # 32 random bytes, hex

    ray_dir.chmod(0o777)  # left open by hand, or by an older version
    token.chmod(0o644)
    assert prepare_ray_dir(ray_dir).read_text() == secret  # the same token: running nodes keep working
    assert _mode(ray_dir) == 0o700 and _mode(token) == 0o600
    assert prepare_ray_dir(tmp_path / "other" / "ray").read_text() != secret  # one token per home

    environment = cluster_environment(ray_dir)
    assert environment == {"RAY_AUTH_MODE": "token", TOKEN_PATH_VARIABLE: str(token)}

    token.write_text("")
    with pytest.raises(InstrumentError, match=r"token .* is empty"):
        prepare_ray_dir(ray_dir)


def test_ray_sessions_sit_inside_a_private_folder_short_enough_for_their_sockets(tmp_path):
    shallow = Path("/tmp") / tmp_path.name / "ray"
    assert session_dir(shallow) == shallow / "s"  # Ray may open "s" to all: "ray" stays private
    deep = tmp_path / ("a-rather-long-folder-name-for-a-lab-" * 3) / ".athanor" / "ray"
    sessions = session_dir(deep)
    assert sessions.name == "s" and sessions.parent.parent == Path("/tmp")
    assert sessions.parent.name.startswith(f"athanor-ray-{os.getuid()}-")
    assert _mode(sessions.parent) == 0o700
    socket_path = sessions / "session_2026-12-08_23-59-59_999999_4194304" / "sockets" / "plasma_store"
    assert len(str(socket_path)) <= 107  # what a Unix socket's path may hold
    assert session_dir(deep) == sessions  # the same folder each time for the same home


def _attach(address: str, env: dict[str, str]) -> dict[str, str]:
    command = [sys.executable, "-c", ATTACH, address]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


@pytest.mark.slow
def test_a_driver_without_the_token_is_refused_by_the_local_ray_through_loopback(ray_local, tmp_path):
    import ray

    port = ray.get_runtime_context().gcs_address.rpartition(":")[2]
    loopback = f"127.0.0.1:{port}"
    token = Path(os.environ[TOKEN_PATH_VARIABLE])
    assert _mode(token.parent) == 0o700 and _mode(token) == 0o600
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}

    wrong = tmp_path / "wrong_token"
    wrong.write_text("0" * 64)
    quick = {"RAY_NUM_REDIS_GET_RETRIES": "2", "HOME": str(token.parent)}  # a refusal is final: few retries
    wrong_token = {"RAY_AUTH_MODE": "token", TOKEN_PATH_VARIABLE: str(wrong)}
    for without in ({"RAY_AUTH_MODE": "disabled"}, wrong_token):
        answer = _attach(loopback, {**base, **without, **quick})
        assert "refused" in answer, answer  # no code ran

    answer = _attach(loopback, {**base, **quick, "RAY_AUTH_MODE": "token", TOKEN_PATH_VARIABLE: str(token)})
    assert answer == {"connected": "ran on the cluster"}  # the same request with the token goes through


def test_joining_a_cluster_without_its_token_says_where_the_token_goes(tmp_path):
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from athanor.errors import InstrumentError
        from instruments.ray_runtime import ensure_ray
        try:
            ensure_ray("auto", Path({str(tmp_path / "ray")!r}))
        except InstrumentError as error:
            print("REFUSED", error)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.startswith("REFUSED joining a Ray cluster needs its token"), done.stdout + done.stderr
    assert str(tmp_path / "ray" / TOKEN_FILE) in done.stdout and "cluster-env" in done.stdout
