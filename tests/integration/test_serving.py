"""The BentoML service for real: `bentoml serve` on 127.0.0.1 with three signed-off models in production,
canary and shadow, the routing table changed underneath it while it serves, and attacked: forged outcomes, a
flood rotating its client id, a decision contested over and over.

The service trusts 127.0.0.1 as its proxy (STEWARD_TRUSTED_PROXIES), so a test's X-Client-Id names its client as a
load balancer's would; an untrusted peer is 127.0.0.2 (loopback too: Linux routes all of 127/8 to `lo`)."""

from __future__ import annotations

import concurrent.futures
import json
import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from functools import reduce
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import (
    BIN,
    PROJECT_DIR,
    feedback_key_of,
    free_port,
    pseudonyms_of,
    serving_project,
    steward_env,
    wait_until,
)

from deployments.local.bento_server import Service, is_ready, served
from steward.db import make_engine
from steward.feedback_auth import BAD_SIGNATURE, MISSING_SIGNATURE, sign, signed_json
from steward.ledger import Ledger
from steward.params import load_params
from steward.reviews import TOO_MANY_OPEN, ReviewQueue
from steward.routing import Routing, RoutingTable, bucket
from tasks.data.features import read_snapshot
from tasks.serving.reasons import never_cited
from tasks.serving.requests import label_values

pytestmark = pytest.mark.integration
TOKEN = "test-admin-token"
USECASE = load_params(PROJECT_DIR / "params.yaml").usecase  # the use case the service below serves
PROTECTED = set(never_cited(USECASE))
ID = USECASE.id_column
FAVOURABLE, UNFAVOURABLE = label_values(USECASE)
PROXY, UNTRUSTED = "127.0.0.1", "127.0.0.2"


def _applications(n: int, *, prefix: str) -> list[dict]:
    rows = read_snapshot(PROJECT_DIR / USECASE.dataset.file).drop(columns=USECASE.label.column)
    rows = rows.sample(n=n, replace=n > len(rows), random_state=0).astype(object)
    records = rows.where(rows.notna(), None).to_dict("records")
    return [
        {**{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}, ID: f"{prefix}{i}"}
        for i, r in enumerate(records)
    ]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    project = tmp_path_factory.mktemp("serving")
    low = {"rate_per_second": 5, "burst": 10}  # low, so one client can exceed it
    extra = {"STEWARD_ADMIN_TOKEN": TOKEN, "STEWARD_TRUSTED_PROXIES": PROXY}
    env, refs = serving_project(project, serve=low, extra=extra)
    engine = make_engine(f"sqlite:///{project / '.steward/steward.db'}")
    table = RoutingTable(engine, Ledger(engine))
    table.set("credit-risk", Routing(production=refs["production"]), actor="test", reason="production only")
    with served(env, cwd=PROJECT_DIR, log=project / "service.log", timeout=90) as served_service:
        yield {
            "url": served_service.url,
            "refs": refs,
            "table": table,
            "engine": engine,
            "project": project,
            "key": feedback_key_of(env),  # the system of record's: the key file the service made in its home
            "pseudonym": pseudonyms_of(env, USECASE.model_name),  # who each decision is about, as logged
        }


def _signed_feedback(service, request_id: str, outcome: str, **headers: str) -> httpx.Response:
    """/feedback as the system of record sends it: signed with the service's feedback key, 429 waited out."""
    body, signed = signed_json({"request_id": request_id, "outcome": outcome}, key=service["key"])
    return _patiently(lambda: httpx.post(f"{service['url']}/feedback", content=body, headers=signed | headers))


def _patiently(send, *, attempts: int = 10) -> httpx.Response:
    """Send until the answer is not a 429, waiting the Retry-After each asks for (at most `attempts` sends): the key's
    holder is one client, with this module's low rate limit."""
    for _ in range(attempts - 1):
        answer = send()
        if answer.status_code != 429:
            return answer
        time.sleep(int(answer.headers["Retry-After"]))
    return send()


def _outcome_on_record(service, request_id: str) -> str | None:
    with service["engine"].connect() as connection:
        found = connection.exec_driver_sql("SELECT outcome FROM outcomes WHERE request_id = ?", (request_id,)).first()
    return None if found is None else found[0]


def _route(service, routing: Routing, *, within: float = 1.0) -> None:
    """Change the routing and wait until the service serves it: within a second for models it has loaded."""
    revision = service["table"].set("credit-risk", routing, actor="test", reason="test").revision
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Client-Id": "operator"}
    while True:
        served = httpx.post(f"{service['url']}/admin/routing", json={}, headers=headers)
        assert served.status_code == 200, served.text
        if served.json()["revision"] == revision:
            return
        assert time.monotonic() - started < within, f"routing change not served within {within} s"
        time.sleep(0.25)  # 4 polls a second: under the operator's own rate limit


def test_steward_serve_runs_by_path_without_the_venv_on_path(service, tmp_path):
    env = steward_env(service["project"], extra={"STEWARD_ADMIN_TOKEN": TOKEN})
    env["PATH"] = "/usr/bin:/bin"  # no activated venv: `bentoml` is not on PATH
    port = free_port()
    with (tmp_path / "serve.log").open("w") as log:
        process = subprocess.Popen(
            [str(BIN / "steward"), "serve", "--port", str(port)],
            cwd=PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served_by_path = Service(url=f"http://127.0.0.1:{port}", pid=process.pid)
    try:
        ready = wait_until(
            lambda: process.poll() is not None or is_ready(served_by_path.url), timeout=90, what="steward serve ready"
        )
        assert ready and process.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
    finally:
        for running in served_by_path.processes():
            running.kill()


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
            client.post(f"{service['url']}/predict", json=a, headers={"X-Client-Id": a[ID]}, timeout=10)
            for a in applications
        ]
    assert all(a.status_code == 200 for a in answers)
    served = [a.json()["model_version"] for a in answers]
    pseudonym = service["pseudonym"]  # routing buckets the keyed pseudonym, never the id as sent
    expected = [refs["canary"] if bucket(pseudonym(a[ID])) < 0.3 else refs["production"] for a in applications]
    assert served == expected and refs["shadow"] not in served
    share = served.count(refs["canary"]) / len(served)
    assert abs(share - 0.3) < 5 * (0.3 * 0.7 / 300) ** 0.5

    subjects = {pseudonym(a[ID]) for a in applications}

    def shadowed() -> int:
        with service["engine"].connect() as connection:
            logged = connection.exec_driver_sql("SELECT subject_id FROM predictions WHERE role = 'shadow'")
            return sum(subject in subjects for (subject,) in logged)

    wait_until(lambda: shadowed() >= 300, timeout=10, what="300 shadow decisions in the log")
    assert shadowed() == 300


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
    applications = _applications(300, prefix="load")

    def send(a: dict) -> int:
        return httpx.post(f"{service['url']}/predict", json=a, headers={"X-Client-Id": a[ID]}, timeout=30).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:  # 8 clients at once
        futures = [pool.submit(send, a) for a in applications]
        wait_until(lambda: sum(f.done() for f in futures) >= 80, timeout=60, what="80 requests answered")
        _route(service, Routing(production=refs["production"]))  # mid-load: about 220 still to go
        codes = [f.result() for f in futures]
    assert codes == [200] * len(applications)
    rollback = [r for r in service["table"]._ledger.records() if r.action == "rollout.step"][-1]
    assert rollback.payload["after"]["canary_weight"] == 0.0


def test_feedback_records_one_outcome_per_served_decision_and_a_contest_opens_a_review_case(service):
    url = service["url"]
    headers = {"X-Client-Id": "feedback"}
    served = httpx.post(f"{url}/predict", json=_applications(1, prefix="fb")[0], headers=headers).json()
    request_id = served["request_id"]
    recorded = _signed_feedback(service, request_id, UNFAVOURABLE)
    assert recorded.json() == {"request_id": request_id, "outcome": UNFAVOURABLE}
    conflict = _signed_feedback(service, request_id, FAVOURABLE)
    assert conflict.status_code == 409 and f"{UNFAVOURABLE!r} on record" in conflict.json()["error"]
    unknown = _signed_feedback(service, "0" * 32, UNFAVOURABLE)
    assert unknown.status_code == 404
    for other in ("maybe", ">50K" if FAVOURABLE != ">50K" else "good"):  # another use case's label is refused too
        invalid = _signed_feedback(service, request_id, other)
        assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"] == "outcome"
        assert all(repr(v) in invalid.json()["errors"][0]["problem"] for v in (FAVOURABLE, UNFAVOURABLE))

    case = httpx.post(
        f"{url}/contest", json={"request_id": request_id, "reason": "my income is wrong"}, headers=headers
    )
    assert case.status_code == 200 and case.json()["status"] == "open", case.text
    with service["engine"].connect() as connection:
        row = connection.exec_driver_sql(
            "SELECT kind, request_id, reason FROM reviews WHERE id = ?", (case.json()["case"],)
        ).one()
    assert tuple(row) == ("contest", request_id, "my income is wrong")


def test_forged_outcomes_are_refused_401_and_recorded_nowhere_then_the_signed_one_is(service):
    url = service["url"]
    decided = httpx.post(f"{url}/predict", json=_applications(1, prefix="forge")[0], headers={"X-Client-Id": "forge"})
    assert decided.status_code == 200, decided.text
    request_id = decided.json()["request_id"]
    forged = json.dumps({"request_id": request_id, "outcome": FAVOURABLE}).encode()
    genuine = json.dumps({"request_id": request_id, "outcome": UNFAVOURABLE}).encode()
    wrong_key = "an attacker's guess at the key, long enough to pass"
    attacks = {  # what the attacker sends -> what the service must say was wrong
        "no signature": ({}, MISSING_SIGNATURE),
        "signed with another key": ({"X-Steward-Signature": sign(forged, key=wrong_key)}, BAD_SIGNATURE),
        "a signature of another body": ({"X-Steward-Signature": sign(genuine, key=service["key"])}, BAD_SIGNATURE),
    }
    for what, (headers, problem) in attacks.items():
        attack = {"Content-Type": "application/json", "X-Client-Id": f"forger-{what}", **headers}
        refused = httpx.post(f"{url}/feedback", content=forged, headers=attack)
        assert (refused.status_code, refused.json()) == (401, {"error": problem}), what
        assert refused.headers["WWW-Authenticate"].startswith("HMAC-SHA256") and request_id not in refused.text
        assert _outcome_on_record(service, request_id) is None, what

    recorded = _signed_feedback(service, request_id, UNFAVOURABLE)
    assert recorded.status_code == 200 and recorded.json() == {"request_id": request_id, "outcome": UNFAVOURABLE}
    assert _outcome_on_record(service, request_id) == UNFAVOURABLE


def test_a_flood_rotating_its_client_id_is_one_client_unless_a_trusted_proxy_sends_it(service):
    application = _applications(1, prefix="flood")[0]

    def flood(peer: str, tag: str) -> list[int]:
        transport = httpx.HTTPTransport(
            local_address=peer
        )  # the connection's source address: the peer the service sees
        with httpx.Client(transport=transport, base_url=service["url"], timeout=30) as client:

            def send(n: int) -> int:
                headers = {"X-Client-Id": f"{tag}-{uuid.uuid4().hex}-{n}"}  # a fresh id on every request
                return client.post("/predict", json=application, headers=headers).status_code

            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
                return list(pool.map(send, range(60)))

    untrusted = flood(UNTRUSTED, "rotating")
    assert set(untrusted) == {200, 429} and untrusted.count(429) >= 30, untrusted  # burst 10 at 5/s, then refused
    assert flood(PROXY, "forwarded") == [200] * 60  # through the trusted proxy: sixty clients, a bucket each


def test_a_decision_may_have_three_open_contests_and_a_fourth_waits_for_a_reviewer(service):
    url, headers = service["url"], {"X-Client-Id": "contester"}
    decided = httpx.post(f"{url}/predict", json=_applications(1, prefix="contest")[0], headers=headers)
    request_id = decided.json()["request_id"]

    def contest(n: int) -> httpx.Response:
        return httpx.post(f"{url}/contest", json={"request_id": request_id, "reason": f"try {n}"}, headers=headers)

    opened = [contest(n) for n in range(3)]
    assert [c.status_code for c in opened] == [200, 200, 200], [c.text for c in opened]
    fourth = contest(3)
    limit = TOO_MANY_OPEN.format(request_id=request_id, open=3, kind="contest", limit=3)
    assert (fourth.status_code, fourth.json()) == (409, {"error": limit})
    with service["engine"].connect() as connection:
        sql = "SELECT COUNT(*) FROM reviews WHERE request_id = ? AND kind = 'contest'"
        assert connection.exec_driver_sql(sql, (request_id,)).scalar() == 3

    ReviewQueue(service["engine"]).resolve(
        opened[0].json()["case"], decision="approve", reviewer="kim", note="checked", ledger=Ledger(service["engine"])
    )
    assert contest(4).status_code == 200  # a resolved case frees its place


def test_a_request_naming_another_use_case_is_refused_and_its_own_is_served(service):
    url, body = service["url"], _applications(1, prefix="uc")[0]
    own = httpx.post(f"{url}/predict", json=body, headers={"X-Steward-Usecase": USECASE.name}, timeout=10)
    assert own.status_code == 200, own.text
    other = "adult_income" if USECASE.name != "adult_income" else "german_credit"
    refused = httpx.post(f"{url}/predict", json=body, headers={"X-Steward-Usecase": other}, timeout=10)
    assert refused.status_code == 421 and repr(USECASE.name) in refused.json()["error"]


# --- the HTTP contract, fuzzed from the service's own OpenAPI schema ----------------------------------------------

FUZZED_PATHS = ("/predict", "/feedback", "/contest")
# How a malformed request is malformed, and how many examples of each every endpoint gets (204 in all).
MALFORMED = {
    "field slips": 30,
    "not an object": 5,
    "not json": 8,
    "truncated": 5,
    "duplicate key": 5,
    "deeply nested": 4,
    "oversized": 2,
    "wrong content type": 5,
    "wrong method": 4,
}
CONFORMING_EXAMPLES = {"/predict": 50, "/feedback": 15, "/contest": 15}
JSON_TYPES = ("application/json", "application/json; charset=utf-8", "Application/JSON")
NOT_JSON_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "text/json", "", None)
# What a request that conforms to the published schema may get: 422 where the schema cannot say a rule, 404/409
# for a request id that was never served, already has its outcome or its most open contests. /feedback's requests,
# malformed or not, are signed as the system of record signs: what they test is the body's handling.
CONFORMING_STATUSES = {"/predict": {200, 422}, "/feedback": {200, 404, 409, 422}, "/contest": {200, 404, 409, 422}}
FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run (CI), until Hypothesis or this file changes
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=16),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
NESTED = "__nested_{}__"  # how `_encode` marks a `Nested` value in the JSON before writing out its brackets


@dataclass(frozen=True)
class Nested:
    """A value that is `depth` nested empty JSON arrays (too deep for json.dumps to write)."""

    depth: int


@dataclass(frozen=True)
class Fuzzed:
    """One generated request, and what was done to it."""

    what: str
    method: str
    path: str
    content_type: str | None
    body: bytes

    def send(self, client: httpx.Client, service: dict) -> httpx.Response:
        headers = {"X-Client-Id": f"fuzz-{uuid.uuid4().hex}"}  # a token bucket of its own: never rate limited
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        if self.path == "/feedback":  # signed by the key's holder, one client: its 429s are waited out
            headers["X-Steward-Signature"] = sign(self.body, key=service["key"])
        url = service["url"] + self.path
        return _patiently(lambda: client.request(self.method, url, content=self.body, headers=headers, timeout=30))

    def explain(self, answer: httpx.Response, service: dict) -> str:
        log = (service["project"] / "service.log").read_text(errors="replace")[-6000:]
        return (
            f"{self.what}: {self.method} {self.path} content-type {self.content_type!r} body {self.body[:400]!r}"
            f" -> {answer.status_code} {answer.text[:400]}\n--- service log (tail) ---\n{log}"
        )


def _request_schemas(docs: dict) -> dict[str, dict]:
    """The JSON body schema of each fuzzed endpoint as the service publishes it at /docs.json, refs resolved."""

    def resolve(node: dict) -> dict:
        while "$ref" in node:
            node = reduce(dict.__getitem__, node["$ref"].removeprefix("#/").split("/"), docs)
        return node

    found = {}
    for path in FUZZED_PATHS:
        schema = resolve(docs["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"])
        found[path] = {**schema, "properties": {k: resolve(v) for k, v in schema["properties"].items()}}
    return found


def _conforms(prop: dict, value: Any) -> bool:
    """Whether `value` satisfies a property's schema (the subset the service publishes)."""
    if "enum" in prop:
        return any(type(value) is type(member) and value == member for member in prop["enum"])
    if prop.get("type") == "integer":
        return type(value) is int and prop.get("minimum", value) <= value <= prop.get("maximum", value)
    if prop.get("type") == "string":
        return (
            isinstance(value, str)
            and prop.get("minLength", 0) <= len(value) <= prop.get("maxLength", len(value))
            and re.fullmatch(prop.get("pattern", ".*"), value, re.DOTALL) is not None
        )
    raise ValueError(f"the fuzzer does not know this schema; extend _conforms and _valid: {prop}")


def _valid(prop: dict) -> st.SearchStrategy[Any]:
    """Values a property's schema accepts."""
    _conforms(prop, None)  # refuses a schema it cannot check
    if "enum" in prop:
        return st.sampled_from(prop["enum"])
    if prop["type"] == "integer":
        return st.integers(prop.get("minimum"), prop.get("maximum"))
    if "pattern" in prop:
        return st.from_regex(prop["pattern"], fullmatch=True).filter(lambda v: _conforms(prop, v))
    return st.text(min_size=prop.get("minLength", 0), max_size=prop.get("maxLength")).filter(
        lambda v: _conforms(prop, v)
    )


def _near_misses(prop: dict, value: Any) -> list[Any]:
    """Values one slip away from a valid one: out by one, another spelling, the right number as another type."""
    if isinstance(value, int):
        low, high = prop.get("minimum", 0), prop.get("maximum", 0)
        return [low - 1, high + 1, -value, 2**63, -(2**64), 10**400, float(value), value + 0.5, str(value), True]
    return [
        value.upper(),
        value.title(),
        f" {value}",
        f"{value}\n",
        value[:-1],
        value * 40,
        value.replace(" ", "\u00a0"),
        value + "\u200b",
        value.encode("utf-8").hex(),
        "",
    ]


def _invalid(prop: dict) -> st.SearchStrategy[Any]:
    """Values a property's schema refuses."""
    return st.one_of(
        _valid(prop).flatmap(lambda v: st.sampled_from(_near_misses(prop, v))),
        JUNK,
        st.text(st.characters(codec=None, categories=["L", "M", "S", "C", "Z"]), max_size=40),  # incl. surrogates
        st.builds(lambda char, n: char * n, st.characters(), st.integers(1_000, 20_000)),  # huge
        st.builds(Nested, st.integers(100, 3_000)),
    ).filter(lambda v: not _conforms(prop, v))


def _conforming_body(schema: dict) -> st.SearchStrategy[dict]:
    required = set(schema.get("required", []))
    properties = schema["properties"]
    return st.fixed_dictionaries(
        {k: _valid(p) for k, p in properties.items() if k in required},
        optional={k: _valid(p) for k, p in properties.items() if k not in required},
    )


@st.composite
def _malformed_body(draw: st.DrawFn, schema: dict) -> dict:
    """A conforming body with one to three slips: a required field gone, a field's value refused, a field added.

    (Where the schema allows extra fields the body may still conform; its request id was never served: 404.)
    """
    body = dict(draw(_conforming_body(schema)))
    properties = schema["properties"]
    for _ in range(draw(st.integers(1, 3))):
        slip = draw(st.sampled_from(["missing", "refused", "extra"]))
        if slip == "missing" and (present := sorted(set(schema.get("required", [])) & body.keys())):
            del body[draw(st.sampled_from(present))]
        elif slip == "extra":
            body[draw(st.text(max_size=24).filter(lambda k: k not in properties))] = draw(JUNK)
        else:
            name = draw(st.sampled_from(sorted(properties)))
            body[name] = draw(_invalid(properties[name]))
    return body


def _encode(value: Any, *, ascii_only: bool) -> bytes:
    """JSON as a client might send it: escaped or raw UTF-8, lone surrogates passed through, NaN if present."""
    text = json.dumps(value, ensure_ascii=ascii_only, default=lambda nested: NESTED.format(nested.depth))
    marked = '"' + NESTED.format(r"(\d+)") + '"'
    text = re.sub(marked, lambda m: "[" * int(m[1]) + "]" * int(m[1]), text)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def _malformed_requests(draw: st.DrawFn, path: str, schema: dict, kind: str, max_body_bytes: int) -> Fuzzed:
    """A request to `path` the service must refuse: its body, encoding, media type or method is wrong (`kind`)."""
    ascii_only = draw(st.booleans())
    fields = draw(_conforming_body(schema))
    conforming = _encode(fields, ascii_only=ascii_only)
    method, content_type = "POST", draw(st.sampled_from(JSON_TYPES))
    match kind:
        case "field slips":
            body = _encode(draw(_malformed_body(schema)), ascii_only=ascii_only)
        case "not an object":
            body = _encode(draw(JUNK.filter(lambda v: not isinstance(v, dict))), ascii_only=ascii_only)
        case "not json":
            body = draw(st.binary(max_size=300) | st.sampled_from([b"", b"{", b"{'a': 1}", b"\xff\xfe{}", b"null x"]))
        case "truncated":
            body = conforming[: draw(st.integers(0, len(conforming) - 1))]
        case "duplicate key":  # each value refused, so the request is invalid whichever the parser keeps
            name = draw(st.sampled_from(sorted(schema["properties"])))
            first, second = (_encode(draw(_invalid(schema["properties"][name])), ascii_only=True) for _ in range(2))
            stem = _encode({k: v for k, v in fields.items() if k != name}, ascii_only=ascii_only)
            key = json.dumps(name).encode()
            body = stem[:-1] + b", " + key + b": " + first + b", " + key + b": " + second + b"}"
        case "deeply nested":
            depth = draw(st.integers(100, 3_000))  # deeper than Python's recursion limit, under the body limit
            body = draw(st.sampled_from([b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth]))
        case "oversized":
            body = conforming[:-1] + b" " * (max_body_bytes + draw(st.integers(0, 10_000))) + b"}"
        case "wrong content type":
            content_type, body = draw(st.sampled_from(NOT_JSON_TYPES)), conforming
        case "wrong method":
            method, body = draw(st.sampled_from(["GET", "PUT", "PATCH", "DELETE"])), conforming
        case _:
            raise ValueError(f"no such kind of malformed request: {kind}")
    return Fuzzed(kind, method, path, content_type, body)


@st.composite
def _conforming_requests(draw: st.DrawFn, path: str, schema: dict, served: str) -> Fuzzed:
    """A request to `path` whose body conforms to the schema; a request id is sometimes one the service served."""
    body = dict(draw(_conforming_body(schema)))
    if "request_id" in body and draw(st.booleans()):
        body["request_id"] = served
    encoded = _encode(body, ascii_only=draw(st.booleans()))
    return Fuzzed("conforming", "POST", path, draw(st.sampled_from(JSON_TYPES)), encoded)


@pytest.fixture(scope="module")
def published(service) -> dict[str, dict]:
    """The request schema of each fuzzed endpoint, read from the running service's /docs.json."""
    docs = httpx.get(f"{service['url']}/docs.json", headers={"X-Client-Id": "fuzz-docs"}, timeout=10)
    assert docs.status_code == 200, docs.text
    return _request_schemas(docs.json())


@pytest.mark.parametrize(("path", "kind"), [(p, k) for p in FUZZED_PATHS for k in MALFORMED])
def test_malformed_requests_generated_from_the_published_schema_get_a_4xx_never_a_5xx(service, published, path, kind):
    limit = yaml.safe_load((service["project"] / "params.yaml").read_text())["serve"]["max_body_bytes"]
    with httpx.Client() as client:

        @settings(FUZZ, max_examples=MALFORMED[kind])
        @given(_malformed_requests(path, published[path], kind, limit))
        def refused(request: Fuzzed) -> None:
            answer = request.send(client, service)
            assert 400 <= answer.status_code < 500, request.explain(answer, service)

        refused()
    assert httpx.get(f"{service['url']}/readyz", timeout=10).status_code == 200


@pytest.mark.parametrize("path", FUZZED_PATHS)
def test_requests_conforming_to_the_published_schema_are_answered_never_a_5xx(service, published, path):
    served = httpx.post(
        f"{service['url']}/predict", json=_applications(1, prefix="fuzz")[0], headers={"X-Client-Id": "fuzz"}
    )
    assert served.status_code == 200, served.text
    with httpx.Client() as client:

        @settings(FUZZ, max_examples=CONFORMING_EXAMPLES[path])
        @given(_conforming_requests(path, published[path], served.json()["request_id"]))
        def answered(request: Fuzzed) -> None:
            answer = request.send(client, service)
            assert answer.status_code in CONFORMING_STATUSES[path], request.explain(answer, service)

        answered()


def test_a_body_that_is_not_json_gets_415_and_one_streamed_past_the_limit_413(service):
    url = f"{service['url']}/predict"
    application = json.dumps(_applications(1, prefix="media")[0]).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"X-Client-Id": f"media-{content_type}"} | ({"Content-Type": content_type} if content_type else {})
        answer = httpx.post(url, content=application, headers=headers, timeout=10)
        assert answer.status_code == 415 and answer.json() == {"error": "content-type must be application/json"}
    streamed = httpx.post(  # chunked: no Content-Length to refuse it by, so the body read stops it
        url, content=iter([b" " * 10_000] * 3), headers={"Content-Type": "application/json", "X-Client-Id": "stream"}
    )
    assert streamed.status_code == 413 and "larger than" in streamed.json()["error"]


def test_a_routing_row_updated_around_the_ledger_is_refused_and_the_recorded_routing_kept(service):
    refs = service["refs"]
    _route(service, Routing(production=refs["production"]))
    recorded = service["table"].get("credit-risk")
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Client-Id": "operator"}
    with service["engine"].begin() as connection:  # the attack: SQL straight into the routing table, no record
        connection.exec_driver_sql(
            "UPDATE routing SET canary = ?, canary_weight = 1.0, revision = revision + 1 WHERE model_name = ?",
            (refs["canary"], "credit-risk"),
        )

    def refusals() -> list:
        return service["table"]._ledger.records(subject="routing:credit-risk", actions=("routing.refused",))

    deadline = time.monotonic() + 10
    while not refusals() and time.monotonic() < deadline:  # the watch thread re-reads every 250 ms
        time.sleep(0.25)
    (refusal,) = refusals()
    assert refusal.payload["row_revision"] == recorded.revision + 1
    assert refusal.payload["serving"] == recorded.as_dict()
    assert "has no matching ledger record" in refusal.payload["reason"]
    served = httpx.post(f"{service['url']}/admin/routing", json={}, headers=headers).json()
    assert (served["revision"], served["canary"], served["canary_weight"]) == (recorded.revision, None, 0.0)
    for application in _applications(5, prefix="around-"):
        answer = _patiently(lambda a=application: httpx.post(f"{service['url']}/predict", json=a, headers=headers))
        assert answer.status_code == 200 and answer.json()["model_version"] == refs["production"], answer.text
    assert len(refusals()) == 1  # said once, not every 250 ms

    _route(service, Routing(production=refs["production"]))  # a recorded change is served again


def test_a_rollback_pulls_the_canary_once_and_only_refuse_all_stops_decisions(service):
    refs = service["refs"]
    _route(
        service, Routing(production=refs["production"], canary=refs["canary"], canary_weight=0.2, shadow=refs["shadow"])
    )
    env = steward_env(service["project"], extra={"BENTOML_HOME": str(service["project"] / ".steward/bentoml")})
    steward = str(BIN / "steward")
    reason = "selection rate for women fell"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [steward, "rollback", *args, "--as", "oncall"]
        return subprocess.run(
            command, cwd=service["project"], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    pulled = cli("--reason", reason)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert f"now serving: all traffic to {refs['production']}" in " ".join(pulled.stdout.split())
    status = subprocess.run(
        [steward, "status"], cwd=service["project"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refs["production"] in status.stdout and refs["canary"] not in status.stdout.split("logged:")[0]
    rollback = [r for r in service["table"]._ledger.records() if r.action == "rollback"][-1]
    assert (rollback.actor, rollback.payload["reason"]) == ("oncall", reason)
    states = {
        r.subject: r.payload["to"] for r in service["table"]._ledger.records() if r.action == "registry.transition"
    }
    assert states[refs["canary"]] == states[refs["shadow"]] == "rolled_back"

    # the same request over HTTP: refused without the admin token, and with it a repeat that changes nothing
    body = {"reason": reason, "actor": "oncall-http"}
    refused = httpx.post(f"{service['url']}/admin/rollback", json=body, headers={"X-Client-Id": "oncall"})
    assert refused.status_code == 401 and service["table"].get("credit-risk").production == refs["production"]
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Client-Id": "oncall"}
    again = httpx.post(f"{service['url']}/admin/rollback", json=body, headers=headers, timeout=30)
    assert again.status_code == 200, again.text
    assert again.json()["rolled_back"] == [] and again.json()["routing"]["production"] == refs["production"]
    kept = _applications(1, prefix="kept")[0]
    answer = _patiently(lambda: httpx.post(f"{service['url']}/predict", json=kept, headers=headers))
    assert answer.status_code == 200 and answer.json()["model_version"] == refs["production"]

    # refusing every decision is its own, explicit command
    stopped = cli("--refuse-all", "--reason", "production misbehaves too")
    assert stopped.returncode == 0 and "now serving: nobody" in " ".join(stopped.stdout.split())
    deadline = time.monotonic() + 1.0
    while True:
        answer = httpx.post(
            f"{service['url']}/predict", json=_applications(1, prefix="after")[0], headers={"X-Client-Id": "late"}
        )
        if answer.status_code == 503 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer.status_code == 503 and answer.json()["decision"] == "referred"
