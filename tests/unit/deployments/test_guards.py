"""The serving guards, driven through httpx's ASGI transport around a tiny app (no network, no BentoML)."""

import asyncio
import hashlib
import hmac
import json
import sys
import threading
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import BaseModel, Field, ValidationError

from deployments.guards import (
    ADMIN_DISABLED,
    ADMIN_TOKEN_REQUIRED,
    BODY_TOO_LARGE,
    DEFAULT_EXEMPT_PATHS,
    INVALID_REQUEST,
    NO_SIGNING_KEY,
    NOT_A_PROXY,
    RATE_LIMITED,
    UNSUPPORTED_MEDIA_TYPE,
    WRONG_USECASE,
    Guards,
    TokenBuckets,
)
from steward.feedback_auth import BAD_SIGNATURE, MALFORMED_SIGNATURE, MISSING_SIGNATURE

JSON = {"content-type": "application/json"}
TOKEN = "s3cret-admin-token"
PROXY = "10.0.0.1"  # `call`'s peer by default; a trusted proxy where a test says so
TRUSTED = {"trusted_proxies": [PROXY]}


class Applicant(BaseModel):
    age: int = Field(ge=18)
    amount: int


class Wrapped(BaseModel):
    applicant: Applicant


MODELS: dict[str, type[BaseModel]] = {"/predict": Wrapped, "/flat": Applicant}
CANNED: dict[str, tuple[int, object]] = {
    "/refuse": (400, {"error": "already decided", "detail": "see the ledger"}),
    "/odd": (400, {"error": "odd", "detail": ["not a pydantic error"]}),
    "/empty": (400, {"error": "empty", "detail": []}),
    "/array": (400, [{"loc": ["age"], "msg": "m", "type": "t"}]),
    "/fine": (200, {"detail": [{"loc": ["age"], "msg": "m", "type": "t"}]}),  # a report-shaped success
}


class App:
    """Reads the whole body, then answers like BentoML: a 400 pydantic report on bad input, else 200."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send):
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.bodies.append(body)
        status, payload = self._answer(scope["path"], body)
        data = json.dumps(payload).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            (b"x-trace", b"t1"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        half = len(data) // 2  # two chunks, so the rewriter has to reassemble
        await send({"type": "http.response.body", "body": data[:half], "more_body": True})
        await send({"type": "http.response.body", "body": data[half:]})

    def _answer(self, path: str, body: bytes) -> tuple[int, object]:
        if path in CANNED:
            return CANNED[path]
        if path in MODELS:
            try:
                MODELS[path].model_validate_json(body)
            except ValidationError as exc:  # the shape BentoML 1.4 answers with
                return 400, {
                    "error": "validation error",
                    "detail": exc.errors(include_context=False, include_input=False),
                }
        return 200, {"size": len(body)}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def call(guards: Guards, method: str, path: str, *, peer: str = "10.0.0.1", **kwargs) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=guards, client=(peer, 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
            return await http.request(method, path, **kwargs)

    return asyncio.run(go())


def make(app: App | None = None, **options) -> tuple[Guards, App]:
    app = app or App()
    return Guards(app, **options), app


async def chunks(parts: list[bytes], started: list[bool]) -> AsyncIterator[bytes]:
    started.append(True)
    for part in parts:
        yield part


# --- rate limit ---------------------------------------------------------------------------------------------


def test_a_client_past_its_burst_gets_429_with_retry_after_while_another_is_served():
    guards, _ = make(rate_per_second=1, burst=2, clock=Clock(), **TRUSTED)
    me = {"x-client-id": "me"}

    assert [call(guards, "GET", "/status", headers=me).status_code for _ in range(2)] == [200, 200]
    refused = call(guards, "GET", "/status", headers=me)

    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"  # an empty bucket refills one token in 1 / (1 per s)
    assert refused.json() == {"error": RATE_LIMITED.format(rate=1, burst=2)}
    assert call(guards, "GET", "/status", headers={"x-client-id": "other"}).status_code == 200
    assert call(guards, "GET", "/status", peer="10.0.0.2").status_code == 200


def test_retry_after_is_whole_seconds_rounded_up_and_shrinks_with_time():
    clock = Clock()
    guards, _ = make(rate_per_second=0.25, burst=1, clock=clock)  # one token every 4 s

    assert call(guards, "GET", "/status").status_code == 200
    assert call(guards, "GET", "/status").headers["retry-after"] == "4"
    clock.now += 1.5  # 2.5 s left: rounds up to 3
    assert call(guards, "GET", "/status").headers["retry-after"] == "3"
    clock.now += 2.4  # 0.1 s left: never below 1
    assert call(guards, "GET", "/status").headers["retry-after"] == "1"


def test_tokens_refill_with_the_clock_up_to_the_burst():
    clock = Clock()
    guards, _ = make(rate_per_second=2, burst=3, clock=clock)

    assert [call(guards, "GET", "/status").status_code for _ in range(4)] == [200, 200, 200, 429]
    clock.now += 0.5  # 0.5 s x 2 per s = one token
    assert [call(guards, "GET", "/status").status_code for _ in range(2)] == [200, 429]
    clock.now += 3600  # a long rest refills to the burst (3), not beyond
    assert [call(guards, "GET", "/status").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_a_client_header_equal_to_an_ip_does_not_share_that_ips_bucket():
    guards, _ = make(rate_per_second=1, burst=1, clock=Clock(), trusted_proxies=["10.0.0.5"])

    assert call(guards, "GET", "/status", peer="10.0.0.9").status_code == 200
    assert call(guards, "GET", "/status", peer="10.0.0.9").status_code == 429
    assert call(guards, "GET", "/status", peer="10.0.0.5", headers={"x-client-id": "10.0.0.9"}).status_code == 200


def test_the_client_header_is_configurable():
    guards, _ = make(rate_per_second=1, burst=1, clock=Clock(), client_header="X-Api-Key", **TRUSTED)

    assert call(guards, "GET", "/status", headers={"x-api-key": "k1"}).status_code == 200
    assert call(guards, "GET", "/status", headers={"x-api-key": "k2"}).status_code == 200
    assert call(guards, "GET", "/status", headers={"x-api-key": "k1"}).status_code == 429


def test_buckets_are_bounded_and_the_least_recently_seen_client_is_evicted():
    guards, _ = make(rate_per_second=1, burst=1, clock=Clock(), max_clients=2)

    for peer in ("10.0.0.1", "10.0.0.2"):  # both spend their only token
        assert call(guards, "GET", "/status", peer=peer).status_code == 200
    assert call(guards, "GET", "/status", peer="10.0.0.1").status_code == 429  # .1 is now the more recent
    assert call(guards, "GET", "/status", peer="10.0.0.3").status_code == 200  # a third client: .2 is dropped

    assert len(guards.buckets) == 2
    assert call(guards, "GET", "/status", peer="10.0.0.1").status_code == 429  # still remembered
    assert call(guards, "GET", "/status", peer="10.0.0.2").status_code == 200  # forgotten, so a fresh bucket


def test_buckets_grant_exactly_the_burst_under_concurrent_threads():
    buckets = TokenBuckets(rate=1e-9, burst=5000, max_clients=10, clock=lambda: 0.0)  # no refill to speak of
    granted: list[int] = []

    def hammer() -> None:
        granted.append(sum(buckets.take("same") == 0.0 for _ in range(2000)))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so an unguarded read-modify-write would show
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)

    assert sum(granted) == 5000


@pytest.mark.parametrize(("rate", "burst", "max_clients"), [(0, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_nonsensical_limits_are_refused(rate, burst, max_clients):
    with pytest.raises(ValueError, match=r"^rate must be > 0, burst and max_clients >= 1$"):
        Guards(App(), rate_per_second=rate, burst=burst, max_clients=max_clients)


def test_the_smallest_sensible_limits_are_accepted():
    clock = Clock()
    guards, _ = make(rate_per_second=0.5, burst=1, max_clients=1, clock=clock)

    assert [call(guards, "GET", "/status").status_code for _ in range(2)] == [200, 429]
    assert call(guards, "GET", "/status", peer="10.0.0.2").status_code == 200  # the only bucket is now .2's
    assert len(guards.buckets) == 1


def test_exempt_paths_are_never_limited_and_spend_no_tokens():
    guards, _ = make(rate_per_second=1, burst=1, clock=Clock())

    for path in DEFAULT_EXEMPT_PATHS:
        assert [call(guards, "GET", path).status_code for _ in range(3)] == [200, 200, 200]
    assert call(guards, "GET", "/status").status_code == 200


# --- body size and media type -------------------------------------------------------------------------------


def test_a_declared_content_length_past_the_limit_is_refused_without_reading_the_body():
    guards, app = make(max_body_bytes=100)
    started: list[bool] = []

    response = call(
        guards, "POST", "/echo", headers={**JSON, "content-length": "101"}, content=chunks([b"x" * 101], started)
    )

    assert response.status_code == 413
    assert response.json() == {"error": BODY_TOO_LARGE.format(limit=100)}
    assert started == []
    assert app.bodies == []


def test_a_chunked_body_growing_past_the_limit_is_refused_and_the_app_never_called():
    guards, app = make(max_body_bytes=100)
    started: list[bool] = []

    response = call(guards, "POST", "/echo", headers=JSON, content=chunks([b"x" * 60, b"y" * 60, b"z" * 60], started))

    assert response.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {"error": BODY_TOO_LARGE.format(limit=100)}
    assert app.bodies == []


@pytest.mark.parametrize("parts", [[b"a" * 60, b"b" * 40], [b"c" * 100], [b"d" * 10, b"", b"e" * 10]])
def test_a_chunked_body_within_the_limit_reaches_the_app_intact(parts):
    guards, app = make(max_body_bytes=100)

    response = call(guards, "POST", "/echo", headers=JSON, content=chunks(parts, []))

    assert response.status_code == 200
    assert app.bodies == [b"".join(parts)]
    assert response.json() == {"size": sum(len(p) for p in parts)}


def test_a_client_that_disconnects_mid_body_gets_nothing_and_the_app_is_not_called():
    app = App()
    guards = Guards(app)
    messages = iter([{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}])
    sent: list[dict] = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/echo", "headers": [(b"content-type", b"application/json")]}
    asyncio.run(guards(scope, receive, send))

    assert sent == []
    assert app.bodies == []


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize(
    "content_type", ["text/plain", "multipart/form-data", "application/x-www-form-urlencoded", None]
)
def test_a_body_that_is_not_json_is_refused_with_415(method, content_type):
    guards, app = make()
    headers = {"content-type": content_type} if content_type else {}

    response = call(guards, method, "/echo", headers=headers, content=b"age=30")

    assert response.status_code == 415
    assert response.json() == {"error": UNSUPPORTED_MEDIA_TYPE}
    assert app.bodies == []


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=utf-8"])
def test_json_with_or_without_parameters_is_accepted(content_type):
    guards, app = make()

    response = call(guards, "POST", "/echo", headers={"content-type": content_type}, content=b"{}")

    assert response.status_code == 200
    assert app.bodies == [b"{}"]


def test_a_get_needs_no_content_type():
    guards, _ = make()

    assert call(guards, "GET", "/status").status_code == 200


# --- admin --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer", b"Bearer \xff\xfe"],
)
def test_admin_paths_refuse_a_missing_or_wrong_token_with_401(authorization):
    guards, app = make(admin_token=TOKEN)
    headers = {"authorization": authorization} if authorization is not None else {}

    response = call(guards, "GET", "/admin/rollback", headers=headers)

    assert response.status_code == 401
    assert response.json() == {"error": ADMIN_TOKEN_REQUIRED}
    assert response.headers["www-authenticate"] == "Bearer"
    assert app.bodies == []


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", f"bearer {TOKEN}"])
@pytest.mark.parametrize("path", ["/admin", "/admin/rollback"])
def test_admin_paths_serve_the_right_token(authorization, path):
    guards, _ = make(admin_token=TOKEN)

    assert call(guards, "GET", path, headers={"authorization": authorization}).status_code == 200


@pytest.mark.parametrize("token", [None, ""])
def test_admin_paths_are_disabled_with_503_when_no_token_is_configured(token):
    guards, app = make(admin_token=token)

    response = call(guards, "GET", "/admin/rollback", headers={"authorization": "Bearer anything"})

    assert response.status_code == 503
    assert response.json() == {"error": ADMIN_DISABLED}
    assert app.bodies == []


def test_a_path_merely_starting_with_the_admin_word_is_not_admin():
    guards, _ = make(admin_token=TOKEN)

    assert call(guards, "GET", "/administrators").status_code == 200


# --- response rewriting -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "strip", "payload", "fields"),
    [
        ("/predict", "applicant", {"applicant": {"age": 12, "amount": "lots"}}, ["age", "amount"]),
        ("/predict", None, {"applicant": {"age": 12, "amount": "lots"}}, ["applicant.age", "applicant.amount"]),
        ("/flat", "applicant", {"age": 12, "amount": "lots"}, ["age", "amount"]),
        ("/predict", "applicant", {}, ["applicant"]),  # nothing would be left after stripping: keep the name
    ],
)
def test_a_validation_400_becomes_a_422_naming_each_field(path, strip, payload, fields):
    guards, _ = make(strip_loc_prefix=strip)

    response = call(guards, "POST", path, headers=JSON, json=payload)

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == INVALID_REQUEST
    assert [e["field"] for e in body["errors"]] == fields
    assert all(set(e) == {"field", "problem", "type"} for e in body["errors"])
    assert response.headers.get_list("content-length") == [str(len(response.content))]
    assert response.headers["x-trace"] == "t1"
    assert b"lots" not in response.content  # the request's content is never echoed


def test_the_422_keeps_pydantics_problem_and_type():
    guards, _ = make(strip_loc_prefix="applicant")

    response = call(guards, "POST", "/predict", headers=JSON, json={"applicant": {"age": 17, "amount": 5}})

    assert response.json()["errors"] == [
        {"field": "age", "problem": "Input should be greater than or equal to 18", "type": "greater_than_equal"}
    ]


@pytest.mark.parametrize("path", ["/refuse", "/odd", "/empty", "/array", "/fine"])
def test_a_response_that_is_not_a_400_validation_report_passes_untouched(path):
    guards, _ = make()
    status, payload = CANNED[path]

    response = call(guards, "GET", path)

    assert response.status_code == status
    assert response.content == json.dumps(payload).encode()
    assert response.headers.get_list("content-length") == [str(len(response.content))]


def test_a_success_streams_through_with_its_headers():
    guards, _ = make()

    sent = json.dumps({"applicant": {"age": 40, "amount": 1000}}).encode()

    response = call(guards, "POST", "/predict", headers=JSON, content=sent)

    assert response.status_code == 200
    assert response.headers["x-trace"] == "t1"
    assert response.json() == {"size": len(sent)}


# --- raw ASGI: what exactly goes out, what exactly the app receives -----------------------------------------

NO_PEER = object()


def asgi(guards: Guards, *incoming: dict, method="GET", path="/status", headers=(), client=("10.0.0.1", 5000)):
    """Drive the guards with raw ASGI messages; the messages sent back, exactly as the server would get them."""
    messages = iter(incoming)
    sent: list[dict] = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": list(headers)}
    if client is not NO_PEER:
        scope["client"] = client
    asyncio.run(guards(scope, receive, send))
    return sent


def answer(status: int, body: bytes, *extra: tuple[bytes, bytes]) -> list[dict]:
    """The two messages of a JSON answer: the extra headers, then its content type and exact length."""
    headers = [*extra, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


class Recorder:
    """An app that records the messages its receive channel yields (`reads` of them), then answers 204."""

    def __init__(self, reads: int = 1) -> None:
        self.reads = reads
        self.received: list[dict] = []

    async def __call__(self, scope, receive, send):
        for _ in range(self.reads):
            self.received.append(await receive())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


class Replier:
    """An app that reads the request, then sends exactly the given messages."""

    def __init__(self, *messages: dict) -> None:
        self.messages = messages

    async def __call__(self, scope, receive, send):
        await receive()
        for message in self.messages:
            await send(message)


REQUEST = {"type": "http.request", "body": b"", "more_body": False}
JSON_HEADERS = [(b"content-type", b"application/json")]


@pytest.mark.parametrize(
    ("options", "request_", "expected"),
    [
        (
            {"admin_token": TOKEN},
            {"path": "/admin/rollback"},
            answer(401, b'{"error":"admin token required"}', (b"www-authenticate", b"Bearer")),
        ),
        (
            {},
            {"path": "/admin/rollback", "headers": [(b"authorization", b"Bearer x")]},
            answer(503, b'{"error":"admin endpoints disabled: no admin token configured"}'),
        ),
        (
            {},
            {"method": "POST", "headers": [(b"content-type", b"text/plain")]},
            answer(415, b'{"error":"content-type must be application/json"}'),
        ),
        (
            {"max_body_bytes": 100},
            {"method": "POST", "headers": [*JSON_HEADERS, (b"content-length", b"101")]},
            answer(413, b'{"error":"request body larger than 100 bytes"}'),
        ),
    ],
)
def test_each_refusal_sends_exactly_its_compact_json_answer(options, request_, expected):
    guards = Guards(Recorder(), **options)

    assert asgi(guards, REQUEST, **request_) == expected


def test_the_rate_limit_refusal_sends_exactly_its_answer_with_retry_after():
    guards = Guards(Recorder(), rate_per_second=1, burst=1, clock=Clock())

    assert asgi(guards, REQUEST)[0]["status"] == 204
    assert asgi(guards, REQUEST) == answer(
        429, b'{"error":"rate limit exceeded: 1 requests per second, burst 1"}', (b"retry-after", b"1")
    )


@pytest.mark.parametrize(
    ("incoming", "delivered"),
    [
        ({"type": "http.request"}, b""),  # ASGI: body defaults to b"", more_body to False
        ({"type": "http.request", "body": b'{"a":1}'}, b'{"a":1}'),
        ({"type": "http.request", "more_body": False}, b""),
    ],
)
def test_request_messages_may_leave_out_body_and_more_body(incoming, delivered):
    app = Recorder()

    sent = asgi(Guards(app), incoming, method="POST", headers=JSON_HEADERS)

    assert sent[0]["status"] == 204
    assert app.received == [{"type": "http.request", "body": delivered, "more_body": False}]


def test_the_app_gets_the_whole_body_in_one_message_then_the_real_channel():
    app = Recorder(reads=2)  # e.g. a streaming response watching for the client to leave
    parts = [
        {"type": "http.request", "body": b'{"age":', "more_body": True},
        {"type": "http.request", "body": b"40}", "more_body": False},
        {"type": "http.disconnect"},
    ]

    asgi(Guards(app), *parts, method="POST", headers=JSON_HEADERS)

    assert app.received == [
        {"type": "http.request", "body": b'{"age":40}', "more_body": False},
        {"type": "http.disconnect"},
    ]


def test_a_400_start_without_headers_is_passed_on_untouched():
    messages = (
        {"type": "http.response.start", "status": 400},
        {"type": "http.response.body", "body": b'{"detail":[{"loc":["age"],"msg":"m","type":"t"}]}'},
    )

    assert asgi(Guards(Replier(*messages)), REQUEST) == list(messages)


def test_a_report_whose_last_body_message_has_no_body_is_still_rewritten():
    report = json.dumps({"detail": [{"loc": ["applicant", "age"], "msg": "too young", "type": "greater_than"}]})
    guards = Guards(
        Replier(
            {"type": "http.response.start", "status": 400, "headers": JSON_HEADERS},
            {"type": "http.response.body", "body": report.encode(), "more_body": True},
            {"type": "http.response.body"},  # ASGI: body defaults to b"", more_body to False
        ),
        strip_loc_prefix="applicant",
    )

    assert asgi(guards, REQUEST) == answer(
        422, b'{"error":"invalid request","errors":[{"field":"age","problem":"too young","type":"greater_than"}]}'
    )


def test_the_422_carries_one_content_type_and_one_length():
    guards, _ = make(strip_loc_prefix="applicant")

    response = call(guards, "POST", "/predict", headers=JSON, json={"applicant": {"age": 17, "amount": 5}})

    assert response.status_code == 422
    assert response.headers.get_list("content-type") == ["application/json"]
    assert response.headers.get_list("content-length") == [str(len(response.content))]


# --- boundaries and defaults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False])
@pytest.mark.parametrize(("size", "status"), [(99, 200), (100, 200), (101, 413)])
def test_a_body_of_exactly_max_bytes_passes_and_one_byte_more_is_413(declared, size, status):
    guards, app = make(max_body_bytes=100)
    body = b"x" * size

    response = call(guards, "POST", "/echo", headers=JSON, content=body if declared else chunks([body], []))

    assert ("content-length" in response.request.headers) is declared
    assert response.status_code == status
    if status == 413:
        assert response.json() == {"error": "request body larger than 100 bytes"}
        assert app.bodies == []
    else:
        assert app.bodies == [body]


def test_the_default_body_limit_is_16_kib():
    guards, app = make()

    assert call(guards, "POST", "/echo", headers=JSON, content=b"x" * 16_384).status_code == 200
    refused = call(guards, "POST", "/echo", headers=JSON, content=b"x" * 16_385)

    assert refused.status_code == 413
    assert refused.json() == {"error": "request body larger than 16384 bytes"}
    assert len(app.bodies) == 1


@pytest.mark.parametrize(
    ("rate", "burst", "message"),
    [
        (1, 1, "rate limit exceeded: 1 requests per second, burst 1"),
        (2, 3, "rate limit exceeded: 2 requests per second, burst 3"),
        (0.5, 5, "rate limit exceeded: 0.5 requests per second, burst 5"),
        (4, 2, "rate limit exceeded: 4 requests per second, burst 2"),
    ],
)
def test_exactly_burst_requests_pass_then_429_and_a_token_returns_every_one_over_rate_seconds(rate, burst, message):
    clock = Clock()
    guards, _ = make(rate_per_second=rate, burst=burst, clock=clock)

    assert [call(guards, "GET", "/status").status_code for _ in range(burst)] == [200] * burst
    refused = call(guards, "GET", "/status")
    assert (refused.status_code, refused.json()) == (429, {"error": message})
    clock.now += 0.5 / rate  # half a token: still refused
    assert call(guards, "GET", "/status").status_code == 429
    clock.now += 0.5 / rate  # (rates are powers of two: these times are exact)
    assert [call(guards, "GET", "/status").status_code for _ in range(2)] == [200, 429]


def test_the_default_limit_is_a_burst_of_40_then_20_per_second():
    clock = Clock()
    guards, _ = make(clock=clock)

    assert [call(guards, "GET", "/status").status_code for _ in range(40)] == [200] * 40
    refused = call(guards, "GET", "/status")
    assert (refused.status_code, refused.json()) == (
        429,
        {"error": "rate limit exceeded: 20 requests per second, burst 40"},
    )
    clock.now += 0.125  # 2.5 tokens at 20 per second
    assert [call(guards, "GET", "/status").status_code for _ in range(3)] == [200, 200, 429]


def test_by_default_ten_thousand_clients_are_remembered():
    guards, _ = make(clock=Clock())

    for n in range(10_001):
        assert guards.buckets.take(f"id:{n}") == 0.0

    assert len(guards.buckets) == 10_000


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8; version=2", " application/json ;q=1"])
def test_json_with_several_parameters_is_accepted(content_type):
    guards, app = make()

    assert call(guards, "POST", "/echo", headers={"content-type": content_type}, content=b"{}").status_code == 200
    assert app.bodies == [b"{}"]


# --- the client key -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "client", "key"),
    [
        ([(b"x-client-id", b"me")], ("10.0.0.1", 5000), "id:me"),
        ([(b"X-Client-Id", b"me")], ("10.0.0.1", 5000), "id:me"),
        ([(b"x-client-id", b"")], ("10.0.0.1", 5000), "ip:10.0.0.1"),  # an empty id is no id
        ([], ("10.0.0.1", 5000), "ip:10.0.0.1"),
        ([], None, "ip:unknown"),
        ([(b"x-client-id", b"a" * 200)], ("10.0.0.1", 5000), "id:" + "a" * 128),  # bounded: the first 128
        ([(b"x-client-id", b"caf\xe9")], ("10.0.0.1", 5000), "id:caf\u00e9"),  # header bytes read as latin-1
        ([(b"x-client-id", b"me")], ("10.0.0.2", 5000), "ip:10.0.0.2"),  # not a trusted proxy: header ignored
        ([(b"x-client-id", b"me")], None, "ip:unknown"),  # no peer is no proxy
        ([(b"x-client-id", b"me")], ("::ffff:10.0.0.1", 5000), "id:me"),  # the proxy's IPv4 address, mapped
        ([(b"x-client-id", b"me")], ("testclient", 5000), "ip:testclient"),  # not an address: never trusted
    ],
)
def test_the_bucket_key_is_the_client_id_a_trusted_proxy_sends_else_the_peer_address(headers, client, key):
    guards, _ = make(**TRUSTED)

    assert guards._client_id({"client": client}, headers) == key


@pytest.mark.parametrize("peer", ["10.0.0.1", "192.168.7.9", "::1", "fd00::1"])
def test_without_trusted_proxies_the_client_header_is_never_the_key(peer):
    guards, _ = make()

    assert guards._client_id({"client": (peer, 5000)}, [(b"x-client-id", b"me")]) == f"ip:{peer}"


@pytest.mark.parametrize(
    ("proxies", "peer", "trusted"),
    [
        (["10.0.0.0/8"], "10.200.3.4", True),
        (["10.0.0.0/8"], "11.0.0.1", False),
        (["127.0.0.1", "fd00::/8"], "fd12::7", True),
        (["127.0.0.1", "fd00::/8"], "fe80::1", False),
        (["127.0.0.1"], "127.0.0.2", False),  # one address, not the loopback network
        (["::1"], "127.0.0.1", False),
    ],
)
def test_trusted_proxies_are_addresses_or_networks(proxies, peer, trusted):
    guards, _ = make(trusted_proxies=proxies)

    key = guards._client_id({"client": (peer, 5000)}, [(b"x-client-id", b"me")])

    assert key == ("id:me" if trusted else f"ip:{peer}")


@pytest.mark.parametrize("proxy", ["10.0.0.1/8", "localhost", "10.0.0.256", ""])
def test_a_trusted_proxy_that_is_no_address_or_network_is_refused(proxy):
    with pytest.raises(ValueError) as refused:
        Guards(App(), trusted_proxies=[proxy])

    assert str(refused.value).startswith(NOT_A_PROXY.format(proxy=proxy, problem=""))


def test_a_flood_rotating_its_client_id_from_an_untrusted_peer_is_one_client():
    guards, _ = make(rate_per_second=1, burst=3, clock=Clock(), **TRUSTED)

    flood = [call(guards, "GET", "/status", peer="10.0.0.66", headers={"x-client-id": f"id-{n}"}) for n in range(10)]

    assert [r.status_code for r in flood] == [200] * 3 + [429] * 7
    forwarded = [call(guards, "GET", "/status", headers={"x-client-id": f"id-{n}"}) for n in range(10)]
    assert [r.status_code for r in forwarded] == [200] * 10  # the trusted proxy's clients: a bucket each


def test_requests_without_a_peer_address_share_one_bucket_whatever_client_id_they_send():
    guards = Guards(Recorder(), rate_per_second=1, burst=1, clock=Clock(), **TRUSTED)

    assert asgi(guards, REQUEST, client=NO_PEER)[0]["status"] == 204
    assert asgi(guards, REQUEST, client=None)[0]["status"] == 429
    assert asgi(guards, REQUEST, client=None, headers=[(b"x-client-id", b"unknown")])[0]["status"] == 429


# --- admin on every admin path --------------------------------------------------------------------------------

ADMIN_PATHS = ["/admin", "/admin/", "/admin/rollback", "/admin/kill-switch/now"]


@pytest.mark.parametrize("path", ADMIN_PATHS)
@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 401), ("Bearer wrong-token", 401), (f"Bearer {TOKEN}", 200), (f"Bearer  {TOKEN}", 200)],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_every_admin_path_asks_for_the_token_the_same_way(path, authorization, status, method):
    guards, app = make(admin_token=TOKEN)
    headers = {**JSON, **({"authorization": authorization} if authorization else {})}

    response = call(guards, method, path, headers=headers, content=b"{}" if method == "POST" else None)

    assert response.status_code == status
    if status == 401:
        assert response.content == b'{"error":"admin token required"}'
        assert response.headers["www-authenticate"] == "Bearer"
        assert app.bodies == []
    else:
        assert len(app.bodies) == 1


@pytest.mark.parametrize("path", ADMIN_PATHS)
@pytest.mark.parametrize("authorization", [None, f"Bearer {TOKEN}"])
def test_every_admin_path_is_disabled_without_a_configured_token(path, authorization):
    guards, app = make()
    headers = {"authorization": authorization} if authorization else {}

    response = call(guards, "GET", path, headers=headers)

    assert response.status_code == 503
    assert response.content == b'{"error":"admin endpoints disabled: no admin token configured"}'
    assert app.bodies == []


@pytest.mark.parametrize(
    ("prefix", "guarded", "open_"),
    [
        ("/admin/", ["/admin", "/admin/rollback"], ["/administrators", "/status"]),
        ("/opsX", ["/opsX", "/opsX/rollback"], ["/ops", "/ops/rollback", "/opsXY"]),
    ],
)
def test_the_admin_prefix_is_configurable_and_only_trailing_slashes_are_ignored(prefix, guarded, open_):
    guards, _ = make(admin_token=TOKEN, admin_prefix=prefix)

    assert [call(guards, "GET", path).status_code for path in guarded] == [401] * len(guarded)
    assert [call(guards, "GET", path).status_code for path in open_] == [200] * len(open_)


# --- the use case a client names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "status"),
    [(None, 200), ("adult_income", 200), (" adult_income ", 200), ("german_credit", 421), ("", 421)],
)
def test_a_request_naming_another_use_case_is_refused_before_the_app_sees_it(header, status):
    guards, app = make(usecase="adult_income")
    headers = {**JSON, **({} if header is None else {"X-Steward-Usecase": header})}
    answer = call(guards, "POST", "/flat", headers=headers, json={"age": 30, "amount": 1})
    assert answer.status_code == status
    if status == 421:
        assert answer.json() == {"error": WRONG_USECASE.format(served="adult_income", asked=header)}
    assert len(app.bodies) == (status == 200)  # refused before its body was read


def test_without_a_served_use_case_the_header_is_not_checked():
    guards, _ = make()
    headers = {**JSON, "X-Steward-Usecase": "anything"}
    assert call(guards, "POST", "/flat", headers=headers, json={"age": 30, "amount": 1}).status_code == 200


# --- signed paths ---------------------------------------------------------------------------------------------

KEY = "k" * 40  # the feedback key, as text
SIGNED = {"signed_paths": ["/feedback"], "signing_key": lambda: KEY}
OUTCOME = b'{"request_id":"ab12","outcome":"bad"}'
CHALLENGE = b'HMAC-SHA256 header="X-Steward-Signature"'


def hmac_sha256(key: str, body: bytes) -> str:
    """The signature as a system of record computes it: Python's hmac module, nothing of Steward's."""
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def post_signed(guards: Guards, body: bytes, signature: str | None, *, peer: str = PROXY) -> httpx.Response:
    headers = {**JSON, **({"x-steward-signature": signature} if signature is not None else {})}
    return call(guards, "POST", "/feedback", content=body, headers=headers, peer=peer)


def test_a_body_signed_with_the_key_reaches_the_app_intact():
    guards, app = make(**SIGNED)

    response = post_signed(guards, OUTCOME, hmac_sha256(KEY, OUTCOME))

    assert response.status_code == 200
    assert app.bodies == [OUTCOME]


@pytest.mark.parametrize(
    ("signature", "problem"),
    [
        (None, MISSING_SIGNATURE),
        (hmac_sha256("another key of forty characters, or more", OUTCOME), BAD_SIGNATURE),  # the wrong key
        (hmac_sha256(KEY, OUTCOME.replace(b"bad", b"good")), BAD_SIGNATURE),  # signs another body
        (hmac_sha256(KEY, OUTCOME)[:-1] + ("1" if hmac_sha256(KEY, OUTCOME)[-1] == "0" else "0"), BAD_SIGNATURE),
        (hmac_sha256(KEY, OUTCOME).removeprefix("sha256="), MALFORMED_SIGNATURE),  # no scheme
        ("sha1=" + hashlib.sha1(OUTCOME).hexdigest(), MALFORMED_SIGNATURE),
        (hmac_sha256(KEY, OUTCOME)[:-2], MALFORMED_SIGNATURE),  # 62 hex digits
        ("sha256=" + "zz" * 32, MALFORMED_SIGNATURE),
        ("", MALFORMED_SIGNATURE),
    ],
)
def test_a_missing_malformed_or_wrong_signature_gets_401_naming_what_was_wrong_and_the_app_never_sees_it(
    signature, problem
):
    guards, app = make(**SIGNED)

    response = post_signed(guards, OUTCOME, signature)

    assert response.status_code == 401
    assert response.json() == {"error": problem}
    assert response.headers["www-authenticate"] == CHALLENGE.decode()
    assert b"ab12" not in response.content  # the body is never echoed
    assert app.bodies == []


@pytest.mark.parametrize("spelling", [lambda s: "sha256=" + s[7:].upper(), lambda s: f"  {s} "])
def test_the_signatures_hex_digits_may_be_capitals_and_the_value_padded(spelling):
    guards, app = make(**SIGNED)

    response = post_signed(guards, OUTCOME, spelling(hmac_sha256(KEY, OUTCOME)))

    assert response.status_code == 200 and app.bodies == [OUTCOME]


def test_only_a_post_to_a_signed_path_is_checked():
    guards, app = make(**SIGNED)

    assert call(guards, "GET", "/feedback").status_code == 200  # the app answers (BentoML: 405)
    assert call(guards, "POST", "/contest", headers=JSON, content=OUTCOME).status_code == 200
    assert call(guards, "POST", "/feedback/x", headers=JSON, content=OUTCOME).status_code == 200
    assert app.bodies == [b"", OUTCOME, OUTCOME]


def test_the_refusal_sends_exactly_its_compact_json_answer_with_the_challenge():
    guards = Guards(Recorder(), **SIGNED)

    sent = asgi(
        guards, {"type": "http.request", "body": OUTCOME}, method="POST", path="/feedback", headers=JSON_HEADERS
    )

    assert sent == answer(401, f'{{"error":"{MISSING_SIGNATURE}"}}'.encode(), (b"www-authenticate", CHALLENGE))


def test_a_signed_request_pays_as_the_keys_holder_and_a_forged_one_as_its_caller():
    guards, _ = make(rate_per_second=1, burst=2, clock=Clock(), **SIGNED)
    genuine = hmac_sha256(KEY, OUTCOME)

    # forgeries spend the caller's bucket: 401 while it lasts, then 429; the key's holder is untouched
    forged = [post_signed(guards, OUTCOME, "sha256=" + "0" * 64, peer="10.0.0.66").status_code for _ in range(3)]
    assert forged == [401, 401, 429]
    assert [post_signed(guards, OUTCOME, genuine, peer="10.0.0.66").status_code for _ in range(2)] == [200, 200]
    # the key's holder is one client wherever it calls from, and its bucket is now empty
    refused = post_signed(guards, OUTCOME, genuine, peer="10.0.0.7")
    assert refused.status_code == 429 and "retry-after" in refused.headers
    assert call(guards, "GET", "/status", peer="10.0.0.7").status_code == 200  # that peer's own bucket is full


def test_an_unsigned_request_to_a_signed_path_pays_before_its_body_is_read():
    guards, app = make(rate_per_second=1, burst=1, clock=Clock(), **SIGNED)

    assert post_signed(guards, OUTCOME, None).status_code == 401
    started: list[bool] = []
    limited = call(guards, "POST", "/feedback", headers=JSON, content=chunks([OUTCOME], started))
    assert limited.status_code == 429 and started == [] and app.bodies == []


def test_a_signed_body_past_the_limit_is_413_before_its_signature_is_checked():
    guards, app = make(max_body_bytes=512, **SIGNED)
    body = b" " * 600

    assert post_signed(guards, body, hmac_sha256(KEY, body)).status_code == 413
    assert app.bodies == []


def test_the_signing_key_is_read_once_when_the_guards_are_built():
    reads: list[int] = []

    def key() -> str:
        reads.append(1)
        return KEY

    guards, _ = make(signed_paths=["/feedback"], signing_key=key)
    for _ in range(3):
        post_signed(guards, OUTCOME, hmac_sha256(KEY, OUTCOME))

    assert reads == [1]


def test_signed_paths_without_a_key_are_refused():
    with pytest.raises(ValueError, match=f"^{NO_SIGNING_KEY}$"):
        Guards(App(), signed_paths=["/feedback"])
