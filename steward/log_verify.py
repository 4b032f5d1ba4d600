"""The prediction log against what the ledger vouches for: `steward ledger verify` recomputes every sealed
interval's Merkle root (and each old per-batch digest) from the log and names what differs, what is not yet sealed,
what is overdue and what was written around the ledger; `proof` shows one decision is in its interval's record
without the others (steward/merkle.py). The writing side, and the sealing, are steward/predictions.py.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from steward.canonical import canonical_json
from steward.errors import NotFound
from steward.ledger import DECISIONS_BATCH, DECISIONS_INTERVAL, Ledger, LedgerRow, Record
from steward.merkle import Step, leaf_hash, merkle_path, merkle_root, root_of_path
from steward.personal import ERASED, commitment
from steward.predictions import (
    PUBLIC,
    SEAL_GRACE_SECONDS,
    Decision,
    PredictionGroupsRow,
    PredictionInputRow,
    PredictionRow,
    RemovedPartRow,
    UnsealedBatchRow,
    batch_digest,
    interval_subject,
    ordered_leaves,
    sealed,
)


def batch_rows(engine: Engine, batch: int) -> list[Decision]:
    """The decisions of one written batch as logged, their personal parts joined back (empty once erased)."""
    query = (
        select(PredictionRow, PredictionInputRow.inputs, PredictionGroupsRow.groups)
        .outerjoin(PredictionInputRow, PredictionInputRow.request_id == PredictionRow.request_id)
        .outerjoin(PredictionGroupsRow, PredictionGroupsRow.request_id == PredictionRow.request_id)
        .where(PredictionRow.batch == batch)
    )
    fields = [name for name in Decision.__dataclass_fields__ if name not in ("inputs", "groups")]
    with Session(engine) as session:
        return [
            Decision(
                **{name: getattr(row, name) for name in fields},
                groups=groups or {},
                inputs=(inputs or {}) if row.role != "shadow" else {},
            )
            for row, inputs, groups in session.execute(query)
        ]


BATCH_CHANGED = (
    "decisions batch {batch} (ledger seq {seq}): the prediction log holds {count} decision(s) with digest "
    "{found}..., the ledger recorded {recorded} with digest {digest}...: the log was edited"
)
INTERVAL_CHANGED = (
    "decisions interval of batches {first}..{last} (ledger seq {seq}): the prediction log holds {count} decision(s) "
    "in {batches} batch(es) with root {found}..., the ledger recorded {recorded} in {recorded_batches} with root "
    "{root}...: the log was edited"
)
INTERVAL_OVERLAPS = "decisions interval of batches {first}..{last} (ledger seq {seq}) overlaps batches sealed before it"
BATCH_UNRECORDED = (
    "prediction log batch {batch} is in no decisions.interval (or decisions.batch) ledger record and is not "
    "waiting for its seal: written around the ledger"
)
UNSEALED_CHANGED = "unsealed batch {batch}: its decisions do not match the root written with them: the log was edited"
OVERDUE = (
    "{count} batch(es) from {first} (written {ts}) were due to be sealed by {seal_by} and are not: the writer "
    "stopped before sealing them (its next start, or any replica's next write, seals them) or they were written "
    "around the ledger"
)
NOT_YET_SEALED = "{count} decision(s) in {batches} batch(es) from {first} are not yet sealed (their interval is open)"
NOT_SEALED = "decision {request_id} ({role}) is logged but not yet sealed in a ledger record: ask again after {seal_by}"
NO_DECISION = "no logged decision {request_id} ({role})"

PART_EDITED = (
    "decision {request_id} ({role}): its {part} does not match the commitment sealed with it: the log was edited"
)
PART_UNSALTED = "decision {request_id} ({role}) holds its {part} without its salt: the log was edited"
PART_UNSEALED = "decision {request_id} ({role}) holds a {part} that no commitment in its leaf covers: added afterwards"
PART_GONE = (
    "decision {request_id} ({role}): its {part} is gone, and no erasure or retention record removed it: "
    "personal data was removed off the record"
)


def _decision_rows(
    session: Session, first: int, last: int, problems: list[str]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(batch, sealed decision: `steward.predictions.sealed`) for every decision of batches first..last, through
    the batch index. Each personal part still held is recomputed against its commitment with its own salt (a
    mismatch, or a part held without its salt, goes to `problems`); a part removed on the record (an `erased_by`
    record, a `removed_parts` row) counts by its stored commitment, one removed off the record is a problem."""
    table = PredictionRow.__table__
    groups, inputs = PredictionGroupsRow.__table__, PredictionInputRow.__table__
    removed_groups, removed_inputs = RemovedPartRow.__table__.alias(), RemovedPartRow.__table__.alias()
    query = (
        select(
            *(table.c[name] for name in PUBLIC),
            table.c.subject_id,
            table.c.subject_salt,
            table.c.erased_by,
            table.c.commitments,
            table.c.batch,
            groups.c.groups,
            groups.c.salt,
            removed_groups.c.record,
            inputs.c.inputs,
            inputs.c.salt,
            removed_inputs.c.record,
        )
        .select_from(
            table.outerjoin(groups, groups.c.request_id == table.c.request_id)
            .outerjoin(inputs, inputs.c.request_id == table.c.request_id)
            .outerjoin(
                removed_groups,
                (removed_groups.c.request_id == table.c.request_id) & (removed_groups.c.part == "groups"),
            )
            .outerjoin(
                removed_inputs,
                (removed_inputs.c.request_id == table.c.request_id) & (removed_inputs.c.part == "inputs"),
            )
        )
        .where(table.c.batch >= first, table.c.batch <= last)
    )
    width = len(PUBLIC)
    for row in session.execute(query.execution_options(yield_per=5000)):
        decision = dict(zip(PUBLIC, row[:width], strict=True))
        subject, subject_salt, erased_by, committed, batch = row[width : width + 5]
        g_value, g_salt, g_removed, i_value, i_salt, i_removed = row[width + 5 :]
        held = {
            "subject": (subject if subject != ERASED else None, subject_salt, erased_by),
            "groups": (g_value, g_salt, g_removed),
            "inputs": (i_value if decision["role"] != "shadow" else None, i_salt, i_removed),
        }
        for part, (value, salt, removed) in held.items():
            if value is None:
                if part in committed and removed is None:
                    problems.append(PART_GONE.format(part=part, **decision))
            elif part not in committed:
                problems.append(PART_UNSEALED.format(part=part, **decision))
            elif salt is None:
                problems.append(PART_UNSALTED.format(part=part, **decision))
            elif commitment(salt, part, value) != committed[part]:
                problems.append(PART_EDITED.format(part=part, **decision))
        yield batch, sealed(decision, committed)


def _batch_leaves(session: Session, first: int, last: int, problems: list[str]) -> dict[int, list[str]]:
    """Each batch's leaves in first..last, in tree order: (request id, role)."""
    grouped: dict[int, list[dict[str, Any]]] = {}
    for batch, decision in _decision_rows(session, first, last, problems):
        grouped.setdefault(batch, []).append(decision)
    return {batch: ordered_leaves(grouped[batch]) for batch in sorted(grouped)}


class BatchCheck(NamedTuple):
    """What `unmatched_batches` found: `checked` sealed batches, every problem, and what waits to be sealed."""

    checked: int
    problems: list[str]
    intervals: int = 0
    decisions: int = 0
    unsealed: str | None = None


def unmatched_batches(engine: Engine, ledger: Ledger, *, now: datetime | None = None) -> BatchCheck:
    """Recompute each interval's Merkle root (and each older per-batch record's digest) from the prediction log
    (`steward ledger verify`). Streams: interval records a page at a time through the action index, the decisions
    of one interval at a time through the batch index; memory holds one interval and the batch numbers.

    A logged batch that no record covers is "not yet sealed" when it has its unsealed entry and is within its
    interval (reported, not a problem), "overdue" when its seal time has passed by SEAL_GRACE_SECONDS, and
    "written around the ledger" when it has no entry (or lies inside the sealed ranges)."""
    problems: list[str] = []
    covered: list[tuple[int, int]] = []
    checked = intervals = decisions = 0
    with Session(engine) as session:
        for record in ledger.iter_records(actions=(DECISIONS_BATCH, DECISIONS_INTERVAL)):
            if record.action == DECISIONS_BATCH:
                problems += _legacy_batch(engine, record)
                number = int(record.payload.get("batch", 0))
                covered.append((number, number))
                checked += 1
                continue
            first, last = int(record.payload.get("first_batch", 0)), int(record.payload.get("last_batch", -1))
            if covered and first <= covered[-1][1]:
                problems.append(INTERVAL_OVERLAPS.format(first=first, last=last, seq=record.seq))
            covered.append((first, last))
            leaves = _batch_leaves(session, first, last, problems)
            count = sum(len(v) for v in leaves.values())
            found = merkle_root([merkle_root(v) for v in leaves.values()])
            payload = record.payload
            if (found, count, len(leaves)) != (payload.get("root"), payload.get("count"), payload.get("batches")):
                problems.append(
                    INTERVAL_CHANGED.format(
                        first=first,
                        last=last,
                        seq=record.seq,
                        count=count,
                        batches=len(leaves),
                        found=found[:12],
                        recorded=payload.get("count"),
                        recorded_batches=payload.get("batches"),
                        root=str(payload.get("root"))[:12],
                    )
                )
            checked, intervals, decisions = checked + len(leaves), intervals + 1, decisions + count
        logged = session.scalars(select(PredictionRow.batch).distinct().order_by(PredictionRow.batch))
        outside = [b for b in logged if not _within(b, covered)]
        unsealed = {row.batch: row for row in session.scalars(select(UnsealedBatchRow))}
        waiting = [b for b in outside if b in unsealed]
        problems += [BATCH_UNRECORDED.format(batch=b) for b in outside if b not in unsealed]
        for batch in waiting:
            own = _batch_leaves(session, batch, batch, problems).get(batch, [])
            if merkle_root(own) != unsealed[batch].root or len(own) != unsealed[batch].count:
                problems.append(UNSEALED_CHANGED.format(batch=batch))
    note = None
    if waiting:
        now = now or datetime.now(UTC)
        late = [b for b in waiting if datetime.fromisoformat(unsealed[b].seal_by) + GRACE < now]
        if late:
            row = unsealed[late[0]]
            problems.append(OVERDUE.format(count=len(late), first=row.batch, ts=row.ts, seal_by=row.seal_by))
        count = sum(unsealed[b].count for b in waiting)
        note = NOT_YET_SEALED.format(count=count, batches=len(waiting), first=waiting[0])
    return BatchCheck(checked, problems, intervals, decisions, note)


GRACE = timedelta(seconds=SEAL_GRACE_SECONDS)


def _within(batch: int, covered: list[tuple[int, int]]) -> bool:
    # covered is in seq order, and seals cover increasing batch numbers: bisect on the first batch
    at = bisect.bisect_right(covered, (batch, float("inf"))) - 1
    return at >= 0 and covered[at][0] <= batch <= covered[at][1]


def _legacy_batch(engine: Engine, record: Record) -> list[str]:
    """A `decisions.batch` record (one per batch, before intervals): its digest recomputed from the log."""
    number = int(record.payload.get("batch", 0))
    rows = batch_rows(engine, number)
    found = batch_digest(rows) if rows else ""
    if found == record.payload.get("digest") and len(rows) == record.payload.get("count"):
        return []
    return [
        BATCH_CHANGED.format(
            batch=number,
            seq=record.seq,
            count=len(rows),
            found=found[:12],
            recorded=record.payload.get("count"),
            digest=str(record.payload.get("digest"))[:12],
        )
    ]


@dataclass(frozen=True)
class DecisionProof:
    """That one decision is in the ledger: the decision as sealed (public fields and commitments), its Merkle path
    to the root of its interval's `decisions.interval` record, and that record. Showable to the person it concerns
    without any other decision, and saying nothing about anyone without the salts."""

    decision: dict[str, Any]
    path: list[Step]
    root: str
    record: Record

    def verify(self) -> bool:
        """The path leads from the decision to the root, the record names that root, and the record is intact."""
        return (
            root_of_path(leaf_hash(self.decision), self.path) == self.root == self.record.payload.get("root")
            and self.record.intact()
        )

    def to_json(self) -> str:
        return canonical_json(
            {
                "decision": self.decision,
                "path": [list(step) for step in self.path],
                "root": self.root,
                "record": json.loads(self.record.to_json()),
            }
        )


def proof(engine: Engine, request_id: str, role: str = "production") -> DecisionProof:
    """The Merkle proof of one logged decision: one primary-key read for its batch, one index seek for its
    interval record (subjects sort like batches), and the interval's decisions to rebuild the tree from the log."""
    with Session(engine) as session:
        batch = session.scalar(
            select(PredictionRow.batch).where(PredictionRow.request_id == request_id, PredictionRow.role == role)
        )
        if batch is None:
            raise NotFound(NO_DECISION.format(request_id=request_id, role=role))
        row = session.scalars(
            select(LedgerRow)
            .where(LedgerRow.action == DECISIONS_INTERVAL, LedgerRow.subject >= interval_subject(batch))
            .order_by(LedgerRow.subject)
            .limit(1)
        ).first()
        record = Record._of(row) if row is not None else None
        first = int(record.payload["first_batch"]) if record is not None else batch + 1
        if record is None or first > batch:
            pending = session.get(UnsealedBatchRow, batch)
            seal_by = pending.seal_by if pending is not None else "its seal"
            raise NotFound(NOT_SEALED.format(request_id=request_id, role=role, seal_by=seal_by))
        grouped: dict[int, list[dict[str, Any]]] = {}
        for number, decision in _decision_rows(session, first, int(record.payload["last_batch"]), []):
            grouped.setdefault(number, []).append(decision)
    batches = sorted(grouped)
    ordered = sorted(grouped[batch], key=lambda d: (d["request_id"], d["role"]))
    index = next(i for i, d in enumerate(ordered) if (d["request_id"], d["role"]) == (request_id, role))
    leaves = [leaf_hash(d) for d in ordered]
    roots = [merkle_root(ordered_leaves(grouped[b])) for b in batches]
    path = merkle_path(leaves, index) + merkle_path(roots, batches.index(batch))
    return DecisionProof(ordered[index], path, merkle_root(roots), record)
