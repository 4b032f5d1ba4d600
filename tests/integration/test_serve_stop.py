"""`steward serve` stopped as a process supervisor stops it (SIGTERM) or as a terminal does (SIGINT): it stops
`bentoml serve` and every worker it started, and nothing is left holding the port."""

from __future__ import annotations

import signal
import socket
import subprocess

import psutil
import pytest
from support import BIN, PROJECT_DIR, free_port, serving_project, wait_until

from deployments.local.bento_server import is_ready
from steward.db import make_engine
from steward.ledger import Ledger
from steward.routing import Routing, RoutingTable

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project with a production model routed (scripts/serving_fixture.py)."""
    project = tmp_path_factory.mktemp("serve-stop")
    env, refs = serving_project(project, serve={})
    engine = make_engine(f"sqlite:///{project / '.steward/steward.db'}")
    RoutingTable(engine, Ledger(engine)).set(
        "credit-risk", Routing(production=refs["production"]), actor="t", reason="t"
    )
    return project, env | {"PYTHONPATH": str(PROJECT_DIR)}  # bentoml serve imports deployments.service from here


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_steward_serve_leaves_no_process_and_frees_its_port(project, stop_signal, tmp_path):
    _, env = project
    port = free_port()
    with (tmp_path / "serve.log").open("w") as log:
        steward = subprocess.Popen(
            [str(BIN / "steward"), "serve", "--port", str(port)],
            cwd=PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the signal goes to `steward serve` alone, as a supervisor sends it
        )
    started: list[psutil.Process] = []
    try:
        ready = wait_until(
            lambda: is_ready(f"http://127.0.0.1:{port}") or steward.poll() is not None, timeout=180, what="ready"
        )
        assert ready and steward.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        started = psutil.Process(steward.pid).children(recursive=True)  # bentoml serve, its arbiter's workers
        assert len(started) >= 2 and not _port_free(port)

        steward.send_signal(stop_signal)

        assert steward.wait(timeout=90) == 0
        _, alive = psutil.wait_procs(started, timeout=5)
        assert alive == [], [(p.pid, p.name()) for p in alive]
        assert _port_free(port)
    finally:
        steward.kill()  # nothing to kill when the test passed
        for process in started:
            if process.is_running():
                process.kill()
