"""Driving DVC from Steward: `dvc add`/`push` for snapshots, `dvc repro <stage>` for the ML stages.

DVC runs as a subprocess in the project folder (its Python API resolves targets against the
process's cwd), with this interpreter's folder first on PATH so stage commands find `python`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prefect import task
from prefect.cache_policies import NO_CACHE

from steward.errors import StewardError
from steward.settings import Settings

DVC_FAILED = "`dvc {args}` failed (exit {code}):\n{output}"
NOT_TRACKED = "{path} is not a DVC-tracked file (no outs[0].md5 in it)"


class DvcError(StewardError, RuntimeError):
    """A DVC command exited non-zero; the message carries its output."""


@dataclass(frozen=True)
class DvcResult:
    args: tuple[str, ...]
    output: str

    def ran(self, stage: str) -> bool:
        """Whether `dvc repro` executed `stage` (False when unchanged or restored from the run cache)."""
        return f"Running stage '{stage}'" in self.output


def dvc_env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, **settings.tool_env()}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("PYTHONPATH", None)
    return env


def run_log() -> Callable[[str], None] | None:
    """Where DVC's output goes: the Prefect run's log inside a flow or task run, nowhere outside one."""
    from prefect.context import FlowRunContext, TaskRunContext

    if TaskRunContext.get() is None and FlowRunContext.get() is None:
        return None
    from prefect import get_run_logger

    return get_run_logger().info


def run_dvc(*args: str, settings: Settings, on_line: Callable[[str], None] | None = None) -> DvcResult:
    """Run `dvc ARGS` in the project folder; each output line goes to `on_line` (default: the run's log)."""
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dvc"), *args],
        cwd=settings.project_dir,
        env=dvc_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    on_line = on_line or run_log()
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if on_line is not None and line.strip():
            on_line(line.rstrip())
    code = process.wait()
    output = "".join(lines)
    if code != 0:
        raise DvcError(DVC_FAILED.format(args=" ".join(args), code=code, output=output.strip()))
    return DvcResult(args=args, output=output)


def tracked_md5(dvc_file: Path) -> str:
    """The md5 DVC recorded for the file a `.dvc` file tracks: the data version."""
    meta: Any = yaml.safe_load(dvc_file.read_text()) if dvc_file.is_file() else None
    try:
        return str(meta["outs"][0]["md5"])
    except (TypeError, KeyError, IndexError):
        raise DvcError(NOT_TRACKED.format(path=dvc_file)) from None


def point_local_remote(settings: Settings) -> None:
    """Aim the project's `local` remote at STEWARD_HOME/dvc-remote when STEWARD_HOME is not the default."""
    default = (settings.project_dir / ".steward" / "dvc-remote").resolve()
    target = settings.dvc_remote_dir.resolve()
    if target != default:
        run_dvc("remote", "modify", "--local", "local", "url", str(target), settings=settings)


def reproduce(stage: str, *, settings: Settings, on_line: Callable[[str], None] | None = None) -> DvcResult:
    """`dvc repro --single-item <stage>`: runs the stage, or skips it when nothing it depends on changed.

    Only the stage itself is checked: the flows run the stages in the DAG's order, so upstream is fresh.
    """
    return run_dvc("repro", "--single-item", stage, settings=settings, on_line=on_line)


def locked_md5(project_dir: Path, *, stage: str, path: str) -> str:
    """The md5 dvc.lock records for one output of a stage (the identity of a model file, say)."""
    lock = yaml.safe_load((project_dir / "dvc.lock").read_text()) or {}
    for out in lock.get("stages", {}).get(stage, {}).get("outs", []):
        if out.get("path") == path:
            return str(out["md5"])
    raise DvcError(f"dvc.lock has no output {path!r} for stage {stage!r}: run `dvc repro {stage}`")


def pipeline_stages(project_dir: Path) -> list[str]:
    """The stages of dvc.yaml in the order they are written there (an order that respects the DAG)."""
    return list((yaml.safe_load((project_dir / "dvc.yaml").read_text()) or {}).get("stages", {}))


def stage_module(project_dir: Path, stage: str) -> str:
    """The module a stage runs (`python -m tasks.<phase>.<stage>` in dvc.yaml gives `tasks.<phase>.<stage>`)."""
    stages = (yaml.safe_load((project_dir / "dvc.yaml").read_text()) or {}).get("stages", {})
    return str(stages[stage]["cmd"]).split()[-1]


@task(name="dvc-repro", task_run_name="dvc repro {stage}", cache_policy=NO_CACHE)
def reproduce_stage(stage: str, *, settings: Settings) -> DvcResult:
    """One DVC stage as one Prefect task, its output re-logged to the run."""
    return reproduce(stage, settings=settings)
