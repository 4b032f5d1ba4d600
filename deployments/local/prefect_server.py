"""A local Prefect server for Steward when PREFECT_API_URL is not set: started once, reused, stopped by PID.

Its SQLite database lives in STEWARD_HOME/prefect; its URL and PID in STEWARD_HOME/prefect-server.json,
so a second terminal (an approver, say) finds the same server.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from steward.settings import Settings

START_TIMEOUT_S = 120.0
NOT_HEALTHY = "the Prefect server did not become healthy within {seconds:.0f} s; its log: {log}"


@dataclass(frozen=True)
class LocalServer:
    api_url: str
    pid: int
    log: Path
    started: bool  # False: an already-running server was reused


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
    if _alive(info["pid"]) and healthy(info["api_url"]):
        return LocalServer(api_url=info["api_url"], pid=info["pid"], log=Path(info["log"]), started=False)
    return None


def start_server(settings: Settings, *, timeout: float = START_TIMEOUT_S) -> LocalServer:
    """Start `prefect server start` on 127.0.0.1 in its own session, and wait for /api/health."""
    port = settings.prefect_port if _port_free(settings.prefect_port) else _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    log = settings.state_dir / "prefect-server.log"
    env = {**os.environ, **settings.tool_env()}
    env.pop("PREFECT_API_URL", None)
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
            server = LocalServer(api_url=api_url, pid=process.pid, log=log, started=True)
            _state_file(settings).write_text(json.dumps({"api_url": api_url, "pid": process.pid, "log": str(log)}))
            return server
        time.sleep(0.5)
    stop_pid(process.pid)
    raise RuntimeError(NOT_HEALTHY.format(seconds=timeout, log=log))


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
