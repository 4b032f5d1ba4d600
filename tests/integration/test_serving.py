"""The BentoML service for real: `bentoml serve` on 127.0.0.1 with three signed-off models in production,
canary and shadow, the routing table changed underneath it while it serves."""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import subprocess
import sys
import time

import httpx
import pandas as pd
import pytest
import yaml
from support import BIN, PROJECT_DIR, free_port, steward_env

from flows.server import stop_pid
from steward.db import make_engine
from steward.ledger import Ledger
from steward.routing import Routing, RoutingTable, bucket

pytestmark = pytest.mark.integration
TOKEN = "test-admin-token"
PROTECTED = {"sex", "age", "foreign_worker", "age_group"}


def _applications(n: int, *, prefix: str) -> list[dict]:
    rows = pd.read_csv(PROJECT_DIR / "data/german_credit.csv").drop(columns="credit_risk")
    records = rows.sample(n=n, replace=n > len(rows), random_state=0).to_dict("records")
    return [
        {**{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}, "applicant_id": f"{prefix}{i}"}
        for i, r in enumerate(records)
    ]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    project = tmp_path_factory.mktemp("serving")
    params = yaml.safe_load((PROJECT_DIR / "params.yaml").read_text())
    params["serve"] |= {"rate_per_second": 5, "burst": 10}  # low, so one client can exceed it
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy2(PROJECT_DIR / "data/german_credit.csv", project / "german_credit.csv")
    (project / "data").mkdir()
    shutil.copy2(PROJECT_DIR / "data/german_credit.csv", project / "data/german_credit.csv")
    env = steward_env(project, extra={"STEWARD_ADMIN_TOKEN": TOKEN, "BENTOML_HOME": str(project / ".steward/bentoml")})
    setup = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "scripts/serving_fixture.py")],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    refs = json.loads(setup.stdout.strip().splitlines()[-1])
    engine = make_engine(f"sqlite:///{project / '.steward/steward.db'}")
    table = RoutingTable(engine, Ledger(engine))
    table.set(Routing(production=refs["production"]), actor="test", reason="production only")
    port = free_port()
    log = (project / "service.log").open("w")
    process = subprocess.Popen(
        [str(BIN / "bentoml"), "serve", "deployments.service:Steward", "--host", "127.0.0.1", "--port", str(port)],
        cwd=PROJECT_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise TimeoutError((project / "service.log").read_text()[-3000:])
        yield {"url": url, "refs": refs, "table": table, "engine": engine, "project": project}
    finally:
        stop_pid(process.pid)


def _route(service, routing: Routing, *, within: float = 1.0) -> None:
    """Change the routing and wait until the service serves it: within a second for models it has loaded."""
    revision = service["table"].set(routing, actor="test", reason="test").revision
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Client-Id": "operator"}
    while True:
        served = httpx.post(f"{service['url']}/admin/routing", json={}, headers=headers)
        assert served.status_code == 200, served.text
        if served.json()["revision"] == revision:
            return
        assert time.monotonic() - started < within, f"routing change not served within {within} s"
        time.sleep(0.25)  # 4 polls a second: under the operator's own rate limit


def test_a_decision_carries_its_version_and_reasons_and_never_a_protected_attribute(service):
    answer = httpx.post(f"{service['url']}/predict", json=_applications(1, prefix="one")[0], timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == service["refs"]["production"] and body["decision"] in {
        "approve",
        "decline",
        "referred",
    }
    assert 0 <= body["probability"] <= 1 and len(body["request_id"]) == 32 and body["reasons"]
    assert not PROTECTED & ({r["feature"] for r in body["reasons"]} | set(body))


def test_canary_routing_is_sticky_by_applicant_and_the_shadow_is_never_returned(service):
    refs = service["refs"]
    loading = Routing(production=refs["production"], canary=refs["canary"], canary_weight=0.0, shadow=refs["shadow"])
    _route(service, loading, within=60)  # a new model is loaded first, then switched to whole
    _route(service, Routing(**{**loading.as_dict(), "canary_weight": 0.3, "revision": 0, "reason": ""}))
    applications = _applications(300, prefix="route")
    with httpx.Client() as client:
        answers = [
            client.post(f"{service['url']}/predict", json=a, headers={"X-Client-Id": a["applicant_id"]}, timeout=10)
            for a in applications
        ]
    assert all(a.status_code == 200 for a in answers)
    served = [a.json()["model_version"] for a in answers]
    expected = [refs["canary"] if bucket(a["applicant_id"]) < 0.3 else refs["production"] for a in applications]
    assert served == expected and refs["shadow"] not in served
    share = served.count(refs["canary"]) / len(served)
    assert abs(share - 0.3) < 5 * (0.3 * 0.7 / 300) ** 0.5
    time.sleep(0.5)  # the log's batch interval is 0.1 s
    with service["engine"].connect() as connection:
        shadowed = connection.exec_driver_sql(
            "SELECT COUNT(*) FROM predictions WHERE role = 'shadow' AND applicant_id LIKE 'route%'"
        ).scalar()
    assert shadowed == 300


def test_bad_requests_get_4xx_naming_each_field_and_admin_needs_the_token(service):
    bad = {**_applications(1, prefix="bad")[0], "age": 7, "purpose": "yacht", "nickname": "x"}
    answer = httpx.post(f"{service['url']}/predict", json=bad, timeout=10)
    assert answer.status_code == 422
    assert {e["field"] for e in answer.json()["errors"]} == {"age", "purpose", "nickname"}
    assert "yacht" not in answer.text
    assert httpx.post(
        f"{service['url']}/predict", content=b"{not json", headers={"content-type": "application/json"}
    ).status_code in (400, 422)
    assert (
        httpx.post(
            f"{service['url']}/predict", content=b"x" * 70000, headers={"content-type": "application/json"}
        ).status_code
        == 413
    )
    assert httpx.post(f"{service['url']}/admin/routing", json={}).status_code == 401
    assert (
        httpx.post(f"{service['url']}/admin/routing", json={}, headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )


def test_a_client_over_its_rate_limit_gets_429_while_another_is_served(service):
    application = _applications(1, prefix="rate")[0]

    def send(client_id: str) -> httpx.Response:
        return httpx.post(f"{service['url']}/predict", json=application, headers={"X-Client-Id": client_id}, timeout=10)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        flood = list(pool.map(send, ["greedy"] * 80))
    limited = [r for r in flood if r.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1
    assert send("polite").status_code == 200


def test_a_rollback_under_load_fails_no_client_request(service):
    refs = service["refs"]
    _route(service, Routing(production=refs["production"], canary=refs["canary"], canary_weight=0.5))
    applications = _applications(200, prefix="load")

    def send(a: dict) -> int:
        return httpx.post(
            f"{service['url']}/predict", json=a, headers={"X-Client-Id": a["applicant_id"]}, timeout=10
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(send, a) for a in applications]
        time.sleep(0.5)
        _route(service, Routing(production=refs["production"]))
        codes = [f.result() for f in futures]
    assert codes == [200] * len(applications)
    rollback = [r for r in service["table"]._ledger.records() if r.action == "rollout.step"][-1]
    assert rollback.payload["after"]["canary_weight"] == 0.0


def test_feedback_records_one_outcome_per_served_decision_and_a_contest_opens_a_review_case(service):
    url = service["url"]
    headers = {"X-Client-Id": "feedback"}
    served = httpx.post(f"{url}/predict", json=_applications(1, prefix="fb")[0], headers=headers).json()
    request_id = served["request_id"]
    assert httpx.post(f"{url}/feedback", json={"request_id": request_id, "outcome": "bad"}, headers=headers).json() == {
        "request_id": request_id,
        "outcome": "bad",
    }
    conflict = httpx.post(f"{url}/feedback", json={"request_id": request_id, "outcome": "good"}, headers=headers)
    assert conflict.status_code == 409 and "'bad' on record" in conflict.json()["error"]
    unknown = httpx.post(f"{url}/feedback", json={"request_id": "0" * 32, "outcome": "bad"}, headers=headers)
    assert unknown.status_code == 404
    invalid = httpx.post(f"{url}/feedback", json={"request_id": request_id, "outcome": "maybe"}, headers=headers)
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"] == "outcome"

    case = httpx.post(
        f"{url}/contest", json={"request_id": request_id, "reason": "my income is wrong"}, headers=headers
    )
    assert case.status_code == 200 and case.json()["status"] == "open", case.text
    with service["engine"].connect() as connection:
        row = connection.exec_driver_sql(
            "SELECT kind, request_id, reason FROM reviews WHERE id = ?", (case.json()["case"],)
        ).one()
    assert tuple(row) == ("contest", request_id, "my income is wrong")


def test_the_kill_switch_pulls_the_canary_then_production_and_the_service_refuses_safely(service):
    refs = service["refs"]
    _route(
        service, Routing(production=refs["production"], canary=refs["canary"], canary_weight=0.2, shadow=refs["shadow"])
    )
    env = steward_env(service["project"], extra={"BENTOML_HOME": str(service["project"] / ".steward/bentoml")})
    steward = str(BIN / "steward")
    pulled = subprocess.run(
        [steward, "rollback", "--reason", "selection rate for women fell", "--as", "oncall"],
        cwd=service["project"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert f"all traffic to {refs['production']}" in pulled.stdout
    status = subprocess.run(
        [steward, "status"], cwd=service["project"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refs["production"] in status.stdout and refs["canary"] not in status.stdout.split("logged:")[0]
    rollback = [r for r in service["table"]._ledger.records() if r.action == "rollback"][-1]
    assert (rollback.actor, rollback.payload["reason"]) == ("oncall", "selection rate for women fell")
    states = {
        r.subject: r.payload["to"] for r in service["table"]._ledger.records() if r.action == "registry.transition"
    }
    assert states[refs["canary"]] == states[refs["shadow"]] == "rolled_back"

    again = subprocess.run(
        [steward, "rollback", "--reason", "production misbehaves too"],
        cwd=service["project"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0 and "decisions are refused" in again.stdout, again.stdout + again.stderr
    deadline = time.monotonic() + 1.0
    while True:
        answer = httpx.post(
            f"{service['url']}/predict", json=_applications(1, prefix="after")[0], headers={"X-Client-Id": "late"}
        )
        if answer.status_code == 503 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer.status_code == 503 and answer.json()["decision"] == "referred"
