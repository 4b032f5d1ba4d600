"""Benchmark: how many acknowledged decisions a SIGKILL of the service loses (the goal: none).

The service answers a decision only once it is fsync'd to the replica's decision journal (steward/journal.py);
the prediction log ships the journal into the database every `serve.log_flush_seconds`, and a restart ships
what a kill left. Each round serves scripts/rollout_fixture.py's production model with `bentoml serve` on
127.0.0.1 (shipping what the previous round's kill left), sends ordinary synthetic applications from 4 threads
for `--seconds`, then kills the whole process group with SIGKILL. After the last round the journal is shipped
once more, and the request ids the clients were given are compared with the ids in the database. Also printed:
how many of each round's acknowledged decisions the database had not yet received at the kill (the ones only
the journal held, which a log acknowledging before it is durable would have lost).

Usage: .venv/bin/python bench/log_loss.py [--rounds 20] [--seconds 3]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))  # scripts/ is not an installed package

    from deployments.local.bento_server import served
    from scripts.rollout_fixture import build
    from steward.params import load_params
    from tasks.demo.traffic import Traffic, requests_of
    from usecases.german_credit.generator import generate_applications

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        env, _ = build(project)
        spec = load_params(project / "params.yaml").usecase
        live = requests_of(generate_applications(20_000, seed=97), label=spec.label.column)
        print(f"{'round':>5}{'acknowledged':>14}{'only in the journal at the kill':>33}")
        acknowledged: list[str] = []
        for round_ in range(args.rounds):
            with served(env, cwd=ROOT, log=project / f"service-{round_}.log") as service:
                traffic = Traffic(service.url, live, id_column=spec.id_column, threads=4).start()
                time.sleep(args.seconds)
                killed_at = time.time()
                service.kill()
                tally = traffic.stop()
            these = [rid for rid, t in tally.acknowledged if t <= killed_at]
            journal_only = len(set(these) - logged(project))
            acknowledged += these
            print(f"{round_:>5}{len(these):>14}{journal_only:>33}")
        ship(project)
        lost = set(acknowledged) - logged(project)
        print(
            f"lost {len(lost)} of {len(acknowledged)} acknowledged decisions over {args.rounds} SIGKILLs under load "
            f"({len(lost) / max(len(acknowledged), 1):.2%})"
        )


def logged(project: Path) -> set[str]:
    with sqlite3.connect(project / ".steward/steward.db") as db:
        return {rid for (rid,) in db.execute("SELECT request_id FROM predictions")}


def ship(project: Path) -> None:
    """What the last kill left in the journals, into the database (as the next start of the service would)."""
    from steward.db import make_engine
    from steward.ledger import Ledger
    from steward.predictions import ship_journals

    engine = make_engine(f"sqlite:///{project / '.steward/steward.db'}")
    for base in sorted((project / ".steward/journal").glob("*")):
        ship_journals(engine, Ledger(engine), base)


if __name__ == "__main__":
    main()
