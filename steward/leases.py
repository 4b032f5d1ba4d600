"""Rollout leases: a rollout that dies leaves nothing serving that nobody watches.

A rollout holds one lease per model name (use case) while it moves routing: `Leases.acquire` before its first
move, `Leases.renew` from the loop that watches each step (at least every third of the lease) and before each
move, `Leases.release` when it ends. Acquiring is refused, naming the holder, while another rollout's lease of
that model name is live: two rollouts of one use case never both move its routing.

A lease that is not renewed in time lapses: the rollout's process was killed, its worker lost, it is stuck in
Prefect's client retries while the API is down, or its watch loop is hung. `expire` then withdraws the holder if
it is still the shadow or the canary of its routing (`Rollouts.withdraw`: weight 0, state `rolled_back`, a
`rollback` ledger record whose reason names the lapsed lease) and deletes the lease; a holder that reached
production, or already left routing, is left alone. A lapsed lease is never renewed again, so a rollout that
wakes up after its lease lapsed finds out at its next renewal and stops moving routing: it never promotes
after losing its lease.

Withdrawing, not resuming, is the design: a rollout's steps are judged on decisions served while it watched,
and a resumed rollout would need a runner that outlives the crash to pick the step up again. Withdrawing needs
only a process that is always running anyway, and leaves routing as it was before the rollout; the operator
runs `steward rollout` again. Who calls `expire`: the serving process's routing watch (every 250 ms), the
monitor flow, a rollout of the same use case before it acquires, and `steward rollout --expire`.

Times are the wall clock (UTC) of the processes involved: hosts sharing a database must agree on the time
to well within a lease (NTP).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import DateTime, Engine, Float, String, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from steward.db import Base
from steward.errors import StewardError

if TYPE_CHECKING:
    from steward.rollouts import Rollouts

EXPIRER = "steward-lease"
HELD = (
    "{model_name} is being rolled out by another rollout: {holder} holds its lease until {expires} "
    "(renewed {renewed}); wait for it to end, or for its lease to lapse"
)
LOST = "the rollout of {holder} lost its lease of {model_name}: {why}"
LAPSED = (
    "the rollout of {holder} stopped renewing its lease of {model_name} ({seconds:g} s, last renewed {renewed}, "
    "lapsed {expires}): nobody watches it, so it is withdrawn"
)
BAD_SECONDS = "a lease lasts more than 0 seconds, got {seconds}"


class LeaseError(StewardError):
    """A lease Steward refuses: one held by another rollout, or lost."""


class LeaseHeld(LeaseError, ValueError):
    """Another rollout holds a live lease of the model name."""


class LeaseLost(LeaseError, RuntimeError):
    """A lease that lapsed (or was taken over, released, expired) cannot be renewed: its rollout must stop."""


class LeaseRow(Base):
    __tablename__ = "rollout_leases"

    model_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(300))  # the model ref being rolled out
    token: Mapped[str] = mapped_column(String(64), unique=True)
    seconds: Mapped[float] = mapped_column(Float)
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    renewed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Lease:
    """A lease as plain data; `token` is what its holder renews and releases it with."""

    model_name: str
    holder: str
    token: str
    seconds: float
    renewed_at: datetime
    expires_at: datetime

    def live(self, now: datetime | None = None) -> bool:
        return self.expires_at > (now or _now())


@dataclass(frozen=True)
class Expired:
    """A lapsed lease `expire` dealt with, and whether it withdrew its holder."""

    lease: Lease
    withdrew: bool
    reason: str


class Leases:
    """The rollout leases in Steward's database (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, model_name: str) -> Lease | None:
        with Session(self.engine) as session:
            row = session.get(LeaseRow, model_name)
            return None if row is None else _plain(row)

    def all(self) -> list[Lease]:
        with Session(self.engine) as session:
            return [_plain(row) for row in session.scalars(select(LeaseRow).order_by(LeaseRow.model_name))]

    def acquire(self, model_name: str, holder: str, seconds: float, *, now: datetime | None = None) -> Lease:
        """A new lease of `model_name` for `holder`, lasting `seconds`; refused (`LeaseHeld`, naming the holder)
        while another lease of it is live. A lapsed one is taken over: `expire` it first to withdraw its holder."""
        if not seconds > 0:
            raise LeaseError(BAD_SECONDS.format(seconds=seconds))
        now = now or _now()
        with Session(self.engine) as session, session.begin():
            _write_lock(session)
            row = session.get(LeaseRow, model_name)
            if row is not None and _aware(row.expires_at) > now:
                found = _plain(row)
                raise LeaseHeld(
                    HELD.format(
                        model_name=model_name,
                        holder=found.holder,
                        expires=found.expires_at.isoformat(timespec="seconds"),
                        renewed=found.renewed_at.isoformat(timespec="seconds"),
                    )
                )
            if row is not None:
                session.delete(row)
                session.flush()
            row = LeaseRow(
                model_name=model_name,
                holder=holder,
                token=secrets.token_hex(16),
                seconds=float(seconds),
                acquired_at=now,
                renewed_at=now,
                expires_at=now + timedelta(seconds=seconds),
            )
            session.add(row)
            session.flush()
            return _plain(row)

    def renew(self, lease: Lease, *, now: datetime | None = None) -> Lease:
        """`lease` for another `lease.seconds` from now; `LeaseLost` once it lapsed, or is no longer this lease
        (expired, released, taken over): its holder must then stop moving routing."""
        now = now or _now()
        expires = now + timedelta(seconds=lease.seconds)
        with Session(self.engine) as session, session.begin():
            row = session.get(LeaseRow, lease.model_name)
            if row is None or row.token != lease.token:
                raise LeaseLost(LOST.format(holder=lease.holder, model_name=lease.model_name, why="it is gone"))
            if _aware(row.expires_at) <= now:
                why = f"it lapsed at {_aware(row.expires_at).isoformat(timespec='seconds')}"
                raise LeaseLost(LOST.format(holder=lease.holder, model_name=lease.model_name, why=why))
            done = session.execute(
                update(LeaseRow)
                .where(LeaseRow.token == lease.token, LeaseRow.expires_at == row.expires_at)
                .values(renewed_at=now, expires_at=expires)
                .execution_options(synchronize_session=False)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]  # expired between the read and the write
                why = "it was expired while renewing"
                raise LeaseLost(LOST.format(holder=lease.holder, model_name=lease.model_name, why=why))
        return Lease(lease.model_name, lease.holder, lease.token, lease.seconds, now, expires)

    def release(self, lease: Lease) -> None:
        """Give `lease` up (nothing happens if it is no longer this lease)."""
        with Session(self.engine) as session, session.begin():
            session.execute(delete(LeaseRow).where(LeaseRow.token == lease.token))

    def lapsed(self, *, model_name: str | None = None, now: datetime | None = None) -> list[Lease]:
        """The leases (of `model_name`, default every one) not renewed in time."""
        now = now or _now()
        query = select(LeaseRow)
        if model_name is not None:
            query = query.where(LeaseRow.model_name == model_name)
        with Session(self.engine) as session:
            rows = [_plain(row) for row in session.scalars(query)]
        return [lease for lease in rows if not lease.live(now)]

    def drop(self, lease: Lease) -> bool:
        """Delete `lease` if it is still this lease and still lapsed (a renewal in between keeps it)."""
        with Session(self.engine) as session, session.begin():
            row = session.get(LeaseRow, lease.model_name)
            if row is None or row.token != lease.token or _aware(row.expires_at) != lease.expires_at:
                return False
            session.delete(row)
            return True


def expire(
    moves: Rollouts, *, model_name: str | None = None, now: datetime | None = None, actor: str = EXPIRER
) -> list[Expired]:
    """Deal with every lapsed lease (of `model_name`, default every model name): withdraw its holder if it is
    still the shadow or the canary of its routing (a `rollback` ledger record naming the lapsed lease), then
    delete the lease. Production, other use cases and live leases are untouched. Cheap when nothing lapsed (one
    query): the serving process calls it every routing look."""
    leases = Leases(moves.engine)
    done = []
    for lease in leases.lapsed(model_name=model_name, now=now):
        routing = moves.table.get(lease.model_name)
        reason = LAPSED.format(
            holder=lease.holder,
            model_name=lease.model_name,
            seconds=lease.seconds,
            renewed=lease.renewed_at.isoformat(timespec="seconds"),
            expires=lease.expires_at.isoformat(timespec="seconds"),
        )
        withdrew = lease.holder in (routing.canary, routing.shadow)
        if withdrew:  # traffic first: the lease goes only once its holder is out (else the next call retries)
            moves.withdraw(lease.holder, actor=actor, reason=reason)
        leases.drop(lease)
        done.append(Expired(lease, withdrew, reason))
    return done


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    """SQLite gives timezone-aware columns back naive: they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _plain(row: LeaseRow) -> Lease:
    return Lease(
        model_name=row.model_name,
        holder=row.holder,
        token=row.token,
        seconds=float(row.seconds),
        renewed_at=_aware(row.renewed_at),
        expires_at=_aware(row.expires_at),
    )


def _write_lock(session: Session) -> None:
    """Take the write lock now (SQLite: BEGIN IMMEDIATE), so two acquirers cannot both read "no lease"."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        dbapi = connection.connection.dbapi_connection
        if dbapi is not None and not dbapi.in_transaction:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif connection.dialect.name == "postgresql":
        connection.exec_driver_sql("LOCK TABLE rollout_leases IN SHARE ROW EXCLUSIVE MODE")
