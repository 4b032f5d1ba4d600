"""Serving replicas' heartbeats: which routing revision each replica of a use case serves, and since when.

Each replica (one `bentoml serve` worker, named by its decision journal's folder) writes its row about once a
second from its routing watch: the revision it serves and the time it last read the routing table. A rollback
waits until every live replica (heard from within `LIVE_SECONDS`) serves the new revision, and names those that do
not. A replica that has not read the routing table for `STALE_SECONDS` says it is not ready and refuses
decisions: it may be serving a model that was withdrawn.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import DateTime, Engine, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from steward.db import Base

LIVE_SECONDS = 10.0  # a replica not heard from for this long is taken for gone, not waited for
STALE_SECONDS = 5.0  # a replica that has not read routing for this long is not ready


class ReplicaRow(Base):
    __tablename__ = "replicas"

    model_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    replica: Mapped[str] = mapped_column(String(64), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer)  # the routing revision it serves
    pid: Mapped[int] = mapped_column(Integer)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # its last routing read


@dataclass(frozen=True)
class Replica:
    replica: str
    revision: int
    pid: int
    seen_at: datetime


def beat(engine: Engine, model_name: str, replica: str, *, revision: int, pid: int) -> None:
    """Record that `replica` read the routing table just now and serves `revision`."""
    with Session(engine) as session, session.begin():
        session.merge(
            ReplicaRow(model_name=model_name, replica=replica, revision=revision, pid=pid, seen_at=datetime.now(UTC))
        )


def live(engine: Engine, model_name: str, *, within: float = LIVE_SECONDS) -> list[Replica]:
    """The replicas of `model_name` heard from within `within` seconds."""
    since = datetime.now(UTC) - timedelta(seconds=within)
    query = select(ReplicaRow).where(ReplicaRow.model_name == model_name).order_by(ReplicaRow.replica)
    with Session(engine) as session:
        rows = [r for r in session.scalars(query) if _utc(r.seen_at) >= since]
        return [Replica(r.replica, r.revision, r.pid, _utc(r.seen_at)) for r in rows]


def wait_for(engine: Engine, model_name: str, revision: int, *, timeout: float) -> tuple[list[Replica], list[Replica]]:
    """Wait at most `timeout` seconds until every live replica serves `revision` or a later one; returns (those that
    do, those that do not)."""
    deadline = time.monotonic() + timeout
    while True:
        replicas = live(engine, model_name)
        behind = [r for r in replicas if r.revision < revision]
        if not behind or time.monotonic() >= deadline:
            return [r for r in replicas if r.revision >= revision], behind
        time.sleep(0.2)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite hands back naive times
