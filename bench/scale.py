"""Benchmark: the audits and drift at scale. Wall time and peak memory of each stage on --rows synthetic rows
(default one and ten million) and, for drift, on --wide-rows rows of 1,000 columns (default a million), beside
the path it replaced, measured in the same run.

Audit data: German-credit-like applications (usecases/german_credit/generator.py, bias 0.3 against women) with
the use case's own sensitive attributes and intersections (usecase.yaml: sex, age_group, foreign_worker, sex x
age_group), scored by a logistic regression on the numeric columns fitted on the first 20,000 rows, approve at
P(good) >= params.yaml's evaluate.threshold.
Drift data: bench/monitor.py's generator, 12 numeric and 8 categorical columns; the reference file drawn with seed
1, the current one with seed 2 and six columns drifted (four numeric shifted or stretched, two categorical mixes
reversed), each written to Parquet a million rows (one row group) at a time. The wide case takes 800 numeric and
200 categorical columns from the generator's blocks (block b's columns suffixed _b), only block 0 drifted in the
current file, written 50,000 rows at a time. Generating, scoring and writing are untimed.
Stages (STAGES and DRIFT below):
  fairness   tasks.audit.fairness.audit: every attribute and intersection, --boot resamples
  data_bias  tasks.data.data_bias.data_bias: the same groups' base rates, --boot resamples
  drift      tasks.monitor: `reference`, the sketch reference of every column (sketch.describe), read from the
             reference file one column at a time, as training does once; `window`, stream.parquet_drift of the
             current file against it (the reference written to JSON after the clock stops, and loaded before it
             starts), as each monitoring run does; `total`, both
Before: fairness and data bias: fairlearn MetricFrame computing the same point figures (fairness: count,
positives and the six rates; data bias: count, positives, base rate) for every attribute and intersection, on the
text of each row, which is what the fairness audit did besides its bootstrap until its point figures came from the
counts (tests/unit/tasks/audit/metricframe.py, the implementation the tests compare with). Drift: the sampled
implementation (tests/unit/tasks/monitor/sampled.py): `reference` reads the reference file whole (pd.read_parquet)
and keeps a 20,000-value sample per numeric column, `window` reads the current file whole and computes the
statistics from it (KS by scipy's ks_2samp against the sample), verdicts by the same thresholds (numeric: psi or
ks, categorical: js). The path before runs at the smallest --rows; at larger ones only if its time there, scaled by
rows, is within --budget seconds and its memory, scaled alike, within what is available (the wide case: scaled by
rows x columns from the smallest narrow size).
Beside drift, Evidently's DataDriftPreset (bench/evidently_peer.py, in its own environment .bench/evidently, which
`make bench` creates), timed by itself from reading both files to its verdicts, under the same budget rule.
Each measurement runs in a fresh process. Peak memory is that process's peak resident set during the stage
(VmHWM, reset through /proc/self/clear_refs as the stage starts) minus its resident set then: the memory the stage
needs on top of its input (the audits' rows are loaded beforehand; drift's data is on disk, the window's reference
loaded beforehand). Evidently's: its process's peak resident set (ru_maxrss) minus that of one that only imports
it.
Usage: PYTHONPATH=. .venv/bin/python bench/scale.py [--rows 1000000,10000000] [--boot 1000] [--budget 120]
    [--stages fairness,data_bias,drift] [--wide 1] [--wide-rows 1000000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from steward.params import Params, load_params
from tasks.audit.bootstrap import audited
from tasks.audit.fairness import audit
from tasks.data.data_bias import data_bias
from tasks.data.features import LABEL, to_feature_frame
from tasks.monitor.drift import Thresholds
from tasks.monitor.sketch import describe
from tasks.monitor.stream import parquet_drift
from usecases.german_credit.generator import generate_applications

PROJECT = Path(__file__).resolve().parents[1]
USECASE = "german_credit"
GOAL = 30.0  # seconds: the fairness audit of ten million rows, every attribute and intersection (issue 18)
DRIFT_GOAL = (10_000_000, 30.0, 2 * 2**30)  # drift of ten million rows x 20 in 30 s, 2 GB above the data
WIDE_GOAL = (1_000_000, 300.0)  # drift of a million rows x 1,000 columns in five minutes
MEMORY = re.compile(r"^(VmHWM|VmRSS):\s+(\d+) kB$", re.MULTILINE)
PIECE = 1_000_000  # rows generated and written at a time (one row group each)
WIDE_PIECE = 50_000
WIDE_NUMERIC, WIDE_CATEGORICAL = 800, 200
T = TypeVar("T")


def _load_monitor() -> ModuleType:
    """bench/monitor.py, for its drift data generator and Evidently's interpreter (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_monitor", PROJECT / "bench/monitor.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MONITOR = _load_monitor()


def _params() -> Params:
    """params.yaml as the stages read it, for the German use case."""
    return load_params(PROJECT / "params.yaml", usecase=USECASE)


def _memory() -> dict[str, int]:
    """This process's peak and current resident set, in bytes."""
    return {name: int(kb) * 1024 for name, kb in MEMORY.findall(Path("/proc/self/status").read_text())}


def _timed(run: Callable[[], T]) -> tuple[float, int, T]:
    """(wall seconds, peak bytes over the resident set at the start, result) of `run()` in this process."""
    Path("/proc/self/clear_refs").write_text("5")  # the peak resident set starts again from the current one
    start_rss = _memory()["VmRSS"]
    start = time.perf_counter()
    result = run()
    wall = time.perf_counter() - start
    return wall, _memory()["VmHWM"] - start_rss, result


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


Verdicts = dict[str, tuple[bool, dict[str, float]]]  # column: (drifted, statistics)


def _reference(path: Path, out: Path) -> tuple[float, int, Verdicts]:
    """The sketch reference of every column of `path`, read one column at a time; written to `out` after."""

    def run() -> dict[str, Any]:
        parquet = pq.ParquetFile(path)
        return {c: describe(parquet.read(columns=[c]).column(0).to_pandas()) for c in parquet.schema_arrow.names}

    wall, peak, ref = _timed(run)
    out.write_text(json.dumps(ref))
    return wall, peak, {}


def _window(path: Path, reference: Path) -> tuple[float, int, Verdicts]:
    """The drift of the window at `path`, streamed, against the reference stored at `reference`."""
    ref = json.loads(reference.read_text())
    wall, peak, found = _timed(lambda: parquet_drift(str(path), ref, thresholds=Thresholds()))
    return wall, peak, {d.column: (d.drifted, d.statistics) for d in found}


def _reference_before(path: Path, out: Path) -> tuple[float, int, Verdicts]:
    """The sampled reference of every column, from the file read whole; written to `out` after."""
    from tests.unit.tasks.monitor.sampled import sampled_reference

    def run() -> dict[str, Any]:
        frame = pd.read_parquet(path)
        return sampled_reference(frame, list(frame.columns))

    wall, peak, ref = _timed(run)
    out.write_text(json.dumps(ref))
    return wall, peak, {}


def _window_before(path: Path, reference: Path) -> tuple[float, int, Verdicts]:
    """The sampled statistics of every column of the window read whole, and the verdicts they gave."""
    from tests.unit.tasks.monitor.sampled import sampled_statistics

    ref, limits = json.loads(reference.read_text()), Thresholds()

    def run() -> Verdicts:
        frame = pd.read_parquet(path)
        found: Verdicts = {}
        for column, described in ref.items():
            statistics, _ = sampled_statistics(described, frame[column])
            if described["kind"] == "numeric":
                drifted = statistics["psi"] > limits.psi or statistics["ks"] > limits.ks
            else:
                drifted = statistics["js"] > limits.js
            found[column] = (drifted, statistics)
        return found

    return _timed(run)


Stage = Callable[[pd.DataFrame, Params, int], None]
DriftStage = Callable[[Path, Path], tuple[float, int, Verdicts]]
# Each stage: (this code, the path before it). The audits (STAGES) take their rows in a frame; drift's (DRIFT, all
# selected by --stages drift, each a row `drift <name>` of the table) take a Parquet file and the reference's JSON,
# which `reference` writes and `window` reads.
STAGES: dict[str, tuple[Stage, Stage]] = {
    "fairness": (_fairness, _fairness_before),
    "data_bias": (_data_bias, _data_bias_before),
}
DRIFT: dict[str, tuple[DriftStage, DriftStage]] = {
    "reference": (_reference, _reference_before),
    "window": (_window, _window_before),
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


def _write_pieces(path: Path, rows: int, piece: int, make: Callable[[int, int], pd.DataFrame]) -> None:
    """`rows` rows as Parquet, `make(k, n)` making the k-th piece of n rows, written as one row group."""
    writer: pq.ParquetWriter | None = None
    try:
        for k, start in enumerate(range(0, rows, piece)):
            table = pa.Table.from_pandas(make(k, min(piece, rows - start)), preserve_index=False)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=piece)
    finally:
        if writer is not None:
            writer.close()


def _narrow(k: int, rows: int, *, seed: int, drifted: bool) -> pd.DataFrame:
    """Piece k of a drift file: bench/monitor.py's frame (the first piece with its seed, as bench/monitor.py)."""
    return MONITOR.frame(rows, seed=seed if k == 0 else [seed, k], drifted=drifted)


def _wide(k: int, rows: int, *, seed: int, drifted: bool) -> pd.DataFrame:
    """Piece k of a wide drift file: WIDE_NUMERIC numeric and WIDE_CATEGORICAL categorical columns from blocks of
    bench/monitor.py's frame, block b's columns suffixed _b; only block 0 drifts."""
    numeric, categorical = MONITOR.NUMERIC, MONITOR.CATEGORICAL
    blocks = max(-(-WIDE_NUMERIC // len(numeric)), -(-WIDE_CATEGORICAL // len(categorical)))
    parts = []
    for b in range(blocks):
        keep = numeric[: max(0, WIDE_NUMERIC - b * len(numeric))]
        keep += categorical[: max(0, WIDE_CATEGORICAL - b * len(categorical))]
        block = MONITOR.frame(rows, seed=[seed, b, k], drifted=drifted and b == 0)
        parts.append(block[keep].add_suffix(f"_{b}"))
    return pd.concat(parts, axis=1)


def write_drift(rows: int, folder: Path, *, wide: bool) -> tuple[Path, Path, Path, int]:
    """(reference file, current file, their columns as bench/evidently_peer.py reads them, number of columns)."""
    make, piece = (_wide, WIDE_PIECE) if wide else (_narrow, PIECE)
    name = f"{rows}{'-wide' if wide else ''}"
    reference, current = folder / f"reference-{name}.parquet", folder / f"current-{name}.parquet"
    _write_pieces(reference, rows, piece, lambda k, n: make(k, n, seed=1, drifted=False))
    _write_pieces(current, rows, piece, lambda k, n: make(k, n, seed=2, drifted=True))
    schema = pq.read_schema(reference)
    kinds: dict[str, list[str]] = {"numeric": [], "categorical": []}
    for column in schema:
        kinds["numeric" if pa.types.is_floating(column.type) else "categorical"].append(column.name)
    columns = folder / f"columns-{name}.json"
    columns.write_text(json.dumps(kinds))
    return reference, current, columns, len(schema)


def measure(stage: str, before: bool, path: Path, n_boot: int) -> tuple[float, int]:
    """(wall seconds, peak bytes over the resident set at the start) of one audit stage, in this (fresh) process."""
    params = _params()
    frame = pd.read_parquet(path)
    run = STAGES[stage][1 if before else 0]
    wall, peak, _ = _timed(lambda: run(frame, params, n_boot))
    return wall, peak


def measure_drift(stage: str, before: bool, path: Path, reference: Path) -> tuple[float, int, Verdicts]:
    """(wall seconds, peak bytes over the resident set at the start, verdicts) of one drift stage."""
    return DRIFT[stage][1 if before else 0](path, reference)


def in_fresh_process(function: Callable[..., T], *args: Any) -> T:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _child(*argv: str) -> tuple[str, int]:
    """The standard output and peak resident set (bytes) of a command, run to its end."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            err.seek(0)
            raise RuntimeError(f"{argv[1]} failed: {err.read()[-2000:]}")
        out.seek(0)
        return out.read(), usage.ru_maxrss * 1024


def evidently(reference: Path, current: Path, columns: Path) -> tuple[float, int, dict[str, bool]]:
    """(its own seconds from reading the files to verdicts, peak bytes over its imports, verdicts) of Evidently."""
    _, imports = _child(str(MONITOR.PEER), "-c", "import pandas, pyarrow, evidently.presets")
    peer = PROJECT / "bench/evidently_peer.py"
    printed, peak = _child(str(MONITOR.PEER), str(peer), str(reference), str(current), str(columns))
    theirs = json.loads(printed.strip().splitlines()[-1])
    return theirs["seconds"], peak - imports, theirs["drifted"]


def _available() -> int:
    """Memory available to a new process, in bytes."""
    return int(re.findall(r"^MemAvailable:\s+(\d+) kB$", Path("/proc/meminfo").read_text(), re.MULTILINE)[0]) * 1024


def _projected(first: tuple[float, int], scale: float, budget: float, where: str) -> str | None:
    """Why a path that took `first` (seconds, peak bytes) at `where` is not run at `scale` times the data, or None
    when it is within --budget seconds and the memory available."""
    seconds, peak = first[0] * scale, first[1] * scale
    if seconds > budget:
        return f"not run: projected {seconds:.0f} s ({first[0]:.1f} s at {where}, ~{scale:.0f}x)"
    if peak > _available():
        return f"not run: projected {peak / 2**30:.0f} GB, more than available ({first[1] / 2**20:.0f} MB at {where})"
    return None


def _unless(earlier: Measured | str | None, scale: float, budget: float, where: str) -> str | None:
    """Why a path is not run at `scale` times the data it took `earlier` on at `where` (or did not run on, saying
    why), or None: run it (also when there is nothing earlier: `where` is the smallest size)."""
    if earlier is None or isinstance(earlier, str):
        return earlier
    return _projected(earlier, scale, budget, where)


Measured = tuple[float, int]  # wall seconds, peak bytes over the start
Row = tuple[str, str, Measured, Measured | str]  # data, stage, this, before (or why it did not run)
MISSING = "not run: .bench/evidently missing (`make bench` creates it)"


def _sum(stages: dict[str, Measured]) -> Measured:
    """Stages run one after the other: their seconds add up, the peak is the larger."""
    return sum(s for s, _ in stages.values()), max(m for _, m in stages.values())


@dataclass
class DriftRun:
    """Drift at one size: this code's stages, the sampled path's (or why not run) and Evidently's, and verdicts."""

    rows: int
    width: int
    wide: bool
    this: dict[str, Measured]
    verdicts: Verdicts
    before: dict[str, Measured] | str
    before_verdicts: Verdicts | None
    peer: Measured | str
    peer_verdicts: dict[str, bool] | None

    @property
    def data(self) -> str:
        return f"{self.rows:,} x {self.width:,}"

    @property
    def total(self) -> Measured:
        return _sum(self.this)

    @property
    def before_total(self) -> Measured | str:
        return self.before if isinstance(self.before, str) else _sum(self.before)

    def table(self) -> list[Row]:
        before = {s: self.before if isinstance(self.before, str) else self.before[s] for s in self.this}
        return [
            *((self.data, f"drift {s}", self.this[s], before[s]) for s in self.this),
            (self.data, "drift total", self.total, self.before_total),
            (self.data, "drift Evidently", self.total, self.peer),
        ]


def run_drift(rows: int, folder: Path, *, wide: bool, budget: float, first: DriftRun | None) -> DriftRun:
    """Drift's stages on `rows` rows (of 20 columns, or 1,000 if `wide`); the path before and Evidently where
    `first` (the smallest narrow size's run) projects them within `budget`."""
    started = time.perf_counter()
    reference, current, columns, width = write_drift(rows, folder, wide=wide)
    seconds = time.perf_counter() - started
    print(f"{rows:,} x {width:,} drift rows generated and written in {seconds:.0f} s (untimed)", flush=True)
    files = {"reference": reference, "window": current}
    scale = rows * width / (first.rows * first.width) if first else 1.0
    where = first.data if first else ""
    found: dict[tuple[str, bool], Verdicts] = {}

    def stages(before: bool, json_path: Path) -> dict[str, Measured]:
        measured = {}
        for stage, path in files.items():
            wall, peak, found[stage, before] = in_fresh_process(measure_drift, stage, before, path, json_path)
            measured[stage] = wall, peak
            print(f"  drift {stage}{' before' if before else ''}: {wall:.2f} s, {peak / 2**20:.0f} MB", flush=True)
        return measured

    this = stages(False, folder / "sketch.json")
    before = _unless(first and first.before_total, scale, budget, where) or stages(True, folder / "sampled.json")
    peer: Measured | str = MISSING
    if MONITOR.PEER.is_file():
        peer = _unless(first and first.peer, scale, budget, where) or ""
    peer_verdicts = None
    if not peer:
        seconds, peak, peer_verdicts = evidently(reference, current, columns)
        peer = seconds, peak
        print(f"  Evidently: {seconds:.1f} s, {peak / 2**20:.0f} MB", flush=True)
    for path in (reference, current, columns, folder / "sketch.json", folder / "sampled.json"):
        path.unlink(missing_ok=True)
    return DriftRun(
        rows=rows,
        width=width,
        wide=wide,
        this=this,
        verdicts=found["window", False],
        before=before,
        before_verdicts=found.get(("window", True)),
        peer=peer,
        peer_verdicts=peer_verdicts,
    )


def run_audits(
    rows: int,
    folder: Path,
    stages: list[str],
    results: dict[tuple[int, str], tuple[Measured, Measured | str]],
    *,
    smallest: int,
    n_boot: int,
    budget: float,
) -> None:
    """The audit stages on `rows` rows into `results`, the path before where the smallest size projects it within
    `budget`."""
    path = folder / f"{rows}.parquet"
    start = time.perf_counter()
    write_rows(rows, path)
    print(f"{rows:,} rows generated and scored in {time.perf_counter() - start:.0f} s (untimed)", flush=True)
    for stage in stages:
        this = in_fresh_process(measure, stage, False, path, n_boot)
        print(f"  {stage}: {this[0]:.2f} s", flush=True)
        first = results.get((smallest, stage), (None, None))[1]
        if rows == smallest or (not isinstance(first, str | None) and first[0] * rows / smallest <= budget):
            before: Measured | str = in_fresh_process(measure, stage, True, path, n_boot)
            print(f"  {stage} before: {before[0]:.1f} s", flush=True)
        elif not isinstance(first, tuple):
            before = "not run"
        else:
            before = f"not run: over budget ({first[0]:.0f} s at {smallest:,}, ~{rows / smallest:.0f}x rows)"
        results[rows, stage] = this, before
    path.unlink()


def _ratio(ratio: float) -> str:
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def print_table(table: list[Row]) -> None:
    print(
        f"\n{'data':>17}  {'stage':<16}{'this s':>9}{'this MB':>10}{'before s':>11}{'before MB':>11}{'before/this':>13}"
    )
    for data, stage, (wall, peak), before in table:
        line = f"{data:>17}  {stage:<16}{wall:>9.2f}{peak / 2**20:>10.0f}"
        if isinstance(before, str):
            print(f"{line}   {before}")
        else:
            print(f"{line}{before[0]:>11.2f}{before[1] / 2**20:>11.0f}{_ratio(before[0] / wall):>13}")
    print(
        "(MB: peak resident set during the stage over the resident set as it starts: the audits' rows already loaded;"
    )
    print(" drift's data on disk, the window's reference loaded. drift total: reference and window, each in its own")
    print(" process, one after the other: seconds added, the larger peak. drift Evidently: Evidently's DataDriftPreset")
    print(" from reading both files to its verdicts (its MB: over a process that only imports it) against drift total)")


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_goals(audits: dict[tuple[int, str], tuple[Measured, Measured | str]], drifts: list[DriftRun]) -> None:
    largest = audits.get((10_000_000, "fairness"))
    if largest is not None:
        print(f"goal: the fairness audit of 10,000,000 rows in at most {GOAL:.0f} s: {_met(largest[0][0] <= GOAL)}")
    for run in drifts:
        (reference, ref_peak), (window, peak) = run.this["reference"], run.this["window"]
        total, most = run.total
        times = (
            f"reference {reference:.1f} s, {ref_peak / 2**20:.0f} MB, built once at training; "
            f"reference + window {total:.1f} s, at most {most / 2**20:.0f} MB"
        )
        rows, seconds, memory = DRIFT_GOAL
        if not run.wide and run.rows == rows:
            print(
                f"goal: drift of {run.data} in at most {seconds:.0f} s with at most {memory / 2**30:.0f} GB above "
                f"the data: {_met(window <= seconds and peak <= memory)} for each window (monitoring run: "
                f"{window:.1f} s, {peak / 2**20:.0f} MB); {_met(total <= seconds and most <= memory)} with the "
                f"reference ({times})"
            )
        rows, seconds = WIDE_GOAL
        if run.wide and run.rows == rows:
            print(
                f"goal: drift of {run.data} in at most {seconds / 60:.0f} minutes: {_met(window <= seconds)} for "
                f"each window ({window:.1f} s, {peak / 2**20:.0f} MB); {_met(total <= seconds)} with the "
                f"reference ({times})"
            )
    if drifts:
        print_verdicts(drifts)


def _compare(name: str, drifts: list[DriftRun], theirs: Callable[[DriftRun], dict[str, bool] | None]) -> str:
    """Whether the streamed verdicts are `name`'s on every column at every size it ran at."""
    same, differ, unrun = [], [], []
    for run in drifts:
        verdicts = theirs(run)
        if verdicts is None:
            unrun.append(run.data)
            continue
        columns = [c for c in run.verdicts if run.verdicts[c][0] != verdicts.get(c)]
        same += [] if columns else [run.data]
        for column in columns:
            drifted, statistics = run.verdicts[column]
            figures = ", ".join(f"{k} {v:.4f}" for k, v in statistics.items())
            if run.before_verdicts is not None and name == "before":
                figures += "; before: " + ", ".join(f"{k} {v:.4f}" for k, v in run.before_verdicts[column][1].items())
            differ.append(f"{run.data} {column} (drifted {drifted}: {figures})")
    line = f"DIFFER from {name} on {'; '.join(differ)}" if differ else f"same as {name} on every column"
    if same:
        line += f" (same at {', '.join(same)})" if differ else f" ({', '.join(same)})"
    return line + (f"; not compared at {', '.join(unrun)}: {name} not run" if unrun else "")


def print_verdicts(drifts: list[DriftRun]) -> None:
    before = _compare(
        "before", drifts, lambda run: run.before_verdicts and {c: v[0] for c, v in run.before_verdicts.items()}
    )
    print(f"verdicts: {before}")
    print(f"verdicts: {_compare('Evidently', drifts, lambda run: run.peer_verdicts)}")
    for run in drifts:
        drifted = [c for c, (d, _) in run.verdicts.items() if d]
        print(f"  {run.data}: drifted {', '.join(drifted) or 'none'} ({len(drifted)} of {run.width:,} columns)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000000,10000000", help="comma-separated row counts")
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument(
        "--budget", type=float, default=120.0, help="seconds the path before may take past --rows' first"
    )
    names = [*STAGES, "drift"]
    parser.add_argument("--stages", default=",".join(names), help="comma-separated, of: " + ", ".join(names))
    parser.add_argument("--wide", type=int, default=1, help="1: drift also on --wide-rows rows x 1,000 columns; 0: not")
    parser.add_argument("--wide-rows", type=int, default=1_000_000, help="rows of the wide drift case")
    args = parser.parse_args()
    sizes = sorted(int(r) for r in args.rows.split(","))
    stages = args.stages.split(",")
    if unknown := set(stages) - set(names):
        parser.error(f"unknown stages {', '.join(sorted(unknown))}")
    audits = [s for s in stages if s in STAGES]
    print(f"{os.cpu_count()} CPUs; {args.boot} resamples; before: run at {sizes[0]:,} rows, beyond that if "
          f"predicted within {args.budget:.0f} s", flush=True)  # fmt: skip
    results: dict[tuple[int, str], tuple[Measured, Measured | str]] = {}
    drifts: list[DriftRun] = []
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        folder = Path(tmp)
        for rows in sizes:
            if audits:
                run_audits(rows, folder, audits, results, smallest=sizes[0], n_boot=args.boot, budget=args.budget)
            if "drift" in stages:
                first = drifts[0] if drifts else None
                drifts.append(run_drift(rows, folder, wide=False, budget=args.budget, first=first))
        if "drift" in stages and args.wide:
            need = 2 * args.wide_rows * (WIDE_NUMERIC * 8 + WIDE_CATEGORICAL) * 1.1  # bytes: two files, float64
            free = shutil.disk_usage(folder).free
            if need > free:
                print(f"wide drift not run: its files need ~{need / 2**30:.0f} GB, {free / 2**30:.0f} GB free")
            else:
                drifts.append(run_drift(args.wide_rows, folder, wide=True, budget=args.budget, first=drifts[0]))

    table: list[Row] = [(f"{rows:,}", stage, this, before) for (rows, stage), (this, before) in results.items()]
    for run in drifts:
        table += run.table()
    print_table(table)
    print_goals(results, drifts)


if __name__ == "__main__":
    main()
