"""Erasing a person's data on request (GDPR article 17) and retiring everyone's on schedule (retention), with the
ledger still verifiable afterwards (steward/personal.py says why it stays so).

- `erase`: every decision of one subject of one use case loses its pseudonym, inputs and protected attributes; its
  outcomes are deleted; its review cases lose the contest text and the reviewer's note (and the note's salt); the
  subject's salt is deleted; the rows of the subject in the retraining snapshots Steward assembled are removed. One
  `personal.erased` ledger record says how many of each, and why (never who).
- `apply_retention`: the same, table by table, for everything older than its period (`privacy.retention` in
  params.yaml), with one `retention.applied` record of the counts and cut-offs; salts nobody's decision refers to
  any longer go too.
- `erasure_problems` (in `steward ledger verify`): decisions that lost their subject must be exactly those the
  erasure and retention records account for, so personal data is never removed off the record.

What stays: each decision's public fields (model, time, decision, probability, latency) and commitments, which say
nothing about a person once the pseudonym and the salt are gone, and the `review.decision` records (a decision
and a note's commitment). Prefect and the DVC cache are outside: see README "Personal data".
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Engine, delete, func, select, update
from sqlalchemy.orm import Session

from steward.errors import NotFound, StewardError
from steward.ledger import PERSONAL_ERASED, RETENTION_APPLIED, Ledger, Record
from steward.personal import ERASED, SaltRow
from steward.predictions import OutcomeRow, PredictionGroupsRow, PredictionInputRow, PredictionRow
from steward.reviews import ReviewDecisionRow, ReviewRow

ACTOR = "steward-privacy"
NO_SUBJECT = "no decision of {model_name} is about subject {subject!r} (or it was erased already): nothing to erase"
NO_REASON = "an erasure needs a reason: the request it answers (a ticket or article, never the person's name)"
REASON_NAMES_SUBJECT = (
    "the reason names the subject's id: the ledger keeps the reason for ever; give the request's reference"
)
UNACCOUNTED = (
    "{found} decision(s) have lost their subject, but erasure and retention records account for {recorded}: "
    "personal data was removed off the record"
)
T = TypeVar("T")
CHUNK = 500  # ids per IN (...) list: well under every database's bound on bound parameters


class ErasureError(StewardError, ValueError):
    """An erasure Steward refuses (no reason, a reason that names the person)."""


@dataclass(frozen=True)
class Removed:
    """What one erasure or retention run removed, table by table."""

    decisions: int = 0  # decisions that lost their subject (pseudonym)
    inputs: int = 0
    groups: int = 0
    outcomes: int = 0
    reviews: int = 0  # contest or referral texts
    notes: int = 0  # reviewers' notes (with their salts)
    salts: int = 0
    snapshot_rows: int = 0  # rows of retraining snapshots under STEWARD_HOME

    def counts(self) -> dict[str, int]:
        return dict(self.__dict__)


def _rows(session: Session, statement: Any) -> int:
    """How many rows an UPDATE or DELETE changed."""
    return int(cast(CursorResult[Any], session.execute(statement)).rowcount)


def _chunks(values: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _strip(
    session: Session, requests: Sequence[str], *, parts: Iterable[str] = ("subject", "inputs", "groups")
) -> dict[str, int]:
    """Remove the personal `parts` of the decisions of `requests` (every role), inside `session`'s transaction."""
    counts = {"decisions": 0, "inputs": 0, "groups": 0}
    wanted = set(parts)
    for chunk in _chunks(requests):
        if "subject" in wanted:
            counts["decisions"] += _rows(
                session,
                update(PredictionRow)
                .where(PredictionRow.request_id.in_(chunk), PredictionRow.subject_id != ERASED)
                .values(subject_id=ERASED),
            )
        if "inputs" in wanted:
            counts["inputs"] += _rows(
                session, delete(PredictionInputRow).where(PredictionInputRow.request_id.in_(chunk))
            )
        if "groups" in wanted:
            counts["groups"] += _rows(
                session, delete(PredictionGroupsRow).where(PredictionGroupsRow.request_id.in_(chunk))
            )
    return counts


def _outcomes_and_reviews(session: Session, requests: Sequence[str]) -> dict[str, int]:
    counts = {"outcomes": 0, "reviews": 0, "notes": 0}
    for chunk in _chunks(requests):
        counts["outcomes"] += _rows(session, delete(OutcomeRow).where(OutcomeRow.request_id.in_(chunk)))
        cases = list(session.scalars(select(ReviewRow.id).where(ReviewRow.request_id.in_(chunk))))
        counts["reviews"] += _rows(
            session, update(ReviewRow).where(ReviewRow.id.in_(cases), ReviewRow.reason != "").values(reason="")
        )
        counts["notes"] += _rows(
            session,
            update(ReviewDecisionRow)
            .where(ReviewDecisionRow.case_id.in_(cases), ReviewDecisionRow.salt.is_not(None))
            .values(note="", salt=None),
        )
    return counts


def erase(
    engine: Engine,
    ledger: Ledger,
    *,
    pseudonym: str,
    subject_id: str,
    model_name: str,
    reason: str,
    actor: str,
    id_column: str,
    snapshots: Iterable[Path] = (),
) -> tuple[Removed, Record]:
    """Erase subject `pseudonym` (of `subject_id`, as sent) from `model_name`'s records and from the retraining
    `snapshots` (CSV files whose `id_column` holds the id or the pseudonym); returns what went and the ledger
    record of it. Refuses an unknown subject, a missing reason, a reason that names the subject."""
    if not reason.strip():
        raise ErasureError(NO_REASON)
    if subject_id.strip() and subject_id.strip() in reason:
        raise ErasureError(REASON_NAMES_SUBJECT)
    with Session(engine) as session:
        requests = sorted(
            set(
                session.scalars(
                    select(PredictionRow.request_id).where(
                        PredictionRow.subject_id == pseudonym, PredictionRow.model_name == model_name
                    )
                )
            )
        )
    if not requests:
        raise NotFound(NO_SUBJECT.format(model_name=model_name, subject=subject_id))
    rows = sum(_scrub_csv(path, column=id_column, ids={subject_id, pseudonym}) for path in snapshots)
    with Session(engine) as session, session.begin():
        ledger.lock(session)
        counts = _strip(session, requests) | _outcomes_and_reviews(session, requests)
        counts["salts"] = _rows(session, delete(SaltRow).where(SaltRow.subject == pseudonym))
        removed = Removed(**counts, snapshot_rows=rows)
        record = ledger.append(
            actor=actor,
            action=PERSONAL_ERASED,
            subject=f"erasure:{model_name}",
            payload={"model_name": model_name, "reason": reason.strip(), **removed.counts()},
            session=session,
        )
    return removed, record


def apply_retention(
    engine: Engine,
    ledger: Ledger,
    *,
    model_name: str,
    days: dict[str, int],
    actor: str = ACTOR,
    now: datetime | None = None,
    snapshots: Iterable[Path] = (),
) -> tuple[Removed, Record]:
    """Retire what `model_name`'s records hold past its period (`days`: decisions, inputs, groups, outcomes,
    reviews): a decision past `decisions` loses its subject with its inputs and groups; inputs and groups may go
    sooner. Retraining `snapshots` older than `decisions` are deleted. One `retention.applied` record."""
    now = now or datetime.now(UTC)
    cutoff = {table: (now - timedelta(days=d)).isoformat(timespec="microseconds") for table, d in days.items()}

    def older(table: str) -> list[str]:
        query = select(PredictionRow.request_id).where(
            PredictionRow.model_name == model_name, PredictionRow.ts < cutoff[table]
        )
        with Session(engine) as session:
            return sorted(set(session.scalars(query)))

    files = [p for p in snapshots if datetime.fromtimestamp(p.stat().st_mtime, UTC).isoformat() < cutoff["decisions"]]
    rows = 0
    for path in files:
        rows += _count_rows(path)
        path.unlink()
    with Session(engine) as session, session.begin():
        ledger.lock(session)
        counts = _strip(session, older("decisions"))
        for part in ("inputs", "groups"):
            counts[part] += _strip(session, older(part), parts=(part,))[part]
        counts |= _outcomes_and_reviews_before(session, model_name, cutoff)
        referred = select(PredictionRow.subject_id).where(PredictionRow.subject_id != ERASED)
        counts["salts"] = _rows(session, delete(SaltRow).where(SaltRow.subject.not_in(referred)))
        removed = Removed(**counts, snapshot_rows=rows)
        record = ledger.append(
            actor=actor,
            action=RETENTION_APPLIED,
            subject=f"retention:{model_name}",
            payload={"model_name": model_name, "days": dict(days), "before": cutoff, **removed.counts()},
            session=session,
        )
    return removed, record


def _outcomes_and_reviews_before(session: Session, model_name: str, cutoff: dict[str, str]) -> dict[str, int]:
    """Outcomes recorded before `outcomes`' cut-off and review texts of cases opened before `reviews`' cut-off,
    of `model_name`'s decisions."""
    ours = select(PredictionRow.request_id).where(PredictionRow.model_name == model_name)
    outcomes = _rows(
        session, delete(OutcomeRow).where(OutcomeRow.ts < cutoff["outcomes"], OutcomeRow.request_id.in_(ours))
    )
    when = datetime.fromisoformat(cutoff["reviews"])
    cases = list(
        session.scalars(select(ReviewRow.id).where(ReviewRow.opened_at < when, ReviewRow.request_id.in_(ours)))
    )
    reviews = notes = 0
    for chunk in _chunks(cases):
        reviews += _rows(
            session, update(ReviewRow).where(ReviewRow.id.in_(chunk), ReviewRow.reason != "").values(reason="")
        )
        notes += _rows(
            session,
            update(ReviewDecisionRow)
            .where(ReviewDecisionRow.case_id.in_(chunk), ReviewDecisionRow.salt.is_not(None))
            .values(note="", salt=None),
        )
    return {"outcomes": outcomes, "reviews": reviews, "notes": notes}


def erasure_problems(engine: Engine, ledger: Ledger) -> list[str]:
    """Whether the decisions without a subject are exactly those erasure and retention records account for."""
    with Session(engine) as session:
        found = session.scalar(select(func.count()).where(PredictionRow.subject_id == ERASED)) or 0
    recorded = sum(
        int(r.payload.get("decisions", 0)) for r in ledger.iter_records(actions=(PERSONAL_ERASED, RETENTION_APPLIED))
    )
    return [] if found == recorded else [UNACCOUNTED.format(found=found, recorded=recorded)]


def _scrub_csv(path: Path, *, column: str, ids: set[str]) -> int:
    """Remove the rows of `ids` (in `column`) from the CSV at `path`, atomically; how many went."""
    if not path.is_file():
        return 0
    with path.open(newline="", encoding="utf-8") as source:
        reader = csv.reader(source)
        header = next(reader, None)
        if header is None or column not in header:
            return 0
        at = header.index(column)
        kept: list[list[str]] = []
        gone = 0
        for row in reader:
            if len(row) > at and row[at] in ids:
                gone += 1
            else:
                kept.append(row)
    if gone:
        partial = path.with_name(f".{path.name}.erasing")
        with partial.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            writer.writerows(kept)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(path)
    return gone


def _count_rows(path: Path) -> int:
    with path.open("rb") as f:
        return max(sum(1 for _ in f) - 1, 0)


def snapshot_files(state_dir: Path) -> list[Path]:
    """The retraining snapshots Steward assembled from served decisions (tasks/retrain/assemble.py) and the data
    it was handed for retraining, under STEWARD_HOME."""
    return sorted([*state_dir.glob("retrain/*.csv"), *state_dir.glob("incoming/*.csv")])


def describe(removed: Removed) -> str:
    parts: dict[str, Any] = {k: v for k, v in removed.counts().items() if v}
    return ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in parts.items()) or "nothing"
