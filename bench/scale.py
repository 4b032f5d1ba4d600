"""Benchmark: the audits at scale. Wall time and peak memory of each audit on --rows synthetic rows (default one
and ten million), beside the path it replaced, measured in the same run.

Data: German-credit-like applications (usecases/german_credit/generator.py, bias 0.3 against women) with the use
case's own sensitive attributes and intersections (usecase.yaml: sex, age_group, foreign_worker, sex x
age_group), scored by a logistic regression on the numeric columns fitted on the first 20,000 rows, approve at
P(good) >= params.yaml's evaluate.threshold. Generating and scoring are untimed.
Stages (STAGES below):
  fairness   tasks.audit.fairness.audit: every attribute and intersection, --boot resamples
  data_bias  tasks.data.data_bias.data_bias: the same groups' base rates, --boot resamples
  (drift, issue 18 item 2, adds its rows to STAGES)
Before: fairlearn MetricFrame computing the same point figures (fairness: count, positives and the six rates;
data bias: count, positives, base rate) for every attribute and intersection, on the text of each row, which is
what the fairness audit did besides its bootstrap until its point figures came from the counts
(tests/unit/tasks/audit/metricframe.py, the implementation the tests compare with). It runs at the smallest
--rows; at larger ones only if its time there, scaled by rows, is within --budget seconds.
Each measurement runs in a fresh process that first loads the rows. Peak memory is that process's peak
resident set during the stage (VmHWM, reset through /proc/self/clear_refs as the stage starts) minus its
resident set then: the memory the stage needs on top of its input.
Usage: PYTHONPATH=. .venv/bin/python bench/scale.py [--rows 1000000,10000000] [--boot 1000] [--budget 120]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from steward.params import Params, load_params
from tasks.audit.bootstrap import audited
from tasks.audit.fairness import audit
from tasks.data.data_bias import data_bias
from tasks.data.features import LABEL, to_feature_frame
from usecases.german_credit.generator import generate_applications

PROJECT = Path(__file__).resolve().parents[1]
USECASE = "german_credit"
GOAL = 30.0  # seconds: the fairness audit of ten million rows, every attribute and intersection (issue 18)
MEMORY = re.compile(r"^(VmHWM|VmRSS):\s+(\d+) kB$", re.MULTILINE)


def _params() -> Params:
    """params.yaml as the stages read it, for the German use case."""
    return load_params(PROJECT / "params.yaml", usecase=USECASE)


def _memory() -> dict[str, int]:
    """This process's peak and current resident set, in bytes."""
    return {name: int(kb) * 1024 for name, kb in MEMORY.findall(Path("/proc/self/status").read_text())}


def _fairness(frame: pd.DataFrame, params: Params, n_boot: int) -> None:
    uc, options = params.usecase, params.fairness
    audit(
        frame[LABEL].to_numpy(),
        frame["proba"].to_numpy(),
        frame.drop(columns=[LABEL, "proba"]),
        threshold=params.evaluate.threshold,
        n_boot=n_boot,
        ci_level=options.ci_level,
        min_group_size=options.min_group_size,
        seed=options.seed,
        attributes=uc.sensitive,
        intersections=uc.intersections,
    )


def _fairness_before(frame: pd.DataFrame, params: Params, n_boot: int) -> None:
    from tests.unit.tasks.audit.metricframe import fairness_by_group

    y, proba = frame[LABEL].to_numpy(), frame["proba"].to_numpy()
    decision = (proba >= params.evaluate.threshold).astype(np.int64)
    for columns in audited(params.usecase.sensitive, params.usecase.intersections):
        fairness_by_group(y, decision, proba, frame[columns])


def _data_bias(frame: pd.DataFrame, params: Params, n_boot: int) -> None:
    uc, options = params.usecase, params.data_bias
    data_bias(
        frame.drop(columns=["proba"]),
        attributes=uc.sensitive,
        intersections=uc.intersections,
        favourable=str(uc.label.favourable),
        n_boot=n_boot,
        ci_level=options.ci_level,
        min_group_size=options.min_group_size,
        seed=options.seed,
    )


def _data_bias_before(frame: pd.DataFrame, params: Params, n_boot: int) -> None:
    from tests.unit.tasks.audit.metricframe import base_rates_by_group

    y = frame[LABEL].to_numpy()
    for columns in audited(params.usecase.sensitive, params.usecase.intersections):
        base_rates_by_group(y, frame[columns])


Stage = Callable[[pd.DataFrame, Params, int], None]
# Each stage: (this code, the path before it). Drift (issue 18 item 2) adds its entry here.
STAGES: dict[str, tuple[Stage, Stage]] = {
    "fairness": (_fairness, _fairness_before),
    "data_bias": (_data_bias, _data_bias_before),
}


def write_rows(rows: int, path: Path) -> None:
    """`rows` scored synthetic applications, only the columns the audits read, as Parquet."""
    uc = _params().usecase
    frame = to_feature_frame(generate_applications(rows, seed=0, bias=0.3), usecase=uc)
    numeric = [c for c in frame.select_dtypes("number").columns if c not in {*uc.not_features, *uc.protected, LABEL}]
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame[numeric][:20_000], frame[LABEL][:20_000])
    proba = model.predict_proba(frame[numeric])[:, 1]
    columns = sorted({c for combo in audited(uc.sensitive, uc.intersections) for c in combo})
    frame[[LABEL, *columns]].assign(proba=proba).to_parquet(path)


def measure(stage: str, before: bool, path: Path, n_boot: int) -> tuple[float, int]:
    """(wall seconds, peak bytes over the resident set at the start) of one stage, in this (fresh) process."""
    params = _params()
    frame = pd.read_parquet(path)
    run = STAGES[stage][1 if before else 0]
    Path("/proc/self/clear_refs").write_text("5")  # the peak resident set starts again from the current one
    start_rss = _memory()["VmRSS"]
    start = time.perf_counter()
    run(frame, params, n_boot)
    wall = time.perf_counter() - start
    return wall, _memory()["VmHWM"] - start_rss


def in_fresh_process(*args: Any) -> tuple[float, int]:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000000,10000000", help="comma-separated row counts")
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument(
        "--budget", type=float, default=120.0, help="seconds the path before may take past --rows' first"
    )
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated, of: " + ", ".join(STAGES))
    args = parser.parse_args()
    sizes = sorted(int(r) for r in args.rows.split(","))
    stages = args.stages.split(",")
    print(f"{os.cpu_count()} CPUs; {args.boot} resamples; before: run at {sizes[0]:,} rows, beyond that if "
          f"predicted within {args.budget:.0f} s", flush=True)  # fmt: skip
    results: dict[tuple[int, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="scale-") as folder:
        for rows in sizes:
            path = Path(folder) / f"{rows}.parquet"
            start = time.perf_counter()
            write_rows(rows, path)
            print(f"{rows:,} rows generated and scored in {time.perf_counter() - start:.0f} s (untimed)", flush=True)
            for stage in stages:
                this = in_fresh_process(stage, False, path, args.boot)
                print(f"  {stage}: {this[0]:.2f} s", flush=True)
                first = results.get((sizes[0], stage), {}).get("before")
                if rows == sizes[0] or (first is not None and first[0] * rows / sizes[0] <= args.budget):
                    before: tuple[float, int] | str = in_fresh_process(stage, True, path, args.boot)
                    print(f"  {stage} before: {before[0]:.1f} s", flush=True)
                elif first is None:
                    before = "not run"
                else:
                    before = f"not run: over budget ({first[0]:.0f} s at {sizes[0]:,}, ~{rows / sizes[0]:.0f}x rows)"
                results[rows, stage] = {"this": this, "before": before}
            path.unlink()

    print(
        f"\n{'rows':>12}  {'stage':<10}{'this s':>9}{'this MB':>10}{'before s':>11}{'before MB':>11}{'before/this':>13}"
    )
    for (rows, stage), result in results.items():
        (wall, peak), before = result["this"], result["before"]
        line = f"{rows:>12,}  {stage:<10}{wall:>9.2f}{peak / 2**20:>10.0f}"
        if isinstance(before, str):
            print(f"{line}   {before}")
        else:
            print(f"{line}{before[0]:>11.1f}{before[1] / 2**20:>11.0f}{before[0] / wall:>12.0f}x")
    print("(MB: peak resident set during the stage over the resident set as it starts, rows already loaded)")
    largest = results.get((10_000_000, "fairness"))
    if largest is not None:
        verdict = "met" if largest["this"][0] <= GOAL else "NOT met"
        print(f"goal: the fairness audit of 10,000,000 rows in at most {GOAL:.0f} s: {verdict}")


if __name__ == "__main__":
    main()
