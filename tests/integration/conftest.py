"""Real servers on 127.0.0.1 for integration tests: a Prefect server, moto_server (S3), PostgreSQL, and a
project copy.

Each server is started once per session, polled for health with a bounded wait, and stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import AWS_ENV, GIT_ENV, PROJECT_DIR, free_port, moto_server, project_files

from deployments.local.prefect_server import start_server, stop_pid
from steward.settings import Settings


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `prefect server start` on a free loopback port with its own SQLite database; it asks for no auth
    string, so the tests' clients need none (test_prefect_server_auth.py starts the authenticated one users get)."""
    home = tmp_path_factory.mktemp("prefect-server-home")
    settings = Settings(project_dir=home, home=home, prefect_port=free_port())
    server = start_server(settings, auth=False)
    try:
        yield server.api_url
    finally:
        stop_pid(server.pid)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API (moto_server) on a free loopback port."""
    with moto_server() as (url, _):
        yield url


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    return AWS_ENV


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh git + DVC clone of the project's files in a temporary folder (no .steward, no outputs)."""
    root = tmp_path / "project"
    for name in project_files():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_DIR / name, target)
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "fixture"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)
    return root


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A real PostgreSQL server (this machine's binaries) on a free loopback port, trust auth for the role
    `steward`, with databases `steward` and `prefect`; yields `127.0.0.1:PORT`. Run as root, the server runs as
    the `postgres` user (PostgreSQL refuses root)."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"))  # Debian's packages keep them off PATH
    path = os.pathsep.join([os.environ.get("PATH", ""), *map(str, debian)])
    initdb, server = shutil.which("initdb", path=path), shutil.which("postgres", path=path)
    if not (initdb and server):
        message = "PostgreSQL binaries (initdb, postgres) not found: apt-get install postgresql"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="steward-pg-"))
    root.chmod(0o755)  # the postgres user must reach it
    as_user: list[str] = []
    if os.getuid() == 0:
        shutil.chown(root, user="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "steward", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    process = subprocess.Popen(
        [*as_user, server, "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(root)],
        stdout=(root / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(f"postgresql://steward@127.0.0.1:{port}/postgres", autocommit=True) as db:
                    for name in ("steward", "prefect"):
                        db.execute(f"CREATE DATABASE {name}")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield f"127.0.0.1:{port}"
    finally:
        stop_pid(process.pid)
        shutil.rmtree(root, ignore_errors=True)
