"""`steward retrain` end to end on a real Prefect server: the reason recorded, the served outcomes and review
decisions in the snapshot it trains on, and the training flow with every gate behind it."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest
from support import BIN, run, steward_env

from steward.db import make_engine
from steward.ledger import Ledger
from steward.predictions import Decision, PredictionLog
from steward.reviews import ReviewQueue

pytestmark = pytest.mark.integration
PROTECTED = ("sex", "age", "foreign_worker")


def _serve(project, n: int) -> None:
    """n decisions in the project's prediction log, as the service writes them, every one with an outcome
    but the last, which a reviewer resolved."""
    engine = make_engine(f"sqlite:///{project / '.steward/steward.db'}")
    ledger = Ledger(engine)
    log = PredictionLog(engine, ledger)
    rows = pd.read_csv(project / "data/german_credit.csv").sample(n=n, random_state=3).to_dict("records")
    for i, row in enumerate(rows):
        log.add(
            Decision(
                request_id=f"{i:032x}",
                role="production",
                ts=f"2026-11-01T00:{i // 60:02d}:{i % 60:02d}+00:00",
                model_name="credit-risk",
                model="credit-risk:v0",
                data_md5="d",
                subject_id=f"live-{i}",
                decision="approve",
                probability=0.7,
                latency_ms=10.0,
                groups={k: row[k] for k in PROTECTED},
                inputs={k: v for k, v in row.items() if k not in (*PROTECTED, "applicant_id", "credit_risk")},
            )
        )
    log.flush()
    for i, row in enumerate(rows[:-1]):
        log.record_outcome(f"{i:032x}", row["credit_risk"], ts="2026-11-02")
    queue = ReviewQueue(engine)
    case = queue.open(kind="referral", request_id=f"{n - 1:032x}", reason="band")
    queue.resolve(case.id, decision="decline", reviewer="kim", note="arrears", ledger=ledger)


def test_retraining_records_why_and_trains_on_the_snapshot_plus_what_came_back(project, prefect_server):
    _serve(project, 60)
    env = steward_env(project, api_url=prefect_server)
    done = run([str(BIN / "steward"), "retrain", "--reason", "drift in credit_amount"], cwd=project, env=env)
    # German credit alone cannot pass the high tier's gate: the run goes through it and is rejected
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Gate (high risk tier): FAIL" in done.stdout
    record = Ledger(make_engine(f"sqlite:///{project / '.steward/steward.db'}")).records(
        actions=("retrain.requested",)
    )[-1]
    assert record.payload == {
        "reason": "drift in credit_amount",
        "trigger": "engineer",
        "usecase": "german_credit",
        "data": "current snapshot",
        "rows": {"snapshot": 1000, "outcomes": 59, "reviews": 1, "replaced": 0, "ignored": 0},
    }
    trained = pd.read_csv(project / "data/raw/snapshot.csv")
    assert len(trained) == 1060 and trained["applicant_id"].str.startswith("live-").sum() == 60
    with sqlite3.connect(project / ".steward/steward.db") as db:
        states = db.execute("SELECT version, state FROM model_versions WHERE name = 'credit-risk'").fetchall()
    assert states == [(1, "rejected")]
