"""deployments/prefect.yaml for real: `prefect deploy --all` on a process work pool, a `prefect worker`, and a
monitoring breach event that makes the rollback trigger's deployment take a canary out of routing, and the daily
retention deployment run on the same worker."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from support import BIN, run, steward_env, wait_until

from deployments.local.prefect_server import stop_pid
from scripts.serving_fixture import approved
from steward.db import make_engine
from steward.ledger import ROLLBACK, Ledger
from steward.registry import State
from steward.rollouts import Rollouts

pytestmark = pytest.mark.integration
EMIT = """
import json, sys
from prefect.events import emit_event
emit_event(event="steward.monitor.breach", resource=json.loads(sys.argv[1]), payload=json.loads(sys.argv[2]))
"""


def _canary(project) -> tuple[Rollouts, str]:
    """Two signed-off models in the project's database: v1 in production, v2 in canary at 20%."""
    engine = make_engine(f"sqlite:///{project / '.steward/steward.db'}")
    moves = Rollouts(engine, Ledger(engine))
    production, canary = (approved(moves, "credit-risk", n) for n in (1, 2))
    moves.promote(production, actor="test", reason="first")
    moves.to_shadow(canary, actor="test")
    moves.to_canary(canary, 0.2, actor="test")
    return moves, canary


@pytest.mark.slow  # about 60 s with its worker on 2 cores: `make test-slow` and CI
def test_a_canary_breach_event_runs_the_rollback_deployment_on_a_worker(project, prefect_server):
    moves, canary = _canary(project)
    env = steward_env(project, api_url=prefect_server)
    prefect = str(BIN / "prefect")
    created = run([prefect, "work-pool", "create", "steward", "--type", "process", "--overwrite"], cwd=project, env=env)
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = run(
        [prefect, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"], cwd=project, env=env
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    for name, cron in (("german-credit", "0 * * * *"), ("adult-income", "30 * * * *")):  # one per use case
        monitor = httpx.get(f"{prefect_server}/deployments/name/monitor/monitor-{name}", timeout=10).json()
        assert [s["schedule"]["cron"] for s in monitor["schedules"]] == [cron]
        assert monitor["parameters"]["usecase"] == name.replace("-", "_")
        retrain = httpx.get(f"{prefect_server}/deployments/name/retrain/retrain-{name}", timeout=10).json()
        assert retrain["parameters"] == {"usecase": name.replace("-", "_")}
    for name, cron in (("german-credit", "15 3 * * *"), ("adult-income", "45 3 * * *")):  # daily, one per use case
        retention = httpx.get(f"{prefect_server}/deployments/name/retention/retention-{name}", timeout=10).json()
        assert [s["schedule"]["cron"] for s in retention["schedules"]] == [cron]
        assert retention["parameters"] == {"usecase": name.replace("-", "_")}

    log = (project / "worker.log").open("w")
    worker = subprocess.Popen(
        [prefect, "worker", "start", "--pool", "steward"],
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        resource = {
            "prefect.resource.id": f"steward.model.{canary}",
            "prefect.resource.name": canary,
            "steward.role": "canary",
        }
        payload = {"breaches": ["input drift: credit_amount psi 0.41"]}
        emitted = run([sys.executable, "-c", EMIT, json.dumps(resource), json.dumps(payload)], cwd=project, env=env)
        assert emitted.returncode == 0, emitted.stderr
        deployment = httpx.get(f"{prefect_server}/deployments/name/rollback/rollback", timeout=10).json()
        body = {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}, "limit": 5}

        def finished():
            runs = httpx.post(f"{prefect_server}/flow_runs/filter", json=body, timeout=10).json()
            return [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]

        flow_run = wait_until(finished, timeout=240, what="rollback flow run", every=1)[0]
        assert flow_run["state_type"] == "COMPLETED", (project / "worker.log").read_text()[-3000:]
        assert flow_run["parameters"]["model"] == canary
        # what the daily schedule does, run now on the same worker: one retention.applied record
        started = run([prefect, "deployment", "run", "retention/retention-german-credit"], cwd=project, env=env)
        assert started.returncode == 0, started.stdout + started.stderr
        wait_until(
            lambda: moves.ledger.records(actions=("retention.applied",)),
            timeout=240,
            what="a retention.applied record from the retention deployment",
            every=1,
        )
    finally:
        stop_pid(worker.pid)
        log.close()
    routing = moves.table.get("credit-risk")
    assert routing.canary is None and routing.canary_weight == 0
    assert moves.registry.get(canary).state is State.ROLLED_BACK
    record = moves.ledger.records(subject=canary, actions=(ROLLBACK,))[-1]
    assert record.payload["reason"] == "monitoring breach during the canary: input drift: credit_amount psi 0.41"
