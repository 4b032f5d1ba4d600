"""Benchmark: erasing one person from a prediction log of --decisions decisions (default 1,000,000), sealed in
interval records as the service seals them (bench/ledger_scale.py builds it: real salts, commitments, Merkle roots
and ledger records). Timed, side by side:

  this     `steward erase`'s kernel (steward.erasure.erase): the person's pseudonym, inputs and groups removed with
           their salts, one `personal.erased` record; then `steward ledger verify`'s kernel (the chain, every
           interval root recomputed with every commitment still checkable, the erasure accounting)
  before   what erasure meant before commitments: the person's rows deleted from the log, then the same verify,
           which names the interval their deletion broke (the evidence and the erasure cannot both stand)

Usage: PYTHONPATH=. .venv/bin/python bench/erase.py [--decisions 1000000] [--db PATH]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.ledger_scale import build
from steward.db import make_engine
from steward.erasure import erase, erasure_problems
from steward.ledger import Ledger
from steward.log_verify import unmatched_batches


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = action()
    return value, time.perf_counter() - start


def verify(ledger: Ledger) -> list[str]:
    chain = ledger.verify()
    problems = [] if chain.ok else [chain.problem or "chain broken"]
    return problems + unmatched_batches(ledger.engine, ledger).problems + erasure_problems(ledger.engine, ledger)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=None, help="where to build (default: a temporary folder)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="erase-")) if args.db is None else args.db.parent
    path = args.db or folder / "steward.db"
    start = time.perf_counter()
    build(path, decisions=args.decisions, rate=1000, flush=0.1, interval=60.0)
    print(f"{args.decisions:,} decisions built in {time.perf_counter() - start:.0f} s ({path})", flush=True)
    before = folder / "before.db"
    with sqlite3.connect(path) as source, sqlite3.connect(before) as copy:
        source.backup(copy)  # WAL and all
    request = f"req-{args.decisions // 2:012d}"  # a person in the middle of the log
    with sqlite3.connect(path) as db:
        (subject,) = db.execute("SELECT subject_id FROM predictions WHERE request_id = ?", (request,)).fetchone()
    ledger = Ledger(make_engine(f"sqlite:///{path}"))
    problems, verify_first = timed(lambda: verify(ledger))
    assert problems == [], problems[:3]
    (removed, _), erase_seconds = timed(
        lambda: erase(
            ledger.engine,
            ledger,
            pseudonym=subject,
            subject_id="(bench)",
            model_name="credit-risk",
            reason="bench",
            actor="bench",
            id_column="applicant_id",
        )
    )
    after, verify_this = timed(lambda: verify(ledger))
    with sqlite3.connect(path) as db:
        left = db.execute("SELECT count(*) FROM predictions WHERE subject_id = ?", (subject,)).fetchone()[0]
        for table in ("prediction_inputs", "prediction_groups"):  # the parts, and the salts kept with them
            left += db.execute(f"SELECT count(*) FROM {table} WHERE request_id = ?", (request,)).fetchone()[0]
    old = Ledger(make_engine(f"sqlite:///{before}"))

    def delete() -> None:
        with sqlite3.connect(before) as db:
            for table in ("prediction_inputs", "prediction_groups", "predictions"):
                db.execute(f"DELETE FROM {table} WHERE request_id = ?", (request,))

    _, delete_seconds = timed(delete)
    broken, verify_before = timed(lambda: verify(old))
    print()
    print(f"{'':34}{'commitments (this)':>20}{'delete rows (before)':>22}")
    print(f"{'erase one person':34}{erase_seconds:>19.3f}s{delete_seconds:>21.3f}s")
    print(f"{'verify after':34}{verify_this:>19.3f}s{verify_before:>21.3f}s")
    print(f"{'verify passes after':34}{'yes' if not after else 'NO':>20}{'yes' if not broken else 'NO':>22}")
    print(f"{'traces of the person left':34}{left:>20}{0:>22}")
    print(f"{'verify before erasing':34}{verify_first:>19.3f}s")
    print(f"removed: {removed.counts()}")
    if broken:
        print(f"before: {broken[0][:160]}")
    if after:
        print(f"this: {after[0][:160]}")


if __name__ == "__main__":
    main()
