"""What serves what: the production model, a canary with its traffic weight, a shadow, or refusal.

One row per model name (one use case, `usecase.model_name`) in Steward's database, so use cases are
rolled out and rolled back side by side without touching each other. The rollout flow and the kill switch
write a row (each change a ledger record, in the same transaction); a use case's serving process re-reads
its row every few hundred milliseconds, so a weight change or a rollback takes effect within a second
without a restart.

A request goes to the canary when the applicant's bucket (a hash of the applicant id, uniform in [0, 1))
is below the canary weight: the same applicant always meets the same model while the weight stands, and
raising the weight only moves applicants from production to canary, never back.

A canary or a shadow is compared with production and falls back to it, so no routing names one without a
production model (`set` refuses it). The moves that write routing rows (rollout steps, rollbacks, restores,
the refusal mode) are `steward.rollouts.Rollouts`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import DateTime, Engine, Float, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from steward.db import Base
from steward.errors import StewardError
from steward.ledger import ROLLBACK, ROLLOUT_STEP, ROUTING_REFUSED, Ledger, LedgerRow

Mode = Literal["serve", "refuse"]
BAD_WEIGHT = "a canary weight must be in [0, 1], got {weight}"
WRONG_STATE = "{role} must be a model in state {expected}; {ref} is {state}"
# Which registry states may take which role: only what passed sign-off and the rollout's steps serves.
ROLE_STATES = {"production": ("production",), "canary": ("canary",), "shadow": ("shadow",)}
NO_CANARY = "a canary weight above 0 needs a canary model"
NO_PRODUCTION = "a {role} needs a production model behind it: the routing of {model_name} names none"
DEMO_MODEL = (
    "{ref} was signed off by demo identities: it serves only in a demo home, and this home's policy in force "
    "is not a demo policy"
)
OTHER_MODEL = "the routing of {model_name} cannot name {ref}: a version of another model"
UNRECORDED = (
    "routing revision {revision} of {model_name} has no matching ledger record (the newest, {newest}, says "
    "{recorded}): it was written around the ledger; serving the last recorded routing instead"
)


class RoutingError(StewardError, ValueError):
    """A routing Steward refuses: a canary weight outside [0, 1], a weight with no canary, a canary or shadow with
    no production model behind it."""


class RoutingRow(Base):
    __tablename__ = "routing"

    model_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    production: Mapped[str | None] = mapped_column(String(300))
    canary: Mapped[str | None] = mapped_column(String(300))
    canary_weight: Mapped[float] = mapped_column(Float, default=0.0)
    shadow: Mapped[str | None] = mapped_column(String(300))
    mode: Mapped[str] = mapped_column(String(10), default="serve")
    revision: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(String(500), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Routing:
    """The routing table as plain data. Models are registry refs (`name:vN`)."""

    production: str | None = None
    canary: str | None = None
    canary_weight: float = 0.0
    shadow: str | None = None
    mode: Mode = "serve"
    revision: int = 0
    reason: str = ""

    def role_of(self, subject_id: str) -> Literal["production", "canary"]:
        """Sticky by applicant: the canary takes the applicants whose bucket is below its weight."""
        if self.canary and self.canary_weight > 0 and bucket(subject_id) < self.canary_weight:
            return "canary"
        return "production"

    def as_dict(self) -> dict[str, Any]:
        return {
            "production": self.production,
            "canary": self.canary,
            "canary_weight": self.canary_weight,
            "shadow": self.shadow,
            "mode": self.mode,
            "revision": self.revision,
            "reason": self.reason,
        }


def model_name_of(ref: str) -> str:
    """The model name of a registry ref `name:vN` (the key of its routing row)."""
    return ref.partition(":v")[0]


def bucket(subject_id: str) -> float:
    """The applicant's place in [0, 1): the first 8 bytes of sha256(id), uniform for any ids."""
    digest = hashlib.sha256(subject_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class RoutingTable:
    """The routing rows, one per model name; every change is a ledger record (`rollout.step`, or `rollback`)
    in its transaction."""

    def __init__(self, engine: Engine, ledger: Ledger) -> None:
        self._engine = engine
        self._ledger = ledger

    def get(self, model_name: str) -> Routing:
        """What serves `model_name`'s decisions (nothing, revision 0, when never set)."""
        with Session(self._engine) as session:
            row = session.get(RoutingRow, model_name)
            return Routing() if row is None else _plain(row)

    def checked(self, model_name: str) -> Checked:
        """What a service may serve for `model_name`: the routing row when the ledger's newest routing record
        of that model set exactly it, else the routing that record set (the last recorded), with why the row
        was refused. A row changed around `set` (a direct UPDATE) is thus never served.

        The row is read before the record: `set` commits both at once, so a record newer than the row is a
        change committed in between, and the row is read again (a few times) before it is refused."""
        for _ in range(3):
            row = self.get(model_name)
            found = recorded(self._engine, model_name)
            last = found[0] if found else Routing()
            if last == row:
                return Checked(last, None, row.revision)
            if last.revision <= row.revision:
                break
        problem = UNRECORDED.format(
            revision=row.revision,
            model_name=model_name,
            newest=f"seq {found[1]}" if found else "none",
            recorded=f"revision {last.revision}" if found else "nothing",
        )
        return Checked(last, problem, row.revision)

    def refuse(self, model_name: str, checked: Checked, *, actor: str) -> None:
        """Record that a service refused `model_name`'s routing row (and serves the last recorded routing)."""
        self._ledger.append(
            actor=actor,
            action=ROUTING_REFUSED,
            subject=f"routing:{model_name}",
            payload={
                "model_name": model_name,
                "row_revision": checked.row_revision,
                "serving": checked.routing.as_dict(),
                "reason": checked.refused or "",
            },
        )

    def all(self) -> dict[str, Routing]:
        """Every model name's routing, by name (what `steward status` shows)."""
        with Session(self._engine) as session:
            rows = session.scalars(select(RoutingRow).order_by(RoutingRow.model_name))
            return {row.model_name: _plain(row) for row in rows}

    def set(
        self,
        model_name: str,
        routing: Routing,
        *,
        actor: str,
        reason: str,
        rollback: bool = False,
        subject: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> Routing:
        """Replace `model_name`'s routing (a new revision) and record why; refuses a weight without a canary,
        a canary or shadow without production, and a version of another model.

        The ledger record is about `subject` (a rollback: the model taken out), else the canary or production,
        else `routing:<model name>`; `details` (a rollback's request, what it restored) join its payload."""
        if not 0.0 <= routing.canary_weight <= 1.0:
            raise RoutingError(BAD_WEIGHT.format(weight=routing.canary_weight))
        if routing.canary_weight > 0 and not routing.canary:
            raise RoutingError(NO_CANARY)
        for role in ("canary", "shadow"):
            if getattr(routing, role) and not routing.production:
                raise RoutingError(NO_PRODUCTION.format(role=role, model_name=model_name))
        for ref in (routing.production, routing.canary, routing.shadow):
            if ref and model_name_of(ref) != model_name:
                raise RoutingError(OTHER_MODEL.format(model_name=model_name, ref=ref))
        with Session(self._engine) as session, session.begin():
            self._ledger.lock(session)
            _check_states(session, routing)
            row = session.get(RoutingRow, model_name)
            if row is None:
                row = RoutingRow(model_name=model_name, revision=0, updated_at=datetime.now(UTC))
                session.add(row)
            before = _plain(row).as_dict()
            _check_demo(session, routing, arriving={ref for ref in _refs(routing) if ref not in _refs(_plain(row))})
            row.production, row.canary, row.canary_weight = routing.production, routing.canary, routing.canary_weight
            row.shadow, row.mode, row.reason = routing.shadow, routing.mode, reason
            row.revision = (row.revision or 0) + 1
            row.updated_at = datetime.now(UTC)
            session.flush()
            after = _plain(row)
            self._ledger.append(
                actor=actor,
                action=ROLLBACK if rollback else ROLLOUT_STEP,
                subject=subject or routing.canary or routing.production or f"routing:{model_name}",
                payload={"model_name": model_name, "before": before, "after": after.as_dict(), "reason": reason}
                | (details or {}),
                session=session,
            )
            return after


@dataclass(frozen=True)
class Checked:
    """The routing a service may serve, and why the row was refused if it was (`refused`)."""

    routing: Routing
    refused: str | None = None
    row_revision: int = 0


def recorded(engine: Engine, model_name: str) -> tuple[Routing, int] | None:
    """The routing the newest `rollout.step` or `rollback` record of `model_name` set, and that record's seq."""
    found = last_change(engine, model_name)
    return None if found is None else (_routing_of(found.payload["after"]), found.seq)


@dataclass(frozen=True)
class Change:
    """The newest ledger record that changed a model name's routing: its seq, action and payload."""

    seq: int
    action: str
    payload: dict[str, Any]


def last_change(engine: Engine, model_name: str) -> Change | None:
    """The newest `rollout.step` or `rollback` record of `model_name` (None: its routing was never set).

    Walks those records newest first through the action index and stops at the first of this model: the
    newest routing change of the one model is normally among the last few."""
    query = (
        select(LedgerRow.seq, LedgerRow.action, LedgerRow.subject, LedgerRow.payload)
        .where(LedgerRow.action.in_((ROLLOUT_STEP, ROLLBACK)))
        .order_by(LedgerRow.seq.desc())
        .execution_options(yield_per=50)
    )
    with Session(engine) as session:
        for row in session.execute(query):
            payload = json.loads(row.payload)
            if _model_of(row.subject, payload) == model_name and isinstance(payload.get("after"), dict):
                return Change(row.seq, row.action, payload)
    return None


def _model_of(subject: str, payload: dict[str, Any]) -> str | None:
    """The model name a routing record is about (records before `model_name` was in the payload: its refs)."""
    if isinstance(payload.get("model_name"), str):
        return str(payload["model_name"])
    after: dict[str, Any] = payload["after"] if isinstance(payload.get("after"), dict) else {}
    refs = [after.get(role) for role in ("production", "canary", "shadow")] + subject.split(", ")
    names = {model_name_of(ref) for ref in refs if isinstance(ref, str) and ":v" in ref}
    names |= {subject.removeprefix("routing:")} if subject.startswith("routing:") else set()
    return names.pop() if len(names) == 1 else None


def _routing_of(after: dict[str, Any]) -> Routing:
    return Routing(
        production=after.get("production"),
        canary=after.get("canary"),
        canary_weight=float(after.get("canary_weight") or 0.0),
        shadow=after.get("shadow"),
        mode="refuse" if after.get("mode") == "refuse" else "serve",
        revision=int(after.get("revision") or 0),
        reason=str(after.get("reason") or ""),
    )


def _check_states(session: Session, routing: Routing) -> None:
    from steward.registry import ModelVersionRow, RegistryError

    for role, allowed in ROLE_STATES.items():
        ref = getattr(routing, role)
        if not ref:
            continue
        name, _, version = ref.partition(":v")
        query = select(ModelVersionRow.state).where(ModelVersionRow.name == name)
        state = session.scalar(query.where(ModelVersionRow.version == int(version))) if version.isdigit() else None
        if state not in allowed:
            raise RegistryError(
                WRONG_STATE.format(role=role, expected=" or ".join(allowed), ref=ref, state=state or "unknown")
            )


def _refs(routing: Routing) -> set[str]:
    return {ref for ref in (routing.production, routing.canary, routing.shadow) if ref}


def _check_demo(session: Session, routing: Routing, *, arriving: set[str]) -> None:
    """A model that demo identities signed off reaches routing only in a demo home (steward.governance)."""
    from steward.ledger import APPROVAL_REQUESTED, LedgerRow
    from steward.policy_in_force import in_force_within

    if not arriving:
        return
    policy = in_force_within(session)
    if policy is not None and policy.demo:
        return
    for ref in sorted(arriving):
        query = select(LedgerRow.payload).where(LedgerRow.subject == ref, LedgerRow.action == APPROVAL_REQUESTED)
        newest_request = session.scalar(query.order_by(LedgerRow.seq.desc()).limit(1))
        if newest_request is not None and json.loads(newest_request).get("demo"):
            raise RoutingError(DEMO_MODEL.format(ref=ref))


def _plain(row: RoutingRow) -> Routing:
    return Routing(
        production=row.production,
        canary=row.canary,
        canary_weight=float(row.canary_weight or 0.0),
        shadow=row.shadow,
        mode="refuse" if row.mode == "refuse" else "serve",
        revision=row.revision or 0,
        reason=row.reason or "",
    )


def newest(engine: Engine, model_name: str) -> int:
    """`model_name`'s routing revision (0 when never set): cheap enough to poll."""
    with Session(engine) as session:
        return session.scalar(select(RoutingRow.revision).where(RoutingRow.model_name == model_name)) or 0
