"""The review queue: decisions a person must look at (referrals from the review band, contested decisions).

A person resolves a case with the decision that stands (approve or decline) and a note; the resolution and
its `review.decision` ledger record are written in one transaction, and a case is resolved once. The
resolutions are labels: what a person decided for that request, for monitoring and retraining to read.

The note is about a person, so it stays here, correctable and erasable: the ledger holds its salted commitment
(steward/personal.py) and the salt lives beside the note. `steward ledger verify` recomputes the commitment of
every note still held (`edited_notes`); erasing a note deletes it and its salt, and the record stays intact.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import DateTime, Engine, ForeignKey, Integer, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from steward.db import Base
from steward.errors import StewardError
from steward.ledger import REVIEW_DECISION, Ledger
from steward.personal import commitment, new_salt

Kind = Literal["referral", "contest"]
Outcome = Literal["approve", "decline"]
UNKNOWN_CASE = "no review case {case}"
ALREADY_RESOLVED = "case {case} was already resolved: {decision} by {reviewer} at {at}"
NO_REVIEWER = "say who decides: a reviewer's name"
NO_NOTE = "a resolution needs a note: what the reviewer saw (the applicant's file keeps it; the ledger its commitment)"
NOTE_EDITED = "review case {case} (ledger seq {seq}): its note does not match the commitment in the ledger: edited"
NOTE_UNSALTED = "review case {case} (ledger seq {seq}): a note is held without its salt: edited"
DECISION_EDITED = "review case {case} (ledger seq {seq}): its decision is not the one recorded ({decision}): edited"
TOO_MANY_OPEN = (
    "request {request_id} already has {open} open {kind} cases, the most it may have at once ({limit}): "
    "a reviewer resolves one before another opens"
)


class ReviewError(StewardError, ValueError):
    """A case or resolution Steward refuses: no reviewer or note, an unknown case, a case already resolved, a case
    past the open ones a request may have."""


class ReviewRow(Base):
    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(12), default="open")
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReviewDecisionRow(Base):
    __tablename__ = "review_decisions"

    case_id: Mapped[int] = mapped_column(ForeignKey("reviews.id"), primary_key=True)
    decision: Mapped[str] = mapped_column(String(12))
    reviewer: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(String(2000))  # "" once erased
    salt: Mapped[str | None] = mapped_column(String(64))  # of the note's commitment; None once erased
    resolved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Resolution:
    case: int
    request_id: str
    kind: str
    decision: str
    reviewer: str
    note: str
    resolved_at: datetime


@dataclass(frozen=True)
class Review:
    id: int
    kind: str
    request_id: str
    reason: str
    status: str


def open_in(session: Session, *, kind: Kind, request_id: str, reason: str) -> ReviewRow:
    """A new open case, added to `session` (whose transaction writes it, e.g. with the decision it is about)."""
    row = ReviewRow(kind=kind, request_id=request_id, reason=reason, status="open", opened_at=datetime.now(UTC))
    session.add(row)
    return row


class ReviewQueue:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def open(self, *, kind: Kind, request_id: str, reason: str, at_most: int | None = None) -> Review:
        """Open a case; with `at_most`, refuse it if the request already has that many open cases of this kind
        (counted and opened under the database write lock, so concurrent requests cannot both slip under it)."""
        with Session(self._engine) as session, session.begin():
            if at_most is not None:
                Ledger.lock(session)
                opened = select(func.count()).where(
                    ReviewRow.request_id == request_id, ReviewRow.kind == kind, ReviewRow.status == "open"
                )
                count = session.scalar(opened) or 0
                if count >= at_most:
                    raise ReviewError(TOO_MANY_OPEN.format(request_id=request_id, open=count, kind=kind, limit=at_most))
            row = open_in(session, kind=kind, request_id=request_id, reason=reason)
            session.flush()
            return Review(row.id, row.kind, row.request_id, row.reason, row.status)

    def list(self, *, status: str | None = "open") -> list[Review]:
        query = select(ReviewRow).order_by(ReviewRow.id)
        if status is not None:
            query = query.where(ReviewRow.status == status)
        with Session(self._engine) as session:
            return [Review(r.id, r.kind, r.request_id, r.reason, r.status) for r in session.scalars(query)]

    def resolve(self, case: int, *, decision: Outcome, reviewer: str, note: str, ledger: Ledger) -> Resolution:
        """Close `case` with the decision that stands; refuses an unknown or already resolved case."""
        if not reviewer.strip():
            raise ReviewError(NO_REVIEWER)
        if not note.strip():
            raise ReviewError(NO_NOTE)
        with Session(self._engine) as session, session.begin():
            ledger.lock(session)
            row = session.get(ReviewRow, case)
            if row is None:
                raise ReviewError(UNKNOWN_CASE.format(case=case))
            done = session.get(ReviewDecisionRow, case)
            if done is not None:
                raise ReviewError(
                    ALREADY_RESOLVED.format(
                        case=case, decision=done.decision, reviewer=done.reviewer, at=done.resolved_at
                    )
                )
            now, salt = datetime.now(UTC), new_salt()
            session.add(
                ReviewDecisionRow(
                    case_id=case, decision=decision, reviewer=reviewer, note=note, salt=salt, resolved_at=now
                )
            )
            row.status = "resolved"
            ledger.append(
                actor=reviewer,
                action=REVIEW_DECISION,
                subject=f"review:{case}",
                payload={
                    "case": case,
                    "kind": row.kind,
                    "request_id": row.request_id,
                    "decision": decision,
                    "note_commitment": commitment(salt, "note", note),
                },
                session=session,
            )
            return Resolution(case, row.request_id, row.kind, decision, reviewer, note, now)

    def resolutions(self) -> builtins.list[Resolution]:
        """Every resolved case: the labels monitoring and retraining read."""
        query = select(ReviewRow, ReviewDecisionRow).join(ReviewDecisionRow, ReviewDecisionRow.case_id == ReviewRow.id)
        with Session(self._engine) as session:
            return [
                Resolution(r.id, r.request_id, r.kind, d.decision, d.reviewer, d.note, d.resolved_at)
                for r, d in session.execute(query.order_by(ReviewRow.id))
            ]


def edited_notes(engine: Engine, ledger: Ledger) -> builtins.list[str]:
    """The resolutions that no longer match their ledger record: a note still held whose text does not match the
    commitment, a note held without its salt, a decision other than the one recorded."""
    with Session(engine) as session:
        held = {row.case_id: (row.note, row.salt, row.decision) for row in session.scalars(select(ReviewDecisionRow))}
    problems = []
    for record in ledger.iter_records(actions=(REVIEW_DECISION,)):
        case = record.payload.get("case")
        if case not in held:
            continue
        note, salt, decision = held[case]
        if decision != record.payload.get("decision"):
            problems.append(DECISION_EDITED.format(case=case, seq=record.seq, decision=record.payload.get("decision")))
        if "note_commitment" not in record.payload:
            continue
        if salt is None and note:
            problems.append(NOTE_UNSALTED.format(case=case, seq=record.seq))
        elif salt is not None and commitment(salt, "note", note) != record.payload["note_commitment"]:
            problems.append(NOTE_EDITED.format(case=case, seq=record.seq))
    return problems
