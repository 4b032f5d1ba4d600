"""Request guards for the serving edge: rate limit, admin token, signed bodies, use case, body size, media type,
tidy 422s.

A pure ASGI middleware, installed by the BentoML service with
`Service.add_asgi_middleware(Guards, **options)`. It runs before BentoML parses the body, so every
refusal is answered here with a small JSON body that never echoes what the client sent. State (the
token buckets) lives per worker process.

Whom the rate limit counts: the peer address, unless the peer is one of `trusted_proxies`, whose `X-Client-Id`
names the client (any other peer's header is ignored: rotating it would buy a fresh bucket per request). A POST to
one of `signed_paths` must carry `X-Steward-Signature` (steward/feedback_auth.py): it is checked once the body is
read, before the app sees it; a good one is counted against the key's holder, a missing or bad one against the
caller, and answered 401 naming what was wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from steward.feedback_auth import MISSING_SIGNATURE, SIGNATURE_HEADER, signature_problem

RATE_LIMITED = "rate limit exceeded: {rate:g} requests per second, burst {burst}"
BODY_TOO_LARGE = "request body larger than {limit} bytes"
UNSUPPORTED_MEDIA_TYPE = "content-type must be application/json"
ADMIN_TOKEN_REQUIRED = "admin token required"
ADMIN_DISABLED = "admin endpoints disabled: no admin token configured"
INVALID_REQUEST = "invalid request"
WRONG_USECASE = "this service serves use case {served!r}, not {asked!r}: send the request to that use case's service"
NO_SIGNING_KEY = "signed paths need a signing key"
NOT_A_PROXY = "trusted proxy {proxy!r} is not an IP address or network (CIDR): {problem}"
SIGNATURE_CHALLENGE = f'HMAC-SHA256 header="{SIGNATURE_HEADER}"'.encode("latin-1")  # WWW-Authenticate of its 401
USECASE_HEADER = "x-steward-usecase"  # optional: a client naming the use case it means is refused elsewhere (421)

DEFAULT_EXEMPT_PATHS = ("/healthz", "/livez", "/readyz", "/metrics")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
JSON_MEDIA_TYPE = "application/json"
MAX_CLIENT_ID_CHARS = 128  # bounds the memory one bucket key can take
MAX_REPORTED_ERRORS = 50
MAX_PROBLEM_CHARS = 200

Headers = list[tuple[bytes, bytes]]


class _ClientDisconnected(Exception):
    """The client went away before its request body was complete."""


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """A token bucket per client, thread-safe, holding at most `max_clients` buckets (least recent evicted)."""

    def __init__(self, *, rate: float, burst: int, max_clients: int, clock: Callable[[], float]) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate must be > 0, burst and max_clients >= 1")
        self.rate = rate
        self.burst = burst
        self._max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str) -> float:
        """Take one token for `client`; return 0.0 if granted, else the seconds until one is available."""
        with self._lock:
            now = self._clock()
            bucket = self._refilled(client, now)
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate

    def _refilled(self, client: str, now: float) -> _Bucket:
        """The client's bucket topped up to `now`, marked most recently used (caller holds the lock)."""
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(tokens=float(self.burst), updated=now)
            while len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            self._buckets.move_to_end(client)
        return bucket


class Guards:
    """ASGI middleware refusing abusive or malformed requests before the app sees them."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = 16_384,
        rate_per_second: float = 20.0,
        burst: int = 40,
        client_header: str = "x-client-id",
        exempt_paths: Iterable[str] = DEFAULT_EXEMPT_PATHS,
        admin_prefix: str = "/admin",
        admin_token: str | None = None,
        usecase: str | None = None,
        strip_loc_prefix: str | None = None,
        max_clients: int = 10_000,
        trusted_proxies: Iterable[str | IPv4Network | IPv6Network] = (),
        signed_paths: Iterable[str] = (),
        signing_key: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`trusted_proxies`: addresses or networks whose client header is believed. `signing_key` returns the key
        of `signed_paths`; it is called once, when the middleware is built (as the worker starts, not at import)."""
        self.signed_paths = frozenset(signed_paths)
        if self.signed_paths and signing_key is None:
            raise ValueError(NO_SIGNING_KEY)
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.client_header = client_header.lower().encode("latin-1")
        self.exempt_paths = frozenset(exempt_paths)
        self.admin_prefix = admin_prefix.rstrip("/")
        self._admin_token = admin_token.encode("utf-8") if admin_token else None
        self.usecase = usecase
        self.strip_loc_prefix = strip_loc_prefix
        self.buckets = TokenBuckets(rate=rate_per_second, burst=burst, max_clients=max_clients, clock=clock)
        self.trusted_proxies = tuple(_network(proxy) for proxy in trusted_proxies)
        self._signature_header = SIGNATURE_HEADER.lower().encode("latin-1")
        self._key = signing_key() if signing_key is not None else ""  # read only for signed paths, which need one
        # the bucket of whoever holds the key: named by a digest, so the key is never kept in a bucket's name
        self._key_holder = "key:" + hashlib.sha256(self._key.encode("utf-8")).hexdigest()[:16]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        signed = scope["method"] == "POST" and scope["path"] in self.signed_paths
        refusal = self._refusal(scope, signed=signed)
        if refusal is not None:
            await refusal.send(send)
            return
        try:
            body = await _read_body(receive, limit=self.max_body_bytes)
        except _ClientDisconnected:
            return
        if body is None:
            await self._too_large().send(send)
            return
        refusal = self._verify(scope, body) if signed else None
        if refusal is not None:
            await refusal.send(send)
            return
        rewriter = _ValidationRewriter(send, strip_loc_prefix=self.strip_loc_prefix)
        await self.app(scope, _replay(body, receive), rewriter)

    def _refusal(self, scope: Scope, *, signed: bool) -> _JSONError | None:
        """The answer to a request refused on its headers alone, or None to let it through. A request pays its
        token here, as its caller, unless it is `signed` and carries a signature: that one pays in `_verify`, once
        its body is read (refused on its headers before then, it pays nothing: that refusal costs no more than a
        429 would)."""
        headers: Headers = scope["headers"]
        signature = _header(headers, self._signature_header) if signed else None
        if signature is None:
            wait = self.buckets.take(self._client_id(scope, headers))
            if wait > 0:
                return self._rate_limited(wait)
            if signed:
                return self._unauthenticated(MISSING_SIGNATURE)
        if self._is_admin(scope["path"]):
            if self._admin_token is None:
                return _JSONError(503, ADMIN_DISABLED)
            if not _has_bearer(headers, self._admin_token):
                return _JSONError(401, ADMIN_TOKEN_REQUIRED, [(b"www-authenticate", b"Bearer")])
        asked = _header(headers, USECASE_HEADER.encode("latin-1"))
        if self.usecase is not None and asked is not None and asked.decode("latin-1").strip() != self.usecase:
            # 421 Misdirected Request: this server cannot answer for that use case; another service can
            return _JSONError(421, WRONG_USECASE.format(served=self.usecase, asked=asked.decode("latin-1")[:64]))
        if scope["method"] in BODY_METHODS and _media_type(headers) != JSON_MEDIA_TYPE:
            return _JSONError(415, UNSUPPORTED_MEDIA_TYPE)
        declared = _content_length(headers)
        if declared is not None and declared > self.max_body_bytes:
            return self._too_large()
        return None

    def _verify(self, scope: Scope, body: bytes) -> _JSONError | None:
        """The answer to a signed request once its body is read: None (let it through) if its signature signs the
        body, counted against the key's holder; else a 401 naming the problem, counted against the caller."""
        headers: Headers = scope["headers"]
        sent = _header(headers, self._signature_header)
        problem = signature_problem(body, None if sent is None else sent.decode("latin-1"), key=self._key)
        wait = self.buckets.take(self._key_holder if problem is None else self._client_id(scope, headers))
        if wait > 0:
            return self._rate_limited(wait)
        return None if problem is None else self._unauthenticated(problem)

    def _client_id(self, scope: Scope, headers: Headers) -> str:
        """The bucket key: the client header when a trusted proxy sends it, else the peer IP (prefixed so one
        cannot pose as the other)."""
        client = scope.get("client")
        peer = str(client[0]) if client else None
        if peer is not None and self._is_trusted(peer):
            value = _header(headers, self.client_header)
            if value:
                return "id:" + value.decode("latin-1")[:MAX_CLIENT_ID_CHARS]
        return "ip:" + (peer or "unknown")

    def _is_trusted(self, peer: str) -> bool:
        """Whether the peer address is in a trusted proxy's network (an IPv4-mapped IPv6 address as its IPv4)."""
        if not self.trusted_proxies:
            return False
        try:
            address = ip_address(peer)
        except ValueError:  # not an IP address (a Unix socket's path): never a trusted proxy
            return False
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted_proxies)

    def _is_admin(self, path: str) -> bool:
        return path == self.admin_prefix or path.startswith(self.admin_prefix + "/")

    def _rate_limited(self, wait: float) -> _JSONError:
        message = RATE_LIMITED.format(rate=self.buckets.rate, burst=self.buckets.burst)
        retry_after = str(max(1, math.ceil(wait))).encode("ascii")
        return _JSONError(429, message, [(b"retry-after", retry_after)])

    def _too_large(self) -> _JSONError:
        return _JSONError(413, BODY_TOO_LARGE.format(limit=self.max_body_bytes))

    @staticmethod
    def _unauthenticated(problem: str) -> _JSONError:
        return _JSONError(401, problem, [(b"www-authenticate", SIGNATURE_CHALLENGE)])


@dataclass(frozen=True)
class _JSONError:
    """A small JSON error answer: `{"error": message}` with a status and extra headers."""

    status: int
    message: str
    headers: Headers | None = None

    async def send(self, send: Send) -> None:
        await _send_json(send, self.status, {"error": self.message}, self.headers or [])


class _ValidationRewriter:
    """Send wrapper turning the app's 400 pydantic report into a 422 list of fields; streams all else."""

    def __init__(self, send: Send, *, strip_loc_prefix: str | None) -> None:
        self._send = send
        self._strip = strip_loc_prefix
        self._held_start: Message | None = None
        self._chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and _is_json_400(message):
            self._held_start = message
            return
        if self._held_start is None or message["type"] != "http.response.body":
            await self._send(message)
            return
        self._chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            await self._flush(self._held_start, b"".join(self._chunks))

    async def _flush(self, start: Message, body: bytes) -> None:
        errors = _field_errors(body, strip=self._strip)
        if errors is None:
            await self._send(start)
            await self._send({"type": "http.response.body", "body": body})
            return
        kept = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"content-type")]
        await _send_json(self._send, 422, {"error": INVALID_REQUEST, "errors": errors}, kept)


async def _read_body(receive: Receive, *, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it grows past `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that yields the buffered body once, then defers to the real one (disconnects)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _field_errors(body: bytes, *, strip: str | None) -> list[dict[str, str]] | None:
    """The pydantic errors of a `{"detail": [...]}` body as `{field, problem, type}`, or None if not one."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if not isinstance(detail, list) or not detail or not all(_is_pydantic_error(item) for item in detail):
        return None
    return [
        {"field": _field(item["loc"], strip=strip), "problem": item["msg"][:MAX_PROBLEM_CHARS], "type": item["type"]}
        for item in detail[:MAX_REPORTED_ERRORS]
    ]


def _is_pydantic_error(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("loc"), list)
        and isinstance(item.get("msg"), str)
        and isinstance(item.get("type"), str)
    )


def _field(loc: list[Any], *, strip: str | None) -> str:
    """The dotted field name of a pydantic `loc`, without the wrapping argument name when asked."""
    parts = [str(part) for part in loc]
    if strip is not None and len(parts) > 1 and parts[0] == strip:
        parts = parts[1:]
    return ".".join(parts)


def _is_json_400(start: Message) -> bool:
    return start["status"] == 400 and _media_type(start.get("headers", [])) == JSON_MEDIA_TYPE


def _network(proxy: str | IPv4Network | IPv6Network) -> IPv4Network | IPv6Network:
    try:
        return ip_network(proxy)
    except ValueError as problem:
        raise ValueError(NOT_A_PROXY.format(proxy=str(proxy), problem=problem)) from None


def _header(headers: Headers, name: bytes) -> bytes | None:
    """The first value of header `name` (lower-case), or None."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _has_bearer(headers: Headers, token: bytes) -> bool:
    """Whether the request carries `Authorization: Bearer <token>` (bytes, constant-time compare)."""
    scheme, _, sent = (_header(headers, b"authorization") or b"").partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(sent.strip(), token)


def _media_type(headers: Headers) -> str:
    """The content-type without parameters, lower-cased ('' if absent)."""
    value = _header(headers, b"content-type") or b""
    return value.decode("latin-1").split(";", 1)[0].strip().lower()


def _content_length(headers: Headers) -> int | None:
    """The declared Content-Length, or None when absent or unreadable (the body read still enforces the limit)."""
    value = _header(headers, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def _send_json(send: Send, status: int, payload: dict[str, Any], headers: Headers) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *headers,
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
