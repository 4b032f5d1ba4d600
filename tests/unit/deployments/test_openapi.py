"""/docs.json as the service behaves: the middleware serving it, the service's own document, and every refusal of the
guards matching the model that document names for its status (no network: httpx's ASGI transport)."""

import asyncio
import json

import httpx
import pytest

from deployments.guards import Guards
from deployments.openapi import DOCS_PATH, OpenAPIDocument
from tasks.serving.openapi import ANSWERS, document

TOKEN = "s3cret-admin-token"


async def _app(scope, receive, send):
    """Stands for BentoML: reads the body, answers 200 `{"app": path}`, or a pydantic 400 report at /invalid."""
    while (await receive()).get("more_body", False):
        pass
    status, payload = (200, {"app": scope["path"]})
    if scope["path"] == "/invalid":
        status, payload = 400, {"error": "e", "detail": [{"loc": ["age"], "msg": "too young", "type": "greater_than"}]}
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def _call(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
            return await http.request(method, path, **kwargs)

    return asyncio.run(go())


def test_the_document_is_built_once_and_served_at_docs_json_and_everything_else_passes_through():
    built = []

    def build() -> dict:
        built.append(1)
        return {"openapi": "3.0.2", "paths": {}}

    docs = OpenAPIDocument(_app, build=build)
    first, second = _call(docs, "GET", DOCS_PATH), _call(docs, "GET", DOCS_PATH)
    assert first.status_code == second.status_code == 200 and built == [1]
    assert first.json() == {"openapi": "3.0.2", "paths": {}} and first.headers["content-type"] == "application/json"
    assert _call(docs, "POST", DOCS_PATH, json={}).json() == {"app": DOCS_PATH}
    assert _call(docs, "GET", "/docs.json/x").json() == {"app": "/docs.json/x"}


def test_the_services_document_lists_every_route_with_the_statuses_it_answers():
    from deployments.service import Steward  # imports BentoML and reads params.yaml: only here

    doc = document(Steward.openapi_spec.asdict())  # raises if a route of the service has no answers
    for path, statuses in ANSWERS.items():
        (operation,) = doc["paths"][path].values()
        assert set(operation["responses"]) == {str(status) for status in statuses}


REFUSALS = [  # (what the guards refuse, how to make them, the status)
    ("no token", {"path": "/admin/routing", "json": {}}, 401),
    ("no signature", {"path": "/feedback", "json": {}}, 401),
    ("bad signature", {"path": "/feedback", "json": {}, "headers": {"X-Steward-Signature": "sha256=" + "0" * 64}}, 401),
    ("admin disabled", {"path": "/admin/routing", "json": {}, "token": None}, 503),
    (
        "too large",
        {"path": "/predict", "content": b"{}" + b" " * 600, "headers": {"content-type": "application/json"}},
        413,
    ),
    ("not json", {"path": "/predict", "content": b"{}", "headers": {"content-type": "text/plain"}}, 415),
    ("invalid", {"path": "/invalid", "json": {"age": 7}}, 422),
    ("rate limited", {"path": "/predict", "json": {}, "burst": 0}, 429),
]


@pytest.mark.parametrize(("what", "request_", "status"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_each_refusal_of_the_guards_is_the_body_the_document_names_for_its_status(what, request_, status):
    options = {
        "max_body_bytes": 512,
        "admin_token": request_.pop("token", TOKEN),
        "burst": 1,
        "signed_paths": ["/feedback"],
        "signing_key": lambda: "k" * 40,
    }
    guards = Guards(_app, **options)
    if request_.pop("burst", 1) == 0:
        _call(guards, "POST", "/predict", json={})  # spends the only token
    path = request_.pop("path")
    answer = _call(guards, "POST", path, **request_)
    assert answer.status_code == status
    documented = ANSWERS[path if path in ANSWERS else "/predict"][status]
    assert documented.body is not None
    documented.body.model_validate(answer.json())
    for header in documented.headers:
        assert header in answer.headers
