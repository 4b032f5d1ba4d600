"""The model registry: every model version with its lineage and its place in the state machine.

States: candidate → rejected | approved → shadow → canary → production → standby → retired, plus rolled_back.
A transition the machine does not allow is refused, whoever asks.

When a promotion replaces a production model that was verified good (no `model.refused` record about it
since it became production), it becomes the `standby`: the one model a rollback swaps production back to.
There is at most one standby per model name; the standby it replaces retires. A production model that was
refused, or replaced otherwise, retires (or is rolled back).

Production is reached along the rollout (canary → production) or by a restore (`Registry.restore`), and only
a restore leaves the terminal-looking states: a standby, retired or rolled-back version goes back to
production only if the ledger shows it in production before and its sign-off is still complete (its newest
sign-off approved). Its bytes are checked by the caller (steward.rollouts) before it is restored.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, Integer, Select, String, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from steward.db import Base
from steward.errors import StewardError
from steward.keys import SigningKey
from steward.ledger import REGISTRY_TRANSITION, Ledger, LedgerRow, Record
from steward.model_integrity import Manifest, ModelSealRow, Seal, seal
from steward.signoff import SIGNOFF_ACTIONS, latest

UNKNOWN_MODEL = "no model version {ref!r} in the registry"
BAD_NAME = (
    "model name {name!r}: use lowercase letters, digits, '-', '_' and '.' (starting with a letter or digit), "
    "so that its versions' refs name:vN can be told apart"
)
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")
UNSIGNED = "model {ref}: a manifest is registered with the key that signs it, never alone"
NOT_SIGNED_OFF = "model {ref} has no completed sign-off in the ledger: only the approvals its tier asks for approve it"
TRANSITION_REFUSED = "model {ref} is {current}; it cannot become {target} (allowed from {current}: {allowed})"
NOT_RESTORABLE = (
    "model {ref} is {current}: only a former production model (standby, retired or rolled back) is restored"
)
NEVER_IN_PRODUCTION = (
    "model {ref} was never in production (no registry transition of it to production in the ledger): only a "
    "former production model is restored; roll it out instead"
)
SIGNOFF_LAPSED = (
    "model {ref}: its newest sign-off in the ledger is not complete ({outcome}): it is not restored until a "
    "sign-off approves it again"
)


class State(enum.StrEnum):
    CANDIDATE = "candidate"
    REJECTED = "rejected"
    APPROVED = "approved"
    SHADOW = "shadow"
    CANARY = "canary"
    PRODUCTION = "production"
    STANDBY = "standby"
    RETIRED = "retired"
    ROLLED_BACK = "rolled_back"


ALLOWED: dict[State, frozenset[State]] = {
    State.CANDIDATE: frozenset({State.REJECTED, State.APPROVED}),
    State.APPROVED: frozenset({State.SHADOW, State.RETIRED}),
    State.SHADOW: frozenset({State.CANARY, State.ROLLED_BACK, State.RETIRED}),
    State.CANARY: frozenset({State.PRODUCTION, State.ROLLED_BACK}),
    State.PRODUCTION: frozenset({State.STANDBY, State.RETIRED, State.ROLLED_BACK}),
    State.STANDBY: frozenset({State.RETIRED}),
    State.REJECTED: frozenset(),
    State.RETIRED: frozenset(),
    State.ROLLED_BACK: frozenset({State.RETIRED}),
}
# The states a restore (and only a restore) takes back to production, after its checks.
RESTORABLE: frozenset[State] = frozenset({State.STANDBY, State.RETIRED, State.ROLLED_BACK})


def _loads_or_none(text: str) -> Any:
    """A stored payload, or None for text that no longer parses (an edited record, whose hash never matches)."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time Steward stores is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class RegistryError(StewardError, ValueError):
    """An unknown model or a transition the state machine forbids."""


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    model_tag: Mapped[str] = mapped_column(String(300))
    model_md5: Mapped[str] = mapped_column(String(64))
    data_md5: Mapped[str] = mapped_column(String(64))
    params_hash: Mapped[str] = mapped_column(String(64))
    git_commit: Mapped[str | None] = mapped_column(String(64))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class ModelVersion:
    """A registry entry as plain data (safe to pass around after its session closed)."""

    id: int
    name: str
    version: int
    state: State
    model_tag: str
    model_md5: str
    data_md5: str
    params_hash: str
    git_commit: str | None
    flow_run_id: str | None
    metrics: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @property
    def ref(self) -> str:
        return f"{self.name}:v{self.version}"

    @classmethod
    def _of(cls, row: ModelVersionRow) -> ModelVersion:
        return cls(
            id=row.id,
            name=row.name,
            version=row.version,
            state=State(row.state),
            model_tag=row.model_tag,
            model_md5=row.model_md5,
            data_md5=row.data_md5,
            params_hash=row.params_hash,
            git_commit=row.git_commit,
            flow_run_id=row.flow_run_id,
            metrics=dict(row.metrics or {}),
            created_at=_utc(row.created_at),
            updated_at=_utc(row.updated_at),
        )


class Registry:
    """Model versions in Steward's database; with a ledger, every state change is also a ledger record
    written in the same transaction (no change without its record, no record without its change)."""

    def __init__(self, engine: Engine, ledger: Ledger | None = None) -> None:
        self._engine = engine
        self._ledger = ledger

    def register(
        self,
        *,
        name: str,
        model_tag: str,
        model_md5: str,
        data_md5: str,
        params_hash: str,
        git_commit: str | None,
        flow_run_id: str | None,
        metrics: dict[str, Any],
        actor: str = "steward",
        manifest: Manifest | None = None,
        signer: SigningKey | None = None,
    ) -> ModelVersion:
        """Enter a new version of `name` as a candidate; versions count up from 1 per name.

        With the `manifest` of its directory in the model store, `signer` (the instance key) seals it: the
        signed manifest is kept with the version and in its ledger registration record, and the model is loaded
        only while both agree with its bytes (steward.model_integrity). A version registered without one is
        never loaded."""
        if not NAME_PATTERN.fullmatch(name):
            raise RegistryError(BAD_NAME.format(name=name))
        if (manifest is None) != (signer is None):
            raise RegistryError(UNSIGNED.format(ref=name))
        now = datetime.now(UTC)
        with Session(self._engine) as session, session.begin():
            self._lock(session)
            latest = session.scalar(select(func.max(ModelVersionRow.version)).where(ModelVersionRow.name == name))
            row = ModelVersionRow(
                name=name,
                version=(latest or 0) + 1,
                state=State.CANDIDATE.value,
                model_tag=model_tag,
                model_md5=model_md5,
                data_md5=data_md5,
                params_hash=params_hash,
                git_commit=git_commit,
                flow_run_id=flow_run_id,
                metrics=metrics,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            sealed = None
            if manifest is not None and signer is not None:
                ref = f"{row.name}:v{row.version}"
                sealed = seal(ref=ref, model_tag=model_tag, manifest=manifest, key=signer)
                session.add(
                    ModelSealRow(
                        version_id=row.id,
                        manifest=sealed.manifest,
                        files=sealed.files,
                        signature=sealed.signature,
                        signer=sealed.signer,
                    )
                )
            self._record(session, row, previous=None, actor=actor, sealed=sealed)
            return ModelVersion._of(row)

    def seal(self, version_id: int) -> Seal | None:
        """The signed manifest recorded with a version (None: registered unsigned, or its seal deleted)."""
        with Session(self._engine) as session:
            row = session.get(ModelSealRow, version_id)
            if row is None:
                return None
            files = {str(k): str(v) for k, v in dict(row.files or {}).items()}
            return Seal(manifest=row.manifest, files=files, signature=row.signature, signer=row.signer)

    def registration(self, ref: str) -> Record | None:
        """The ledger record that entered `ref` (by subject, through the ledger's index; the first if several)."""
        query = select(LedgerRow).where(LedgerRow.subject == ref, LedgerRow.action == REGISTRY_TRANSITION)
        with Session(self._engine) as session:
            for row in session.scalars(query.order_by(LedgerRow.seq)):
                record = Record._of(row, _loads_or_none)
                if not isinstance(record.payload, dict) or record.payload.get("from") is None:
                    return record  # a payload that no longer parses was edited: the check names the record
        return None

    def find(self, *, name: str, model_md5: str, data_md5: str) -> ModelVersion | None:
        """The version of `name` holding exactly these model bytes trained on this data, if any."""
        query = select(ModelVersionRow).where(
            ModelVersionRow.name == name,
            ModelVersionRow.model_md5 == model_md5,
            ModelVersionRow.data_md5 == data_md5,
        )
        with Session(self._engine) as session:
            row = session.scalar(query.order_by(ModelVersionRow.id.desc()).limit(1))
            return None if row is None else ModelVersion._of(row)

    def get(self, ref: str | int) -> ModelVersion:
        """A version by id (`7`), by `name:vN`, or by `name` (its newest version)."""
        with Session(self._engine) as session:
            row = session.scalar(self._select(ref))
            if row is None:
                raise RegistryError(UNKNOWN_MODEL.format(ref=ref))
            return ModelVersion._of(row)

    def list(self, *, state: State | None = None, name: str | None = None) -> list[ModelVersion]:
        """Versions, newest first, optionally of one state or name."""
        query = select(ModelVersionRow).order_by(ModelVersionRow.id.desc())
        if state is not None:
            query = query.where(ModelVersionRow.state == state.value)
        if name is not None:
            query = query.where(ModelVersionRow.name == name)
        with Session(self._engine) as session:
            return [ModelVersion._of(row) for row in session.scalars(query)]

    def transition(self, ref: str | int, target: State, *, actor: str = "steward") -> ModelVersion:
        """Move a version to `target` if the state machine allows it from where it is now."""
        with Session(self._engine) as session, session.begin():
            self._lock(session)
            row = session.scalar(self._select(ref).with_for_update())
            if row is None:
                raise RegistryError(UNKNOWN_MODEL.format(ref=ref))
            current = State(row.state)
            if target not in ALLOWED[current]:
                allowed = ", ".join(sorted(ALLOWED[current])) or "nothing"
                raise RegistryError(
                    TRANSITION_REFUSED.format(
                        ref=f"{row.name}:v{row.version}", current=current, target=target, allowed=allowed
                    )
                )
            if target is State.APPROVED and not self._signed_off(session, f"{row.name}:v{row.version}"):
                raise RegistryError(NOT_SIGNED_OFF.format(ref=f"{row.name}:v{row.version}"))
            row.state = target.value
            row.updated_at = datetime.now(UTC)
            session.flush()
            self._record(session, row, previous=current, actor=actor)
            return ModelVersion._of(row)

    def restore(self, ref: str | int, *, actor: str = "steward") -> ModelVersion:
        """Put a former production version (standby, retired or rolled back) back in production, once the ledger
        shows it in production before and its newest sign-off complete; refused otherwise, naming why."""
        with Session(self._engine) as session, session.begin():
            self._lock(session)
            row = session.scalar(self._select(ref).with_for_update())
            if row is None:
                raise RegistryError(UNKNOWN_MODEL.format(ref=ref))
            self._check_restorable(session, row)
            current = State(row.state)
            row.state = State.PRODUCTION.value
            row.updated_at = datetime.now(UTC)
            session.flush()
            self._record(session, row, previous=current, actor=actor, restored=True)
            return ModelVersion._of(row)

    def restorable(self, ref: str | int) -> ModelVersion:
        """`ref`'s version if `restore` would take it back to production now; raises `RegistryError` naming why not."""
        with Session(self._engine) as session:
            row = session.scalar(self._select(ref))
            if row is None:
                raise RegistryError(UNKNOWN_MODEL.format(ref=ref))
            self._check_restorable(session, row)
            return ModelVersion._of(row)

    def was_production(self, ref: str) -> bool:
        """Whether the ledger shows `ref` moved to production at some time (by the rollout or a restore)."""
        with Session(self._engine) as session:
            return self._was_production(session, ref)

    def _check_restorable(self, session: Session, row: ModelVersionRow) -> None:
        ref, current = f"{row.name}:v{row.version}", State(row.state)
        if current not in RESTORABLE:
            raise RegistryError(NOT_RESTORABLE.format(ref=ref, current=current))
        if not self._was_production(session, ref):
            raise RegistryError(NEVER_IN_PRODUCTION.format(ref=ref))
        outcome = self._signoff_outcome(session, ref)
        if outcome != "approved":
            raise RegistryError(SIGNOFF_LAPSED.format(ref=ref, outcome=outcome or "no sign-off on record"))

    def _was_production(self, session: Session, ref: str) -> bool:
        query = select(LedgerRow.payload).where(LedgerRow.subject == ref, LedgerRow.action == REGISTRY_TRANSITION)
        return any(
            isinstance(payload, dict) and payload.get("to") == State.PRODUCTION.value
            for payload in map(_loads_or_none, session.scalars(query))
        )

    def _signed_off(self, session: Session, ref: str) -> bool:
        """Whether the ledger shows the newest sign-off of `ref` complete: every approval its tier asked for,
        nothing ending it otherwise first. (A registry without a ledger approves nothing.)"""
        return self._signoff_outcome(session, ref) == "approved"

    def _signoff_outcome(self, session: Session, ref: str) -> str | None:
        """How the newest sign-off of `ref` stands in the ledger (None: none, or no ledger; "open": undecided)."""
        if self._ledger is None:
            return None
        query = select(LedgerRow).where(LedgerRow.subject == ref, LedgerRow.action.in_(SIGNOFF_ACTIONS))
        rows = session.scalars(query.order_by(LedgerRow.seq))  # the subject's sign-off records, not its history
        found = latest([Record._of(row) for row in rows], model=ref)
        return None if found is None else (found.outcome or "still open")

    def _lock(self, session: Session) -> None:
        # Taken before reading the row, so the state read and the ledger head are both current.
        if self._ledger is not None:
            self._ledger.lock(session)

    def _record(
        self,
        session: Session,
        row: ModelVersionRow,
        *,
        previous: State | None,
        actor: str,
        sealed: Seal | None = None,
        restored: bool = False,
    ) -> None:
        if self._ledger is None:
            return
        seal_payload = {} if sealed is None else {"model_md5": row.model_md5, "seal": sealed.payload()}
        self._ledger.append(
            actor=actor,
            action=REGISTRY_TRANSITION,
            subject=f"{row.name}:v{row.version}",
            payload={
                "from": None if previous is None else previous.value,
                "to": row.state,
                "model_tag": row.model_tag,
                "data_md5": row.data_md5,
            }
            | seal_payload
            | ({"restored": True} if restored else {}),
            session=session,
        )

    @staticmethod
    def _select(ref: str | int) -> Select[tuple[ModelVersionRow]]:
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            return select(ModelVersionRow).where(ModelVersionRow.id == int(ref))
        name, _, version = ref.partition(":v")
        query = select(ModelVersionRow).where(ModelVersionRow.name == name)
        if version:
            if not version.isdigit():
                return query.where(ModelVersionRow.version == -1)
            return query.where(ModelVersionRow.version == int(version))
        return query.order_by(ModelVersionRow.version.desc()).limit(1)
