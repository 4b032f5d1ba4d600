"""The prediction log: every decision served (and every shadow answer), written in batches off the
response path; the ledger vouches for them once per interval, not once per batch.

Sealing: each batch (every `flush_seconds`) is written with an `unsealed_batches` row (its count, the Merkle root
of its decisions, and the time by which it is due to be sealed) in one transaction. The first write or tick
at least `ledger_interval_seconds` after the oldest unsealed batch seals every unsealed batch, from any replica,
in one `decisions.interval` ledger record (first and last batch, count, Merkle root over the batch roots:
steward/merkle.py) and deletes their rows, in the same transaction as the last batch (or on its own when the
log is quiet). So the ledger grows by one record per interval whatever the traffic, and a crash between batch
and seal loses nothing: the rows and their unsealed entries are in the database together, and the next
write, tick or stop of any replica seals them. `steward ledger verify` (`unmatched_batches`) recomputes every
interval's root from the log, calls batches with an unsealed entry "not yet sealed" while they are within
their interval (a problem once overdue), and any other batch not in a sealed range "written around the ledger".
Between write and seal (at most an interval, 60 s by default, shorter than the anchor's 300 s checkpoint), a
batch is vouched for by the database and the replica's journal only, as the ledger's own unanchored tail is.
steward/log_verify.py re-checks the log against the seals and gives one decision's Merkle proof.

Rows are keyed by model name (`model_name`, the use case's `usecase.model_name`): one database holds the
decisions of every use case, and each reader (monitoring, the rollout's analysis, retraining) reads one
model name's rows. `subject_id` is who the decision is about as a pseudonym (steward/personal.py), never the id
as sent. Personal data is kept apart and sealed by commitment: the protected attributes in `prediction_groups`,
the application's other fields in `prediction_inputs` (both keyed by request), and each decision's Merkle leaf
covers its public fields and the salted commitments of its pseudonym, groups and inputs (`sealed`), so erasing a
person (steward/erasure.py) leaves every root verifiable.

Durability: the service logs with a journal (steward/journal.py), so a decision is answered only once it is
fsync'd on local disk, and a batch reaches the database within `flush_seconds` when the database is there.
A kill (SIGKILL, out of memory) loses nothing acknowledged: the next start ships what the database lacks, exactly
once. When the database falls behind or away, `unready` says so and the service refuses decisions (503) rather
than answer what it cannot record. bench/log_loss.py measures it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Engine, Float, Integer, String, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from steward.canonical import canonical_json
from steward.db import Base
from steward.errors import StewardError
from steward.journal import SEGMENT_SECONDS, JournalError, JournalInUse, claim
from steward.ledger import DECISIONS_INTERVAL, Ledger, Record, now_ts
from steward.merkle import TREE, leaf_hash, merkle_root
from steward.personal import commitment, new_salt
from steward.reviews import open_in

LOG_ACTOR = "steward-serving"
ERROR = "error"  # the decision of a request the model raised on: logged for monitoring, never answered
BEHIND = "the decision log is {waiting} decisions behind the database (at most {most} may wait)"
STALLED = "the decision log has not reached the database for {seconds:.1f} s"
LEDGER_INTERVAL_SECONDS = 60.0  # serve.ledger_interval_seconds: one decisions.interval record per this, at most
SEAL_GRACE_SECONDS = 30.0  # past its interval and this, an unsealed batch is overdue in `steward ledger verify`
ADOPT_SECONDS = 30.0  # how often a replica ships the journals of replicas that died and did not come back
logger = logging.getLogger("steward.predictions")


class OutcomeRow(Base):
    __tablename__ = "outcomes"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(20))
    ts: Mapped[str] = mapped_column(String(40))


class PredictionInputRow(Base):
    """What the applicant sent, once per request (production's and the shadow's answers share it): the
    model's inputs without the id and the protected attributes. Monitoring and retraining read it. Its salt
    (steward/personal.py) goes with it."""

    __tablename__ = "prediction_inputs"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    salt: Mapped[str] = mapped_column(String(64))


class PredictionGroupsRow(Base):
    """The protected attributes of a request (UseCase.logged_groups), apart from the application: only the
    fairness readers join them (the rollout's analysis, fairness monitoring, retraining's mitigation)."""

    __tablename__ = "prediction_groups"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    groups: Mapped[dict[str, Any]] = mapped_column(JSON)
    salt: Mapped[str] = mapped_column(String(64))


class RemovedPartRow(Base):
    """A request's groups or inputs removed on the record: by the `personal.erased` or `retention.applied`
    ledger record `record` (its seq). `steward ledger verify` takes a missing part only with one of these."""

    __tablename__ = "removed_parts"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    part: Mapped[str] = mapped_column(String(12), primary_key=True)
    record: Mapped[int] = mapped_column(Integer, index=True)


class PredictionRow(Base):
    __tablename__ = "predictions"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(12), primary_key=True)  # production, canary or shadow
    ts: Mapped[str] = mapped_column(String(40), index=True)
    model_name: Mapped[str] = mapped_column(String(200), index=True)  # the use case's model name
    model: Mapped[str] = mapped_column(String(300), index=True)  # the registry ref `name:vN`
    data_md5: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str] = mapped_column(String(64), index=True)  # the subject's pseudonym; "" once removed
    decision: Mapped[str] = mapped_column(String(12))
    probability: Mapped[float] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)
    commitments: Mapped[dict[str, str]] = mapped_column(JSON)  # part → salted commitment (steward/personal.py)
    batch: Mapped[int] = mapped_column(Integer, index=True)
    subject_salt: Mapped[str | None] = mapped_column(String(64))  # the pseudonym's commitment's; None once removed
    erased_by: Mapped[int | None] = mapped_column(Integer, index=True)  # the record that removed the subject


@dataclass(frozen=True)
class Decision:
    """One served (or shadow) decision as it enters the log."""

    request_id: str
    role: str
    ts: str
    model_name: str
    model: str
    data_md5: str
    subject_id: str  # the pseudonym (steward/personal.py)
    decision: str
    probability: float
    latency_ms: float
    groups: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)  # the request's non-protected fields (not the shadow's)

    def parts(self) -> dict[str, Any]:
        """Its personal parts as stored (steward.personal.PARTS): the pseudonym, and the groups and inputs when it
        has any (a shadow's answer has no inputs of its own)."""
        held = {
            "subject": self.subject_id,
            "groups": self.groups,
            "inputs": {} if self.role == "shadow" else self.inputs,
        }
        return {part: value for part, value in held.items() if value}


PUBLIC: tuple[str, ...] = (
    "request_id",
    "role",
    "ts",
    "model_name",
    "model",
    "data_md5",
    "decision",
    "probability",
    "latency_ms",
)  # a decision's fields that say nothing about who it is about: in its Merkle leaf as they are


def sealed(decision: dict[str, Any], commitments: dict[str, str]) -> dict[str, Any]:
    """What a decision's Merkle leaf hashes: its public fields and its personal parts' commitments."""
    return {name: decision[name] for name in PUBLIC} | {"commitments": dict(commitments)}


def ordered_leaves(decisions: list[dict[str, Any]]) -> list[str]:
    """The leaves of sealed decisions (`sealed`) in tree order: (request id, role)."""
    return [leaf_hash(d) for d in sorted(decisions, key=lambda d: (d["request_id"], d["role"]))]


def interval_subject(last_batch: int) -> str:
    """An interval record's subject: named by its last batch, zero-padded so subjects sort like batch numbers
    (`proof` finds a batch's interval with one index seek)."""
    return f"predictions:interval-{last_batch:012d}"


def interval_payload(first: int, last: int, roots: list[str], *, count: int, opened: str) -> dict[str, Any]:
    """A `decisions.interval` record's payload: batches first..last, their decisions' count, and the Merkle root
    over the batch roots (in batch order)."""
    return {
        "first_batch": first,
        "last_batch": last,
        "batches": len(roots),
        "count": count,
        "root": merkle_root(roots),
        "opened": opened,
        "tree": TREE,
    }


def batch_digest(decisions: list[Decision]) -> str:
    """sha256 of the canonical JSON list of the batch's decisions, ordered by (request id, role)."""
    ordered = sorted(decisions, key=lambda d: (d.request_id, d.role))
    return hashlib.sha256(canonical_json([asdict(d) for d in ordered]).encode("utf-8")).hexdigest()


class JournalPositionRow(Base):
    """The last sequence number of each decision journal (steward/journal.py) shipped into this database:
    written in the same transaction as the rows it covers."""

    __tablename__ = "journal_positions"

    journal: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)


class UnsealedBatchRow(Base):
    """A written batch no `decisions.interval` record covers yet: written with its rows, deleted by the seal."""

    __tablename__ = "unsealed_batches"

    batch: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(40))  # when written
    seal_by: Mapped[str] = mapped_column(String(40))  # ts + its writer's ledger interval
    count: Mapped[int] = mapped_column(Integer)
    root: Mapped[str] = mapped_column(String(64))  # batch_root of its decisions


@dataclass(frozen=True)
class Written:
    """One batch `flush` wrote, and the interval record sealed with it (None while its interval is open)."""

    batch: int
    count: int
    root: str
    sealed: Record | None


class LogUnavailable(StewardError, RuntimeError):
    """The log cannot take a decision now (behind, cut off from the database, or its journal failed): the
    service answers 503 with Retry-After rather than a decision it cannot record."""


@dataclass(frozen=True)
class _Pending:
    seq: int  # in the journal (0 without one)
    decision: Decision
    review: str | None  # why a review case opens for it (a referral), in the transaction that writes it


class PredictionLog:
    """Decisions buffered and written as batches by a background thread (`start`/`stop`) or by `flush`.

    With a `journal` folder (the use case's, `Settings.journal_dir`; the replica's journal in it is `replica`'s, or
    the first free one), `add` returns only once the decision is fsync'd to the journal (steward/journal.py):
    the service answers only what is durable, and what the database has not yet received is shipped from the
    journal after a crash, exactly once (the journal position is written with the rows). `unready` says why
    the log cannot take decisions now: more than `backlog` not yet in the database, or nothing shipped for
    `stall_seconds` while decisions wait."""

    def __init__(
        self,
        engine: Engine,
        ledger: Ledger,
        *,
        flush_seconds: float = 0.1,
        journal: Path | None = None,
        replica: str | None = None,
        backlog: int = 20_000,
        stall_seconds: float = 5.0,
        ledger_interval_seconds: float = LEDGER_INTERVAL_SECONDS,
        journal_segment_seconds: float = SEGMENT_SECONDS,
    ) -> None:
        self._engine = engine
        self._interval = ledger_interval_seconds
        self._ledger = ledger
        self._flush_seconds = flush_seconds
        self._backlog = backlog
        self._stall_seconds = stall_seconds
        self._buffer: list[_Pending] = []
        self._behind_since: float | None = None  # since when decisions have waited with nothing shipped
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        segments = {"segment_seconds": journal_segment_seconds}
        self.journal = None if journal is None else claim(journal, replica, durable=self._durable, **segments)
        self._shipped = 0  # the last journal seq this process shipped
        self._recovering = [] if self.journal is None else [_pending(s, e) for s, e in self.journal.recovered]

    def add(self, decision: Decision, *, review: str | None = None, durable: bool = True) -> None:
        """Log `decision` (and open a review case for it, saying `review`, when it is written). With a journal and
        `durable`, returns once it is on disk; LogUnavailable if the log cannot take it."""
        if self.journal is None:
            self._durable([(0, {"decision": asdict(decision), "review": review})])
            return
        problem = self.unready() if durable else None
        if problem is not None:
            raise LogUnavailable(problem)
        try:
            self.journal.append([{"decision": asdict(decision), "review": review}], wait=durable)
        except JournalError as failed:
            raise LogUnavailable(str(failed)) from failed

    def _durable(self, numbered: list[tuple[int, dict[str, Any]]]) -> None:
        with self._lock:
            if not self._buffer and self._behind_since is None:
                self._behind_since = time.monotonic()
            self._buffer += [_pending(seq, entry) for seq, entry in numbered]

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer) + len(self._recovering)

    def unready(self) -> str | None:
        """Why the log cannot take a decision now, or None."""
        with self._lock:
            waiting, since = len(self._buffer), self._behind_since
        if waiting >= self._backlog:
            return BEHIND.format(waiting=waiting, most=self._backlog)
        if since is not None and time.monotonic() - since > self._stall_seconds:
            return STALLED.format(seconds=time.monotonic() - since)
        return None

    def served(self, request_id: str) -> bool:
        """Whether `request_id` was answered (buffered or written) by production or canary.

        Holds the write lock, so a batch is never between the buffer and the database while it looks."""
        with self._write_lock:
            with self._lock:
                waiting = [p.decision for p in (*self._recovering, *self._buffer)]
            if any(d.request_id == request_id and d.role != "shadow" and d.decision != ERROR for d in waiting):
                return True
            with Session(self._engine) as session:
                query = select(PredictionRow.request_id).where(
                    PredictionRow.request_id == request_id,
                    PredictionRow.role != "shadow",
                    PredictionRow.decision != ERROR,
                )
                return session.scalar(query.limit(1)) is not None

    def record_outcome(self, request_id: str, outcome: str, *, ts: str) -> str:
        """Store the true outcome of a served decision once; returns the outcome on record (the first)."""
        with Session(self._engine) as session, session.begin():
            existing = session.get(OutcomeRow, request_id)
            if existing is not None:
                return existing.outcome
            session.add(OutcomeRow(request_id=request_id, outcome=outcome, ts=ts))
            return outcome

    def flush(self) -> Written | None:
        """Write what is buffered as one batch, sealing the interval if it is due; None if nothing was buffered."""
        with self._write_lock:
            if self._recovering:
                self._recover()
            with self._lock:
                taken, self._buffer = self._buffer, []
            if not taken:
                return None
            try:
                written = self._write(taken)
            except BaseException:
                with self._lock:  # keep them for the next attempt, in order
                    self._buffer[:0] = taken
                raise
            with self._lock:
                self._behind_since = time.monotonic() if self._buffer else None
            if self.journal is not None:
                self._shipped = taken[-1].seq
                self.journal.shipped(self._shipped)
            return written

    def seal(self, *, force: bool = True) -> Record | None:
        """Seal every unsealed batch in one `decisions.interval` record (only if the interval is due, unless
        `force`); returns it, or None when nothing was sealed."""
        with self._write_lock:
            if not force and not self._due_without_lock():
                return None
            with Session(self._engine) as session, session.begin():
                self._ledger.lock(session)
                return self._seal_in(session, force=force)

    def _due_without_lock(self) -> bool:
        with Session(self._engine) as session:
            oldest = session.scalar(select(func.min(UnsealedBatchRow.ts)))
        return oldest is not None and self._due(oldest)

    def _due(self, oldest: str) -> bool:
        return (datetime.now(UTC) - datetime.fromisoformat(oldest)).total_seconds() >= self._interval

    def _seal_in(self, session: Session, *, force: bool) -> Record | None:
        """Inside a transaction holding the ledger lock: the interval record over every unsealed batch."""
        rows = list(session.scalars(select(UnsealedBatchRow).order_by(UnsealedBatchRow.batch)))
        opened = min((r.ts for r in rows), default="")
        if not rows or not (force or self._due(opened)):
            return None
        first, last = rows[0].batch, rows[-1].batch
        record = self._ledger.append(
            actor=LOG_ACTOR,
            action=DECISIONS_INTERVAL,
            subject=interval_subject(last),
            payload=interval_payload(
                first, last, [r.root for r in rows], count=sum(r.count for r in rows), opened=opened
            ),
            session=session,
        )
        session.execute(delete(UnsealedBatchRow).where(UnsealedBatchRow.batch <= last))
        return record

    def _recover(self) -> None:
        """Put back in front of the buffer what the journal holds and the database does not (after a crash)."""
        assert self.journal is not None
        with Session(self._engine) as session:
            row = session.get(JournalPositionRow, self.journal.id)
        shipped = row.seq if row is not None else 0
        self._shipped = shipped  # what the journal may let go once nothing newer waits
        with self._lock:
            self._buffer[:0] = [p for p in self._recovering if p.seq > shipped]
            self._recovering = []
            if self._buffer and self._behind_since is None:
                self._behind_since = time.monotonic()

    def _write(self, pending: list[_Pending]) -> Written:
        with Session(self._engine) as session, session.begin():
            self._ledger.lock(session)
            number = (session.scalar(select(func.max(PredictionRow.batch))) or 0) + 1
            requests = sorted({p.decision.request_id for p in pending})
            salts = {"groups": _salts(session, PredictionGroupsRow, requests)}
            salts["inputs"] = _salts(session, PredictionInputRow, requests)
            leaves = []
            for p in pending:
                row = asdict(p.decision)
                parts = p.decision.parts()
                own = {"subject": new_salt()}  # each part's salt: a request's groups and inputs keep theirs
                for part, table in (("groups", PredictionGroupsRow), ("inputs", PredictionInputRow)):
                    if part not in parts:
                        continue
                    if p.decision.request_id not in salts[part]:  # the request's first answer stores the part
                        salts[part][p.decision.request_id] = new_salt()
                        value = {"request_id": p.decision.request_id, part: parts[part]}
                        session.add(table(**value, salt=salts[part][p.decision.request_id]))
                    own[part] = salts[part][p.decision.request_id]
                committed = {part: commitment(own[part], part, value) for part, value in parts.items()}
                del row["inputs"], row["groups"]
                session.add(PredictionRow(**row, commitments=committed, batch=number, subject_salt=own["subject"]))
                leaves.append(sealed(row, committed))
                if p.review is not None:
                    open_in(session, kind="referral", request_id=p.decision.request_id, reason=p.review)
            if self.journal is not None:
                session.merge(JournalPositionRow(journal=self.journal.id, seq=pending[-1].seq))
            root, ts = merkle_root(ordered_leaves(leaves)), now_ts()
            due = datetime.fromisoformat(ts) + timedelta(seconds=self._interval)
            seal_by = due.isoformat(timespec="microseconds")
            session.add(UnsealedBatchRow(batch=number, ts=ts, seal_by=seal_by, count=len(pending), root=root))
            session.flush()
            return Written(number, len(pending), root, self._seal_in(session, force=False))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write whatever is still buffered; with a journal, what the database does not
        take now stays in the journal for the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self.flush()
            self.seal()  # the open interval ends with the process; the next start opens a new one
        except Exception:
            if self.journal is None:
                raise
            logger.exception("the database did not take the last decisions; they wait in %s", self.journal.path)
        finally:
            if self.journal is not None:
                self.journal.close()

    def _run(self) -> None:
        adopted = 0.0
        while not self._stop.wait(self._flush_seconds):
            try:
                if self.flush() is None:
                    self.seal(force=False)  # a quiet log still seals its last batches when their interval ends
                    if self.journal is not None and self._shipped:
                        self.journal.shipped(self._shipped)  # and lets its shipped decisions go
                self._ledger.checkpoint_if_due()  # a service gone quiet still anchors its last batches
                if self.journal is not None and time.monotonic() - adopted > ADOPT_SECONDS:
                    adopted = time.monotonic()
                    ship_journals(self._engine, self._ledger, self.journal.path.parent)  # replicas that died
            except Exception:
                continue


def _salts(session: Session, table: Any, requests: list[str]) -> dict[str, str]:
    """The salts of the rows `table` (groups or inputs) already holds for `requests` (a shadow's answer written
    after production's, in another batch, commits to the same stored part with the same salt)."""
    found: dict[str, str] = {}
    for start in range(0, len(requests), 500):
        chunk = requests[start : start + 500]
        found |= {
            r: salt
            for r, salt in session.execute(select(table.request_id, table.salt).where(table.request_id.in_(chunk)))
        }
    return found


def ship_journals(engine: Engine, ledger: Ledger, base: Path) -> int:
    """Ship every journal under `base` that no live replica holds (left by a replica that died and did not come
    back) into the database; returns how many decisions that wrote."""
    shipped = 0
    for folder in sorted(p for p in base.glob("*") if p.is_dir()):
        try:
            orphan = PredictionLog(engine, ledger, journal=base, replica=folder.name)
        except JournalInUse:
            continue
        try:
            written = orphan.flush()
        finally:
            orphan.stop()
        shipped += written.count if written is not None else 0
    return shipped


def _pending(seq: int, entry: dict[str, Any]) -> _Pending:
    return _Pending(seq, Decision(**entry["decision"]), entry.get("review"))
