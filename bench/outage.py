"""Benchmark: the service under load while its database takes no writes for `--outage` seconds (30 by default).

scripts/rollout_fixture.py's production model is served with `bentoml serve` on 127.0.0.1; 4 clients send
ordinary synthetic applications throughout, each waiting out a Retry-After it is given. After `--before` seconds
another connection holds the SQLite database's write lock for `--outage` seconds (no batch of the prediction log
goes in), then lets go; the clients go on for `--after` seconds and the service is stopped with SIGTERM. Printed:
what the clients were answered in each phase, how long the service went on answering from its journal before it
refused (503 with Retry-After), how long after the lock was let go it answered again (no restart), and how many
acknowledged decisions are missing from the database at the end (the goal: none).

Usage: .venv/bin/python bench/outage.py [--outage 30] [--before 5] [--after 10]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--before", type=float, default=5.0)
    parser.add_argument("--after", type=float, default=10.0)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # scripts/ is not an installed package

    from deployments.local.bento_server import served
    from scripts.rollout_fixture import build
    from steward.params import load_params
    from tasks.demo.traffic import requests_of
    from usecases.german_credit.generator import generate_applications

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        env, _ = build(project)
        spec = load_params(project / "params.yaml").usecase
        bodies = [body for body, _ in requests_of(generate_applications(2_000, seed=98), label=spec.label.column)]
        answers: list[tuple[float, int, str | None]] = []  # (time, status, request id)
        stop = threading.Event()

        def send(k: int, url: str) -> None:
            with httpx.Client(timeout=30) as client:
                i = 0
                while not stop.is_set():
                    body = {**bodies[(k * 7919 + i) % len(bodies)], spec.id_column: f"o{k}-{i}"}
                    answer = client.post(f"{url}/predict", json=body, headers={"X-Client-Id": f"c{k}"})
                    ok = answer.status_code == 200
                    answers.append((time.monotonic(), answer.status_code, answer.json()["request_id"] if ok else None))
                    i += 1
                    if "Retry-After" in answer.headers:  # a well-behaved client waits as it is asked
                        stop.wait(float(answer.headers["Retry-After"]))

        with served(env, cwd=ROOT, log=project / "service.log") as service:
            clients = [threading.Thread(target=send, args=(k, service.url)) for k in range(4)]
            for client in clients:
                client.start()
            time.sleep(args.before)
            lock = sqlite3.connect(project / ".steward/steward.db", timeout=30, isolation_level=None)
            locked = time.monotonic()
            lock.execute("BEGIN EXCLUSIVE")
            time.sleep(args.outage)
            lock.execute("COMMIT")
            released = time.monotonic()
            lock.close()
            time.sleep(args.after)
            stop.set()
            for client in clients:
                client.join()
        with sqlite3.connect(project / ".steward/steward.db") as db:
            logged = {rid for (rid,) in db.execute("SELECT request_id FROM predictions")}

    if not answers:
        sys.exit("no request was answered: the clients failed (see the errors above)")
    phases = {
        "before": [a for a in answers if a[0] < locked],
        "outage": [a for a in answers if locked <= a[0] < released],
        "after": [a for a in answers if a[0] >= released],
    }
    print(f"{'phase':<8}{'seconds':>9}{'200':>8}{'503':>8}  other")
    for name, seconds in (("before", args.before), ("outage", args.outage), ("after", args.after)):
        counts = Counter(status for _, status, _ in phases[name])
        other = ", ".join(f"{n} x {status}" for status, n in sorted(counts.items()) if status not in (200, 503))
        print(f"{name:<8}{seconds:>9.0f}{counts[200]:>8}{counts[503]:>8}  {other or '-'}")
    first_refusal = min((t for t, status, _ in phases["outage"] if status == 503), default=None)
    back = min((t for t, status, _ in phases["after"] if status == 200), default=None)
    acknowledged = [rid for _, status, rid in answers if status == 200 and rid]
    lost = set(acknowledged) - logged
    print(
        f"answered from the journal for {first_refusal - locked:.1f} s of the outage, then 503 with Retry-After"
        if first_refusal
        else "never refused during the outage"
    )
    print(f"answering again {back - released:.1f} s after the lock was let go, without a restart" if back else "")
    print(f"lost {len(lost)} of {len(acknowledged)} acknowledged decisions (after SIGTERM)")


if __name__ == "__main__":
    main()
