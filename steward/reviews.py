"""The review queue: decisions a person must look at (referrals from the review band, contested decisions)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import DateTime, Engine, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from steward.db import Base

Kind = Literal["referral", "contest"]


class ReviewRow(Base):
    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(12), default="open")
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Review:
    id: int
    kind: str
    request_id: str
    reason: str
    status: str


class ReviewQueue:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def open(self, *, kind: Kind, request_id: str, reason: str) -> Review:
        with Session(self._engine) as session, session.begin():
            row = ReviewRow(kind=kind, request_id=request_id, reason=reason, status="open", opened_at=datetime.now(UTC))
            session.add(row)
            session.flush()
            return Review(row.id, row.kind, row.request_id, row.reason, row.status)

    def list(self, *, status: str | None = "open") -> list[Review]:
        query = select(ReviewRow).order_by(ReviewRow.id)
        if status is not None:
            query = query.where(ReviewRow.status == status)
        with Session(self._engine) as session:
            return [Review(r.id, r.kind, r.request_id, r.reason, r.status) for r in session.scalars(query)]
