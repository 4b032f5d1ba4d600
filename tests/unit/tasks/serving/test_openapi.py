"""`document` on a small document shaped like BentoML 1.4's: the statuses each route answers replace BentoML's four,
every `$ref` resolves, and the schemas are written in OpenAPI 3.0's terms."""

import json
from functools import reduce

import pytest
from pydantic import BaseModel

from tasks.serving.openapi import (
    ADMIN_TOKEN,
    ANSWERS,
    FEEDBACK_SIGNATURE,
    GUARDED,
    UNDOCUMENTED_ROUTE,
    UNKNOWN_ROUTE,
    Answer,
    _openapi30,
    document,
)
from tasks.serving.responses import Error, Explanation, RoutingState


class Thing(BaseModel):
    name: str


BENTOML_ERRORS = {
    str(status): {
        "description": "d",
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{n}"}}},
    }
    for status, n in ((400, "InvalidArgument"), (404, "NotFound"), (500, "InternalServerError"))
}


def _operation(name: str) -> dict:
    body = {"content": {"application/json": {"schema": {"type": "object", "properties": {}}}}}
    return {"responses": dict(BENTOML_ERRORS), "tags": ["Service APIs"], "requestBody": body, "operationId": name}


def _bentoml_like() -> dict:
    error = {"type": "object", "properties": {"error": {"type": "string"}}}
    return {
        "openapi": "3.0.2",
        "info": {"title": "t", "version": "None"},
        "paths": {
            "/livez": {"get": {"responses": {"200": {"description": "ok"}}, "tags": ["Infrastructure"]}},
            "/thing": {"post": _operation("thing")},
            "/admin/thing": {"post": _operation("admin_thing")},
        },
        "components": {
            "schemas": {"InvalidArgument": error, "NotFound": error, "InternalServerError": error, "TaskStatus": {}}
        },
    }


ANSWERED = {
    "/thing": {200: Answer("a thing", Thing), 404: Answer("none", Error), **GUARDED},
    "/admin/thing": {200: Answer("the routing", RoutingState), 401: Answer("token", Error, security=ADMIN_TOKEN)},
    "/livez": {200: Answer("alive", None)},
}


def _resolve(doc: dict, ref: str) -> dict:
    return reduce(dict.__getitem__, ref.removeprefix("#/").split("/"), doc)


def _refs(node) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for v in node.values() for r in _refs(v)]
    return [r for v in node for r in _refs(v)] if isinstance(node, list) else []


def test_each_route_answers_exactly_its_statuses_each_with_its_model():
    doc = document(_bentoml_like(), ANSWERED)
    for path, statuses in ANSWERED.items():
        (operation,) = doc["paths"][path].values()
        assert sorted(operation["responses"], key=int) == [str(s) for s in sorted(statuses)]
        for status, answer in statuses.items():
            (media,) = operation["responses"][str(status)]["content"].items()
            if answer.body is None:
                assert media == ("text/plain", {"schema": {"type": "string"}})
            else:
                assert media[0] == "application/json"
                assert _resolve(doc, media[1]["schema"]["$ref"])["title"] == answer.body.__name__


def test_every_ref_resolves_and_what_nothing_refers_to_is_dropped():
    doc = document(_bentoml_like(), ANSWERED)
    for ref in _refs(doc):
        assert _resolve(doc, ref)
    assert set(doc["components"]["schemas"]) == {"Thing", "Error", "InvalidRequest", "FieldError", "RoutingState"}


def test_bodies_are_required_and_the_security_of_a_route_is_the_scheme_its_401_refuses_for():
    doc = document(_bentoml_like(), ANSWERED)
    assert doc["paths"]["/thing"]["post"]["requestBody"]["required"] is True
    assert "security" not in doc["paths"]["/thing"]["post"]
    assert doc["paths"]["/admin/thing"]["post"]["security"] == [{ADMIN_TOKEN: []}]
    assert doc["components"]["securitySchemes"] == {  # only the schemes some route uses
        ADMIN_TOKEN: {
            "type": "http",
            "scheme": "bearer",
            "description": doc["components"]["securitySchemes"][ADMIN_TOKEN]["description"],
        }
    }


def test_feedback_is_secured_by_its_signature_header_and_the_admin_routes_by_the_token():
    secured = {path: {a.security for a in statuses.values() if a.security} for path, statuses in ANSWERS.items()}
    assert {path: schemes for path, schemes in secured.items() if schemes} == {
        "/feedback": {FEEDBACK_SIGNATURE},
        "/admin/routing": {ADMIN_TOKEN},
        "/admin/reload": {ADMIN_TOKEN},
        "/admin/rollback": {ADMIN_TOKEN},
    }
    signed = {**_bentoml_like()["paths"], "/feedback": {"post": _operation("feedback")}}
    doc = document({**_bentoml_like(), "paths": signed}, {**ANSWERED, "/feedback": ANSWERS["/feedback"]})
    assert doc["paths"]["/feedback"]["post"]["security"] == [{FEEDBACK_SIGNATURE: []}]
    scheme = doc["components"]["securitySchemes"][FEEDBACK_SIGNATURE]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-Steward-Signature")
    assert doc["paths"]["/feedback"]["post"]["responses"]["401"]["headers"]["WWW-Authenticate"]["required"]


def test_the_rate_limit_documents_its_retry_after_header():
    responses = document(_bentoml_like(), ANSWERED)["paths"]["/thing"]["post"]["responses"]
    assert responses["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}


def test_the_input_document_is_left_untouched_and_stays_openapi_30():
    spec = _bentoml_like()
    before = json.dumps(spec, sort_keys=True)
    assert document(spec, ANSWERED)["openapi"] == "3.0.2"
    assert json.dumps(spec, sort_keys=True) == before


def test_a_service_route_without_answers_or_answers_for_a_route_it_lacks_are_refused():
    with pytest.raises(ValueError, match="have no entry") as missing:
        document(_bentoml_like(), {"/thing": ANSWERED["/thing"]})
    assert str(missing.value) == UNDOCUMENTED_ROUTE.format(paths=["/admin/thing"])
    with pytest.raises(ValueError, match="does not serve") as unknown:
        document(_bentoml_like(), {**ANSWERED, "/gone": {200: Answer("x", Error)}})
    assert str(unknown.value) == UNKNOWN_ROUTE.format(paths=["/gone"])


def test_optional_values_and_constants_are_said_as_openapi_30_says_them():
    explanation = _openapi30(Explanation.model_json_schema(mode="serialization", ref_template="#/c/{model}"))
    assert explanation["properties"]["counterfactual"] == {
        "allOf": [{"$ref": "#/c/Counterfactual"}],
        "nullable": True,
        "description": explanation["properties"]["counterfactual"]["description"],
    }
    routing = _openapi30(RoutingState.model_json_schema(mode="serialization"))
    assert routing["properties"]["production"] == {"type": "string", "title": "Production", "nullable": True}
    assert _openapi30({"const": "referred", "type": "string"}) == {"enum": ["referred"], "type": "string"}
    assert _openapi30({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}) == {
        "anyOf": [{"type": "string"}, {"type": "integer"}],
        "nullable": True,
    }
    assert _openapi30({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1.5}) == {
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 1.5,
        "exclusiveMaximum": True,
    }


def test_no_schema_of_the_service_keeps_a_json_schema_2020_keyword_openapi_30_lacks():
    doc = document(_bentoml_like(), {**ANSWERED, "/thing": {**ANSWERED["/thing"], 200: Answer("x", Explanation)}})
    text = json.dumps(doc["components"])
    assert '"const"' not in text and '"type": "null"' not in text and "$defs" not in text


def test_a_request_field_its_model_lets_be_null_is_marked_nullable_where_bentoml_dropped_it():
    class Asked(BaseModel):
        name: str
        gap: int | None
        to: str | None = None

    spec = _bentoml_like()
    properties = {"name": {"type": "string"}, "gap": {"type": "integer"}, "to": {"type": "string", "default": None}}
    spec["paths"]["/thing"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"] = properties
    doc = document(spec, ANSWERED, requests={"/thing": Asked})
    found = doc["paths"]["/thing"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert found == {
        "name": {"type": "string"},
        "gap": {"type": "integer", "nullable": True},
        "to": {"type": "string", "default": None, "nullable": True},
    }
