"""/docs.json as the service behaves: BentoML's OpenAPI document amended by `tasks.serving.openapi.document`.

A pure ASGI middleware installed with `Service.add_asgi_middleware(OpenAPIDocument, build=...)`, BentoML's public
extension point: BentoML 1.4 offers no hook for an operation's responses (issue #2975), and this patches nothing of
BentoML's. It answers GET /docs.json itself with the document `build()` returns (built on the first request, then
kept: the routes do not change while the process runs) and passes every other request through.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

DOCS_PATH = "/docs.json"


class OpenAPIDocument:
    """ASGI middleware serving the OpenAPI document `build()` returns at `path`."""

    def __init__(self, app: ASGIApp, *, build: Callable[[], dict[str, Any]], path: str = DOCS_PATH) -> None:
        self.app = app
        self.path = path
        self._build = build
        self._body: bytes | None = None
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        body = self.body()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("ascii"))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def body(self) -> bytes:
        """The document as JSON bytes, built once."""
        with self._lock:
            if self._body is None:
                self._body = json.dumps(self._build(), separators=(",", ":")).encode("utf-8")
            return self._body
