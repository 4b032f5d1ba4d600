"""Rollouts for real: `bentoml serve` on 127.0.0.1 under synthetic live traffic, `steward rollout` against a
real Prefect server. A fair candidate walks shadow → canary → production; an unfair one (the education
shortcut, meeting a student-loan campaign) is rolled back by the canary analysis with no failed request."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from datetime import UTC, datetime
from functools import partial

import httpx
import pytest
import yaml
from support import BIN, FAIR_ALPHA, PROJECT_DIR, feedback_key_of, run, steward_env, wait_until

from deployments.local.bento_server import served
from scripts.rollout_fixture import build
from scripts.serving_fixture import sign_off
from steward.db import make_engine
from steward.keys import instance_key
from steward.ledger import MODEL_REFUSED, ROLLBACK, ROLLOUT_ANALYSIS, Ledger
from steward.model_integrity import Manifest
from steward.registry import Registry, State
from steward.rollouts import Rollouts
from steward.routing import RoutingTable
from steward.settings import Settings
from tasks.demo.traffic import Traffic, requests_of
from tests.usecases import usecase
from usecases.german_credit.generator import generate_applications

pytestmark = pytest.mark.integration
PROTECTED = {"sex", "age", "age_group", "foreign_worker", "personal_status"}
ROLLOUT = {
    "shadow": {"requests": 150, "seconds": 120, "min_agreement": 0.7},
    "weights": [0.2, 0.5],
    "step": {"requests": 60, "seconds": 150},
    "poll_seconds": 0.5,
}


@pytest.fixture(scope="module")
def live(tmp_path_factory, prefect_server):
    project = tmp_path_factory.mktemp("rollout")
    params = yaml.safe_load((PROJECT_DIR / "params.yaml").read_text())
    params["rollout"] |= ROLLOUT
    params["monitor"] |= {"task_runner": "dask", "dask_workers": 2}  # monitoring's windows on a Dask cluster
    # foreign workers: 4 % of traffic, minutes to judge; the rollout is judged by sex and age group
    audited = {"sensitive": ["sex", "age_group"], "intersections": [["sex", "age_group"]]}
    env, refs = build(project, params=params, usecase=audited, env=steward_env(project, api_url=prefect_server))
    engine = make_engine(f"sqlite:///{project / '.steward/steward.db'}")
    with served(env, cwd=PROJECT_DIR, log=project / "service.log") as service:
        yield {
            "url": service.url,
            "refs": refs,
            "env": env,
            "engine": engine,
            "project": project,
            "api": prefect_server,
            "key": feedback_key_of(env),  # outcomes come back signed, as the system of record sends them
        }


GERMAN = usecase("german_credit")
MODEL_NAME = GERMAN.model_name


def _ordinary(seed: int):
    return requests_of(generate_applications(3000, seed=seed), label=GERMAN.label.column)


def _campaign(seed: int):
    return requests_of(generate_applications(3000, seed=seed, proxy=1.0), label=GERMAN.label.column)


def _rollout(live, ref: str, *options: str) -> subprocess.CompletedProcess[str]:
    steward = str(BIN / "steward")
    return run([steward, "rollout", ref, *options], cwd=live["project"], env=live["env"], timeout=600)


def _served_by(live) -> str | None:
    """The model version the service answers an applicant with right now."""
    body, _ = _ordinary(33)[0]
    answer = httpx.post(f"{live['url']}/predict", json=body, headers={"X-Client-Id": "probe"}, timeout=10)
    return answer.json().get("model_version") if answer.status_code == 200 else None


def _logged_since(live, since: str, *, at_least: int) -> bool:
    """Whether the prediction log holds `at_least` production decisions from `since` on."""
    with sqlite3.connect(live["project"] / ".steward/steward.db") as db:
        sql = "SELECT COUNT(*) FROM predictions WHERE role = 'production' AND ts >= ?"
        return int(db.execute(sql, (since,)).fetchone()[0]) >= at_least


def _when_canary(live, ref: str, then, *, timeout: float = 300) -> threading.Thread:
    """Call `then()` once `ref` takes canary traffic (the campaign starts with the canary)."""
    table = RoutingTable(live["engine"], Ledger(live["engine"]))

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and table.get(MODEL_NAME).canary != ref:
            time.sleep(0.1)
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_an_unfair_canary_is_rolled_back_within_seconds_and_no_request_fails(live):
    ref = live["refs"]["unfair"]
    traffic = Traffic(live["url"], _ordinary(21), id_column=GERMAN.id_column, feedback_key=live["key"]).start()
    _when_canary(live, ref, lambda: traffic.swap(_campaign(22)))
    try:
        done = _rollout(live, ref)
    finally:
        tally = traffic.stop()
    assert done.returncode == 4, done.stdout + done.stderr
    assert tally.failed == 0 and set(tally.statuses) == {200}, tally
    assert Registry(live["engine"]).get(ref).state.value == "rolled_back"
    routing = RoutingTable(live["engine"], Ledger(live["engine"])).get(MODEL_NAME)
    assert routing.canary is None and routing.canary_weight == 0 and routing.production != ref

    ledger = Ledger(live["engine"])
    steps = [r.payload for r in ledger.records(subject=ref, actions=(ROLLOUT_ANALYSIS,))]
    assert [(s["step"], s["ending"]) for s in steps] == [("shadow", "pass"), ("canary 20%", "breach")], steps
    breached = {t["group"] for t in steps[-1]["tests"] if t["verdict"] == "breach"}
    assert "age_group=under 25" in breached and "age_group=25 and over" not in breached, steps[-1]
    rollback = [r for r in ledger.records(actions=(ROLLBACK,)) if r.payload["before"]["canary"] == ref][-1]
    decisive = datetime.fromisoformat(steps[-1]["decisive_ts"])
    assert (datetime.fromisoformat(rollback.ts) - decisive).total_seconds() < 2.0

    body = {"filter": {"event": {"name": ["steward.rollback"]}, "resource": {"id": [f"steward.model.{ref}"]}}}
    deadline = time.monotonic() + 30
    while not (events := httpx.post(f"{live['api']}/events/filter", json=body, timeout=10).json()["events"]):
        assert time.monotonic() < deadline, "no steward.rollback event"
        time.sleep(1)
    assert events[0]["payload"]["step"] == "canary 20%"


def test_a_fair_candidate_walks_shadow_canary_to_production(live):
    ref = live["refs"]["fair"]
    before = RoutingTable(live["engine"], Ledger(live["engine"])).get(MODEL_NAME).production
    traffic = Traffic(live["url"], _ordinary(31), id_column=GERMAN.id_column, feedback_key=live["key"]).start()
    try:
        done = _rollout(live, ref, *FAIR_ALPHA)
        wait_until(lambda: _served_by(live) == ref, timeout=10, what=f"the service serving {ref}")
        served_after = Traffic(live["url"], _ordinary(32), id_column=GERMAN.id_column, threads=1, limit=20).start()
        served_after.wait(60)
    finally:
        tally = traffic.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert tally.failed == 0, tally
    steps = [r.payload for r in Ledger(live["engine"]).records(subject=ref, actions=(ROLLOUT_ANALYSIS,))]
    assert [(s["step"], s["ending"]) for s in steps] == [
        ("shadow", "pass"),
        ("canary 20%", "pass"),
        ("canary 50%", "pass"),
    ], steps
    assert steps[0]["agreement"] >= 0.7
    registry = Registry(live["engine"])
    assert registry.get(ref).state.value == "production"
    assert registry.get(before).state.value == "standby"  # verified good: what a rollback restores
    assert dict(served_after.tally.models) == {ref: 20}


def test_a_canary_that_raises_is_taken_out_at_once_and_production_answers(live):
    ref = live["refs"]["broken"]
    moves = Rollouts(live["engine"], Ledger(live["engine"]))
    moves.to_shadow(ref, actor="test")
    moves.to_canary(ref, 0.5, actor="test")
    traffic = Traffic(live["url"], _ordinary(51), id_column=GERMAN.id_column, threads=2, limit=60).start()
    assert traffic.wait(120)
    tally = traffic.stop()
    assert tally.statuses == {200: 60} and ref not in tally.models, tally
    assert RoutingTable(live["engine"], Ledger(live["engine"])).get(MODEL_NAME).canary is None
    assert Registry(live["engine"]).get(ref).state.value == "rolled_back"
    record = Ledger(live["engine"]).records(subject=ref, actions=(ROLLBACK,))[-1]
    assert record.actor == "steward-serving" and "circuit breaker" in record.payload["reason"]

    def errors() -> int:
        with sqlite3.connect(live["project"] / ".steward/steward.db") as db:
            sql = "SELECT COUNT(*) FROM predictions WHERE model = ? AND decision = 'error'"
            return int(db.execute(sql, (ref,)).fetchone()[0])

    # the failed attempt is logged for monitoring, never answered
    wait_until(lambda: errors() >= 1, timeout=10, what="the canary's error in the prediction log")


def test_explain_gives_reasons_and_a_counterfactual_that_really_flips_the_decision(live):
    threshold = yaml.safe_load((live["project"] / "params.yaml").read_text())["evaluate"]["threshold"]
    flipped = 0
    with httpx.Client(base_url=live["url"], headers={"X-Client-Id": "explain"}, timeout=30) as client:
        for body, _ in _ordinary(61)[:12]:
            answer = client.post("/explain", json=body)
            assert answer.status_code == 200, answer.text
            explained = answer.json()
            assert explained["reasons"] and not PROTECTED & {r["feature"] for r in explained["reasons"]}
            counterfactual = explained["counterfactual"]
            if counterfactual is None:
                continue
            changed = {c["feature"] for c in counterfactual["changes"]}
            assert changed and not changed & PROTECTED
            again = client.post("/explain", json=body | {c["feature"]: c["to"] for c in counterfactual["changes"]})
            before, after = explained["probability"], again.json()["probability"]
            assert (before >= threshold) != (after >= threshold), (body, counterfactual, after)
            assert after == pytest.approx(counterfactual["probability"], abs=1e-6)
            flipped += 1
    assert flipped >= 6


@pytest.mark.slow  # about 95 s on 2 cores: `make test-slow` and CI
def test_monitoring_finds_drift_in_a_drifted_window_and_none_in_an_ordinary_one(live):
    steward = str(BIN / "steward")
    production = RoutingTable(live["engine"], Ledger(live["engine"])).get(MODEL_NAME).production
    verdicts = {}
    for name, requests in (
        ("ordinary", _ordinary(71)),
        ("drifted", requests_of(generate_applications(3000, seed=72, drift=1.0), label=GERMAN.label.column)),
    ):
        since = datetime.now(UTC).isoformat(timespec="microseconds")
        key = live["key"]
        traffic = Traffic(live["url"], requests, id_column=GERMAN.id_column, feedback_key=key, limit=1000).start()
        assert traffic.wait(180)
        assert traffic.stop().failed == 0
        wait_until(partial(_logged_since, live, since, at_least=1000), timeout=10, what="1000 decisions logged")
        verdicts[name] = run([steward, "monitor", "--since", since], cwd=live["project"], env=live["env"], timeout=300)
    ordinary, drifted = verdicts["ordinary"], verdicts["drifted"]
    assert ordinary.returncode == 0, ordinary.stdout + ordinary.stderr
    assert drifted.returncode == 4 and "breach: input drift: credit_amount" in drifted.stdout, drifted.stdout
    reports = sorted((live["project"] / "reports").glob("monitor-*.json"))
    assert len(reports) == 2 and (live["project"] / "reports" / f"{reports[-1].stem}.html").is_file()
    found = json.loads(reports[-1].read_text())
    assert found["model"] == production and found["n"] == 1000
    body = {
        "filter": {"event": {"name": ["steward.monitor.breach"]}, "resource": {"id": [f"steward.model.{production}"]}}
    }
    deadline = time.monotonic() + 30
    while not httpx.post(f"{live['api']}/events/filter", json=body, timeout=10).json()["events"]:
        assert time.monotonic() < deadline, "no steward.monitor.breach event"
        time.sleep(1)

    # The same window exported to Parquet page by page, then judged from it on the monitor's Dask cluster: the
    # same figures as from the log (attributions aside: they need the model on a sample of rows).
    exported = live["project"] / "exported-window.parquet"
    wrote = run([steward, "monitor", "--since", since, "--export", str(exported)], cwd=live["project"], env=live["env"])
    assert wrote.returncode == 0 and f"{production}: 1000 decisions" in wrote.stdout, wrote.stdout + wrote.stderr
    judged = run([steward, "monitor", "--parquet", str(exported)], cwd=live["project"], env=live["env"], timeout=300)
    assert judged.returncode == 4 and "breach: input drift: credit_amount" in judged.stdout, judged.stdout
    from_parquet = json.loads(sorted((live["project"] / "reports").glob("monitor-*.json"))[-1].read_text())
    assert from_parquet["source"] == str(exported) and from_parquet["n"] == 1000
    for key in ("inputs", "prediction", "groups", "errors", "outcomes", "reviews", "latency"):
        assert from_parquet[key] == found[key], key
    exported.unlink()


def test_a_model_whose_bytes_changed_is_refused_by_the_rollout_and_the_monitor(live):
    """An approved version whose stored pickle lost one byte after registration: `steward rollout` refuses it
    before the shadow step (routing untouched, the model still approved) and `steward monitor` refuses to
    load it (a breach), each with a `model.refused` ledger record."""
    engine, steward = live["engine"], str(BIN / "steward")
    ledger = Ledger(engine)
    registry = Registry(engine, ledger=ledger)
    broken = registry.get(live["refs"]["broken"])  # its stored bytes, sealed again as a new approved version
    seal = registry.seal(broken.id)
    assert seal is not None
    home = Settings(project_dir=live["project"], home=live["project"] / ".steward")
    ref = registry.register(
        name=MODEL_NAME,
        model_tag=broken.model_tag,
        model_md5="tampered",
        data_md5=broken.data_md5,
        params_hash=broken.params_hash,
        git_commit=None,
        flow_run_id=None,
        metrics={},
        manifest=Manifest(seal.files),
        signer=instance_key(home),
    ).ref
    sign_off(ledger, ref)
    registry.transition(ref, State.APPROVED)
    name, _, version = broken.model_tag.partition(":")
    pickle = live["project"] / ".steward/bentoml/models" / name / version / "saved_model.pkl"
    data = bytearray(pickle.read_bytes())
    data[-2] ^= 0x01
    pickle.write_bytes(bytes(data))
    before = RoutingTable(engine, ledger).get(MODEL_NAME)

    done = _rollout(live, ref)
    assert done.returncode == 4 and f"{ref}: refused" in done.stdout, done.stdout + done.stderr
    assert RoutingTable(engine, ledger).get(MODEL_NAME) == before and registry.get(ref).state is State.APPROVED
    monitored = run([steward, "monitor", "--model", ref], cwd=live["project"], env=live["env"], timeout=300)
    assert monitored.returncode == 4 and "model refused" in monitored.stdout, monitored.stdout + monitored.stderr
    refusals = [r.payload for r in ledger.records(subject=ref, actions=(MODEL_REFUSED,))]
    assert [r["where"] for r in refusals] == ["rollout shadow", "monitor"], refusals
    assert all("saved_model.pkl changed" in r["reason"] for r in refusals)
