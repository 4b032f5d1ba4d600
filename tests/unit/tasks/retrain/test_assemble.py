"""Retraining data: the snapshot plus served decisions labelled by their outcome or a reviewer's decision."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from steward.db import make_engine
from steward.ledger import Ledger
from steward.predictions import Decision, PredictionLog
from steward.reviews import ReviewQueue
from tasks.retrain.assemble import assemble
from usecases.german_credit.dataset import GERMAN_COLUMNS

PROJECT = Path(__file__).resolve().parents[4]
PROTECTED = ("sex", "age", "foreign_worker")


@pytest.fixture
def served(tmp_path):
    """12 decisions served from German credit rows: 5 with an outcome, 3 reviewed (1 of them with an outcome
    too), 4 with neither, and a shadow answer that must never count."""
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    ledger = Ledger(engine)
    log = PredictionLog(engine, ledger)
    rows = pd.read_csv(PROJECT / "data/german_credit.csv").head(12).to_dict("records")
    for i, row in enumerate(rows):
        inputs = {k: v for k, v in row.items() if k not in (*PROTECTED, "applicant_id", "credit_risk")}
        groups = {k: row[k] for k in PROTECTED} | {"age_group": "x"}
        decision = Decision(
            request_id=f"{i:032x}",
            role="production",
            ts=f"2026-11-01T00:00:{i:02d}+00:00",
            model="credit-risk:v1",
            data_md5="d",
            applicant_id=f"live-{i}",
            decision="approve",
            probability=0.7,
            latency_ms=10.0,
            groups=groups,
            inputs=inputs,
        )
        log.add(decision)
        if i == 0:
            log.add(Decision(**{**decision.__dict__, "role": "shadow", "inputs": {}}))
    log.flush()
    for i in range(5):
        log.record_outcome(f"{i:032x}", "bad", ts="2026-11-02")
    queue = ReviewQueue(engine)
    for i, decision in ((4, "approve"), (5, "decline"), (6, "approve")):
        case = queue.open(kind="contest", request_id=f"{i:032x}", reason="r")
        queue.resolve(case.id, decision=decision, reviewer="kim", note="n", ledger=ledger)
    return engine, rows


def test_outcomes_and_review_decisions_join_the_snapshot_as_labelled_rows(served, tmp_path):
    engine, rows = served
    done = assemble(PROJECT / "data/german_credit.csv", engine, out=tmp_path / "out.csv", review_labels=True)
    combined = pd.read_csv(done.path)
    assert list(combined.columns) == GERMAN_COLUMNS
    assert done.counts() == {"snapshot": 1000, "outcomes": 5, "reviews": 2, "replaced": 0}
    live = combined[combined["applicant_id"].str.startswith("live-")].set_index("applicant_id")
    assert len(combined) == 1007
    # an outcome outranks a review (row 4); a reviewer's decline is a bad label, an approval a good one
    assert live["credit_risk"].to_dict() == {
        **{f"live-{i}": "bad" for i in range(5)},
        "live-5": "bad",
        "live-6": "good",
    }
    for column in ("duration_months", "purpose", "sex", "age", "foreign_worker"):
        assert live.loc["live-2", column] == rows[2][column]


def test_without_review_labels_only_outcomes_count(served, tmp_path):
    engine, _ = served
    done = assemble(PROJECT / "data/german_credit.csv", engine, out=tmp_path / "out.csv", review_labels=False)
    assert done.counts() == {"snapshot": 1000, "outcomes": 5, "reviews": 0, "replaced": 0}


def test_a_served_row_replaces_the_snapshot_row_of_the_same_applicant(served, tmp_path):
    engine, _ = served
    snapshot = pd.read_csv(PROJECT / "data/german_credit.csv").head(20)
    snapshot.loc[0, "applicant_id"] = "live-1"
    (tmp_path / "snap.csv").write_text(snapshot.to_csv(index=False))
    done = assemble(tmp_path / "snap.csv", engine, out=tmp_path / "out.csv", review_labels=True)
    combined = pd.read_csv(done.path)
    assert done.replaced == 1 and len(combined) == 20 - 1 + 7
    assert (combined["applicant_id"] == "live-1").sum() == 1
