"""Starting Ray for a campaign, or joining a cluster, with token authentication.

A local Ray's servers (GCS, raylet, workers, the runtime-env agent) listen on every interface of the
machine, whatever ``ray.init`` is told, so anyone who can reach them over the lab network could run
code on it. athanor therefore never starts Ray without a secret: every Ray it starts runs with Ray's
token authentication (``RAY_AUTH_MODE=token``), with one token per ``$ATHANOR_HOME``, kept in
``$ATHANOR_HOME/ray/auth_token`` and readable only by its user. Every ``athanor`` process with the same
home (a ``lab check``, a second terminal) presents the same token; a connection without it is refused.

Joining a cluster (``--ray-address``, ``RAY_ADDRESS``) is the user's explicit choice: athanor presents
the same token, so the cluster's nodes are started with it (``athanor lab cluster-env`` prints the
environment they need). A user who sets ``RAY_AUTH_MODE`` or ``RAY_AUTH_TOKEN_PATH`` themselves is
followed when joining a cluster; a local Ray always uses athanor's own token.

The folder ``$ATHANOR_HOME/ray`` also holds Ray's session files (logs, and the Unix sockets of the
raylet and the object store, which take no token, in ``ray/s``): it is made private to its user
(mode 0700). Under a deep ``$ATHANOR_HOME`` the sessions go to a short private folder in ``/tmp``
(see :func:`session_dir`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import signal
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from athanor.errors import InstrumentError, StopRequested
from athanor.settings import athanor_home

__all__ = [
    "AUTH_MODE_VARIABLE",
    "TOKEN_FILE",
    "TOKEN_PATH_VARIABLE",
    "check_ray_address",
    "cluster_environment",
    "default_ray_dir",
    "ensure_ray",
    "prepare_ray_dir",
    "session_dir",
    "use_athanor_token",
]

#: Ray's environment variable choosing its authentication mode (``token`` or ``disabled``).
AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"
#: Ray's environment variable naming the file its token is read from.
TOKEN_PATH_VARIABLE = "RAY_AUTH_TOKEN_PATH"
#: Ray's environment variable holding a token itself (it wins over the file, so a local start drops it).
_TOKEN_VARIABLE = "RAY_AUTH_TOKEN"
_NO_FAILURE_HANDLER_VARIABLE = "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"
#: Name of the token file inside the Ray folder.
TOKEN_FILE = "auth_token"
_PRIVATE_DIR = 0o700
_PRIVATE_FILE = 0o600
_TOKEN_BYTES = 32
#: Longest path of a Unix socket (Linux ``sun_path``, less its closing NUL), bytes.
_SOCKET_PATH_MAX = 107
#: The folder, inside a private one, that Ray is given for its sessions.
_SESSIONS = "s"
#: What Ray adds to its folder for its longest socket (``/session_<time>_<pid>/sockets/plasma_store``).
_SESSION_SOCKET_CHARS = len("/session_2026-12-08_03-39-16_312758_4194304/sockets/plasma_store")


def default_ray_dir() -> Path:
    """The Ray folder of this ``$ATHANOR_HOME``: ``$ATHANOR_HOME/ray``."""
    return athanor_home() / "ray"


def prepare_ray_dir(ray_dir: Path) -> Path:
    """Make ``ray_dir`` private to this user and make sure it holds a token; return the token's path.

    The folder is created with mode 0700 (an existing one is set to 0700); the token, 32 random
    bytes in hex, is created once with mode 0600 and kept, so that later runs and other ``athanor``
    processes with the same home present the same one.

    Raises:
        athanor.errors.InstrumentError: The folder or the token belongs to another user, or the
            token file is empty.
    """
    ray_dir = Path(ray_dir).absolute()
    ray_dir.mkdir(mode=_PRIVATE_DIR, parents=True, exist_ok=True)
    _own_private(ray_dir, _PRIVATE_DIR)
    token = ray_dir / TOKEN_FILE
    try:
        descriptor = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_FILE)
    except FileExistsError:
        _own_private(token, _PRIVATE_FILE)
        if not token.read_text(encoding="utf-8").strip():
            raise InstrumentError(
                f"the Ray token {token} is empty; delete it and athanor makes a new one (restart every"
                " Ray node of a cluster with the new token)"
            ) from None
        return token
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_hex(_TOKEN_BYTES))
    return token


def _own_private(path: Path, mode: int) -> None:
    """Refuse ``path`` if another user owns it; otherwise set its permissions to ``mode``."""
    info = path.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise InstrumentError(
            f"{path} belongs to another user (uid {info.st_uid}); set ATHANOR_HOME to a folder of your own"
        )
    if stat.S_IMODE(info.st_mode) != mode:
        path.chmod(mode)


def session_dir(ray_dir: Path) -> Path:
    """Where a local Ray keeps its session files: ``ray_dir/s``, or the same in a short folder of ``/tmp``.

    Ray makes the folder it is given, and what it puts in it, world-writable (0777); inside a
    private parent (0700) nobody else can reach them. Ray puts Unix sockets in
    ``<folder>/session_<time>_<pid>/sockets/``, and a socket's path cannot be longer than 107 bytes:
    beneath a deep ``$ATHANOR_HOME`` Ray would fail to start. Then the parent is
    ``/tmp/athanor-ray-<uid>-<hash of ray_dir>`` instead, private like ``ray_dir``; the token stays
    in ``ray_dir``.

    Raises:
        athanor.errors.InstrumentError: The short folder exists and is another user's.
    """
    ray_dir = Path(ray_dir).absolute()
    if len(os.fsencode(ray_dir / _SESSIONS)) <= _SOCKET_PATH_MAX - _SESSION_SOCKET_CHARS:
        return ray_dir / _SESSIONS
    tag = hashlib.sha256(os.fsencode(ray_dir)).hexdigest()[:12]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    short = Path(tempfile.gettempdir()) / f"athanor-ray-{uid}-{tag}"
    short.mkdir(mode=_PRIVATE_DIR, exist_ok=True)
    _own_private(short, _PRIVATE_DIR)
    return short / _SESSIONS


def cluster_environment(ray_dir: Path | None = None) -> dict[str, str]:
    """The environment a Ray node needs to join athanor's cluster: token mode and this home's token.

    Args:
        ray_dir: The Ray folder (default: :func:`default_ray_dir`); its token is made if missing.
    """
    token = prepare_ray_dir(ray_dir or default_ray_dir())
    return {AUTH_MODE_VARIABLE: "token", TOKEN_PATH_VARIABLE: str(token)}


def check_ray_address(address: str, timeout_s: float = 10.0) -> None:
    """Refuse, within ``timeout_s``, a Ray address nothing listens on.

    Args:
        address: ``host:port`` of a head node's GCS (default port 6379) or ``ray://host:port`` of a
            Ray Client server (default port 10001). ``auto`` and ``local`` are not checked.
        timeout_s: Seconds to wait for a TCP connection.

    Raises:
        athanor.errors.InstrumentError: The address is malformed or unreachable.
    """
    if address in {"auto", "local"}:
        return
    target, default_port = (
        (address[len("ray://") :], 10001) if address.startswith("ray://") else (address, 6379)
    )
    host, _, port_text = target.rstrip("/").rpartition(":")
    if not host:
        host, port_text = target.rstrip("/"), str(default_port)
    try:
        port = int(port_text)
    except ValueError:
        raise InstrumentError(
            f"Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001);"
            " fix RAY_ADDRESS"
        ) from None
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout_s):
            pass
    except OSError as error:
        raise InstrumentError(
            f"cannot reach the Ray cluster at {address} ({error}); start its head node"
            f" (`ray start --head`), check that port {port} is open from this machine, or unset"
            " RAY_ADDRESS to run on a local Ray"
        ) from None


def ensure_ray(
    address: str | None, ray_dir: Path | None = None, *, connect_timeout_s: float = 10.0
) -> bool:
    """Start a local Ray with token authentication, or join a cluster, unless this process already did.

    A local Ray is started with two CPUs, no dashboard, worker logs kept out of the terminal, its
    session files in a private folder (see :func:`session_dir`) and token authentication on, with
    the token in ``ray_dir`` (see :func:`prepare_ray_dir`). Starting Ray takes a few seconds and
    close to 1 GB of memory: do it once per process. Joining a cluster starts nothing locally; every
    node of the cluster needs athanor installed and the same token.

    Ray's ``init`` replaces the process's SIGTERM handler with one that exits at once; the handler
    in place before is put back, so that the caller's stop policy (see :mod:`athanor.stopping`)
    holds; a SIGTERM during ``ray.init`` itself becomes :class:`athanor.errors.StopRequested`.

    Args:
        address: None (or ``local``) starts a local Ray of this process's own, even if another one
            runs on the machine (``RAY_ADDRESS`` is ignored: pass it here, as the settings do).
            ``host:port`` or ``ray://host:port`` joins that cluster; ``auto`` joins the cluster Ray
            finds (``RAY_ADDRESS``, or one started on this machine with ``ray start``).
        ray_dir: The Ray folder: session files and the token (default: :func:`default_ray_dir`).
        connect_timeout_s: Seconds to wait for the cluster to answer before giving up.

    Returns:
        True when this call started or joined Ray (the caller then owns ``ray.shutdown()``).

    Raises:
        athanor.errors.InstrumentError: The Ray folder is not this user's, the cluster cannot be
            reached or refused the connection, or Ray started without token authentication.
    """
    import ray

    if ray.is_initialized():
        return False
    ray_dir = Path(ray_dir or default_ray_dir()).absolute()
    # Ray's C++ failure handler takes SIGTERM too, during ray.init, and answers it with a stack dump
    # and an abort: a stop must reach the campaign's own handler instead (see athanor.stopping).
    os.environ.setdefault(_NO_FAILURE_HANDLER_VARIABLE, "1")
    local = address is None or address == "local"
    if local:
        token = prepare_ray_dir(ray_dir)
        # With the mode unset, a new local Ray turns token authentication on and reloads its
        # configuration, which Ray otherwise reads once, when it is imported.
        os.environ.pop(AUTH_MODE_VARIABLE, None)
        os.environ.pop(_TOKEN_VARIABLE, None)
        os.environ[TOKEN_PATH_VARIABLE] = str(token)
        sessions = session_dir(ray_dir)
        options: dict[str, Any] = {
            "address": "local",
            "num_cpus": 2,
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
            "_temp_dir": str(sessions),
        }
        _quiet_token_notice()
        with _keeping_sigterm_handler():
            ray.init(**options)
        _own_private(sessions.parent, _PRIVATE_DIR)  # what Ray opens to all stays behind it
        if os.environ.get(AUTH_MODE_VARIABLE) != "token":
            ray.shutdown()
            raise InstrumentError(
                "Ray started without token authentication; athanor refuses to run a Ray that anyone on"
                " the network could use. Check that nothing sets RAY_AUTH_MODE for Ray's processes"
            )
        return True
    check_ray_address(address, connect_timeout_s)
    _present_token_to_cluster(ray_dir)
    try:
        with _keeping_sigterm_handler():
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as error:  # Ray raises ConnectionError, AuthenticationError, RuntimeError, ...
        hint = (
            "; the cluster refused athanor's token: start its nodes with the environment"
            " `athanor lab cluster-env` prints"
            if "auth" in str(error).lower()
            else "; check RAY_ADDRESS and that the cluster runs the same Ray version"
        )
        reason = _first_line(error)
        raise InstrumentError(f"cannot join the Ray cluster at {address}: {reason}{hint}") from None
    return True


def use_athanor_token(ray_dir: Path | None = None) -> None:
    """Choose token authentication with this home's token, unless the user chose otherwise.

    Sets ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH`` for this process and the Ray processes it
    starts, each only when it is not set already. Ray reads ``RAY_AUTH_MODE`` once, when it is
    imported: call this first (the command line does, before any command runs).

    Args:
        ray_dir: The Ray folder (default: :func:`default_ray_dir`); no file is made.
    """
    os.environ.setdefault(AUTH_MODE_VARIABLE, "token")
    token = Path(ray_dir or default_ray_dir()).absolute() / TOKEN_FILE
    os.environ.setdefault(TOKEN_PATH_VARIABLE, str(token))


def _present_token_to_cluster(ray_dir: Path) -> None:
    """Make sure the token a cluster will be shown exists, with the user's choices kept.

    Raises:
        athanor.errors.InstrumentError: Token authentication is on and its token file is missing.
    """
    use_athanor_token(ray_dir)
    if os.environ[AUTH_MODE_VARIABLE].lower() != "token" or os.environ.get(_TOKEN_VARIABLE):
        return
    token = Path(os.environ[TOKEN_PATH_VARIABLE])
    if not token.is_file():
        raise InstrumentError(
            f"joining a Ray cluster needs its token, and there is none at {token}: copy the token of"
            " the PC that started the head node there (`athanor lab cluster-env` on that PC says where"
            f" it is), or set {TOKEN_PATH_VARIABLE} to where it is"
        )


def _quiet_token_notice() -> None:
    """Silence Ray's notice that tells how to turn token authentication off (athanor never does)."""
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


@contextlib.contextmanager
def _keeping_sigterm_handler() -> Iterator[None]:
    """Put back the SIGTERM handler that ``ray.init`` replaces (main thread only).

    While ``ray.init`` runs, Ray's own handler answers SIGTERM by exiting: that exit becomes the
    operator's stop (:class:`athanor.errors.StopRequested`), after the half-started Ray is shut down.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    except SystemExit:
        import ray

        ray.shutdown()
        raise StopRequested("SIGTERM", abort=True) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
