"""With PREFECT_API_URL unset, Steward starts a Prefect server on 127.0.0.1, says so, reuses it, stops it."""

import json

import pytest
from support import BIN, free_port, run, steward_env

from deployments.local.prefect_server import healthy

pytestmark = pytest.mark.integration


def test_start_reuse_and_stop(tmp_path):
    port = free_port()
    env = steward_env(tmp_path, extra={"STEWARD_PREFECT_PORT": str(port)})
    try:
        first = run([str(BIN / "steward"), "server", "start"], cwd=tmp_path, env=env, timeout=180)
        assert first.returncode == 0, first.stderr
        assert f"Started a local Prefect server at http://127.0.0.1:{port}" in first.stdout
        assert "PREFECT_API_URL was unset" in first.stdout
        state = json.loads((tmp_path / ".steward/prefect-server.json").read_text())
        assert healthy(state["api_url"])
        assert (tmp_path / ".steward/prefect").is_dir()

        second = run([str(BIN / "steward"), "server", "start"], cwd=tmp_path, env=env)
        assert f"Using a local Prefect server at http://127.0.0.1:{port} (pid {state['pid']}" in second.stdout
    finally:
        stopped = run([str(BIN / "steward"), "server", "stop"], cwd=tmp_path, env=env)
    assert "stopped" in stopped.stdout
    assert not healthy(state["api_url"])
    assert not (tmp_path / ".steward/prefect-server.json").exists()
