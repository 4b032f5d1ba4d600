"""`bentoml serve` of a service as a child process on 127.0.0.1: started, ready (/readyz), stopped by PID.

`steward run` serves its demo this way; the benches and the serving tests do too. `steward serve` runs it in
the foreground (`serve_until_stopped`): SIGTERM or SIGINT to `steward serve` stops `bentoml serve` and every
worker it started, within a bounded time, so a process supervisor's stop leaves nothing holding the port.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from deployments.local.prefect_server import stop_pid

SERVICE = "deployments.service:Steward"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0  # for the arbiter to stop its workers (which flush what they hold), then SIGKILL
NOT_READY = "{target} was not ready within {seconds:.0f} s; the end of its log ({log}):\n{tail}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Service:
    url: str  # http://127.0.0.1:PORT
    pid: int  # of `bentoml serve`, the arbiter; its workers run in sessions of their own

    def processes(self) -> list[psutil.Process]:
        """The arbiter and its workers (a signal to the arbiter's group does not reach the workers)."""
        try:
            arbiter = psutil.Process(self.pid)
            return [arbiter, *arbiter.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the arbiter and every worker at once: a crash, not a stop (nothing is flushed)."""
        for process in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


def serve_command(target: str, *, port: int) -> list[str]:
    """`bentoml serve` from this interpreter's own environment: Steward runs by path without an activated venv."""
    bentoml = Path(sys.executable).parent / "bentoml"
    return [str(bentoml), "serve", target, "--host", "127.0.0.1", "--port", str(port)]


@contextmanager
def served(
    env: Mapping[str, str],
    *,
    cwd: Path,
    log: Path,
    target: str = SERVICE,
    port: int | None = None,
    timeout: float = READY_TIMEOUT_S,
) -> Iterator[Service]:
    """Serve `target` until the block ends; yields it once /readyz answers 200."""
    port = port or free_port()
    command = serve_command(target, port=port)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        # a session of its own: signals to the caller never reach it; stop_pid stops it, and it its workers
        process = subprocess.Popen(
            command, cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    service = Service(url=f"http://127.0.0.1:{port}", pid=process.pid)
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + timeout
        while not is_ready(service.url):
            if time.monotonic() > deadline or process.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise TimeoutError(NOT_READY.format(target=target, seconds=timeout, log=log, tail=tail))
            time.sleep(0.3)
        workers = service.processes()[1:]
        yield service
    finally:
        stop(process, workers=workers)


def stop(
    process: subprocess.Popen[bytes], *, workers: list[psutil.Process] | None = None, timeout: float = STOP_TIMEOUT_S
) -> None:
    """Stop `bentoml serve` (started in a session of its own) and its workers: SIGTERM to its group, so the arbiter
    stops its workers and they flush what they hold; after `timeout` SIGKILL. Workers run in sessions of their own,
    so any left (the arbiter failed to stop them, or was killed) are killed after the same wait."""
    found = Service(url="", pid=process.pid).processes()[1:]
    workers = list({worker.pid: worker for worker in [*(workers or []), *found]}.values())
    stop_pid(process.pid, timeout=timeout)  # SIGTERM the group, SIGKILL it if it lingers
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    _, alive = psutil.wait_procs(workers, timeout=timeout)
    for worker in alive:  # psutil checks each is still the process it was (pid and start time), not a reused pid
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.kill()
    psutil.wait_procs(alive, timeout=5)


class _Stop(Exception):
    """SIGTERM or SIGINT arrived while `bentoml serve` ran in the foreground."""


def serve_until_stopped(command: list[str], *, cwd: Path, timeout: float = STOP_TIMEOUT_S) -> int:
    """Run `command` (`bentoml serve ...`) until it exits (its exit code), or until this process is sent SIGTERM or
    SIGINT: then stop it and every worker it started (`stop`, bounded by `timeout`) and return 0, a stop asked for.

    It runs in a session of its own, so a terminal's Ctrl+C reaches only this process, which stops it once."""
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) == 1:  # a second signal while stopping is ignored: the stop is bounded anyway
            raise _Stop

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        process = subprocess.Popen(command, cwd=cwd, start_new_session=True)
        try:
            return process.wait()
        except _Stop:
            stop(process, timeout=timeout)
            return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def is_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
