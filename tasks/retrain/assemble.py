"""What a retraining run trains on: the new snapshot, plus the served decisions whose true outcome came back
through /feedback, plus (if `retrain.review_labels`) the referred or contested decisions a person resolved
and no outcome has reached yet, labelled with the reviewer's decision.

The served rows are rebuilt in the use case's raw-data schema (the columns of its raw suite) from the
prediction log's rows of its model name: what the person sent, the protected attributes kept apart for fairness
monitoring, the subject's pseudonym in place of the id (`usecase.id_column`: the log never holds the id) and the
label (`usecase.label`: an outcome equal to the favourable
or unfavourable value, as /feedback stores it, a string; any other outcome is ignored and counted). A
reviewer's decision is a person's judgement, not an outcome: it is a weaker label and carries the reviewers'
own biases, which is why it is a setting and why the run records how many rows each source gave.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from steward.db import make_engine
from steward.layout import Layout
from steward.params import load_params
from steward.personal import ERASED, Pseudonyms
from steward.predictions import ERROR, OutcomeRow, PredictionGroupsRow, PredictionInputRow, PredictionRow
from steward.reviews import ReviewQueue
from steward.settings import Settings
from steward.storage import Storage
from steward.usecase import UseCase
from tasks.data.suites import COLUMNS, read_suite

# A reviewer's decision as a label: the decision that stands, approve (favourable) or decline.
REVIEW_LABELS = {"approve": "favourable", "decline": "unfavourable"}
NO_COLUMN_SET = "the raw suite {path} has no {kind} expectation: retraining cannot rebuild its rows"


@dataclass(frozen=True)
class Assembled:
    path: Path
    snapshot_rows: int
    outcome_rows: int
    review_rows: int
    replaced: int  # snapshot rows of a person a served row describes again (the served row stands)
    ignored: int = 0  # served rows whose outcome is neither of the label's values

    def counts(self) -> dict[str, int]:
        return {
            "snapshot": self.snapshot_rows,
            "outcomes": self.outcome_rows,
            "reviews": self.review_rows,
            "replaced": self.replaced,
            "ignored": self.ignored,
        }


def raw_columns(suite: dict[str, Any], *, path: str = "the raw suite") -> list[str]:
    """The raw data's columns, in order, as the raw suite's column-set expectation lists them."""
    for expectation in suite.get("expectations", []):
        if expectation.get("type") == COLUMNS:
            return list(expectation["kwargs"]["column_set"])
    raise ValueError(NO_COLUMN_SET.format(path=path, kind=COLUMNS))


def served_rows(
    engine: Engine, *, usecase: UseCase, columns: list[str], review_labels: bool
) -> tuple[pd.DataFrame, int, int, int]:
    """`usecase`'s served decisions with a label, in its raw schema `columns`: (rows, how many labelled by an
    outcome, how many by a review, how many outcomes were neither label value and were left out)."""
    label = usecase.label
    values = {str(label.favourable): label.favourable, str(label.unfavourable): label.unfavourable}
    query = (
        select(PredictionRow, PredictionInputRow.inputs, PredictionGroupsRow.groups, OutcomeRow.outcome)
        .join(PredictionInputRow, PredictionInputRow.request_id == PredictionRow.request_id)
        .join(PredictionGroupsRow, PredictionGroupsRow.request_id == PredictionRow.request_id)
        .outerjoin(OutcomeRow, OutcomeRow.request_id == PredictionRow.request_id)
        .where(
            PredictionRow.model_name == usecase.model_name,
            PredictionRow.role != "shadow",
            PredictionRow.decision != ERROR,
            PredictionRow.subject_id != ERASED,
        )
    )
    reviewed = (
        {r.request_id: getattr(label, REVIEW_LABELS[r.decision]) for r in ReviewQueue(engine).resolutions()}
        if review_labels
        else {}
    )
    known = set(columns)
    rows, from_outcomes, from_reviews, ignored = [], 0, 0, 0
    with Session(engine) as session:
        for row, inputs, groups, outcome in session.execute(query.order_by(PredictionRow.ts)):
            if outcome is not None and outcome not in values:
                ignored += 1
                continue
            value = values[outcome] if outcome is not None else reviewed.get(row.request_id)
            if value is None:
                continue
            from_outcomes += outcome is not None
            from_reviews += outcome is None
            raw = {k: v for k, v in (groups or {}).items() if k in known}
            rows.append({**inputs, **raw, usecase.id_column: row.subject_id, label.column: value})
    frame = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    return frame, from_outcomes, from_reviews, ignored


def assemble(
    snapshot: Path,
    engine: Engine,
    *,
    usecase: UseCase,
    suite: dict[str, Any],
    out: Path,
    review_labels: bool,
    pseudonym: Callable[[object], str],
) -> Assembled:
    """The new snapshot and `usecase`'s labelled served rows as one CSV at `out`, in the columns of its raw
    `suite` (a person's newest row stands: a snapshot row whose id's `pseudonym` a served row has is replaced)."""
    base = pd.read_csv(snapshot)
    key = usecase.id_column
    served, from_outcomes, from_reviews, ignored = served_rows(
        engine, usecase=usecase, columns=raw_columns(suite, path=usecase.raw_suite), review_labels=review_labels
    )
    served = served.drop_duplicates(subset=key, keep="last")
    ids = served[key].astype(str)
    again = base[key].astype(str).map(pseudonym).isin(ids) | base[key].astype(str).isin(ids)
    replaced = int(again.sum())
    kept = base[~again]
    combined = pd.concat([kept, served[base.columns]], ignore_index=True) if len(served) else kept
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.part")
    combined.to_csv(partial, index=False)
    partial.replace(out)
    return Assembled(out, len(base), from_outcomes, from_reviews, replaced, ignored)


def current_snapshot(layout: Layout, *, usecase: UseCase, columns: list[str]) -> Path:
    """The pipeline's raw snapshot when it holds `usecase`'s data (its header is the suite's columns), else the
    use case's bundled dataset: the raw snapshot is whichever use case was trained last."""
    if layout.raw_data.is_file() and list(pd.read_csv(layout.raw_data, nrows=0).columns) == columns:
        return layout.raw_data
    return layout / usecase.dataset.file


@task(name="assemble-training-data", cache_policy=NO_CACHE)
def assemble_task(data: str | None, *, usecase: str | None = None, settings: Settings) -> Assembled:
    """Assemble the retraining data of `usecase` (default: params.yaml's)."""
    layout = Layout(settings.project_dir)
    params = load_params(layout.params_file, usecase=usecase)
    suite = read_suite(settings.project_dir / params.usecase.raw_suite)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    if data:
        snapshot = Storage.from_settings(settings).fetch(data, settings.state_dir / "incoming" / f"retrain-{stamp}.csv")
    else:
        snapshot = current_snapshot(layout, usecase=params.usecase, columns=raw_columns(suite))
    engine = make_engine(settings.db_url)
    return assemble(
        snapshot,
        engine,
        usecase=params.usecase,
        suite=suite,
        out=settings.state_dir / "retrain" / f"snapshot-{stamp}.csv",
        review_labels=params.retrain.review_labels,
        pseudonym=Pseudonyms.of(settings, model_name=params.usecase.model_name, engine=engine),
    )
