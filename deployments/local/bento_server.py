"""`bentoml serve` of a service as a child process on 127.0.0.1: started, ready (/readyz), stopped by PID.

`steward run` serves its demo this way; the benches and the serving tests do too.
"""

from __future__ import annotations

import contextlib
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
        stop_pid(process.pid)  # SIGTERM: the arbiter stops its workers, which flush what they hold
        for worker in workers:  # any it failed to stop, or all of them if the arbiter was killed
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.kill()


def is_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
