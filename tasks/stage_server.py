"""A warm start for DVC stages: in the training flow each stage runs in a process forked from one that has
already imported Great Expectations, pandas, scikit-learn, SciPy, Matplotlib, SHAP and Fairlearn, not in one
that imports them again (1 to 4 s a stage, most of what the flow cost over the stages themselves).

The flow starts `python -m tasks.stage_server SOCKET` first thing, so that it imports while ingest runs, and
gives its `dvc` commands STEWARD_STAGE_SERVER=SOCKET. A stage command, `python -m tasks.<phase>.<stage>`, is
still what DVC runs, and it still exits with the stage's exit code, its output on DVC's stdout and stderr; but
tasks/__init__.py, which Python runs before the stage module, hands the command to the server: `delegate`
sends it the module, arguments, folder, environment, sys.path and the three standard streams, and waits. The
server forks; the child takes on the command's folder, environment and streams, imports the project's code
afresh from the command's sys.path (the server holds none of it: a stage always runs the code DVC hashed) and
runs the module as `__main__`, as `python -m` would. Without the variable, or with no server answering, a
stage imports and runs in its own process as always: `dvc repro` alone is unchanged. Linux only (the server
forks; macOS's system libraries are not safe to use after fork).

The server imports third-party packages only and starts no Python thread (the native ones OpenBLAS and
pyarrow's jemalloc start handle fork themselves, as in any forked worker; outputs are the same bytes, which
tests/integration/test_train_flow.py checks against dvc.lock). It accepts only on a socket in a folder only
its user may enter. Standard library only here: a stage's command imports this module before anything else.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import signal
import socket
import struct
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the client imports this module first thing: only what it needs at run time
    import subprocess
    from collections.abc import Iterator
    from pathlib import Path
    from typing import Any, NoReturn

ENV = "STEWARD_STAGE_SERVER"
MODULE = "tasks.stage_server"
# What the stages import (tasks/stage.py's kernel aside), in the order the stages need them; what a stage
# imports beyond these it imports itself.
VALIDATE_PRELOAD = ("great_expectations",)  # first, with VALIDATE: the `validate` stage comes first
PRELOAD = (
    "sklearn.ensemble",
    "sklearn.compose",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.calibration",
    "sklearn.model_selection",
    "scipy.stats",
    "scipy.spatial.distance",
    "pandas",
    "pyarrow.parquet",
    "joblib",
    "matplotlib.pyplot",
    "shap",
    "fairlearn.metrics",
    "fairlearn.postprocessing",
    "fairlearn.reductions",
    "pydantic",
    "pydantic_settings",
    "yaml",
    "jinja2",
    "markdown_it",
)
PROJECT = ("steward", "tasks", "flows", "deployments")  # never kept in the server: each stage imports them anew
LISTEN_TIMEOUT = 10.0  # seconds for a starting server to listen, or the stages start cold
VALIDATE = "--validate"  # the server's option: Great Expectations first (else not at all)
HEADER = struct.Struct("!I")
STATUS = struct.Struct("!i")


def available() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork") and hasattr(socket, "send_fds")


class StageServer:
    """The stage server of one training run. Its address is fixed first (`env`: what to give DVC, {} where there
    can be no server); the server runs between `start()` and `stop()`, and may start again. A stage command that
    finds no server runs cold."""

    def __init__(self, *, cwd: Path, env: dict[str, str]) -> None:
        import tempfile

        self._cwd = cwd
        self._server_env = {k: v for k, v in env.items() if k != ENV}
        self._process: subprocess.Popen[bytes] | None = None
        self._folder: str | None = None
        with contextlib.suppress(OSError):  # no temporary folder, say: no server
            self._folder = tempfile.mkdtemp(prefix="steward-stages-") if available() else None  # mode 0700
        self._socket = os.path.join(self._folder, "socket") if self._folder else ""
        self.env = {ENV: self._socket} if self._folder else {}

    def start(self, *, validate: bool = True) -> None:
        """Start the server (if it is not running), so that it imports while other work goes on; `validate`:
        Great Expectations first, for the `validate` stage (else not at all). Returns once it listens."""
        import subprocess
        import time

        if self._process is not None or not self._folder:
            return
        command = [sys.executable, "-m", MODULE, self._socket, *([VALIDATE] if validate else [])]
        try:
            self._process = subprocess.Popen(
                command,
                cwd=self._cwd,
                env=self._server_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: the server and the stages forked from it
            )
        except OSError:
            return  # the stages start cold
        # It binds before importing anything heavy (some 50 ms): wait for that, so that no command misses it.
        deadline = time.monotonic() + LISTEN_TIMEOUT
        while not os.path.exists(self._socket):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                return
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server and any stage still running in it."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGTERM)
        self._process.wait()
        self._process = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._socket)

    def close(self) -> None:
        import shutil

        self.stop()
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)


@contextlib.contextmanager
def running(*, cwd: Path, env: dict[str, str]) -> Iterator[StageServer]:
    """A stage server for the `dvc` commands of one training run in `cwd`, started now (to import while other
    work goes on); closed on leaving, with any stage still running in it."""
    server = StageServer(cwd=cwd, env=env)
    try:
        server.start()
        yield server
    finally:
        server.close()


def _recv_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


# The client: the stage command's own process.


def delegate(path: str) -> None:
    """Run this `python -m MODULE ARGS` process's command in the server at `path` and exit as it exits.

    Returns (so the command goes on in this process) when no server answers before taking the command.
    """
    if sys.orig_argv[1:2] != ["-m"] or len(sys.orig_argv) < 3 or sys.orig_argv[2] == MODULE:
        return  # interpreter options before -m (-X, -W, ...) are not passed on: run here
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
        request = {
            "module": sys.orig_argv[2],
            "argv": sys.orig_argv[3:],
            "cwd": os.getcwd(),
            "env": {k: v for k, v in os.environ.items() if k != ENV},
            "path": sys.path,
        }
        body = json.dumps(request).encode()
        socket.send_fds(conn, [HEADER.pack(len(body))], [0, 1, 2])
        conn.sendall(body)
        pid = _recv_exactly(conn, STATUS.size)
    except OSError:
        return
    if pid is None:
        return  # the server closed without taking the command
    child = STATUS.unpack(pid)[0]

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        status = _recv_exactly(conn, STATUS.size)
        while conn.recv(1):  # the child's end closes when it has exited, its last output written
            pass
    except OSError:
        status = None
    if status is None:
        os.write(2, f"stage process {child} (forked by {path}) ended without an exit status\n".encode())
    os._exit(STATUS.unpack(status)[0] if status is not None else 1)


# The server.


def serve(path: str, *, preload: tuple[str, ...]) -> NoReturn:
    """Accept stage commands on the socket `path` until stopped; each runs in a child forked for it. While the
    server still imports, it takes the commands that came between two imports: a stage waits for one at most."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    os.environ.setdefault("MPLBACKEND", "Agg")  # as the stages choose; no display is looked for
    listener.setblocking(False)
    for name in preload:
        _preload(name)
        with contextlib.suppress(BlockingIOError):
            while True:
                _take(listener, listener.accept()[0])
    gc.collect()
    listener.setblocking(True)
    while True:
        _take(listener, listener.accept()[0])


def _preload(name: str) -> None:
    import importlib

    with contextlib.suppress(Exception):  # a stage that needs it imports it itself, and fails there, as it would
        importlib.import_module(name)


def _take(listener: socket.socket, conn: socket.socket) -> None:
    """Receive one command and fork a child to run it."""
    conn.setblocking(True)
    try:
        header, fds, _flags, _addr = socket.recv_fds(conn, HEADER.size, 3)
        body = _recv_exactly(conn, HEADER.unpack(header)[0]) if len(header) == HEADER.size else None
    except OSError:
        conn.close()
        return
    if body is None or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        conn.close()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()  # what the server holds is shared with the child untouched, and its collections skip it
    if os.fork() == 0:
        try:
            listener.close()
            _child(conn, json.loads(body), fds)
        finally:
            os._exit(1)  # reached only if the child failed before it could run the command
    conn.close()
    for fd in fds:
        os.close(fd)


def _child(conn: socket.socket, request: dict[str, Any], fds: list[int]) -> NoReturn:
    """In the forked child: become the stage command's process, run its module as `__main__`, report."""
    import random
    import runpy
    import traceback

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    conn.sendall(STATUS.pack(os.getpid()))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[:] = request["path"]
    sys.argv[:] = [request["module"], *request["argv"]]
    for name in [name for name in sys.modules if name.split(".")[0] in PROJECT]:
        del sys.modules[name]  # the server's own `tasks` package among them: the command imports its own
    random.seed()  # a fresh process's unseeded generators differ; the forked ones would all be the same
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        code = _exit_code(exit_.code)
    except BaseException:  # as the interpreter does: print it, exit 1
        traceback.print_exc()
        code = 1
    # A process ending normally runs its exit handlers, then tears the interpreter down: with all the server
    # imported, 0.15 s to free what the process gives back anyway. Run the handlers, then just end.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    conn.sendall(STATUS.pack(code))
    os._exit(code)  # the client then sees the connection close: the process, its output, are done


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def main() -> None:
    path, *options = sys.argv[1:]
    serve(path, preload=(VALIDATE_PRELOAD if VALIDATE in options else ()) + PRELOAD)


if __name__ == "__main__":
    main()
