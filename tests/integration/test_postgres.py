"""Scale-out on PostgreSQL: the Prefect server's database and Steward's own (registry, ledger, routing, logs)
on a real PostgreSQL server, driven by `steward train` as a user would."""

from __future__ import annotations

import psycopg
import pytest
from support import BIN, run, steward_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_steward_train_with_prefect_and_steward_on_postgresql(project, postgres):
    env = steward_env(
        project,
        extra={
            "STEWARD_DATABASE_URL": f"postgresql+psycopg://steward@{postgres}/steward",
            "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://steward@{postgres}/prefect",
        },
    )
    steward = str(BIN / "steward")
    try:
        done = run([steward, "train"], cwd=project, env=env, timeout=900)
        assert done.returncode == 3, done.stdout + done.stderr  # German credit: rejected at the high tier
        verified = run([steward, "ledger", "verify"], cwd=project, env=env)
        assert verified.returncode == 0 and "chain intact" in verified.stdout, verified.stdout + verified.stderr
    finally:
        run([steward, "server", "stop"], cwd=project, env=env)
    with psycopg.connect(f"postgresql://steward@{postgres}/steward") as db:
        states = db.execute("SELECT name, version, state FROM model_versions").fetchall()
        actions = {a for (a,) in db.execute("SELECT DISTINCT action FROM ledger")}
    assert states == [("credit-risk", 1, "rejected")]
    assert {"gate.verdict", "registry.transition"} <= actions
    with psycopg.connect(f"postgresql://steward@{postgres}/prefect") as db:
        flows = {name for (name,) in db.execute("SELECT name FROM flow")}
        runs = db.execute("SELECT count(*) FROM flow_run").fetchone()[0]
    assert "train" in flows and runs >= 1
    assert not (project / ".steward/steward.db").exists()
