"""The published OpenAPI document against the service that publishes it: `bentoml serve` on 127.0.0.1 with a
production model, a canary and a shadow, and schemathesis generating requests from its /docs.json.

Every answer must be one the document lists for that route, in the documented media type, with the documented
headers and a body matching the documented model; a request the schema refuses must be refused (4xx), one it accepts
must be served, an undocumented method gets 405, and the admin routes refuse a request without their token. The
examples are bounded and derandomised (the same requests on every run, about 1,000 in some 15 s).

The generated run is schemathesis's own command line (`st run`, its report in the failure message):
`schemathesis.pytest.from_fixture` reads `Node._nodeid`, which pytest 9.2 no longer has. The hand-built requests
(a served decision's feedback and contest, the refusals once every model is pulled) use its Python API. Schemathesis
cannot sign a body, so the generated /feedback requests are all refused 401; the hand-built ones are signed with the
service's feedback key, and answer 200, 409 and 422 as documented.

The tests run in file order: the kill switch (/admin/rollback) is exercised last, because one accepted call takes
models out of routing, after which /predict and /explain answer their documented 503.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pandas as pd
import pytest
import schemathesis
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support import BIN, PROJECT_DIR, feedback_key_of, run, serving_project

from deployments.local.bento_server import served
from steward.db import make_engine
from steward.feedback_auth import signed_json
from steward.ledger import Ledger
from steward.routing import Routing, RoutingTable

pytestmark = pytest.mark.integration
TOKEN = "conformance-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KILL_SWITCH = "/admin/rollback"
# What every answer is held to; the generated run adds what needs to know what a request was meant to be.
DOCUMENTED = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CHECKS = [
    "not_a_server_error",
    *(check.__name__ for check in DOCUMENTED),
    "negative_data_rejection",
    "positive_data_acceptance",
    "unsupported_method",
    "ignored_auth",
]
# A refusal is any 4xx the document lists: schemathesis's default list lacks 413, which the guards answer for an
# invalid body past serve.max_body_bytes (a huge generated string) before anything reads it.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5XX"]
"""
EXAMPLES = 25  # per operation and phase
SEEN: dict[str, set[int]] = defaultdict(set)  # route -> the statuses it answered in this run


def _application() -> dict:
    row = pd.read_csv(PROJECT_DIR / "data/german_credit.csv").drop(columns="credit_risk").iloc[0].to_dict()
    return {**{k: v.item() if hasattr(v, "item") else v for k, v in row.items()}, "applicant_id": "conformance-1"}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """The service (its URL and feedback key) with production, a canary on half the applicants and a shadow; a rate
    limit no run reaches (429 is documented; test_serving.py shows it answered)."""
    project = tmp_path_factory.mktemp("conformance")
    unlimited = {"rate_per_second": 100_000, "burst": 100_000}
    env, refs = serving_project(project, serve=unlimited, extra={"STEWARD_ADMIN_TOKEN": TOKEN})
    engine = make_engine(f"sqlite:///{project / '.steward/steward.db'}")
    routing = Routing(production=refs["production"], canary=refs["canary"], canary_weight=0.5, shadow=refs["shadow"])
    RoutingTable(engine, Ledger(engine)).set("credit-risk", routing, actor="test", reason="conformance")
    with served(env, cwd=PROJECT_DIR, log=project / "service.log", timeout=120) as running:
        yield {"url": running.url, "key": feedback_key_of(env)}


@pytest.fixture(scope="module")
def api(service):
    """The service's own /docs.json, loaded by schemathesis."""
    return schemathesis.openapi.from_url(f"{service['url']}/docs.json", config=schemathesis.Config.from_str(CONFIG))


def _schemathesis(
    service: str, folder: Path, *operations: str, examples: int = EXAMPLES, checks: list[str] = CHECKS
) -> list[int]:
    """`st run` against the service's /docs.json (`operations`: its --include-path/--exclude-path options); fails
    with its report unless every check passed. The statuses answered go to SEEN, and are returned in order."""
    (folder / "schemathesis.toml").write_text(CONFIG)
    har = folder / "requests.har"
    command = [
        str(BIN / "st"),
        "--config-file",
        str(folder / "schemathesis.toml"),
        "run",
        f"{service}/docs.json",
        "--checks",
        ",".join(checks),
        *operations,
        "--header",
        f"Authorization: {AUTH['Authorization']}",
        "--max-examples",
        str(examples),
        "--seed",
        "0",
        "--generation-deterministic",  # and so no example database
        "--workers",
        "1",
        "--no-color",
        "--report",
        "har",
        "--report-har-path",
        str(har),
    ]
    finished = run(command, cwd=folder, env=dict(os.environ), timeout=300 + examples)
    report = finished.stdout + finished.stderr
    assert har.is_file(), report
    statuses = []
    for entry in json.loads(har.read_text())["log"]["entries"]:
        SEEN[urlsplit(entry["request"]["url"]).path].add(entry["response"]["status"])
        statuses.append(entry["response"]["status"])
    assert finished.returncode == 0, report
    return statuses


def _validated(case, headers: dict[str, str] | None = None) -> httpx.Response:
    """Send a hand-built case (with `headers` besides the admin token) and hold its answer to the document."""
    response = case.call_and_validate(headers=AUTH | (headers or {}), checks=DOCUMENTED)
    SEEN[case.operation.path].add(response.status_code)
    return response


def test_every_answer_is_one_the_published_schema_documents(service, tmp_path):
    _schemathesis(service["url"], tmp_path, "--exclude-path", KILL_SWITCH)


@pytest.mark.slow  # about 10,000 requests
def test_ten_thousand_requests_generated_from_the_schema_get_no_server_error(service, tmp_path):
    statuses = _schemathesis(
        service["url"], tmp_path, "--exclude-path", KILL_SWITCH, examples=1700, checks=["not_a_server_error"]
    )
    assert len(statuses) >= 10_000 and not [s for s in statuses if s >= 500], Counter(statuses)


def test_a_served_decisions_feedback_conflict_and_contest_answer_as_documented(api, service):
    decided = _validated(api["/predict"]["POST"].Case(body=_application()))
    assert decided.status_code == 200, decided.text
    served_id = decided.json()["request_id"]
    feedback = api["/feedback"]["POST"]

    def signed(outcome: str) -> httpx.Response:
        body, headers = signed_json({"request_id": served_id, "outcome": outcome}, key=service["key"])
        return _validated(feedback.Case(body=body, media_type="application/json"), headers)

    recorded, conflict, invalid = signed("bad"), signed("good"), signed("maybe")
    unsigned = _validated(feedback.Case(body={"request_id": served_id, "outcome": "bad"}))
    contested = _validated(api["/contest"]["POST"].Case(body={"request_id": served_id, "reason": "my income is wrong"}))
    statuses = (recorded.status_code, conflict.status_code, invalid.status_code, unsigned.status_code)
    assert statuses == (200, 409, 422, 401) and contested.status_code == 200


def test_the_kill_switch_answers_as_documented(service, tmp_path):
    _schemathesis(service["url"], tmp_path, "--include-path", KILL_SWITCH)


def test_once_every_model_is_pulled_decisions_and_readiness_answer_their_documented_503(api):
    rollback = api[KILL_SWITCH]["POST"]
    pulled = _validated(rollback.Case(body={"reason": "conformance: refuse", "refuse_all": True}))
    assert pulled.status_code == 200, pulled.text
    assert pulled.json()["routing"]["mode"] == "refuse"
    for path in ("/predict", "/explain"):
        refused = _validated(api[path]["POST"].Case(body=_application()))
        assert refused.status_code == 503, refused.text
    assert _validated(api["/readyz"]["GET"].Case()).status_code == 503


def test_the_run_saw_each_routes_success_and_its_refusals():
    if not SEEN:
        pytest.skip("runs after the tests above, in the same session")
    for path in ("/predict", "/explain", "/feedback", "/contest", "/admin/routing", "/admin/reload", KILL_SWITCH):
        assert 200 in SEEN[path] and 422 in SEEN[path], (path, sorted(SEEN[path]))
    for path in ("/feedback", "/admin/routing", "/admin/reload", KILL_SWITCH):
        assert 401 in SEEN[path], (path, sorted(SEEN[path]))  # no signature; ignored_auth's probe without the token
    assert {200, 503} <= SEEN["/predict"] and {200, 503} <= SEEN["/readyz"]
