"""Benchmark: the ledger at scale. A SQLite database with --decisions logged decisions (default 10,000,000), served
at --rate decisions/s by one replica, written in 0.1 s batches and sealed once per --interval (60 s) in a
`decisions.interval` record, with a few hundred governance records (sign-offs, registry transitions, policy
adoptions, rollout steps) spread through the chain. Then, timed:
  verify      `steward ledger verify`'s kernel: the chain (Ledger.verify, a page at a time) and every interval's
              Merkle root recomputed from the prediction log (log_verify.unmatched_batches)
  approvals   `steward approvals`' ledger read: every sign-off record, through the (action, seq) index
  sign-off    a sign-off's ledger reads: the policy adoptions, every sign-off record, the model's own sign-off
              records since its request (subject, action, seq), its registry transitions
  proof       one decision's Merkle proof (log_verify.proof) and its check
and the ledger's size per million decisions (rows, and bytes of the table and its indexes from SQLite's dbstat),
beside the per-batch scheme it replaces (one `decisions.batch` record per 0.1 s batch of the same traffic),
built and read the same way.

Rows are bulk-inserted with executemany in interval-sized chunks (the fast path); each part's salt, each
decision's commitments, each batch's Merkle root and each interval's record are made with the real functions
(steward.personal, steward.predictions.sealed, steward.merkle, Ledger.append) over exactly the decisions
inserted, so verify checks real commitments and roots. bench/erase.py builds its log with `build`.
Usage: PYTHONPATH=. .venv/bin/python bench/ledger_scale.py [--decisions 10000000] [--rate 1000] [--db PATH]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from steward.canonical import canonical_json
from steward.db import make_engine
from steward.ledger import (
    APPROVAL_GRANTED,
    APPROVAL_REQUESTED,
    DECISIONS_BATCH,
    DECISIONS_INTERVAL,
    GENESIS_HASH,
    POLICY_ADOPTED,
    REGISTRY_TRANSITION,
    ROLLOUT_STEP,
    Ledger,
    now_ts,
    record_hash,
)
from steward.log_verify import proof, unmatched_batches
from steward.merkle import leaf_hash, merkle_root
from steward.personal import commitment, new_salt
from steward.predictions import LOG_ACTOR, interval_payload, interval_subject, sealed
from steward.signoff import SIGNOFF_ACTIONS

COLUMNS = ("request_id", "role", "ts", "model_name", "model", "data_md5", "subject_id", "decision")
COLUMNS += ("probability", "latency_ms")  # the predictions table's columns in order, then the rest
MODELS = 50  # governance: a model version per this many intervals' worth of sign-offs


def _decision(n: int, batch_ts: str) -> dict[str, Any]:
    return {
        "request_id": f"req-{n:012d}",
        "role": "production",
        "ts": batch_ts,
        "model_name": "credit-risk",
        "model": "credit-risk:v1",
        "data_md5": "d" * 32,
        "subject_id": f"p-{n:040x}",  # a pseudonym
        "decision": "approve" if n % 3 else "decline",
        "probability": (n % 997) / 997,
        "latency_ms": 1.0 + (n % 13) / 10,
        "groups": {"sex": "female" if n % 2 else "male"},
        "inputs": {"amount": n % 20_000, "duration_months": 6 + n % 48},
    }


def build(path: Path, *, decisions: int, rate: int, flush: float, interval: float) -> Ledger:
    engine = make_engine(f"sqlite:///{path}")
    ledger = Ledger(engine)
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA synchronous=OFF")
    per_batch, per_interval = max(1, round(rate * flush)), max(1, round(interval / flush))
    n = batch = intervals = 0
    start = time.perf_counter()
    while n < decisions:
        rows, inputs, groups, roots = [], [], [], []
        first = batch + 1
        for _ in range(per_interval):
            if n >= decisions:
                break
            batch += 1
            ts = now_ts()
            chunk = [_decision(i, ts) for i in range(n, min(n + per_batch, decisions))]
            n += len(chunk)
            leaves = []
            for d in chunk:
                salts = {part: new_salt() for part in ("subject", "groups", "inputs")}
                parts = {"subject": d["subject_id"], "groups": d["groups"], "inputs": d["inputs"]}
                committed = {part: commitment(salts[part], part, value) for part, value in parts.items()}
                leaves.append((d["request_id"], d["role"], leaf_hash(sealed(d, committed))))
                row = (*(d[name] for name in COLUMNS), json.dumps(committed), batch, salts["subject"], None)
                rows.append(row)
                inputs.append((d["request_id"], json.dumps(d["inputs"]), salts["inputs"]))
                groups.append((d["request_id"], json.dumps(d["groups"]), salts["groups"]))
            roots.append(merkle_root([leaf for _, _, leaf in sorted(leaves)]))
        raw.executemany("INSERT INTO predictions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        raw.executemany("INSERT INTO prediction_inputs VALUES (?,?,?)", inputs)
        raw.executemany("INSERT INTO prediction_groups VALUES (?,?,?)", groups)
        raw.commit()
        intervals += 1
        ledger.append(
            actor=LOG_ACTOR,
            action=DECISIONS_INTERVAL,
            subject=interval_subject(batch),
            payload=interval_payload(first, batch, roots, count=len(rows), opened=rows[0][2]),
        )
        _governance(ledger, intervals)
        if intervals % 20 == 0:
            print(f"  built {n:,} decisions, {intervals} intervals, {time.perf_counter() - start:.0f} s", flush=True)
    raw.close()
    return ledger


def _governance(ledger: Ledger, interval: int) -> None:
    """A few governance records per interval: a rollout step; every so often a model's sign-off and transitions."""
    model = f"credit-risk:v{interval // MODELS + 2}"
    ledger.append(actor="rollout", action=ROLLOUT_STEP, subject=model, payload={"interval": interval})
    if interval % MODELS == 1:
        if interval == 1:
            ledger.append(actor="owner", action=POLICY_ADOPTED, subject="governance", payload={"n": interval})
        ledger.append(actor="flow", action=APPROVAL_REQUESTED, subject=model, payload={"n": interval})
        ledger.append(actor="flow", action=REGISTRY_TRANSITION, subject=model, payload={"to": "staging"})
    if interval % MODELS == 2:
        ledger.append(actor="risk", action=APPROVAL_GRANTED, subject=model, payload={"n": interval})


def baseline(path: Path, *, decisions: int, rate: int, flush: float) -> sqlite3.Connection:
    """The per-batch scheme's ledger for the same traffic: one decisions.batch record per batch (fast path:
    the chain computed here with the real record_hash and executemany'd)."""
    engine = make_engine(f"sqlite:///{path}")
    engine.dispose()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA synchronous=OFF")
    per_batch = max(1, round(rate * flush))
    batches = -(-decisions // per_batch)
    prev, rows = GENESIS_HASH, []
    for number in range(1, batches + 1):
        count = min(per_batch, decisions - (number - 1) * per_batch)
        first_id, last_id = (number - 1) * per_batch, (number - 1) * per_batch + count - 1
        payload = {
            "batch": number,
            "count": count,
            "digest": leaf_hash({"batch": number}),  # a sha256 like the real digest
            "first_request_id": f"req-{first_id:012d}",
            "last_request_id": f"req-{last_id:012d}",
        }
        ts, subject = now_ts(), f"predictions:batch-{number}"
        digest = record_hash(
            prev_hash=prev, seq=number, ts=ts, actor=LOG_ACTOR, action=DECISIONS_BATCH, subject=subject, payload=payload
        )
        rows.append((number, ts, LOG_ACTOR, DECISIONS_BATCH, subject, canonical_json(payload), prev, digest))
        prev = digest
        if len(rows) == 50_000 or number == batches:
            raw.executemany("INSERT INTO ledger VALUES (?,?,?,?,?,?,?,?)", rows)
            raw.commit()
            rows = []
    return raw


def ledger_bytes(connection: sqlite3.Connection) -> tuple[int, int]:
    """(rows, bytes) of the ledger table and its indexes, from SQLite's page statistics."""
    rows = connection.execute("SELECT count(*) FROM ledger").fetchone()[0]
    names = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'ledger'")]
    size = connection.execute(
        f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({','.join('?' * len(names))})", names
    ).fetchone()[0]
    return rows, int(size or 0)


def timed(label: str, action: Callable[[], Any], results: dict[str, float]) -> Any:
    start = time.perf_counter()
    value = action()
    results[label] = time.perf_counter() - start
    return value


def reads(ledger: Ledger, results: dict[str, float], prefix: str) -> None:
    model = "credit-risk:v2"
    timed(f"{prefix}approvals", lambda: ledger.records(actions=SIGNOFF_ACTIONS), results)

    def sign_off() -> None:
        ledger.records(actions=(POLICY_ADOPTED,))
        ledger.records(actions=SIGNOFF_ACTIONS)
        ledger.records(subject=model, since_seq=0, actions=SIGNOFF_ACTIONS)
        ledger.records(subject=model, actions=(REGISTRY_TRANSITION,))

    timed(f"{prefix}sign-off", sign_off, results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=10_000_000)
    parser.add_argument("--rate", type=int, default=1000, help="decisions per second, one replica")
    parser.add_argument("--flush", type=float, default=0.1, help="serve.log_flush_seconds")
    parser.add_argument("--interval", type=float, default=60.0, help="serve.ledger_interval_seconds")
    parser.add_argument("--db", type=Path, default=None, help="where to build (default: a temporary folder)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ledger-scale-")) if args.db is None else args.db.parent
    path = args.db or folder / "steward.db"
    print(
        f"{args.decisions:,} decisions at {args.rate}/s: {args.flush} s batches, one interval record per "
        f"{args.interval:g} s; database {path}",
        flush=True,
    )
    start = time.perf_counter()
    ledger = build(path, decisions=args.decisions, rate=args.rate, flush=args.flush, interval=args.interval)
    print(f"built in {time.perf_counter() - start:.0f} s", flush=True)
    results: dict[str, float] = {}
    chain = timed("verify: chain", ledger.verify, results)
    check = timed("verify: interval roots", lambda: unmatched_batches(ledger.engine, ledger), results)
    assert chain.ok and not check.problems, (chain, check.problems[:3])
    reads(ledger, results, "")
    shown = timed("proof of one decision", lambda: proof(ledger.engine, f"req-{args.decisions // 2:012d}"), results)
    assert shown.verify()
    connection = sqlite3.connect(path)
    rows, size = ledger_bytes(connection)
    old = baseline(folder / "baseline.db", decisions=args.decisions, rate=args.rate, flush=args.flush)
    old_rows, old_size = ledger_bytes(old)
    old_ledger = Ledger(make_engine(f"sqlite:///{folder / 'baseline.db'}"))
    old_results: dict[str, float] = {}
    timed("verify: chain", old_ledger.verify, old_results)
    reads(old_ledger, old_results, "")
    millions = args.decisions / 1_000_000
    print()
    print(f"{'':32}{'intervals (this)':>20}{'per-batch (before)':>22}")
    sealed = connection.execute("SELECT count(*) FROM ledger WHERE action = ?", (DECISIONS_INTERVAL,)).fetchone()[0]
    print(f"{'ledger rows (all)':32}{rows:>20,}{old_rows:>22,}")
    print(f"{'  of them decision records':32}{sealed:>20,}{old_rows:>22,}")
    print(f"{'decision records per 1M':32}{sealed / millions:>20,.1f}{old_rows / millions:>22,.1f}")
    print(f"{'ledger rows (all) per 1M':32}{rows / millions:>20,.1f}{old_rows / millions:>22,.1f}")
    print(f"{'ledger bytes per 1M decisions':32}{size / millions:>20,.0f}{old_size / millions:>22,.0f}")
    print(f"{'ledger bytes per day at rate':32}{size / args.decisions * args.rate * 86400:>20,.0f}", end="")
    print(f"{old_size / args.decisions * args.rate * 86400:>22,.0f}")
    for label, seconds in results.items():
        before = f"{old_results[label]:>21.3f}s" if label in old_results else f"{'(not built)':>22}"
        print(f"{label:32}{seconds:>19.3f}s{before}")
    print(f"{check.intervals} intervals, {check.checked:,} batches, {check.decisions:,} decisions re-verified")
    print("(per-batch column: its ledger only, no prediction rows: its decision re-verification is not timed)")


if __name__ == "__main__":
    main()
