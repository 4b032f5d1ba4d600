"""The service's OpenAPI document as it behaves: every status each route answers, with its body's model.

BentoML 1.4 builds /docs.json itself and lists the same four statuses for every API (200, and 400, 404, 500 with
BentoML's own error bodies), whatever the endpoint answers; it has no hook to change an operation's responses
(BentoML issue #2975). `document` takes BentoML's document (`Service.openapi_spec.asdict()`) and, for each route in
`ANSWERS`, replaces the responses with the statuses that route answers (the guards' 413, 415, 422, 429, the admin
token's 401 and 503, /feedback's signature's 401, the use-case header's 421, BentoML's 500 and 504, and the endpoint's
own), each naming its model in tasks/serving/responses.py, and declares the security scheme whose refusal a 401 is.
deployments/openapi.py serves the result at /docs.json.

The document stays OpenAPI 3.0 (BentoML's 3.0.2), whose `integer` is a JSON number written without a fraction, as
the service's strict request types want it (42.0 is refused); under OpenAPI 3.1 (JSON Schema 2020-12) 42.0 would be
a valid integer. The body models' pydantic schemas are written in 3.0's terms (`_openapi30`): an optional value as
`nullable` (an optional model as `allOf` of its `$ref` with `nullable`), a `const` as a one-value `enum`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from steward.feedback_auth import SIGNATURE_HEADER
from tasks.serving.responses import (
    ContestCase,
    Error,
    Explanation,
    InvalidRequest,
    OutcomeRecorded,
    Prediction,
    Refusal,
    RollbackResult,
    RoutingState,
)

REF = "#/components/schemas/{model}"
NULL = {"type": "null"}
JSON = "application/json"
TEXT = "text/plain"
UNDOCUMENTED_ROUTE = "the service's route(s) {paths} have no entry in ANSWERS: their statuses would be BentoML's guess"
UNKNOWN_ROUTE = "ANSWERS documents route(s) {paths} that the service does not serve"
API_TAG = "Service APIs"  # the tag BentoML gives the service's own @bentoml.api routes
ADMIN_TOKEN = "adminToken"  # the security scheme of the /admin routes
FEEDBACK_SIGNATURE = "feedbackSignature"  # the security scheme of /feedback
SECURITY_SCHEMES = {
    ADMIN_TOKEN: {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <STEWARD_ADMIN_TOKEN>` (the /admin routes)",
    },
    FEEDBACK_SIGNATURE: {
        "type": "apiKey",
        "in": "header",
        "name": SIGNATURE_HEADER,
        "description": "`sha256=<hex>`: the HMAC-SHA256 of the exact request body under the feedback key "
        "(STEWARD_FEEDBACK_KEY, else the key file STEWARD_HOME/keys/feedback.key), from the system of record",
    },
}


@dataclass(frozen=True)
class Answer:
    """One status a route may answer: a JSON body of model `body`, or plain text when `body` is None."""

    description: str
    body: type[BaseModel] | None
    headers: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # name -> OpenAPI header object
    security: str | None = None  # the security scheme (SECURITY_SCHEMES) this answer refuses a request for lacking

    def response(self) -> dict[str, Any]:
        schema = {"type": "string"} if self.body is None else {"$ref": REF.format(model=self.body.__name__)}
        answer: dict[str, Any] = {
            "description": self.description,
            "content": {TEXT if self.body is None else JSON: {"schema": schema}},
        }
        if self.headers:
            answer["headers"] = dict(self.headers)
        return answer


RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds until the client's token bucket holds a token again",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
LOG_BEHIND = {
    "Retry-After": {
        "description": "Seconds to wait: sent when the decision log cannot record a decision now (not for the kill "
        "switch, which lasts until a person restores a model)",
        "required": False,
        "schema": {"type": "integer", "minimum": 1},
    }
}
BEARER = {"WWW-Authenticate": {"description": "`Bearer`", "required": True, "schema": {"type": "string"}}}
SIGNATURE_CHALLENGE = {
    "WWW-Authenticate": {
        "description": f'`HMAC-SHA256 header="{SIGNATURE_HEADER}"`',
        "required": True,
        "schema": {"type": "string"},
    }
}

# Every POST through deployments/guards.py, and BentoML's own failures.
GUARDED: dict[int, Answer] = {
    413: Answer("The body is larger than serve.max_body_bytes", Error),
    415: Answer("The content-type is not application/json", Error),
    421: Answer("The X-Steward-Usecase header names a use case this service does not serve", Error),
    422: Answer("The body does not match the request schema: each field's problem", InvalidRequest),
    429: Answer(
        "The client (the key's holder for a signed /feedback, else the peer address, or the X-Client-Id a trusted "
        "proxy sends) is over its rate limit",
        Error,
        RETRY_AFTER,
    ),
    500: Answer("An unexpected error (the server log has it)", Error),
    504: Answer("No answer within the service's traffic timeout", Error),
}
# /admin/*: the guards' token check.
ADMIN: dict[int, Answer] = {
    401: Answer("No `Authorization: Bearer <admin token>`, or the wrong token", Error, BEARER, ADMIN_TOKEN),
    503: Answer("Admin endpoints are disabled: the service has no admin token (STEWARD_ADMIN_TOKEN)", Error),
}
REFUSING = (
    "Steward refuses decisions (kill switch, or no production model: a person decides; or a decision log that "
    "cannot record them now: Retry-After)"
)
UNKNOWN_REQUEST = Answer("No decision with this request id was served here", Error)
ROUTING = Answer("The routing this process serves", RoutingState)

ANSWERS: dict[str, dict[int, Answer]] = {
    "/predict": {200: Answer("The decision", Prediction), 503: Answer(REFUSING, Refusal, LOG_BEHIND), **GUARDED},
    "/explain": {200: Answer("The explanation", Explanation), 503: Answer(REFUSING, Error), **GUARDED},
    "/feedback": {
        200: Answer("The outcome, recorded", OutcomeRecorded),
        401: Answer(
            f"No {SIGNATURE_HEADER}, a malformed one, or one that does not sign this body under the feedback key "
            "(nothing is recorded)",
            Error,
            SIGNATURE_CHALLENGE,
            FEEDBACK_SIGNATURE,
        ),
        404: UNKNOWN_REQUEST,
        409: Answer("The decision already has another outcome on record", Error),
        **GUARDED,
    },
    "/contest": {
        200: Answer("The review case opened", ContestCase),
        404: UNKNOWN_REQUEST,
        409: Answer("The decision already has serve.max_open_contests open contest cases", Error),
        **GUARDED,
    },
    "/admin/routing": {200: ROUTING, **ADMIN, **GUARDED},
    "/admin/reload": {200: ROUTING, **ADMIN, **GUARDED},
    "/admin/rollback": {
        200: Answer(
            "What was rolled back or restored (or, for a repeated request, that nothing changed)", RollbackResult
        ),
        409: Answer(
            "A rollback Steward refuses: nothing to restore, or a model that may not or does not verify", Error
        ),
        **ADMIN,
        **GUARDED,
    },
    # BentoML's readiness probe (exempt from the guards): 503 in plain text while it cannot decide and record.
    "/readyz": {
        200: Answer("Ready to serve", None),
        503: Answer("Not ready (no production model, or a decision log that cannot record decisions)", None),
    },
}


def document(
    spec: Mapping[str, Any],
    answers: Mapping[str, Mapping[int, Answer]] = ANSWERS,
    requests: Mapping[str, type[BaseModel]] | None = None,
) -> dict[str, Any]:
    """BentoML's OpenAPI document with each answered route's responses replaced by `answers`, its request body
    marked required (the guards refuse a POST without a JSON body: 415), the security scheme of each answer that
    refuses for its lack (the admin token, /feedback's signature) declared as the route's security, the body models
    added to the components, and the components nothing refers to any more dropped. `requests` (route -> the
    route's request model): each field the model lets be null is marked `nullable` (BentoML's schema drops it).
    Raises ValueError if a route of the service has no answers, or answers name a route the document lacks."""
    doc = copy.deepcopy(dict(spec))
    paths: dict[str, dict[str, Any]] = doc["paths"]
    served = {p for p, item in paths.items() if any(API_TAG in op.get("tags", ()) for op in item.values())}
    if missing := sorted(served - answers.keys()):
        raise ValueError(UNDOCUMENTED_ROUTE.format(paths=missing))
    if unknown := sorted(answers.keys() - paths.keys()):
        raise ValueError(UNKNOWN_ROUTE.format(paths=unknown))
    for path, statuses in answers.items():
        for operation in paths[path].values():
            operation["responses"] = {str(status): statuses[status].response() for status in sorted(statuses)}
            if "requestBody" in operation:
                operation["requestBody"]["required"] = True
                if requests and path in requests:
                    _mark_nullable(operation["requestBody"], requests[path])
            if schemes := sorted({a.security for a in statuses.values() if a.security}):
                operation["security"] = [{scheme: []} for scheme in schemes]
    bodies = sorted({a.body for s in answers.values() for a in s.values() if a.body}, key=lambda m: m.__name__)
    _, defs = models_json_schema([(m, "serialization") for m in bodies], ref_template=REF)
    components = doc.setdefault("components", {})
    if used := {a.security for statuses in answers.values() for a in statuses.values() if a.security}:
        components["securitySchemes"] = {k: copy.deepcopy(v) for k, v in SECURITY_SCHEMES.items() if k in used}
    schemas = components.setdefault("schemas", {})
    schemas.update({name: _openapi30(schema) for name, schema in defs.get("$defs", {}).items()})
    components["schemas"] = {name: schemas[name] for name in sorted(_referenced(paths, schemas))}
    return doc


def _mark_nullable(body: dict[str, Any], model: type[BaseModel]) -> None:
    """Mark `nullable` each property of the JSON body's schema that `model` lets be null."""
    properties = body.get("content", {}).get(JSON, {}).get("schema", {}).get("properties", {})
    for name, field_schema in model.model_json_schema().get("properties", {}).items():
        if NULL in field_schema.get("anyOf", ()) and name in properties:
            properties[name]["nullable"] = True


def _openapi30(schema: Any) -> Any:
    """A pydantic (JSON Schema 2020-12) schema in OpenAPI 3.0's terms: `anyOf` with `{"type": "null"}` becomes
    `nullable`, `const` a one-value `enum`, a numeric `exclusiveMinimum`/`exclusiveMaximum` the boolean form."""
    if not isinstance(schema, dict):
        return schema
    node = dict(schema)
    for key in ("properties", "$defs"):
        if isinstance(node.get(key), dict):
            node[key] = {name: _openapi30(sub) for name, sub in node[key].items()}
    for key in ("items", "additionalProperties", "not"):
        if key in node:
            node[key] = _openapi30(node[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if isinstance(node.get(key), list):
            node[key] = [_openapi30(sub) for sub in node[key]]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node[bound], bool):
            node[limit], node[bound] = node[bound], True
    options = node.get("anyOf")
    if isinstance(options, list) and NULL in options:
        rest = [option for option in options if option != NULL]
        del node["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            node = {**rest[0], **node}
        else:
            node["allOf" if len(rest) == 1 else "anyOf"] = rest
        node["nullable"] = True
    return node


def _referenced(paths: Mapping[str, Any], schemas: Mapping[str, Any]) -> set[str]:
    """The component schemas reachable from the paths through `$ref`s."""
    prefix = REF.format(model="")
    seen: set[str] = set()
    pending = [ref.removeprefix(prefix) for ref in _refs(paths)]
    while pending:
        name = pending.pop()
        if name in seen or name not in schemas:
            continue
        seen.add(name)
        pending.extend(ref.removeprefix(prefix) for ref in _refs(schemas[name]))
    return seen


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)
