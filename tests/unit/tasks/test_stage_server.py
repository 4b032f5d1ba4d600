"""The warm stage server: a `python -m tasks.…` command runs forked from it, as it would have run on its own."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import stage_server

PROJECT = Path(__file__).resolve().parents[3]
PROBE = """\
import json, os, sys
preloaded = [name for name in ("great_expectations", "sklearn.ensemble") if name in sys.modules]  # by the server
print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "probe": os.environ.get("PROBE"),
                  "server": os.environ.get("STEWARD_STAGE_SERVER"), "preloaded": preloaded, "name": __name__}))
print("to stderr", file=sys.stderr)
sys.exit(3)
"""

pytestmark = pytest.mark.skipif(not stage_server.available(), reason="the stage server forks: Linux only")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose `tasks` package is the real one's entry (its __init__ and the server) plus a probe."""
    (tmp_path / "tasks/probe").mkdir(parents=True)
    for name in ("__init__.py", "stage_server.py"):
        shutil.copy(PROJECT / "tasks" / name, tmp_path / "tasks" / name)
    (tmp_path / "tasks/probe/__init__.py").write_text("")
    (tmp_path / "tasks/probe/run.py").write_text(PROBE)
    return tmp_path


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", stage_server.ENV)}


def _probe(project: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "tasks.probe.run", "a", "--b"],
        cwd=project,
        env={**env, "PROBE": "x"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, json.loads(done.stdout)


def test_a_stage_command_runs_forked_from_the_server_with_its_own_arguments_folder_environment_and_streams(project):
    with stage_server.running(cwd=project, env=_env()) as server:
        assert set(server.env) == {stage_server.ENV}
        done, seen = _probe(project, {**_env(), **server.env})
        again, _ = _probe(project, {**_env(), **server.env})
    assert (done.returncode, again.returncode) == (3, 3)
    assert seen == {
        "argv": ["a", "--b"],
        "cwd": str(project),
        "probe": "x",
        "server": None,  # not passed on: the stage's own `tasks` import must not hand it over again
        "preloaded": ["great_expectations"],  # first, for `validate`: the command came while the rest loaded
        "name": "__main__",
    }
    assert done.stderr == "to stderr\n"
    assert not Path(server.env[stage_server.ENV]).parent.exists()  # closed: its socket's folder removed


def test_a_stopped_server_leaves_commands_to_run_cold_until_it_starts_again(project):
    with stage_server.running(cwd=project, env=_env()) as server:
        server.stop()
        cold, seen_cold = _probe(project, {**_env(), **server.env})
        server.start(validate=False)
        warm, seen_warm = _probe(project, {**_env(), **server.env})
    assert (cold.returncode, warm.returncode) == (3, 3)
    assert seen_cold["preloaded"] == [] and seen_cold["server"] == server.env[stage_server.ENV]
    assert seen_warm["preloaded"] == ["sklearn.ensemble"] and seen_warm["server"] is None  # no Great Expectations


def test_without_a_server_answering_the_command_runs_in_its_own_process(project, tmp_path):
    done, seen = _probe(project, {**_env(), stage_server.ENV: str(tmp_path / "nobody-listens")})
    assert done.returncode == 3
    assert seen["preloaded"] == [] and seen["argv"] == ["a", "--b"] and seen["name"] == "__main__"


def test_where_no_server_can_start_the_stages_start_cold(project, monkeypatch):
    def no_folder(**_: object) -> str:
        raise PermissionError("no temporary folder")

    monkeypatch.setattr("tempfile.mkdtemp", no_folder)
    with stage_server.running(cwd=project, env=_env()) as server:
        assert server.env == {}
        server.start()
        server.stop()
