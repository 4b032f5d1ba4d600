"""A local Prefect server for Steward when PREFECT_API_URL is not set: started once, reused, stopped by PID.

Its SQLite database lives in STEWARD_HOME/prefect; its URL and PID in STEWARD_HOME/prefect-server.json,
so a second terminal (an approver, say) finds the same server.

Anyone who reaches its API could resume a paused sign-off, so it asks for Prefect's one shared credential,
a basic-auth string made once and kept in STEWARD_HOME/prefect-auth (mode 0600): the server gets it as
PREFECT_SERVER_API_AUTH_STRING, Steward's own processes as PREFECT_API_AUTH_STRING (`LocalServer.client_env`),
and a person types it into the login page of the Prefect UI. Its UI is told its own address
(PREFECT_UI_API_URL), so a browser talks to this server whatever port it got.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from steward.errors import StewardError
from steward.settings import Settings

START_TIMEOUT_S = 120.0
AUTH_FILE = "prefect-auth"
AUTH_USER = "steward"
NOT_HEALTHY = "the Prefect server did not become healthy within {seconds:.0f} s; its log: {log}"
AUTH_UNREADABLE = "cannot read the Prefect server's auth string from {path}: {reason}"
AUTH_UNWRITABLE = "cannot write a Prefect auth string to {path}: {reason}"
AUTH_MALFORMED = (
    "{path} does not hold a Prefect auth string (one line, no spaces): delete it and Steward makes a new one"
)
AUTH_EXPOSED = (
    "{path} holds the Prefect server's auth string but its mode {mode:03o} lets others read it: chmod 600 {path}"
)
AUTH_REFUSED = (
    "the local Prefect server at {url} (pid {pid}) refuses the auth string in {path}: it was started with another "
    "one; stop it with `steward server stop`, then run again"
)
NO_ANSWER = "the local Prefect server at {url} (pid {pid}) did not answer {probe}: {reason}"


class LocalServerError(StewardError, RuntimeError):
    """The local Prefect server cannot be started or reused: unhealthy, or its auth string unusable."""


@dataclass(frozen=True)
class LocalServer:
    api_url: str
    pid: int
    log: Path
    started: bool  # False: an already-running server was reused
    auth: str | None = field(default=None, repr=False)  # None: the server asks for none

    def client_env(self) -> dict[str, str]:
        """What a Prefect client of this server needs: its API URL and, if it asks for one, its auth string."""
        env = {"PREFECT_API_URL": self.api_url}
        if self.auth is not None:
            env["PREFECT_API_AUTH_STRING"] = self.auth
        return env


def healthy(api_url: str, *, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _state_file(settings: Settings) -> Path:
    return settings.state_dir / "prefect-server.json"


def auth_file(settings: Settings) -> Path:
    return settings.state_dir / AUTH_FILE


def auth_string(settings: Settings) -> str:
    """This STEWARD_HOME's Prefect auth string, `steward:<32 random url-safe characters>`, made on first use."""
    path = auth_file(settings)
    if not path.exists():
        _write_new_auth(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LocalServerError(AUTH_UNREADABLE.format(path=path, reason=reason)) from exc
    if mode & 0o077:
        raise LocalServerError(AUTH_EXPOSED.format(path=path, mode=mode))
    auth = text.strip()
    if not auth or any(ch.isspace() for ch in auth):
        raise LocalServerError(AUTH_MALFORMED.format(path=path))
    return auth


def _write_new_auth(path: Path) -> None:
    """Write a new auth string, readable by its owner only; of two processes racing, the first one's is kept."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as sink:
            sink.write(f"{AUTH_USER}:{secrets.token_urlsafe(24)}\n")
        with contextlib.suppress(FileExistsError):
            os.link(scratch, path)  # appears whole, never half-written, and never replaces one
    except OSError as exc:
        raise LocalServerError(AUTH_UNWRITABLE.format(path=path, reason=exc.strerror or exc)) from exc
    finally:
        with contextlib.suppress(OSError):
            scratch.unlink()


def _status(url: str, *, auth: str | None = None) -> int:
    """The HTTP status of GET `url`, with the basic-auth header when `auth` is given."""
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _auth_in_use(settings: Settings, *, api_url: str, pid: int) -> str | None:
    """The auth string a running server asks for; None when it asks for none (started without one)."""
    probe = f"{api_url}/admin/version"  # /health answers anyone: this one only an authenticated client
    try:
        if _status(probe) != 401:
            return None
        auth = auth_string(settings)
        refused = _status(probe, auth=auth) == 401
    except (urllib.error.URLError, OSError) as exc:
        raise LocalServerError(NO_ANSWER.format(url=api_url, pid=pid, probe=probe, reason=exc)) from exc
    if refused:
        raise LocalServerError(AUTH_REFUSED.format(url=api_url, pid=pid, path=auth_file(settings)))
    return auth


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_server(settings: Settings) -> LocalServer | None:
    """The server Steward started earlier for this STEWARD_HOME, if it is still up."""
    state = _state_file(settings)
    if not state.is_file():
        return None
    info = json.loads(state.read_text())
    if not (_alive(info["pid"]) and healthy(info["api_url"])):
        return None
    auth = _auth_in_use(settings, api_url=info["api_url"], pid=info["pid"])
    return LocalServer(api_url=info["api_url"], pid=info["pid"], log=Path(info["log"]), started=False, auth=auth)


def start_server(settings: Settings, *, timeout: float = START_TIMEOUT_S, auth: bool = True) -> LocalServer:
    """Start `prefect server start` on 127.0.0.1 in its own session, and wait for /api/health.

    Args:
        auth: ask every client for this STEWARD_HOME's auth string (`auth_string`); False only for a
            throwaway server nobody else can reach (the integration tests' own).
    """
    port = settings.prefect_port if _port_free(settings.prefect_port) else _free_port()
    base_url = f"http://127.0.0.1:{port}"
    api_url = f"{base_url}/api"
    secret = auth_string(settings) if auth else None
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    log = settings.state_dir / "prefect-server.log"
    env = {**os.environ, **settings.tool_env()}
    for name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING"):
        env.pop(name, None)  # a client's settings, or another server's secret: not this server's
    env |= {"PREFECT_UI_API_URL": api_url, "PREFECT_UI_URL": base_url}  # else its UI calls port 4200
    if secret is not None:
        env["PREFECT_SERVER_API_AUTH_STRING"] = secret
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives this command, so paused runs can be answered later
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if healthy(api_url):
            server = LocalServer(api_url=api_url, pid=process.pid, log=log, started=True, auth=secret)
            _state_file(settings).write_text(json.dumps({"api_url": api_url, "pid": process.pid, "log": str(log)}))
            return server
        time.sleep(0.5)
    stop_pid(process.pid)
    raise LocalServerError(NOT_HEALTHY.format(seconds=timeout, log=log))


def ensure_server(settings: Settings) -> LocalServer:
    """Reuse this STEWARD_HOME's server if it is up, else start one."""
    return running_server(settings) or start_server(settings)


def stop_pid(pid: int, *, timeout: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child, so it stops looking alive
        time.sleep(0.2)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)


def stop_server(settings: Settings) -> bool:
    """Stop the server this STEWARD_HOME started; False when none was running."""
    state = _state_file(settings)
    if not state.is_file():
        return False
    info = json.loads(state.read_text())
    stop_pid(info["pid"])
    state.unlink(missing_ok=True)
    return True
