import subprocess

from tasks.model.register import lineage_labels
from tasks.stage import git_revision


def _git(cwd, *args):
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def test_git_revision_names_the_commit_and_marks_a_dirty_tree(tmp_path):
    assert git_revision(tmp_path) is None
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("1")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "commit", "-qm", "one")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert git_revision(tmp_path) == head
    (tmp_path / "a.txt").write_text("2")
    assert git_revision(tmp_path) == f"{head}-dirty"
    (tmp_path / "untracked.txt").write_text("x")
    (tmp_path / "a.txt").write_text("1")
    assert git_revision(tmp_path) == head


def test_lineage_labels_are_strings_with_explicit_none():
    assert lineage_labels(data_md5="d", params_hash="p", git_commit=None, flow_run_id=None) == {
        "data_md5": "d",
        "params_hash": "p",
        "git_commit": "none",
        "flow_run_id": "none",
    }
