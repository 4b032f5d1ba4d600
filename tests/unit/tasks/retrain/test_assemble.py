"""Retraining data: the snapshot plus served decisions labelled by their outcome or a reviewer's decision, for
every shipped use case, in its raw schema and its label's words."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from steward.db import make_engine
from steward.ledger import Ledger
from steward.personal import Pseudonyms
from steward.predictions import Decision, PredictionLog
from steward.reviews import ReviewQueue
from tasks.retrain.assemble import assemble
from tests.usecases import SHIPPED, usecase

PROJECT = Path(__file__).resolve().parents[4]
KEY = "k" * 32


def _pseudonym(model_name: str) -> Pseudonyms:
    return Pseudonyms(KEY, model_name=model_name)


def _suite(name: str) -> dict:
    return json.loads((PROJECT / usecase(name).raw_suite).read_text())


def _snapshot(name: str) -> pd.DataFrame:
    return pd.read_csv(PROJECT / usecase(name).dataset.file)


def _log(engine, ledger, rows, *, name: str, model_name: str, prefix: str, start: int = 0) -> None:
    """One served decision per row, as the service logs it for use case `name` (under `model_name`)."""
    spec = usecase(name)
    hidden = {*spec.protected, spec.id_column, spec.label.column}
    log = PredictionLog(engine, ledger)
    for i, row in enumerate(rows, start=start):
        decision = Decision(
            request_id=f"{i:032x}",
            role="production",
            ts=f"2026-11-01T00:00:{i:02d}+00:00",
            model_name=model_name,
            model=f"{model_name}:v1",
            data_md5="d",
            subject_id=_pseudonym(model_name)(f"{prefix}{i}"),  # as the service logs it
            decision="approve",
            probability=0.7,
            latency_ms=10.0,
            groups=spec.logged_groups(row),
            inputs={k: v for k, v in row.items() if k not in hidden and not pd.isna(v)},
        )
        log.add(decision)
        if i == start:
            log.add(Decision(**{**decision.__dict__, "role": "shadow", "inputs": {}}))
    log.flush()


@pytest.fixture(params=SHIPPED)
def served(request, tmp_path):
    """12 decisions served from the use case's rows: 5 with an outcome (4 unfavourable, 1 favourable), 3
    reviewed (1 of them with an outcome too), 4 with neither, a shadow answer that must never count, one
    outcome in no word of the label, and 6 decisions of another model name that must never be read."""
    name = request.param
    spec = usecase(name)
    good, bad = str(spec.label.favourable), str(spec.label.unfavourable)
    engine = make_engine(f"sqlite:///{tmp_path / 'steward.db'}")
    ledger = Ledger(engine)
    rows = _snapshot(name).head(13).to_dict("records")
    _log(engine, ledger, rows, name=name, model_name=spec.model_name, prefix="live-")
    _log(engine, ledger, rows[:6], name=name, model_name="someone-else", prefix="other-", start=20)
    for i in range(5):
        ledger_outcome = good if i == 3 else bad
        PredictionLog(engine, ledger).record_outcome(f"{i:032x}", ledger_outcome, ts="2026-11-02")
    PredictionLog(engine, ledger).record_outcome(f"{12:032x}", "maybe", ts="2026-11-02")
    for i in range(20, 26):
        PredictionLog(engine, ledger).record_outcome(f"{i:032x}", good, ts="2026-11-02")
    queue = ReviewQueue(engine)
    for i, decision in ((4, "approve"), (5, "decline"), (6, "approve")):
        case = queue.open(kind="contest", request_id=f"{i:032x}", reason="r")
        queue.resolve(case.id, decision=decision, reviewer="kim", note="n", ledger=ledger)
    return name, engine, rows


def _assemble(name, engine, snapshot: Path, out: Path, *, review_labels: bool = True):
    spec = usecase(name)
    return assemble(
        snapshot,
        engine,
        usecase=spec,
        suite=_suite(name),
        out=out,
        review_labels=review_labels,
        pseudonym=_pseudonym(spec.model_name),
    )


def _live(name: str) -> dict[str, str]:
    """The pseudonyms of the served rows (the log never holds an id) → the id each stands for."""
    pseudonym = _pseudonym(usecase(name).model_name)
    return {pseudonym(f"live-{i}"): f"live-{i}" for i in range(13)}


def test_outcomes_and_review_decisions_join_the_snapshot_as_labelled_rows(served, tmp_path):
    name, engine, rows = served
    spec = usecase(name)
    key, label = spec.id_column, spec.label.column
    snapshot = PROJECT / spec.dataset.file
    done = _assemble(name, engine, snapshot, tmp_path / "out.csv")
    combined = pd.read_csv(done.path, dtype={key: str, label: str})
    columns = next(e for e in _suite(name)["expectations"] if e["type"] == "expect_table_columns_to_match_set")
    assert list(combined.columns) == columns["kwargs"]["column_set"]
    base = len(_snapshot(name))
    assert done.counts() == {"snapshot": base, "outcomes": 5, "reviews": 2, "replaced": 0, "ignored": 1}
    live = combined[combined[key].isin(_live(name))].set_index(key).rename(index=_live(name))
    assert len(combined) == base + 7 and len(live) == 7 and not combined[key].str.startswith("other-").any()
    good, bad = str(spec.label.favourable), str(spec.label.unfavourable)
    # an outcome outranks a review (row 4); a reviewer's decline is unfavourable, an approval favourable
    assert live[label].to_dict() == {
        **{f"live-{i}": bad for i in range(5)},
        "live-3": good,
        "live-5": bad,
        "live-6": good,
    }
    # each rebuilt row is the row the person sent, protected attributes included (retraining's raw contract)
    for i in (0, 1, 2, 3, 4, 5, 6):
        for column in combined.columns.drop([key, label]):
            assert str(live.loc[f"live-{i}", column]) == str(rows[i][column]), (i, column)


def test_without_review_labels_only_outcomes_count(served, tmp_path):
    name, engine, _ = served
    done = _assemble(name, engine, PROJECT / usecase(name).dataset.file, tmp_path / "out.csv", review_labels=False)
    assert done.counts() == {
        "snapshot": len(_snapshot(name)),
        "outcomes": 5,
        "reviews": 0,
        "replaced": 0,
        "ignored": 1,
    }


def test_a_served_row_replaces_the_snapshot_row_of_the_same_person(served, tmp_path):
    name, engine, _ = served
    key = usecase(name).id_column
    snapshot = _snapshot(name).head(20)
    snapshot.loc[0, key] = "live-1"
    (tmp_path / "snap.csv").write_text(snapshot.to_csv(index=False))
    done = _assemble(name, engine, tmp_path / "snap.csv", tmp_path / "out.csv")
    combined = pd.read_csv(done.path)
    assert done.replaced == 1 and len(combined) == 20 - 1 + 7  # matched through the pseudonym of its id
    assert (combined[key] == "live-1").sum() == 0 and combined[key].isin(_live(name)).sum() == 7
