"""The tamper-evident ledger: an append-only, hash-chained record of every governance decision.

Record `n` carries `hash = sha256(prev_hash || canonical JSON of {seq, ts, actor, action, subject, payload})`
and `prev_hash` = the hash of record `n - 1` (64 zeros for record 1), so editing, deleting or reordering
any record breaks the chain from that record on. Removing records from the *end*, or recomputing every hash after an
edit, leaves a valid chain: signed checkpoints of the head kept outside the database (`steward.anchor`) are
what catch that.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol, get_args

from sqlalchemy import Engine, Index, Integer, String, Text, event, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from steward.canonical import canonical_json
from steward.db import Base
from steward.errors import NotFound, StewardError

Action = Literal[
    "gate.verdict",
    "approval.requested",
    "approval.granted",
    "approval.declined",
    "approval.refused",
    "approval.escalated",
    "approval.expired",
    "approval.withdrawn",
    "registry.transition",
    "rollout.step",
    "rollout.analysis",
    "rollback",
    "review.decision",
    "retrain.requested",
    "decisions.batch",
    "decisions.interval",
    "policy.adopted",
    "model.refused",
    "routing.refused",
    "personal.erased",
    "retention.applied",
]
GATE_VERDICT: Final = "gate.verdict"
APPROVAL_REQUESTED: Final = "approval.requested"  # a sign-off opened: author, policy, evidence digest
APPROVAL_GRANTED: Final = "approval.granted"  # an approver approved
APPROVAL_DECLINED: Final = "approval.declined"  # an approver rejected or requested changes
APPROVAL_REFUSED: Final = "approval.refused"  # an answer that broke the policy, refused (the run kept waiting)
APPROVAL_ESCALATED: Final = "approval.escalated"  # a waiting period ran out; escalated, still waiting
APPROVAL_EXPIRED: Final = "approval.expired"  # a waiting period ran out; the model was rejected
APPROVAL_WITHDRAWN: Final = "approval.withdrawn"  # the run ended (crashed, cancelled, superseded) undecided
REGISTRY_TRANSITION: Final = "registry.transition"
ROLLOUT_STEP: Final = "rollout.step"
ROLLOUT_ANALYSIS: Final = "rollout.analysis"  # a rollout step's analysis: its ending, verdict and tests
ROLLBACK: Final = "rollback"
REVIEW_DECISION: Final = "review.decision"
RETRAIN_REQUESTED: Final = "retrain.requested"  # why a retraining run started, by whom, on what data
DECISIONS_BATCH: Final = "decisions.batch"  # a batch of served decisions: its count and digest (before intervals)
DECISIONS_INTERVAL: Final = "decisions.interval"  # an interval's decision batches: their count and Merkle root
POLICY_ADOPTED: Final = "policy.adopted"  # a governance policy put in force, signed by a policy owner
MODEL_REFUSED: Final = "model.refused"  # a model whose bytes or records did not verify, refused before loading
ROUTING_REFUSED: Final = "routing.refused"  # a service refused a routing row no ledger record vouches for
PERSONAL_ERASED: Final = "personal.erased"  # a subject's personal data erased on request: counts and reason
RETENTION_APPLIED: Final = "retention.applied"  # personal data past its retention period removed: counts, cut-offs
ACTIONS: Final[tuple[str, ...]] = get_args(Action)

GENESIS_HASH: Final = "0" * 64

UNKNOWN_ACTION = "unknown ledger action {action!r}; one of: {allowed}"
BAD_PAYLOAD = "a ledger payload must be a JSON object of strings, finite numbers, lists and objects: {error}"
BAD_RECORD = "line {line} of {path} is not a ledger record: {error}"
NO_EXPORT = "no ledger export at {path}"
CHAIN_OK = "chain intact: {count} records"
EMPTY_CHAIN = "the ledger is empty"
SEQ_BROKEN = "record {seq} is missing or out of order: found seq {found} in its place"
PREV_HASH_BROKEN = "record {seq}: prev_hash does not match the hash of the record before it"
HASH_BROKEN = "record {seq}: its hash does not match its contents (edited)"


_NOT_JSON: Final = object()  # no JSON text, and so no hash, has it


def _payload_or_unhashable(text: str) -> Any:
    """A stored payload for `verify`: its JSON, or if the text no longer parses, a value no record hash can
    be computed of (so the record is never intact, whatever hash was stored with it)."""
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


class LedgerError(StewardError, ValueError):
    """A record the ledger refuses to write or read."""


def record_hash(*, prev_hash: str, seq: int, ts: str, actor: str, action: str, subject: str, payload: Any) -> str:
    body = {"seq": seq, "ts": ts, "actor": actor, "action": action, "subject": subject, "payload": payload}
    return hashlib.sha256((prev_hash + canonical_json(body)).encode("utf-8")).hexdigest()


class LedgerRow(Base):
    """Every read filters by action, or by subject and action, then orders by seq: the two composite indexes
    answer each without touching other records (`make_engine` adds them to a database made before them)."""

    __tablename__ = "ledger"
    __table_args__ = (
        Index("ix_ledger_action_seq", "action", "seq"),
        Index("ix_ledger_subject_action_seq", "subject", "action", "seq"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(40))  # text, not DateTime: the hashed string must come back verbatim
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    subject: Mapped[str] = mapped_column(String(300))
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


@dataclass(frozen=True)
class Record:
    """One ledger record as plain data."""

    seq: int
    ts: str
    actor: str
    action: str
    subject: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> str:
        """One canonical JSON line (the export format)."""
        return canonical_json(
            {
                "seq": self.seq,
                "ts": self.ts,
                "actor": self.actor,
                "action": self.action,
                "subject": self.subject,
                "payload": self.payload,
                "prev_hash": self.prev_hash,
                "hash": self.hash,
            }
        )

    def intact(self) -> bool:
        """Whether `hash` recomputes from this record's own prev_hash and contents."""
        try:
            computed = record_hash(
                prev_hash=self.prev_hash,
                seq=self.seq,
                ts=self.ts,
                actor=self.actor,
                action=self.action,
                subject=self.subject,
                payload=self.payload,
            )
        except (TypeError, ValueError):  # a payload that is no longer JSON was altered too
            return False
        return computed == self.hash

    @classmethod
    def from_json(cls, text: str) -> Record:
        data = json.loads(text)
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    @classmethod
    def _of(cls, row: LedgerRow, loads: Callable[[str], Any] = json.loads) -> Record:
        return cls(
            seq=row.seq,
            ts=row.ts,
            actor=row.actor,
            action=row.action,
            subject=row.subject,
            payload=loads(row.payload),
            prev_hash=row.prev_hash,
            hash=row.hash,
        )


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking a chain; `first_bad_seq` is where trust ends (records before it are intact)."""

    ok: bool
    count: int
    first_bad_seq: int | None
    problem: str


def verify_records(records: Iterable[Record]) -> VerifyResult:
    """Check a chain in the order given: seq counts 1, 2, 3 ..., each prev_hash links, each hash matches.
    Reads to the end (`count` is every record), and reports the first bad one."""
    prev_hash, count, first = GENESIS_HASH, 0, None
    for expected, record in enumerate(records, start=1):
        count = expected
        if first is not None:
            continue
        if record.seq != expected:
            first = VerifyResult(False, 0, expected, SEQ_BROKEN.format(seq=expected, found=record.seq))
        elif record.prev_hash != prev_hash:
            first = VerifyResult(False, 0, expected, PREV_HASH_BROKEN.format(seq=expected))
        elif not record.intact():
            first = VerifyResult(False, 0, expected, HASH_BROKEN.format(seq=expected))
        prev_hash = record.hash
    if first is not None:
        return replace(first, count=count)
    return VerifyResult(True, count, None, CHAIN_OK.format(count=count) if count else EMPTY_CHAIN)


def read_jsonl(path: Path) -> list[Record]:
    """Records from an exported JSONL file, in file order (feed them to `verify_records`)."""
    if not path.is_file():
        raise NotFound(NO_EXPORT.format(path=path))
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(Record.from_json(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise LedgerError(BAD_RECORD.format(line=number, path=path, error=exc)) from None
    return records


def now_ts() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


PAGE: Final = 1000  # records per read when walking the whole chain: memory stays flat however long it is


class CheckpointHook(Protocol):
    """What the ledger tells after a commit (`steward.anchor.Checkpoints`): it may anchor the new head."""

    def after_commit(self, action: str) -> None: ...

    def if_due(self) -> None: ...


class Ledger:
    """The hash-chained `ledger` table in Steward's database; with `checkpoints`, its head is anchored outside
    it after each commit that calls for it (steward.anchor)."""

    def __init__(self, engine: Engine, *, checkpoints: CheckpointHook | None = None) -> None:
        self._engine = engine
        self.checkpoints = checkpoints

    @property
    def engine(self) -> Engine:
        return self._engine

    def append(
        self,
        *,
        actor: str,
        action: Action,
        subject: str,
        payload: dict[str, Any],
        session: Session | None = None,
    ) -> Record:
        """Add the next record; inside `session`'s transaction if given (it commits or rolls back with it)."""
        if action not in ACTIONS:
            raise LedgerError(UNKNOWN_ACTION.format(action=action, allowed=", ".join(ACTIONS)))
        if not isinstance(payload, dict):
            raise LedgerError(BAD_PAYLOAD.format(error=f"got {type(payload).__name__}"))
        try:
            payload_text = canonical_json(payload)
        except (TypeError, ValueError) as exc:
            raise LedgerError(BAD_PAYLOAD.format(error=exc)) from None
        if session is not None:
            if self.checkpoints is not None:  # after the caller's commit: a rolled-back record is never anchored
                hook = self.checkpoints
                event.listen(session, "after_commit", lambda _session: hook.after_commit(action), once=True)
            return self._append(session, actor, action, subject, payload_text)
        with Session(self._engine) as own, own.begin():
            record = self._append(own, actor, action, subject, payload_text)
        if self.checkpoints is not None:
            self.checkpoints.after_commit(action)
        return record

    def checkpoint_if_due(self) -> None:
        """Anchor the head if the newest checkpoint is older than its interval (a quiet system's heartbeat)."""
        if self.checkpoints is not None:
            self.checkpoints.if_due()

    def _append(self, session: Session, actor: str, action: str, subject: str, payload_text: str) -> Record:
        self.lock(session)
        last = session.execute(select(LedgerRow.seq, LedgerRow.hash).order_by(LedgerRow.seq.desc()).limit(1)).first()
        seq, prev_hash = (1, GENESIS_HASH) if last is None else (last.seq + 1, last.hash)
        ts = now_ts()
        payload = json.loads(payload_text)
        digest = record_hash(
            prev_hash=prev_hash, seq=seq, ts=ts, actor=actor, action=action, subject=subject, payload=payload
        )
        row = LedgerRow(
            seq=seq,
            ts=ts,
            actor=actor,
            action=action,
            subject=subject,
            payload=payload_text,
            prev_hash=prev_hash,
            hash=digest,
        )
        session.add(row)
        session.flush()
        return Record._of(row)

    @staticmethod
    def lock(session: Session) -> None:
        """Take the database write lock in `session`'s transaction, so reading the chain head and appending
        after it cannot interleave with another writer (two appenders would otherwise fork the chain)."""
        connection = session.connection()
        dialect = connection.dialect.name
        if dialect == "sqlite":
            dbapi = connection.connection.dbapi_connection
            # pysqlite opens its transaction lazily at the first write; if one is open this session has
            # written already and so holds the write lock. Otherwise open one that takes it now.
            if dbapi is not None and not dbapi.in_transaction:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif dialect == "postgresql":
            connection.exec_driver_sql("LOCK TABLE ledger IN SHARE ROW EXCLUSIVE MODE")
        # Elsewhere the primary key on seq still refuses a second record with the same seq.

    def records(
        self, *, subject: str | None = None, since_seq: int | None = None, actions: tuple[str, ...] = ()
    ) -> list[Record]:
        """Records in seq order, optionally about one subject, after `since_seq`, of some actions."""
        return list(self.iter_records(subject=subject, since_seq=since_seq, actions=actions))

    def iter_records(
        self,
        *,
        subject: str | None = None,
        since_seq: int | None = None,
        actions: tuple[str, ...] = (),
        until_seq: int | None = None,
        loads: Callable[[str], Any] = json.loads,
    ) -> Iterator[Record]:
        """`records`, streamed a page at a time by seq (keyset: each page starts after the last seq read), so
        memory stays flat however many match; with `until_seq`, none after it."""
        after = since_seq or 0
        while True:
            query = select(LedgerRow).where(LedgerRow.seq > after).order_by(LedgerRow.seq).limit(PAGE)
            if subject is not None:
                query = query.where(LedgerRow.subject == subject)
            if actions:
                query = query.where(LedgerRow.action.in_(actions))
            if until_seq is not None:
                query = query.where(LedgerRow.seq <= until_seq)
            with Session(self._engine) as session:
                page = [Record._of(row, loads) for row in session.scalars(query)]
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1].seq

    @staticmethod
    def head_of(session: Session) -> tuple[int, str] | None:
        """The newest record's (seq, hash) as `session` sees it (None: empty); one primary-key lookup."""
        last = session.execute(select(LedgerRow.seq, LedgerRow.hash).order_by(LedgerRow.seq.desc()).limit(1)).first()
        return None if last is None else (last.seq, last.hash)

    def head(self) -> tuple[int, str] | None:
        """The newest record's (seq, hash), or None when the ledger is empty."""
        with Session(self._engine) as session:
            return self.head_of(session)

    def hashes_at(self, seqs: Iterable[int]) -> dict[int, str]:
        """The stored hash of each of `seqs` that exists (primary-key lookups, a few hundred per query)."""
        wanted, found = sorted(set(seqs)), {}
        with Session(self._engine) as session:
            for start in range(0, len(wanted), 500):
                query = select(LedgerRow.seq, LedgerRow.hash).where(LedgerRow.seq.in_(wanted[start : start + 500]))
                found.update({row.seq: row.hash for row in session.execute(query)})
        return found

    def _pages(self) -> Iterator[Record]:
        """Every record in seq order, read a page at a time by seq range (never the whole table at once)."""
        return self.iter_records(loads=_payload_or_unhashable)

    def verify(self) -> VerifyResult:
        """Check the whole stored chain (see `verify_records`), a page at a time. A payload edited into text that
        is no longer JSON is named as an edit of its record, like any other edit, instead of failing the read."""
        return verify_records(self._pages())

    def export_jsonl(self, path: Path) -> int:
        """Write every record as one JSON line to `path` (atomically, streamed); returns the number of records."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        count = 0
        try:
            with os.fdopen(fd, "wb") as handle:
                for count, line in enumerate(self.jsonl_lines(), start=1):  # noqa: B007
                    handle.write(line)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return count

    def jsonl_lines(self, *, until_seq: int | None = None) -> Iterator[bytes]:
        """The export's bytes, one UTF-8 JSON line per record in seq order (through `until_seq`), streamed."""
        for record in self.iter_records(until_seq=until_seq):
            yield (record.to_json() + "\n").encode("utf-8")
