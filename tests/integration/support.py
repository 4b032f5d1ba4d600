"""Helpers shared by the integration tests (imported as `support`; fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from steward.feedback_auth import feedback_key
from steward.personal import Pseudonyms
from steward.settings import Settings

T = TypeVar("T")
PROJECT_DIR = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# `steward rollout` options for a fair candidate whose story needs it to pass: at alpha 0.05 each judged step
# false-alarms about 2% of the time, as designed (README, "steward rollout --alpha"); at 0.001 about 0.03%.
FAIR_ALPHA = ("--alpha", "0.001")
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
GIT_ENV = {
    "GIT_AUTHOR_NAME": "steward-tests",
    "GIT_AUTHOR_EMAIL": "tests@steward.invalid",
    "GIT_COMMITTER_NAME": "steward-tests",
    "GIT_COMMITTER_EMAIL": "tests@steward.invalid",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, *, timeout: float) -> None:
    """Poll `url` until it answers, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@contextlib.contextmanager
def moto_server() -> Iterator[tuple[str, int]]:
    """A real S3 API (moto_server) on a free loopback port, as (url, pid) until the block ends; stopped by PID.
    Multipart parts may be a few KiB (S3's 5 MiB minimum otherwise): the ledger export's resume is tested small."""
    from deployments.local.prefect_server import stop_pid

    process = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port := free_port())],
        env={**os.environ, "S3_UPLOAD_PART_MIN_SIZE": "1024"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url, timeout=30)
        yield url, process.pid
    finally:
        stop_pid(process.pid)


def wait_until(probe: Callable[[], T], *, timeout: float, what: str, every: float = 0.1) -> T:
    """Call `probe` until it returns something truthy, at most `timeout` seconds; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s (last seen: {found!r})")
        time.sleep(every)
    return found


def project_files() -> list[str]:
    """The project's files as a clone would have them (tracked or new, never ignored), tests excluded."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    return [name for name in listed if name and not name.startswith("tests/") and (PROJECT_DIR / name).is_file()]


def steward_env(project: Path, *, api_url: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a user's shell would have: the venv on PATH, state in the project's .steward."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEWARD_", "PREFECT_", "BENTOML_"))}
    env.update(GIT_ENV)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["STEWARD_PROJECT_DIR"] = str(project)
    env["STEWARD_HOME"] = str(project / ".steward")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra or {})
    return env


def pseudonyms_of(env: Mapping[str, str], model_name: str) -> Pseudonyms:
    """The pseudonyms a service started with `env` logs and routes subjects by (steward/personal.py): under its
    STEWARD_PSEUDONYM_KEY, else the key file of its STEWARD_HOME (made now if the service has not made it yet)."""
    settings = Settings(
        project_dir=Path(env["STEWARD_PROJECT_DIR"]),
        home=Path(env["STEWARD_HOME"]),
        pseudonym_key=env.get("STEWARD_PSEUDONYM_KEY"),
    )
    return Pseudonyms.of(settings, model_name=model_name)


def feedback_key_of(env: Mapping[str, str]) -> str:
    """The key a service started with `env` checks /feedback's signatures with: its STEWARD_FEEDBACK_KEY, else the
    key file of its STEWARD_HOME (made now if the service has not made it yet)."""
    settings = Settings(
        project_dir=Path(env["STEWARD_PROJECT_DIR"]),
        home=Path(env["STEWARD_HOME"]),
        feedback_key=env.get("STEWARD_FEEDBACK_KEY"),  # this process's own STEWARD_FEEDBACK_KEY does not count
    )
    return feedback_key(settings)


def run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def copy_usecases(project: Path, name: str) -> None:
    """The use cases and their suites into a project folder (which params.yaml names need), and `name`'s data."""
    shutil.copytree(PROJECT_DIR / "usecases", project / "usecases", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PROJECT_DIR / "expectations", project / "expectations")
    data = yaml.safe_load((project / "usecases" / name / "usecase.yaml").read_text())["dataset"]["file"]
    (project / data).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PROJECT_DIR / data, project / data)


def serving_project(
    project: Path, *, serve: Mapping[str, Any], extra: dict[str, str] | None = None, usecase: str | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """A project folder to `bentoml serve` from: params.yaml with its `serve` section updated by `serve` (and the
    use case `usecase` instead of its own, if given), the use cases, their suites and the served one's data, and
    three signed-off models in its .steward (scripts/serving_fixture.py: production, canary, shadow).

    Returns the environment to serve with (`extra` added to it) and the three models' registry refs by role.
    """
    params = yaml.safe_load((PROJECT_DIR / "params.yaml").read_text())
    params["serve"] |= dict(serve)
    if usecase is not None:
        params["usecase"] = usecase
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    copy_usecases(project, params["usecase"])
    env = steward_env(project, extra={"BENTOML_HOME": str(project / ".steward/bentoml"), **(extra or {})})
    fixture = [sys.executable, str(PROJECT_DIR / "scripts/serving_fixture.py")]
    setup = run(fixture, cwd=PROJECT_DIR, env=env, timeout=300)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    return env, json.loads(setup.stdout.strip().splitlines()[-1])


HARNESS = Path(__file__).with_name("signoff_harness.py")
APPROVERS = {
    "alice": {"roles": ["model-risk"]},
    "bob": {"roles": ["compliance"]},
    "carol": {"roles": ["model-risk"]},
}


def signoff_project(root: Path, *, signoff: dict[str, Any]) -> Path:
    """A project folder with the repository's reports (the evidence), dvc.yaml and a params.yaml whose
    high tier's sign-off policy is `signoff` (approvers: APPROVERS, each with a key in root/keys/NAME), put in
    force by its owner olga (root/keys/olga), and a registered candidate `credit-risk:v1`."""
    from steward.db import make_engine
    from steward.governance import GovernanceParams
    from steward.keys import new_key
    from steward.ledger import Ledger
    from steward.policy_in_force import adopt
    from steward.registry import Registry

    root.mkdir(parents=True)
    shutil.copytree(PROJECT_DIR / "reports", root / "reports", ignore=shutil.ignore_patterns("data_docs"))
    for name in ("dvc.yaml", "dvc.lock"):
        shutil.copy2(PROJECT_DIR / name, root / name)
    params = yaml.safe_load((PROJECT_DIR / "params.yaml").read_text())
    params["governance"]["signoff"]["high"] = signoff
    for name in (*APPROVERS, "mallory"):  # each person's own key in root/keys; mallory's is registered nowhere
        new_key(root / "keys" / name, comment=f"{name}@bank")
    params["governance"]["approvers"] = {
        name: {**approver, "keys": [(root / "keys" / f"{name}.pub").read_text().strip()]}
        for name, approver in APPROVERS.items()
    }
    owner = new_key(root / "keys" / "olga", comment="olga@bank (policy owner)")
    params["governance"]["owners"] = [owner.public.openssh]
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    copy_usecases(root, params["usecase"])
    engine = make_engine(f"sqlite:///{root / '.steward/steward.db'}")
    adopt(engine, GovernanceParams.model_validate(params["governance"]), owner, actor="olga")  # the policy in force
    Registry(engine, ledger=Ledger(engine)).register(
        name="credit-risk",
        model_tag="credit-risk:test",
        model_md5="m" * 32,
        data_md5="d" * 32,
        params_hash="p" * 64,
        git_commit=None,
        flow_run_id=None,
        metrics={"auc": 0.8},
    )
    return root


def start_harness(project: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """`signoff_harness.py ARGS` in `project`, its output in project/harness.log."""
    log = (project / "harness.log").open("w")
    return subprocess.Popen(
        [sys.executable, str(HARNESS), *args],
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so stop_pid stops it and the flow runs it started
    )
