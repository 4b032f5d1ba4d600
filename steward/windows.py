"""Windows of the prediction log, as the analyses read them: the rollout's (`window`: every role of some models,
oldest first, with when each outcome arrived) and monitoring's (`served_window`: what one model served, with what
each applicant sent and what reviewers decided), and the same as pages of bounded size (`served_pages`), which
`steward monitor --export` writes to Parquet so a window of millions of decisions never sits in one frame."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from steward.predictions import OutcomeRow, PredictionGroupsRow, PredictionInputRow, PredictionRow
from steward.reviews import ReviewQueue

PAGE_ROWS = 50_000


def window(engine: Engine, *, models: list[str], since: str = "") -> pd.DataFrame:
    """The decisions of `models` logged at or after `since` (ISO time), oldest first, with their outcomes (and when
    each arrived) where known: one row per decision, the group attributes as columns (what the rollout and
    monitoring analyses read)."""
    query = (
        select(PredictionRow, PredictionGroupsRow.groups, OutcomeRow.outcome, OutcomeRow.ts)
        .outerjoin(PredictionGroupsRow, PredictionGroupsRow.request_id == PredictionRow.request_id)
        .outerjoin(OutcomeRow, OutcomeRow.request_id == PredictionRow.request_id)
        .where(PredictionRow.model.in_(models), PredictionRow.ts >= since)
        .order_by(PredictionRow.ts, PredictionRow.request_id, PredictionRow.role)
    )
    with Session(engine) as session:
        rows = [
            {
                "request_id": row.request_id,
                "role": row.role,
                "ts": row.ts,
                "model": row.model,
                "subject_id": row.subject_id,
                "decision": row.decision,
                "probability": row.probability,
                "latency_ms": row.latency_ms,
                "outcome": outcome,
                "outcome_ts": outcome_ts,
                **{k: str(v) for k, v in (groups or {}).items()},
            }
            for row, groups, outcome, outcome_ts in session.execute(query)
        ]
    columns = ["request_id", "role", "ts", "model", "subject_id", "decision", "probability", "latency_ms"]
    columns += ["outcome", "outcome_ts"]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)


def served_pages(
    engine: Engine, *, model: str, since: str = "", until: str = "9999", page_rows: int = PAGE_ROWS
) -> Iterator[pd.DataFrame]:
    """The decisions `model` served (production or canary) in [since, until), in order of time, as frames of at
    most `page_rows` rows: with what each applicant sent, the outcome and the review decision where known, and the
    group attributes; errors included, as decision `error` (what monitoring reads)."""
    reviewed = {r.request_id: r.decision for r in ReviewQueue(engine).resolutions()}
    query = (
        select(PredictionRow, PredictionInputRow.inputs, PredictionGroupsRow.groups, OutcomeRow.outcome)
        .join(PredictionInputRow, PredictionInputRow.request_id == PredictionRow.request_id)
        .outerjoin(PredictionGroupsRow, PredictionGroupsRow.request_id == PredictionRow.request_id)
        .outerjoin(OutcomeRow, OutcomeRow.request_id == PredictionRow.request_id)
        .where(
            PredictionRow.model == model,
            PredictionRow.role != "shadow",
            PredictionRow.ts >= since,
            PredictionRow.ts < until,
        )
        .order_by(PredictionRow.ts, PredictionRow.request_id)
        .execution_options(yield_per=page_rows)
    )
    with Session(engine) as session:
        for page in session.execute(query).partitions():
            yield pd.DataFrame([_served_row(*row, reviewed=reviewed) for row in page])


def _served_row(
    row: Any, inputs: dict[str, Any], groups: dict[str, Any] | None, outcome: Any, *, reviewed: dict[str, str]
) -> dict[str, Any]:
    return {
        **inputs,
        **{k: str(v) for k, v in (groups or {}).items()},
        "request_id": row.request_id,
        "ts": row.ts,
        "decision": row.decision,
        "probability": row.probability,
        "latency_ms": row.latency_ms,
        "outcome": outcome,
        "review": reviewed.get(row.request_id),  # a person's decision on a referred or contested case
    }


def served_window(engine: Engine, *, model: str, since: str = "", until: str = "9999") -> pd.DataFrame:
    """`served_pages` in one frame (empty when nothing was served)."""
    pages = list(served_pages(engine, model=model, since=since, until=until))
    return pd.concat(pages, ignore_index=True) if pages else pd.DataFrame()
