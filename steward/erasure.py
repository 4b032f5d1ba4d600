"""Erasing a person's data on request (GDPR article 17) and retiring everyone's on schedule (retention), with the
ledger still verifiable afterwards (steward/personal.py says why it stays so).

- `erase`: every decision of one subject of one use case loses its pseudonym, inputs and protected attributes, each
  with its salt; its outcomes are deleted; its review cases lose the contest text and the reviewer's note (and the
  note's salt); the subject's rows in the retraining snapshots Steward assembled are removed. One `personal.erased`
  ledger record says how many of each, and why (never who).
- `apply_retention`: the same, kind by kind, for everything older than its period (`privacy.retention` in
  params.yaml), with one `retention.applied` record of the counts and cut-offs.
- On the record: each decision that loses its subject names the record that removed it (`erased_by`, the record's
  seq), and each removed groups or inputs row leaves a `removed_parts` row naming it. `erasure_problems` (in
  `steward ledger verify`) checks each record's counts against the rows naming it, that a retention record removed
  nothing younger than its cut-off, and that no decision lost its subject without a record; log_verify.py names a
  part removed with no record. So personal data is never removed off the record, and a decision cannot be
  retired early under cover of retention.

What stays: each decision's public fields (model, time, decision, probability, latency) and commitments, which say
nothing about a person once the data and its salts are gone, and the `review.decision` records (a decision and a
note's commitment). The DVC cache and backups are outside: see README "Personal data".
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Engine, delete, func, insert, select, update
from sqlalchemy.orm import Session

from steward.errors import NotFound, StewardError
from steward.ledger import PERSONAL_ERASED, RETENTION_APPLIED, Ledger, Record
from steward.personal import ERASED
from steward.predictions import OutcomeRow, PredictionGroupsRow, PredictionInputRow, PredictionRow, RemovedPartRow
from steward.reviews import ReviewDecisionRow, ReviewRow

ACTOR = "steward-privacy"
NO_SUBJECT = "no decision of {model_name} is about subject {subject!r} (or it was erased already): nothing to erase"
NO_REASON = "an erasure needs a reason: the request it answers (a ticket or article, never the person's name)"
REASON_NAMES_SUBJECT = (
    "the reason names the subject's id: the ledger keeps the reason for ever; give the request's reference"
)
COUNT_MISMATCH = (
    "{action} record {seq} counts {recorded} {kind}, but {found} name it as what removed them: personal data was "
    "removed off the record, or the record was forged"
)
TOO_YOUNG = (
    "retention record {seq} removed {count} {kind} logged after its cut-off {before}: retired early under cover of "
    "retention"
)
NO_RECORD = (
    "{count} decision(s) lost their subject with no erasure or retention record naming it: removed off the record"
)
UNKNOWN_RECORD = "{count} removed part(s) name ledger seq {seq}, which is no erasure or retention record"
T = TypeVar("T")
CHUNK = 500  # ids per IN (...) list: well under every database's bound on bound parameters
PARTS: dict[str, type[PredictionGroupsRow] | type[PredictionInputRow]] = {
    "groups": PredictionGroupsRow,
    "inputs": PredictionInputRow,
}


class ErasureError(StewardError, ValueError):
    """An erasure Steward refuses (no reason, a reason that names the person)."""


@dataclass(frozen=True)
class Removed:
    """What one erasure or retention run removed, kind by kind."""

    decisions: int = 0  # decisions that lost their subject (pseudonym)
    inputs: int = 0
    groups: int = 0
    outcomes: int = 0
    reviews: int = 0  # contest or referral texts
    notes: int = 0  # reviewers' notes (with their salts)
    snapshot_rows: int = 0  # rows of retraining snapshots under STEWARD_HOME

    def counts(self) -> dict[str, int]:
        return dict(self.__dict__)


def _rows(session: Session, statement: Any) -> int:
    """How many rows an UPDATE or DELETE changed."""
    return int(cast(CursorResult[Any], session.execute(statement)).rowcount)


def _chunks(values: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _next_seq(session: Session) -> int:
    """The seq the next ledger record will have (under the ledger's lock, nothing else can take it)."""
    head = Ledger.head_of(session)
    return 1 if head is None else head[0] + 1


def _unlink(session: Session, requests: Sequence[str], *, seq: int) -> int:
    """Remove the pseudonym (and its salt) of every decision of `requests` still linked, naming record `seq`."""
    done = 0
    for chunk in _chunks(requests):
        done += _rows(
            session,
            update(PredictionRow)
            .where(PredictionRow.request_id.in_(chunk), PredictionRow.subject_id != ERASED)
            .values(subject_id=ERASED, subject_salt=None, erased_by=seq),
        )
    return done


def _remove(session: Session, part: str, requests: Sequence[str], *, seq: int) -> int:
    """Delete the `part` rows (groups or inputs, with their salts) of `requests`, leaving a `removed_parts` row each."""
    table, done = PARTS[part], 0
    for chunk in _chunks(requests):
        held = list(session.scalars(select(table.request_id).where(table.request_id.in_(chunk))))
        if held:
            session.execute(insert(RemovedPartRow), [{"request_id": r, "part": part, "record": seq} for r in held])
            done += _rows(session, delete(table).where(table.request_id.in_(held)))
    return done


def _texts(session: Session, cases: Sequence[int]) -> dict[str, int]:
    """Blank the contest texts and the reviewers' notes (with their salts) of `cases`."""
    counts = {"reviews": 0, "notes": 0}
    for chunk in _chunks(cases):
        counts["reviews"] += _rows(
            session, update(ReviewRow).where(ReviewRow.id.in_(chunk), ReviewRow.reason != "").values(reason="")
        )
        counts["notes"] += _rows(
            session,
            update(ReviewDecisionRow)
            .where(ReviewDecisionRow.case_id.in_(chunk), ReviewDecisionRow.salt.is_not(None))
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
    record of it. Refuses a missing reason, a reason that names the subject, and a subject found nowhere. The
    decisions are found and changed under the ledger's lock, so a batch written meanwhile cannot slip between."""
    if not reason.strip():
        raise ErasureError(NO_REASON)
    if subject_id.strip() and subject_id.strip() in reason:
        raise ErasureError(REASON_NAMES_SUBJECT)
    files = [p for p in snapshots if p.is_file()]
    ids = {subject_id, pseudonym}
    in_files = sum(_scrub_csv(path, column=id_column, ids=ids, dry_run=True) for path in files)
    with Session(engine) as session, session.begin():
        ledger.lock(session)
        query = select(PredictionRow.request_id).where(
            PredictionRow.subject_id == pseudonym, PredictionRow.model_name == model_name
        )
        requests = sorted(set(session.scalars(query)))
        if not requests and not in_files:
            raise NotFound(NO_SUBJECT.format(model_name=model_name, subject=subject_id))
        seq = _next_seq(session)
        counts = {"decisions": _unlink(session, requests, seq=seq)}
        counts |= {part: _remove(session, part, requests, seq=seq) for part in PARTS}
        counts["outcomes"] = sum(
            _rows(session, delete(OutcomeRow).where(OutcomeRow.request_id.in_(chunk))) for chunk in _chunks(requests)
        )
        cases = [
            c
            for chunk in _chunks(requests)
            for c in session.scalars(select(ReviewRow.id).where(ReviewRow.request_id.in_(chunk)))
        ]
        removed = Removed(**counts, **_texts(session, cases), snapshot_rows=in_files)
        record = ledger.append(
            actor=actor,
            action=PERSONAL_ERASED,
            subject=f"erasure:{model_name}",
            payload={"model_name": model_name, "reason": reason.strip(), **removed.counts()},
            session=session,
        )
        assert record.seq == seq, (record.seq, seq)
    for path in files:  # after the record: an erasure that stops here is finished by running it again
        _scrub_csv(path, column=id_column, ids=ids)
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
    sooner. Retraining `snapshots` (rows of inputs and groups) older than the shorter of those two are deleted.
    One `retention.applied` record."""
    now = now or datetime.now(UTC)
    cutoff = {kind: (now - timedelta(days=d)).isoformat(timespec="microseconds") for kind, d in days.items()}
    ours = PredictionRow.model_name == model_name
    stale = min(cutoff["inputs"], cutoff["groups"])
    files = [p for p in snapshots if datetime.fromtimestamp(p.stat().st_mtime, UTC).isoformat() < stale]
    with Session(engine) as session, session.begin():
        ledger.lock(session)
        seq = _next_seq(session)

        def older(kind: str, *also: Any) -> list[str]:
            query = select(PredictionRow.request_id).where(ours, PredictionRow.ts < cutoff[kind], *also)
            return sorted(set(session.scalars(query)))

        counts = {"decisions": _unlink(session, older("decisions", PredictionRow.subject_id != ERASED), seq=seq)}
        for part, table in PARTS.items():
            held = PredictionRow.request_id.in_(select(table.request_id))
            counts[part] = _remove(session, part, sorted({*older(part, held), *older("decisions", held)}), seq=seq)
        mine = select(PredictionRow.request_id).where(ours)
        counts["outcomes"] = _rows(
            session, delete(OutcomeRow).where(OutcomeRow.ts < cutoff["outcomes"], OutcomeRow.request_id.in_(mine))
        )
        when = datetime.fromisoformat(cutoff["reviews"])
        cases = list(
            session.scalars(select(ReviewRow.id).where(ReviewRow.opened_at < when, ReviewRow.request_id.in_(mine)))
        )
        removed = Removed(**counts, **_texts(session, cases), snapshot_rows=sum(_count_rows(p) for p in files))
        record = ledger.append(
            actor=actor,
            action=RETENTION_APPLIED,
            subject=f"retention:{model_name}",
            payload={"model_name": model_name, "days": dict(days), "before": cutoff, **removed.counts()},
            session=session,
        )
        assert record.seq == seq, (record.seq, seq)
    for path in files:
        path.unlink(missing_ok=True)
    return removed, record


def erasure_problems(engine: Engine, ledger: Ledger) -> list[str]:
    """Whether every removal is on the record: each erasure or retention record's counts equal the rows naming it,
    a retention record removed nothing logged after its cut-offs, and no decision lost its subject unnamed."""
    records = {r.seq: r for r in ledger.iter_records(actions=(PERSONAL_ERASED, RETENTION_APPLIED))}
    problems = []
    with Session(engine) as session:
        unlinked: dict[int | None, int] = {
            seq: n
            for seq, n in session.execute(
                select(PredictionRow.erased_by, func.count())
                .where(PredictionRow.subject_id == ERASED)
                .group_by(PredictionRow.erased_by)
            )
        }
        parts = {
            (seq, part): n
            for seq, part, n in session.execute(
                select(RemovedPartRow.record, RemovedPartRow.part, func.count()).group_by(
                    RemovedPartRow.record, RemovedPartRow.part
                )
            )
        }
        young: dict[tuple[int, str], int] = {}
        for seq, record in records.items():
            before = record.payload.get("before") if record.action == RETENTION_APPLIED else None
            if not isinstance(before, dict):
                continue
            young[(seq, "decisions")] = (
                session.scalar(
                    select(func.count()).where(PredictionRow.erased_by == seq, PredictionRow.ts >= before["decisions"])
                )
                or 0
            )
            for part in PARTS:  # a part goes at its own cut-off, never later than its decision's subject
                limit = str(before.get(part, ""))
                young[(seq, part)] = (
                    session.scalar(
                        select(func.count(func.distinct(RemovedPartRow.request_id)))
                        .join(PredictionRow, PredictionRow.request_id == RemovedPartRow.request_id)
                        .where(RemovedPartRow.record == seq, RemovedPartRow.part == part, PredictionRow.ts >= limit)
                    )
                    or 0
                )
    if unlinked.get(None):
        problems.append(NO_RECORD.format(count=unlinked[None]))
    for seq in sorted(({s for s in unlinked if s is not None} | {s for s, _ in parts}) - set(records)):
        count = unlinked.get(seq, 0) + sum(n for (s, _), n in parts.items() if s == seq)
        problems.append(UNKNOWN_RECORD.format(count=count, seq=seq))
    for seq, record in records.items():
        found = {"decisions": unlinked.get(seq, 0)} | {part: parts.get((seq, part), 0) for part in PARTS}
        for kind, n in found.items():
            if int(record.payload.get(kind, 0)) != n:
                problems.append(
                    COUNT_MISMATCH.format(
                        action=record.action, seq=seq, recorded=record.payload.get(kind), kind=kind, found=n
                    )
                )
            if young.get((seq, kind)):
                before = record.payload["before"]
                problems.append(TOO_YOUNG.format(seq=seq, count=young[(seq, kind)], kind=kind, before=before.get(kind)))
    return problems


def _scrub_csv(path: Path, *, column: str, ids: set[str], dry_run: bool = False) -> int:
    """Remove the rows of `ids` (in `column`) from the CSV at `path`, atomically; how many (would) go."""
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
    if gone and not dry_run:
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
    parts = {k: v for k, v in removed.counts().items() if v}
    return ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in parts.items()) or "nothing"
