"""What a retraining run trains on: the new snapshot, plus the served decisions whose true outcome came back
through /feedback, plus (if `retrain.review_labels`) the referred or contested decisions a person resolved
and no outcome has reached yet, labelled with the reviewer's decision.

The served rows are rebuilt in the raw-data schema from the prediction log: what the applicant sent, the
protected attributes kept for fairness monitoring, and the label. A reviewer's decision is a person's
judgement, not an outcome: it is a weaker label and carries the reviewers' own biases, which is why it is a
setting and why the run records how many rows each source gave.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from steward.db import make_engine
from steward.layout import Layout
from steward.params import load_params
from steward.predictions import ERROR, OutcomeRow, PredictionInputRow, PredictionRow
from steward.reviews import ReviewQueue
from steward.settings import Settings
from steward.storage import Storage
from usecases.german_credit.dataset import GERMAN_COLUMNS

LABEL = "credit_risk"
REVIEW_LABELS = {"approve": "good", "decline": "bad"}


@dataclass(frozen=True)
class Assembled:
    path: Path
    snapshot_rows: int
    outcome_rows: int
    review_rows: int
    replaced: int  # snapshot rows of an applicant a served row describes again (the served row stands)

    def counts(self) -> dict[str, int]:
        return {
            "snapshot": self.snapshot_rows,
            "outcomes": self.outcome_rows,
            "reviews": self.review_rows,
            "replaced": self.replaced,
        }


def served_rows(engine: Engine, *, review_labels: bool) -> tuple[pd.DataFrame, int, int]:
    """Served decisions with a label, in the raw schema: (rows, how many from outcomes, how many from reviews)."""
    query = (
        select(PredictionRow, PredictionInputRow.inputs, OutcomeRow.outcome)
        .join(PredictionInputRow, PredictionInputRow.request_id == PredictionRow.request_id)
        .outerjoin(OutcomeRow, OutcomeRow.request_id == PredictionRow.request_id)
        .where(PredictionRow.role != "shadow", PredictionRow.decision != ERROR)
    )
    reviewed = (
        {r.request_id: REVIEW_LABELS[r.decision] for r in ReviewQueue(engine).resolutions()} if review_labels else {}
    )
    rows, from_outcomes, from_reviews = [], 0, 0
    with Session(engine) as session:
        for row, inputs, outcome in session.execute(query.order_by(PredictionRow.ts)):
            label = outcome or reviewed.get(row.request_id)
            if label is None:
                continue
            from_outcomes += outcome is not None
            from_reviews += outcome is None
            groups = {k: v for k, v in (row.groups or {}).items() if k in GERMAN_COLUMNS}
            rows.append({**inputs, **groups, "applicant_id": row.applicant_id, LABEL: label})
    frame = pd.DataFrame(rows, columns=GERMAN_COLUMNS) if rows else pd.DataFrame(columns=GERMAN_COLUMNS)
    return frame, from_outcomes, from_reviews


def assemble(snapshot: Path, engine: Engine, *, out: Path, review_labels: bool) -> Assembled:
    """The new snapshot and the labelled served rows as one CSV at `out` (an applicant's newest row stands)."""
    base = pd.read_csv(snapshot)
    served, from_outcomes, from_reviews = served_rows(engine, review_labels=review_labels)
    served = served.drop_duplicates(subset="applicant_id", keep="last")
    replaced = int(base["applicant_id"].isin(served["applicant_id"]).sum())
    kept = base[~base["applicant_id"].isin(served["applicant_id"])]
    combined = pd.concat([kept, served[base.columns]], ignore_index=True) if len(served) else kept
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.part")
    combined.to_csv(partial, index=False)
    partial.replace(out)
    return Assembled(out, len(base), from_outcomes, from_reviews, replaced)


@task(name="assemble-training-data", cache_policy=NO_CACHE)
def assemble_task(data: str | None, *, settings: Settings) -> Assembled:
    layout = Layout(settings.project_dir)
    params = load_params(layout.params_file)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    if data:
        snapshot = Storage.from_settings(settings).fetch(data, settings.state_dir / "incoming" / f"retrain-{stamp}.csv")
    else:
        snapshot = layout.raw_data if layout.raw_data.is_file() else layout.bundled_data
    return assemble(
        snapshot,
        make_engine(settings.db_url),
        out=settings.state_dir / "retrain" / f"snapshot-{stamp}.csv",
        review_labels=params.retrain.review_labels,
    )
