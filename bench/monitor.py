"""Benchmark: Steward's input-drift report (tasks/monitor/drift.py) vs Evidently's data drift preset on the same
data, 1,000,000 reference rows and 1,000,000 current rows of 20 columns (12 numeric, 8 categorical),
six of them drifted (four numeric columns shifted by half a standard deviation or stretched, two
categorical mixes reversed), the rest drawn from the reference distribution again.

Both sides read the same two parquet files and are timed from the read to the per-column verdicts;
Evidently runs in its own virtual environment (.bench/evidently, which `make bench` creates) because it
does not import under pandas 3. The verdicts must agree column by column; the goal is Steward at least 3x
faster. Usage: .venv/bin/python bench/monitor.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / ".bench/evidently/bin/python"
GOAL = 3.0
NUMERIC = [f"n{i}" for i in range(12)]
CATEGORICAL = [f"c{i}" for i in range(8)]
LEVELS = ["a", "b", "c", "d", "e"]


def frame(rows: int, *, seed: int, drifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    for i, name in enumerate(NUMERIC):
        kind = i % 3
        values = (
            rng.normal(50, 10, rows)
            if kind == 0
            else rng.lognormal(3, 0.5, rows)
            if kind == 1
            else rng.gamma(2, 3, rows)
        )
        if drifted and i < 4:  # half a standard deviation up, or a 40 % stretch
            values = values + 0.5 * values.std() if i % 2 == 0 else values * 1.4
        columns[name] = values
    for i, name in enumerate(CATEGORICAL):
        p = np.array([0.4, 0.25, 0.15, 0.12, 0.08])
        if drifted and i < 2:
            p = p[::-1]
        columns[name] = np.array(LEVELS)[rng.choice(len(LEVELS), rows, p=p)]
    return pd.DataFrame(columns)


def ours(reference_path: Path, current_path: Path) -> tuple[float, dict[str, bool]]:
    from tasks.monitor.drift import Thresholds, drift
    from tasks.monitor.sketch import reference

    started = time.perf_counter()
    ref = reference(pd.read_parquet(reference_path), NUMERIC + CATEGORICAL)
    found = drift(pd.read_parquet(current_path), ref, thresholds=Thresholds())
    seconds = time.perf_counter() - started
    return seconds, {d.column: d.drifted for d in found}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    if not PEER.is_file():
        raise SystemExit(f"{PEER} is missing: `make bench` creates the Evidently environment")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        reference_path, current_path = folder / "reference.parquet", folder / "current.parquet"
        frame(args.rows, seed=1, drifted=False).to_parquet(reference_path)
        frame(args.rows, seed=2, drifted=True).to_parquet(current_path)
        (folder / "columns.json").write_text(json.dumps({"numeric": NUMERIC, "categorical": CATEGORICAL}))
        seconds, verdicts = ours(reference_path, current_path)
        peer = subprocess.run(
            [
                str(PEER),
                str(ROOT / "bench/evidently_peer.py"),
                str(reference_path),
                str(current_path),
                str(folder / "columns.json"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        theirs = json.loads(peer.stdout.strip().splitlines()[-1])
    print(f"{args.rows:,} reference rows and {args.rows:,} current rows x {len(NUMERIC) + len(CATEGORICAL)} columns")
    print(f"{'column':<8}{'Steward':>9}{'Evidently':>11}  Evidently's method")
    for column in NUMERIC + CATEGORICAL:
        print(f"{column:<8}{verdicts[column]!s:>9}{theirs['drifted'][column]!s:>11}  {theirs['methods'][column]}")
    agree = all(verdicts[c] == theirs["drifted"][c] for c in verdicts)
    ratio = theirs["seconds"] / seconds
    print(f"Steward {seconds:.1f} s, Evidently {theirs['seconds']:.1f} s (each from reading the files to the verdicts)")
    print(
        f"verdicts {'agree on every column' if agree else 'DISAGREE'}; speed-up {ratio:.1f}x "
        f"(goal >= {GOAL}x: {'met' if ratio >= GOAL and agree else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
