"""Rollouts that survive their own crash, for real: `steward rollout` against a served model under live traffic.
Killed (SIGKILL) with its canary in routing, its lease lapses and the canary leaves routing within the lease
plus one expiry look; with the Prefect server restarted mid-step, the rollout completes or withdraws, never
stalls. The test plays the part of the serving process's routing watch: it calls `expire` once a second."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import yaml
from support import BIN, FAIR_ALPHA, PROJECT_DIR, feedback_key_of, free_port, steward_env, wait_until

from deployments.local.bento_server import served
from deployments.local.prefect_server import start_server, stop_pid
from scripts.rollout_fixture import build
from steward.db import make_engine
from steward.leases import Leases, expire
from steward.ledger import ROLLBACK, Ledger
from steward.registry import Registry
from steward.rollouts import Rollouts
from steward.settings import Settings
from tasks.demo.traffic import Traffic, requests_of
from tests.usecases import usecase
from usecases.german_credit.generator import generate_applications

pytestmark = [pytest.mark.integration, pytest.mark.slow]
GERMAN = usecase("german_credit")
MODEL_NAME = GERMAN.model_name
LEASE = 5.0
EXPIRY_EVERY = 1.0  # the test's expirer: the service looks every 250 ms
ROLLOUT = {
    "shadow": {"requests": 60, "seconds": 120, "min_agreement": 0.5},
    "weights": [0.2, 0.5],
    "step": {"requests": 60, "seconds": 150},
    "poll_seconds": 0.5,
    "lease_seconds": LEASE,
}


@pytest.fixture(scope="module")
def prefect(tmp_path_factory) -> Iterator[dict]:
    """A Prefect server of this module's own, which a test may stop and start again on its port."""
    home = tmp_path_factory.mktemp("lease-prefect")
    settings = Settings(project_dir=home, home=home, prefect_port=free_port())
    state = {"settings": settings, "server": start_server(settings, auth=False)}
    try:
        yield state
    finally:
        stop_pid(state["server"].pid)


@pytest.fixture(scope="module")
def live(tmp_path_factory, prefect):
    project = tmp_path_factory.mktemp("lease")
    params = yaml.safe_load((PROJECT_DIR / "params.yaml").read_text())
    params["rollout"] |= ROLLOUT
    audited = {"sensitive": ["sex", "age_group"], "intersections": [["sex", "age_group"]]}
    api = prefect["server"].api_url
    env, refs = build(project, params=params, usecase=audited, env=steward_env(project, api_url=api))
    engine = make_engine(f"sqlite:///{project / '.steward/steward.db'}")
    with served(env, cwd=PROJECT_DIR, log=project / "service.log") as service:
        traffic = Traffic(
            service.url,
            requests_of(generate_applications(6000, seed=91), label=GERMAN.label.column),
            id_column=GERMAN.id_column,
            feedback_key=feedback_key_of(env),
        ).start()
        try:
            yield {"env": env, "refs": refs, "engine": engine, "project": project}
        finally:
            traffic.stop()


def _start_rollout(live, ref: str, *, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    log = (live["project"] / f"rollout-{ref.replace(':', '-')}.log").open("w")
    return subprocess.Popen(
        [str(BIN / "steward"), "rollout", ref, *FAIR_ALPHA],  # fair candidates: their shadow must pass
        cwd=live["project"],
        env=env or live["env"],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: SIGKILL takes the whole rollout
    )


class Expirer:
    """What the serving process's routing watch does: expire lapsed leases, here once a second."""

    def __init__(self, engine) -> None:
        self.moves = Rollouts(engine, Ledger(engine))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(EXPIRY_EVERY):
            expire(self.moves, model_name=MODEL_NAME)

    def __enter__(self) -> Expirer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)


def test_a_killed_rollouts_canary_leaves_routing_within_its_lease(live):
    ref, engine = live["refs"]["fair"], live["engine"]
    table = Rollouts(engine, Ledger(engine)).table
    rollout = _start_rollout(live, ref)
    try:
        wait_until(lambda: table.get(MODEL_NAME).canary == ref, timeout=240, what=f"{ref} in canary")
        os.killpg(rollout.pid, signal.SIGKILL)
        killed = time.monotonic()
        rollout.wait(10)
    finally:
        if rollout.poll() is None:
            os.killpg(rollout.pid, signal.SIGKILL)
    with Expirer(engine):
        wait_until(lambda: table.get(MODEL_NAME).canary is None, timeout=LEASE + EXPIRY_EVERY + 2, what="canary out")
    gone = time.monotonic() - killed
    assert gone <= LEASE + EXPIRY_EVERY + 1.0, gone
    # traffic first: the routing change commits, then the registry's transition (Rollouts.withdraw) a moment later
    wait_until(lambda: Registry(engine).get(ref).state.value == "rolled_back", timeout=5, what=f"{ref} rolled back")
    record = Ledger(engine).records(subject=ref, actions=(ROLLBACK,))[-1]
    assert record.actor == "steward-lease" and "stopped renewing its lease" in record.payload["reason"]
    assert Leases(engine).get(MODEL_NAME) is None


def test_a_rollout_rides_out_a_prefect_restart_mid_step_and_completes_or_withdraws(live, prefect):
    ref, engine = live["refs"]["fair_again"], live["engine"]  # passes its shadow: the restart hits a canary step
    table = Rollouts(engine, Ledger(engine)).table
    settings, before = prefect["settings"], prefect["server"]
    with Expirer(engine):
        rollout = _start_rollout(live, ref)
        try:
            wait_until(lambda: table.get(MODEL_NAME).canary == ref, timeout=240, what=f"{ref} in canary")
            stop_pid(before.pid)
            time.sleep(3)
            prefect["server"] = start_server(settings, auth=False)
            assert prefect["server"].api_url == before.api_url  # the same port: the rollout's PREFECT_API_URL
            outcome = rollout.wait(300)  # never stalls: production or withdrawn/rolled back, well within this
        finally:
            if rollout.poll() is None:
                os.killpg(rollout.pid, signal.SIGKILL)
    output = (live["project"] / f"rollout-{ref.replace(':', '-')}.log").read_text()
    state = Registry(engine).get(ref).state.value
    routing = table.get(MODEL_NAME)
    assert ref not in (routing.canary, routing.shadow), output
    if state == "production":
        assert outcome == 0 and routing.production == ref, output
    else:
        assert state == "rolled_back" and outcome != 0, output
    assert Leases(engine).get(MODEL_NAME) is None
