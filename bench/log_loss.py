"""Benchmark: how many acknowledged decisions a SIGKILL of the service loses, and how old they were.

The prediction log writes in batches every `serve.log_flush_seconds` (0.1 s) off the response path, so a
decision is acknowledged before it is durable; this measures the window that trade leaves. Each round
serves scripts/rollout_fixture.py's production model with `bentoml serve` on 127.0.0.1, sends ordinary
synthetic applications from 4 threads for `--seconds`, then kills the whole process group with SIGKILL
and compares the request ids the clients were given with the ids in the log.

Usage: .venv/bin/python bench/log_loss.py [--rounds 5] [--seconds 5]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
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
        print(f"{'round':>5}{'acknowledged':>14}{'lost':>6}{'oldest lost, ms':>17}")
        losses, ages, total = [], [], 0
        for round_ in range(args.rounds):
            with served(env, cwd=ROOT, log=project / f"service-{round_}.log") as service:
                traffic = Traffic(service.url, live, id_column=spec.id_column, threads=4).start()
                time.sleep(args.seconds)
                killed_at = time.time()
                service.kill()
                tally = traffic.stop()
            acknowledged = [(rid, t) for rid, t in tally.acknowledged if t <= killed_at]
            with sqlite3.connect(project / ".steward/steward.db") as db:
                logged = {rid for (rid,) in db.execute("SELECT request_id FROM predictions")}
            lost = [(killed_at - t) * 1000 for rid, t in acknowledged if rid not in logged]
            total += len(acknowledged)
            losses.append(len(lost))
            ages += lost
            print(f"{round_:>5}{len(acknowledged):>14}{len(lost):>6}{max(lost, default=0):>17.0f}")
        print(
            f"lost {sum(losses)} of {total} acknowledged decisions ({sum(losses) / max(total, 1):.2%}); "
            f"mean {np.mean(losses):.1f} per kill; the oldest was acknowledged {max(ages, default=0):.0f} ms "
            f"before the kill (flush interval 100 ms)"
        )


if __name__ == "__main__":
    main()
