"""Benchmark: /predict of the Steward service (guards, routing, reason codes, review band, prediction log)
vs a bare BentoML service around the same model (bench/bare_service.py), both served by `bentoml serve`
on 127.0.0.1 in this run, one after the other on the same machine.

Model: gradient boosting (150 trees) on the use case params.yaml names, from scripts/serving_fixture.py in a temporary
STEWARD_HOME. Latency: one keep-alive client, --requests sequential requests (after 30 warm-up requests),
p50 and p99. Throughput: --clients concurrent clients for --seconds, each request with its own client id
(so the rate limit, which is per client, does not throttle the bench: the service trusts loopback as the proxy
that names them). Goals: p50 at most 1.3x the bare service's, throughput at least 0.75x the bare service's.
Usage: .venv/bin/python bench/serving.py [--requests 300] [--clients 8] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOAL_P50, GOAL_THROUGHPUT = 1.3, 0.75


def applications(n: int) -> list[dict]:
    """n request bodies: rows of the served use case's data without the label, a gap as null, fresh ids."""
    from steward.params import load_params
    from tasks.data.features import read_snapshot

    usecase = load_params(ROOT / "params.yaml").usecase
    rows = read_snapshot(ROOT / usecase.dataset.file).drop(columns=usecase.label.column)
    rows = rows.sample(n=n, replace=True, random_state=0).astype(object)
    records = rows.where(rows.notna(), None).to_dict("records")
    return [
        {**{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}, usecase.id_column: f"b{i}"}
        for i, r in enumerate(records)
    ]


def latency(url: str, bodies: list[dict], n: int) -> np.ndarray:
    times = []
    with httpx.Client() as client:
        for i in range(n + 30):
            body = bodies[i % len(bodies)]
            started = time.perf_counter()
            answer = client.post(url, json=body, headers={"X-Client-Id": f"lat{i}"}, timeout=30)
            elapsed = time.perf_counter() - started
            answer.raise_for_status()
            if i >= 30:
                times.append(elapsed * 1000)
    return np.array(times)


def throughput(url: str, bodies: list[dict], clients: int, seconds: float) -> tuple[float, int]:
    counts, failures = [0] * clients, [0] * clients
    stop = time.monotonic() + seconds

    def work(k: int) -> None:
        with httpx.Client() as client:
            i = 0
            while time.monotonic() < stop:
                body = bodies[(k * 7919 + i) % len(bodies)]
                answer = client.post(url, json=body, headers={"X-Client-Id": f"t{k}-{i}"}, timeout=30)
                counts[k] += answer.status_code == 200
                failures[k] += answer.status_code != 200
                i += 1

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds, sum(failures)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    from deployments.local.bento_server import served
    from tasks.demo.traffic import LOOPBACK_PROXY

    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "STEWARD_PROJECT_DIR": str(ROOT),
            "STEWARD_HOME": home,
            "BENTOML_HOME": f"{home}/bentoml",
            "BENTOML_DO_NOT_TRACK": "true",
            **LOOPBACK_PROXY,  # the clients below stand for devices behind a load balancer: one bucket each
        }
        made = subprocess.run(
            [sys.executable, str(ROOT / "scripts/serving_fixture.py")],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        refs = json.loads(made.stdout.strip().splitlines()[-1])
        from steward.db import make_engine
        from steward.ledger import Ledger
        from steward.registry import Registry
        from steward.routing import Routing, RoutingTable

        engine = make_engine(f"sqlite:///{home}/steward.db")
        routing = Routing(production=refs["production"])
        RoutingTable(engine, Ledger(engine)).set("credit-risk", routing, actor="bench", reason="bench")
        env["BENCH_MODEL_TAG"] = Registry(engine).get(refs["production"]).model_tag
        bodies = applications(1000)
        results = {}
        for name, target in (("bare BentoML", "bench.bare_service:Bare"), ("Steward", "deployments.service:Steward")):
            with served(env, cwd=ROOT, log=Path(home) / f"{target}.log", target=target) as service:
                url = f"{service.url}/predict"
                times = latency(url, bodies, args.requests)
                rate, failed = throughput(url, bodies, args.clients, args.seconds)
            results[name] = (float(np.percentile(times, 50)), float(np.percentile(times, 99)), rate, failed)
    print(f"{'service':<14}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'failed':>8}")
    for name, (p50, p99, rate, failed) in results.items():
        print(f"{name:<14}{p50:>9.1f}{p99:>9.1f}{rate:>9.1f}{failed:>8}")
    bare, ours = results["bare BentoML"], results["Steward"]
    p50_ratio, rate_ratio = ours[0] / bare[0], ours[2] / bare[2]
    p50_verdict = "met" if p50_ratio <= GOAL_P50 else "NOT met"
    rate_verdict = "met" if rate_ratio >= GOAL_THROUGHPUT else "NOT met"
    print(f"p50 ratio {p50_ratio:.2f}x (goal <= {GOAL_P50}x: {p50_verdict}); ", end="")
    print(f"throughput ratio {rate_ratio:.2f}x (goal >= {GOAL_THROUGHPUT}x: {rate_verdict})")


if __name__ == "__main__":
    main()
