"""With PREFECT_API_URL unset, Steward starts a Prefect server on 127.0.0.1, says so, reuses it, stops it; the
server asks every client for the auth string kept in STEWARD_HOME, and its UI talks to its own port."""

import base64
import json
import stat

import httpx
import pytest
from support import BIN, free_port, run, steward_env

from deployments.local.prefect_server import auth_string, healthy
from steward.settings import Settings

pytestmark = pytest.mark.integration


def test_start_reuse_and_stop(tmp_path):
    port = free_port()
    assert port != 4200  # the port Prefect's UI assumes unless told otherwise
    env = steward_env(tmp_path, extra={"STEWARD_PREFECT_PORT": str(port)})
    try:
        first = run([str(BIN / "steward"), "server", "start"], cwd=tmp_path, env=env, timeout=180)
        assert first.returncode == 0, first.stderr
        assert f"Started a local Prefect server at http://127.0.0.1:{port}" in first.stdout
        assert "PREFECT_API_URL was unset" in first.stdout
        assert f"ask for the auth string in {tmp_path / '.steward/prefect-auth'}" in first.stdout
        state = json.loads((tmp_path / ".steward/prefect-server.json").read_text())
        assert healthy(state["api_url"])  # /health answers without the auth string: the probes rely on it
        assert (tmp_path / ".steward/prefect").is_dir()

        auth_path = tmp_path / ".steward/prefect-auth"
        assert stat.S_IMODE(auth_path.stat().st_mode) == 0o600
        auth = auth_string(Settings(project_dir=tmp_path, home=tmp_path / ".steward"))
        assert auth.startswith("steward:") and auth not in first.stdout + first.stderr
        runs = f"{state['api_url']}/flow_runs/filter"
        assert httpx.post(runs, json={"limit": 1}, timeout=10).status_code == 401
        wrong = {"Authorization": "Basic " + base64.b64encode(b"steward:guess").decode()}
        assert httpx.post(runs, json={"limit": 1}, headers=wrong, timeout=10).status_code == 401
        assert httpx.post(runs, json={"limit": 1}, auth=tuple(auth.split(":", 1)), timeout=10).json() == []

        ui = httpx.get(f"http://127.0.0.1:{port}/ui-settings", timeout=10).json()
        assert ui["api_url"] == f"http://127.0.0.1:{port}/api" and ui["auth"] == "BASIC"

        second = run([str(BIN / "steward"), "server", "start"], cwd=tmp_path, env=env)
        assert f"Using a local Prefect server at http://127.0.0.1:{port} (pid {state['pid']}" in second.stdout
        assert "ask for the auth string" in second.stdout and "warning" not in second.stderr
        assert auth_string(Settings(project_dir=tmp_path, home=tmp_path / ".steward")) == auth  # made once

        listed = run([str(BIN / "steward"), "approvals"], cwd=tmp_path, env=env, timeout=120)  # an API client
        assert listed.returncode == 0 and "no run is waiting for sign-off" in listed.stdout, listed.stderr

        auth_path.write_text("steward:another\n")  # replaced while the server runs: named, not a 401 traceback
        refused = run([str(BIN / "steward"), "approvals"], cwd=tmp_path, env=env, timeout=120)
        assert refused.returncode == 1 and f"refuses the auth string in {auth_path}" in refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        stopped = run([str(BIN / "steward"), "server", "stop"], cwd=tmp_path, env=env)
    assert "stopped" in stopped.stdout
    assert not healthy(state["api_url"])
    assert not (tmp_path / ".steward/prefect-server.json").exists()
