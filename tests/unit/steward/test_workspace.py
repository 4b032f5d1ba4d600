"""A workspace is the project's code (HEAD plus uncommitted changes) in a worktree the user's checkout never sees."""

import shutil
import subprocess
from pathlib import Path

import pytest

from steward.params import load_params
from steward.usecase import UseCaseError
from steward.workspace import WorkspaceError, prepare_workspace, select_usecase
from tests.conftest import PROJECT_DIR


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / ".dvc").mkdir(parents=True)
    (root / ".dvc/config").write_text("[core]\n")
    (root / ".gitignore").write_text(".steward/\n")
    (root / "stage.py").write_text("print('v1')\n")
    (root / "dvc.lock").write_text("lock: committed\n")
    git(root, "init", "-q")
    git(root, "-c", "user.email=a@b", "-c", "user.name=a", "add", ".")
    git(root, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "one")
    return root


def test_the_workspace_holds_head_and_the_users_uncommitted_work(project):
    (project / "stage.py").write_text("print('v2, not committed')\n")
    (project / "new_module.py").write_text("x = 1\n")
    before = git(project, "status", "--porcelain")
    ws = prepare_workspace(project, project / ".steward", "demo")
    assert ws == (project / ".steward/workspaces/demo").resolve()
    assert (ws / "stage.py").read_text() == "print('v2, not committed')\n"
    assert (ws / "new_module.py").read_text() == "x = 1\n"
    assert (
        ws / ".dvc/config.local"
    ).read_text() == f"[cache]\n    dir = {(project / '.steward/dvc-cache').resolve()}\n"
    assert git(project, "status", "--porcelain") == before  # the user's checkout is as it was


def test_a_run_rewrites_the_workspace_only_and_the_next_refresh_resets_it(project):
    ws = prepare_workspace(project, project / ".steward", "demo")
    (ws / "dvc.lock").write_text("lock: rewritten by a run\n")
    (ws / "model.bin").write_text("an output DVC tracks\n")
    assert git(project, "status", "--porcelain") == ""
    (project / "stage.py").write_text("print('v3')\n")
    git(project, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qam", "three")
    again = prepare_workspace(project, project / ".steward", "demo")
    assert again == ws
    assert (ws / "dvc.lock").read_text() == "lock: committed\n" and (ws / "stage.py").read_text() == "print('v3')\n"
    assert (ws / "model.bin").is_file()  # untracked outputs stay for DVC to judge
    assert git(ws, "rev-parse", "HEAD") == git(project, "rev-parse", "HEAD")


def test_outside_git_there_is_no_workspace(tmp_path):
    with pytest.raises(WorkspaceError, match="is not a git checkout"):
        prepare_workspace(tmp_path, tmp_path / ".steward", "demo")


def _with_usecases(project: Path) -> None:
    shutil.copytree(PROJECT_DIR / "usecases", project / "usecases", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "params.yaml").write_text("# the selection\nusecase: german_credit   # the default\ntrain: {seed: 1}\n")
    git(project, "-c", "user.email=a@b", "-c", "user.name=a", "add", ".")
    git(project, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "usecases")


def test_selecting_a_use_case_rewrites_only_the_workspaces_selection(project):
    _with_usecases(project)
    ws = prepare_workspace(project, project / ".steward", "usecase-adult_income")
    select_usecase(ws, "adult_income")
    assert (ws / "params.yaml").read_text() == "# the selection\nusecase: adult_income\ntrain: {seed: 1}\n"
    assert load_params(ws / "params.yaml").usecase.name == "adult_income"
    assert load_params(project / "params.yaml").usecase.name == "german_credit"
    assert git(project, "status", "--porcelain") == ""


def test_selecting_an_unknown_use_case_is_refused_and_changes_nothing(project):
    _with_usecases(project)
    ws = prepare_workspace(project, project / ".steward", "usecase-x")
    before = (ws / "params.yaml").read_text()
    with pytest.raises(UseCaseError, match="use case 'loans' not found"):
        select_usecase(ws, "loans")
    assert (ws / "params.yaml").read_text() == before
