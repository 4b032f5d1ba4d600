"""Faults the decision log lives through with nothing acknowledged lost, on a real `bentoml serve`: SIGKILLs under
load, and a database that takes no writes for a while (503s with Retry-After and /readyz not ready meanwhile,
then decisions again without a restart, and a SIGTERM that leaves everything in the database)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter

import httpx
import pytest
from support import BIN, PROJECT_DIR, run, serving_project, wait_until

from deployments.local.bento_server import served
from steward.db import make_engine
from steward.ledger import Ledger
from steward.params import load_params
from steward.predictions import ship_journals
from steward.routing import Routing, RoutingTable
from tasks.data.features import read_snapshot

pytestmark = pytest.mark.integration
USECASE = load_params(PROJECT_DIR / "params.yaml").usecase


class Clients:
    """`threads` clients sending /predict until stopped: the request ids answered, and every status seen."""

    def __init__(self, url: str, *, threads: int = 4) -> None:
        rows = read_snapshot(PROJECT_DIR / USECASE.dataset.file).drop(columns=USECASE.label.column).head(200)
        self.bodies = rows.astype(object).where(rows.notna(), None).to_dict("records")
        self.url, self.acknowledged, self.statuses = url, [], Counter()
        self.retry_after: set[str] = set()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, args=(k,)) for k in range(threads)]

    def _send(self, k: int) -> None:
        with httpx.Client(timeout=30) as client:
            i = 0
            while not self._stop.is_set():
                body = {**self.bodies[i % len(self.bodies)], USECASE.id_column: f"f{k}-{i}"}
                try:
                    answer = client.post(f"{self.url}/predict", json=body, headers={"X-Client-Id": f"c{k}"})
                except httpx.TransportError:  # the service was killed under this request: never acknowledged
                    return
                self.statuses[answer.status_code] += 1
                if answer.status_code == 200:
                    self.acknowledged.append(answer.json()["request_id"])
                elif answer.status_code == 503 and "Retry-After" in answer.headers:
                    self.retry_after.add(answer.headers["Retry-After"])
                i += 1

    def start(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> Clients:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        return self


@pytest.fixture
def project(tmp_path):
    env, refs = serving_project(tmp_path, serve={"rate_per_second": 10_000, "burst": 10_000, "log_stall_seconds": 1})
    engine = make_engine(f"sqlite:///{tmp_path / '.steward/steward.db'}")
    RoutingTable(engine, Ledger(engine)).set(
        USECASE.model_name, Routing(production=refs["production"]), actor="test", reason="production only"
    )
    return env, tmp_path, engine


def _logged(engine) -> set[str]:
    with engine.connect() as db:
        return {r for (r,) in db.exec_driver_sql("SELECT request_id FROM predictions WHERE role != 'shadow'")}


@pytest.mark.slow  # about 45 s: three services killed on 2 cores: `make test-slow` and CI
def test_sigkills_under_load_lose_no_acknowledged_decision(project):
    env, folder, engine = project
    acknowledged: list[str] = []
    for round_ in range(3):
        with served(env, cwd=PROJECT_DIR, log=folder / f"service-{round_}.log", timeout=120) as service:
            clients = Clients(service.url).start()
            wait_until(lambda c=clients: len(c.acknowledged) > 50, timeout=60, what="decisions under load")
            service.kill()  # SIGKILL, arbiter and worker: nothing is flushed
            acknowledged += clients.stop().acknowledged
    ship_journals(engine, Ledger(engine), folder / f".steward/journal/{USECASE.model_name}")  # as the next start would
    assert len(acknowledged) > 150
    assert set(acknowledged) - _logged(engine) == set()


def test_a_database_taking_no_writes_brings_503s_with_retry_after_then_decisions_again_without_a_restart(project):
    env, folder, engine = project
    with served(env, cwd=PROJECT_DIR, log=folder / "service.log", timeout=120) as service:
        clients = Clients(service.url).start()
        wait_until(lambda: len(clients.acknowledged) > 20, timeout=60, what="decisions before the outage")
        outage = sqlite3.connect(folder / ".steward/steward.db", timeout=30, isolation_level=None)
        outage.execute("BEGIN EXCLUSIVE")  # another process holds the database's write lock: no batch goes in
        try:
            wait_until(lambda: httpx.get(f"{service.url}/readyz").status_code == 503, timeout=30, what="not ready")
            wait_until(lambda: clients.retry_after, timeout=30, what="a 503 with Retry-After")
            during = len(clients.acknowledged)
            time.sleep(2)
            assert len(clients.acknowledged) - during < 50  # it stopped answering what it could not record
        finally:
            outage.execute("COMMIT")
            outage.close()
        wait_until(lambda: httpx.get(f"{service.url}/readyz").status_code == 200, timeout=60, what="ready again")
        after = len(clients.acknowledged)
        wait_until(lambda: len(clients.acknowledged) > after + 20, timeout=60, what="decisions after the outage")
        clients.stop()
    # `served` ended with SIGTERM: the service shipped everything before it stopped
    assert clients.retry_after == {"2"} and set(clients.statuses) <= {200, 503}, clients.statuses
    assert set(clients.acknowledged) - _logged(engine) == set()


def test_a_replica_that_cannot_read_routing_is_not_ready_and_a_rollback_names_who_took_it_up(project):
    env, folder, engine = project
    with served(env, cwd=PROJECT_DIR, log=folder / "service.log", timeout=120) as service:
        body = Clients(service.url).bodies[0]
        with sqlite3.connect(folder / ".steward/steward.db", isolation_level=None) as db:
            db.execute("ALTER TABLE routing RENAME TO routing_away")  # the routing table cannot be read
            try:
                wait_until(lambda: httpx.get(f"{service.url}/readyz").status_code == 503, timeout=30, what="not ready")
                refused = httpx.post(f"{service.url}/predict", json=body, timeout=30)
                assert refused.status_code == 503 and refused.headers["Retry-After"] == "2", refused.text
                assert "has not read the routing table" in refused.json()["error"]
            finally:
                db.execute("ALTER TABLE routing_away RENAME TO routing")
        wait_until(lambda: httpx.get(f"{service.url}/readyz").status_code == 200, timeout=30, what="ready again")
        done = run(
            [str(BIN / "steward"), "rollback", "--refuse-all", "--reason", "fault test", "--wait", "10"],
            cwd=PROJECT_DIR,
            env=env,
        )
        revision = RoutingTable(engine, Ledger(engine)).get(USECASE.model_name).revision
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"replicas serving revision {revision}: 0" in " ".join(done.stdout.split())
        assert httpx.post(f"{service.url}/predict", json=body, timeout=30).status_code == 503  # refused: kill switch
