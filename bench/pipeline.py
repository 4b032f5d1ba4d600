"""Benchmark: the training flow vs the same stage functions in one plain Python process.

Both run as fresh processes on the same synthetic snapshot in a throwaway clone of this repository:
  baseline  `python bench/pipeline.py --plain DATA`: every stage's main() in DAG order, in one process
  flow      `steward train --data DATA`: Prefect flow on a local server, one `dvc repro` whose stages are each a
            Prefect task (and run forked from the flow's warm stage server, tasks/stage_server.py)
then the flow once more with nothing changed. Goals: flow/baseline ≤ 1.2x; no-change re-run ≤ 10 s.
Usage: python bench/pipeline.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def plain(data: Path) -> None:
    """The baseline: every stage's entry point called in DAG order in this one process, same inputs and outputs."""
    import importlib
    import shutil

    from steward.layout import Layout
    from steward.settings import Settings
    from tasks.dvc import pipeline_stages, stage_module

    layout = Layout(Settings().project_dir)
    layout.raw_data.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data, layout.raw_data)
    for stage in pipeline_stages(layout.project_dir):
        importlib.import_module(stage_module(layout.project_dir, stage)).main()


def timed(args: list[str], *, cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 3):  # 3: the gate rejected the model, a verdict rather than a failure
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--plain", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        plain(args.plain)
        return

    from deployments.local.prefect_server import start_server, stop_pid
    from steward.settings import Settings
    from usecases.german_credit.generator import generate_applications

    with tempfile.TemporaryDirectory(prefix="steward-bench-") as tmp:
        root = Path(tmp)
        clone = root / "clone"
        base_clone = root / "baseline"
        for target in (clone, base_clone):
            subprocess.run(["git", "clone", "--quiet", str(PROJECT), str(target)], check=True)
        data = root / "applications.csv"
        generate_applications(args.rows, seed=11).to_csv(data, index=False)
        server = start_server(Settings(project_dir=root, home=root / "prefect-home", prefect_port=4290))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STEWARD_", "PREFECT_API"))}
        env |= {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "STEWARD_PROJECT_DIR": str(clone),
            "STEWARD_HOME": str(clone / ".steward"),
            **server.client_env(),  # its API URL and auth string
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PYTHONPATH": str(clone),  # the clone's code, not the editable install's (this checkout's)
        }
        try:
            base_env = env | {
                "STEWARD_PROJECT_DIR": str(base_clone),
                "STEWARD_HOME": str(base_clone / ".steward"),
                "PYTHONPATH": str(base_clone),
            }
            base = timed([sys.executable, __file__, "--plain", str(data)], cwd=base_clone, env=base_env)
            flow = timed([str(BIN / "steward"), "train", "--data", str(data)], cwd=clone, env=env)
            again = timed([str(BIN / "steward"), "train", "--data", str(data)], cwd=clone, env=env)
        finally:
            stop_pid(server.pid)

    print(f"pipeline bench: {args.rows:,} synthetic rows, {os.cpu_count()} cores")
    print(f"{'run':<46}{'seconds':>10}{'ratio':>9}{'goal':>10}")
    print(f"{'baseline: every stage main(), one process':<46}{base:>10.1f}{1.0:>9.2f}")
    print(f"{'steward train (Prefect flow + dvc repro)':<46}{flow:>10.1f}{flow / base:>9.2f}{'<= 1.20':>10}")
    print(f"{'steward train again, nothing changed':<46}{again:>10.1f}{'':>9}{'<= 10 s':>10}")


if __name__ == "__main__":
    main()
