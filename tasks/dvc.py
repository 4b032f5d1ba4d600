"""Driving DVC from Steward: `dvc add`/`push` for snapshots, `dvc repro` for the ML stages.

DVC runs as a subprocess in the project folder (its Python API resolves targets against the
process's cwd), with this interpreter's folder first on PATH so stage commands find `python`.
Imports no Prefect: the document stage reads the data version with `tracked_md5`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from steward.errors import StewardError
from steward.settings import Settings

DVC_FAILED = "`dvc {args}` failed (exit {code}):\n{output}"
STAGE_FAILED = "DVC stage {stage!r} failed (`dvc {args}`, exit {code}):\n{output}"
NOT_TRACKED = "{path} is not a DVC-tracked file (no outs[0].md5 in it)"
# The line DVC starts each stage's part of a `dvc repro` output with: it runs the stage, finds it unchanged,
# or restores its outputs from the run cache (dvc/stage/run.py, stage/__init__.py, stage/cache.py).
STAGE_START = re.compile(
    r"^(?:Running stage '(?P<ran>[^']+)':"
    r"|Stage '(?P<kept>[^']+)' (?:didn't change, skipping|is cached - skipping run, checking out outputs))"
)
FAILED_STAGE = re.compile(r"failed to reproduce '(?P<stage>[^']+)'")  # DVC's error when a stage fails


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


def _start_dvc(args: tuple[str, ...], settings: Settings, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "dvc"), *args],
        cwd=settings.project_dir,
        env={**dvc_env(settings), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _emit(line: str, on_line: Callable[[str], None] | None) -> None:
    if on_line is not None and line.strip():
        on_line(line.rstrip())


def run_dvc(
    *args: str,
    settings: Settings,
    on_line: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
) -> DvcResult:
    """Run `dvc ARGS` in the project folder, `env` added to its environment; each output line goes to `on_line`
    (default: the run's log)."""
    process = _start_dvc(args, settings, env)
    lines = []
    on_line = on_line or run_log()
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        _emit(line, on_line)
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


def reproduce(
    stage: str,
    *,
    settings: Settings,
    on_line: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
) -> DvcResult:
    """`dvc repro --single-item <stage>`: runs the stage, or skips it when nothing it depends on changed.

    Only the stage itself is checked: ingest runs `validate`, the first stage, on a new snapshot this way.
    """
    return run_dvc("repro", "--single-item", stage, settings=settings, on_line=on_line, env=env)


class Repro:
    """One `dvc repro` of the whole pipeline, its output read stage by stage as DVC reaches each stage.

    `next_stage()` passes on what DVC says between stages and returns the next stage's name (None at the
    end); `stage_output(stage)` then reads that stage's part of the output (from its "Running stage" or
    "didn't change" line up to the next stage's) and raises DvcError naming the stage when DVC failed on it.
    Use it as a context manager: leaving early stops DVC.
    """

    def __init__(self, process: subprocess.Popen[str], args: tuple[str, ...]) -> None:
        self.args = args
        self._process = process
        self._pending: str | None = None  # a stage's first line, read while reading the stage before it
        self._failed: DvcError | None = None  # DVC failed on a stage it had not started: next_stage() raises
        self.runs_next = False  # whether DVC runs the stage next_stage() returned (else: unchanged, restored)

    @classmethod
    def start(cls, *, settings: Settings, env: dict[str, str] | None = None) -> Repro:
        """Start `dvc repro` in the project folder, with `env` added to its environment."""
        args = ("repro",)
        return cls(_start_dvc(args, settings, env), args)

    def __enter__(self) -> Repro:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._process.poll() is None:
            self._process.terminate()
        self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def _read(self) -> str | None:
        line, self._pending = self._pending, None
        if line is None:
            assert self._process.stdout is not None
            line = self._process.stdout.readline() or None
        return line

    def _read_stage(self, lines: list[str], on_line: Callable[[str], None] | None) -> str | None:
        """Read lines into `lines` up to the next stage's first line (kept for later); its stage, or None."""
        while (line := self._read()) is not None:
            if found := STAGE_START.match(line):
                self._pending = line
                self.runs_next = found["ran"] is not None
                return found["ran"] or found["kept"]
            lines.append(line)
            _emit(line, on_line)
        return None

    def _failure(self, lines: list[str], stage: str | None) -> tuple[str | None, DvcError | None]:
        """At the end of the output: which stage DVC failed on (its error names it) and the error, if it did."""
        code = self._process.wait()
        if code == 0:
            return None, None
        output = "".join(lines).strip()
        named = FAILED_STAGE.search(output)
        failed = named["stage"] if named else stage
        if named and failed != stage:  # DVC failed before starting that stage: its error is what concerns it
            output = output[output.rfind("\n", 0, named.start()) + 1 :]
        if failed is None:
            return None, DvcError(DVC_FAILED.format(args=" ".join(self.args), code=code, output=output))
        return failed, DvcError(STAGE_FAILED.format(stage=failed, args=" ".join(self.args), code=code, output=output))

    def next_stage(self, on_line: Callable[[str], None] | None = None) -> str | None:
        """The next stage DVC reached, after passing on what it said before it; None when DVC is done."""
        if self._failed is not None:
            raise self._failed
        lines: list[str] = []
        stage = self._read_stage(lines, on_line or run_log())
        if stage is None and (error := self._failure(lines, None)[1]):
            raise error
        return stage

    def stage_output(self, stage: str, on_line: Callable[[str], None] | None = None) -> DvcResult:
        """The part of DVC's output about `stage`, which `next_stage()` just returned (each line to `on_line`)."""
        on_line = on_line or run_log()
        first = self._read()
        found = STAGE_START.match(first or "")
        if first is None or found is None or stage not in (found["ran"], found["kept"]):
            raise DvcError(f"`dvc repro` is not at stage {stage!r} (next line: {first!r})")
        lines = [first]
        _emit(first, on_line)
        if self._read_stage(lines, on_line) is None:
            failed, error = self._failure(lines, stage)
            if failed == stage and error is not None:
                raise error
            self._failed = error
        return DvcResult(args=self.args, output="".join(lines))


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
