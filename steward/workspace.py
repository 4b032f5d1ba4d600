"""A workspace: a git worktree of the project under STEWARD_HOME, where a run may rewrite what a training
run rewrites (dvc.lock, reports/, data/raw's `.dvc` file, params.yaml's use-case selection) without touching
the checkout the user works in. `steward run` trains its demo in one; so does a run for a use case other
than the one params.yaml selects.

The worktree holds the project's HEAD plus the user's uncommitted changes to tracked files and their new
untracked files, so the stages DVC runs there are the code the user has. Its DVC cache is shared by every
workspace (STEWARD_HOME/dvc-cache), so a stage another workspace already ran is restored, not re-run.
Git is required: a workspace is a worktree of the project's repository.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from steward.errors import StewardError

WORKSPACES = "workspaces"
NOT_GIT = "{project} is not a git checkout: a workspace is a git worktree of the project (clone it with git)"
GIT_FAILED = "`git {args}` failed in {cwd}: {output}"
NO_SELECTION = "{path} has no top-level `usecase:` line to select a use case with"
SELECTION = re.compile(r"^usecase:[^\n]*$", re.MULTILINE)


class WorkspaceError(StewardError, RuntimeError):
    """A workspace could not be made or refreshed; the message carries git's output."""


def prepare_workspace(project_dir: Path, state_dir: Path, name: str) -> Path:
    """STEWARD_HOME/workspaces/<name>, made or refreshed to the project's current code, and returned."""
    project_dir = project_dir.resolve()
    if _git(project_dir, "rev-parse", "--is-inside-work-tree", check=False) != "true":
        raise WorkspaceError(NOT_GIT.format(project=project_dir))
    head = _git(project_dir, "rev-parse", "HEAD")
    folder = (state_dir / WORKSPACES / name).resolve()
    if (folder / ".git").exists():
        _git(folder, "reset", "--quiet", "--hard", head)  # tracked files back to HEAD; DVC's outputs stay
    else:
        if folder.exists():
            shutil.rmtree(folder)
        _git(project_dir, "worktree", "prune")
        folder.parent.mkdir(parents=True, exist_ok=True)
        _git(project_dir, "worktree", "add", "--quiet", "--detach", "--force", str(folder), head)
    diff = _git(project_dir, "diff", "HEAD", "--binary", strip=False)
    if diff.strip():
        _git(folder, "apply", "--whitespace=nowarn", "-", stdin=diff)
    untracked = _git(project_dir, "ls-files", "--others", "--exclude-standard", "-z", strip=False)
    for relative in filter(None, untracked.split("\0")):
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project_dir / relative, target)
    _share_dvc_cache(folder, state_dir.resolve() / "dvc-cache")
    return folder


def select_usecase(workspace: Path, name: str) -> None:
    """Make the workspace's params.yaml select use case `name` (so `dvc repro` there follows it)."""
    from steward.usecase import load_usecase

    load_usecase(workspace, name)  # refuses an unknown or invalid use case, naming what is wrong
    path = workspace / "params.yaml"
    text = path.read_text(encoding="utf-8")
    if not SELECTION.search(text):
        raise WorkspaceError(NO_SELECTION.format(path=path))
    path.write_text(SELECTION.sub(f"usecase: {name}", text, count=1), encoding="utf-8")


def usecase_project(project_dir: Path, state_dir: Path, usecase: str) -> Path:
    """Where a run on `usecase` trains: the project itself when its params.yaml selects it, else the workspace
    STEWARD_HOME/workspaces/usecase-<name>, refreshed, whose params.yaml selects it."""
    from steward.params import load_params

    if load_params(project_dir / "params.yaml").usecase.name == usecase:
        return project_dir
    workspace = prepare_workspace(project_dir, state_dir, f"usecase-{usecase}")
    select_usecase(workspace, usecase)
    return workspace


def _share_dvc_cache(folder: Path, cache: Path) -> None:
    """The workspace's `.dvc/config.local` (untracked) points its cache at the shared one."""
    cache.mkdir(parents=True, exist_ok=True)
    (folder / ".dvc" / "config.local").write_text(f"[cache]\n    dir = {cache}\n")


def _git(cwd: Path, *args: str, check: bool = True, strip: bool = True, stdin: str | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False, input=stdin)
    if done.returncode != 0:
        if not check:
            return ""
        raise WorkspaceError(GIT_FAILED.format(args=" ".join(args), cwd=cwd, output=done.stderr.strip()))
    return done.stdout.strip() if strip else done.stdout
