"""`steward leases` on a real database: it lists the rollouts' leases and `--expire` withdraws a lapsed holder
still in canary; `steward rollout` raises Prefect's client retries as `steward train` does."""

import os

from typer.testing import CliRunner

import flows.rollout
from flows.cli import app
from flows.cli.common import WAITING_CLIENT_RETRIES
from scripts.serving_fixture import approved
from steward.db import make_engine
from steward.leases import Leases
from steward.ledger import Ledger
from steward.rollouts import Rollouts
from steward.settings import Settings

NAME = "credit-risk"


def test_leases_lists_and_expire_withdraws_a_lapsed_canary(steward_home):
    settings = Settings()
    engine = make_engine(settings.db_url)
    moves = Rollouts(engine, Ledger(engine))
    production, canary = approved(moves, NAME, 1), approved(moves, NAME, 2)
    moves.promote(production, actor="t", reason="first")
    moves.to_shadow(canary, actor="t")
    moves.to_canary(canary, 0.2, actor="t")
    lease = Leases(engine).acquire(NAME, canary, 3600)
    listed = CliRunner().invoke(app, ["leases", "--expire"])
    assert listed.exit_code == 0 and f"{NAME}: {canary}, live until" in listed.output, listed.output
    assert moves.table.get(NAME).canary == canary

    with engine.begin() as connection:  # as if the rollout had stopped renewing an hour ago
        connection.exec_driver_sql("UPDATE rollout_leases SET expires_at = '2000-01-01 00:00:00.000000'")
    expired = CliRunner().invoke(app, ["leases", "--expire"])
    assert expired.exit_code == 0 and f"{NAME}: {canary} withdrawn" in expired.output, expired.output
    assert "no rollout holds one" in expired.output
    assert moves.table.get(NAME).canary is None and moves.table.get(NAME).production == production
    assert Leases(engine).get(NAME) is None and lease.holder == canary


def test_rollout_raises_prefects_client_retries_like_train(steward_home, monkeypatch):
    monkeypatch.delenv("PREFECT_CLIENT_MAX_RETRIES", raising=False)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # no server is started
    seen = {}

    def fake(model, usecase=None, alpha=None):
        seen["retries"], seen["alpha"] = os.environ.get("PREFECT_CLIENT_MAX_RETRIES"), alpha
        raise flows.rollout.RoutingError("stop here")

    monkeypatch.setattr(flows.rollout, "rollout_flow", fake)
    done = CliRunner().invoke(app, ["rollout", f"{NAME}:v2", "--alpha", "0.01"])
    assert done.exit_code == 1 and "stop here" in done.output
    assert seen == {"retries": WAITING_CLIENT_RETRIES, "alpha": 0.01}
