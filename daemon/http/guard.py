"""The HTTP server's limits and the two ASGI middlewares that enforce what the server does
not: request framing and size, concurrency, and the security headers of every response.

``RequestGuard`` (outermost):

* a request with both ``Content-Length`` and ``Transfer-Encoding``, more than one
  ``Content-Length``, or one that is not a plain decimal number, is refused with 400 and
  the connection closed: such framing is how a request is smuggled past a proxy that
  reads it differently (RFC 9112 §6.3 lets a server refuse it; we do);
* a GET or HEAD that announces a body (``Transfer-Encoding``, or a ``Content-Length``
  above 0) is refused with 400 and the connection closed: such a body has no meaning
  (RFC 9110 §9.3.1, §9.3.2) and nothing here reads it, so an application that waits for
  the end of the request (prometheus-client's ``/metrics`` awaits ``receive()``) would
  otherwise hold the connection until ``read_timeout`` for a body that never comes;
* a declared length above ``max_body`` is refused with 413 before a byte of the body is
  read; a chunked body is counted as it arrives and refused with 413 the moment it
  passes ``max_body``. Both answers close the connection, so nothing left of the body
  is ever read as a next request (the desync of issue 15);
* at most ``max_inflight`` requests are handled at once; beyond, 503 with
  ``Retry-After`` at once, instead of a queue that grows with the attacker's patience.

``SecurityHeaders`` gives every response ``Content-Security-Policy`` (``default-src
'none'`` for the API; pages and reports set their own, stricter in what they need),
``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` (with CSP
``frame-ancestors 'none'``), ``Referrer-Policy: no-referrer``,
``Cross-Origin-Opener-Policy`` / ``Cross-Origin-Resource-Policy: same-origin`` and
``Cache-Control: no-store`` unless the response set them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from watchkeeper.errors import WatchkeeperError

Scope = dict[str, Any]
Message = dict[str, Any]


@dataclass(frozen=True)
class Limits:
    """What one client may cost the server. The defaults suit a sidecar."""

    max_body: int = 1024 * 1024
    """Request bodies above this are refused (413, connection closed)."""
    max_head_bytes: int = 16 * 1024
    """The request line and headers together (431 beyond)."""
    header_timeout: float = 5.0
    """A connection must complete its request head this soon (and idle keep-alive
    connections are closed after as long)."""
    read_timeout: float = 30.0
    """A connection that sends nothing for this long while a body is expected is closed."""
    backlog: int = 1024
    """Pending connections the kernel queues before accept (was 5)."""
    workers: int = 8
    """Threads running handlers (they read the store)."""
    max_inflight: int = 128
    """Requests handled or queued for a worker at once; beyond, 503. With ``max_body``
    this bounds the memory requests in progress hold (128 MiB at worst)."""
    shutdown_timeout: float = 3.0
    """How long a stop waits for requests in progress."""


SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-store",
}


class BodyTooLargeError(WatchkeeperError):
    """Raised by the guarded ``receive`` when a streamed body passes ``max_body``."""


async def _refuse(send: Any, status: int, message: str, extra: list[Any] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *[(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()],
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


BODILESS_METHODS = frozenset({"GET", "HEAD"})
"""Methods whose requests must not carry a body (module docstring)."""


def framing_error(
    headers: list[tuple[bytes, bytes]], max_body: int, method: str = "GET"
) -> tuple[int, str] | None:
    """Status and reason to refuse a request's framing with, or None when it is sound."""
    lengths = [v for k, v in headers if k.lower() == b"content-length"]
    chunked = any(k.lower() == b"transfer-encoding" for k, _ in headers)
    if lengths and chunked:
        return 400, "Content-Length and Transfer-Encoding together are refused"
    if len(lengths) > 1:
        return 400, "more than one Content-Length"
    bodiless = method.upper() in BODILESS_METHODS
    if chunked and bodiless:
        return 400, f"a {method.upper()} request must not carry a body"
    if lengths:
        text = lengths[0].strip()
        if not text.isdigit() or len(text) > 18:
            return 400, "Content-Length must be a non-negative decimal number"
        if int(text) > 0 and bodiless:
            return 400, f"a {method.upper()} request must not carry a body"
        if int(text) > max_body:
            return 413, f"the body is larger than the limit of {max_body} bytes"
    return None


class RequestGuard:
    """See the module docstring."""

    def __init__(self, app: Any, limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = framing_error(
            scope.get("headers", []), self.limits.max_body, str(scope.get("method", ""))
        )
        if refused is not None:
            await _refuse(send, *refused)
            return
        if self.inflight >= self.limits.max_inflight:
            await _refuse(send, 503, "too many requests at once", [(b"retry-after", b"1")])
            return
        self.inflight += 1
        received = 0
        limit = self.limits.max_body

        async def guarded_receive() -> Message:
            nonlocal received
            message: Message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError
            return message

        try:
            await self.app(scope, guarded_receive, send)
        finally:
            self.inflight -= 1


class SecurityHeaders:
    """See the module docstring."""

    def __init__(self, app: Any, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.headers = [(k.encode(), v.encode()) for k, v in (headers or SECURITY_HEADERS).items()]

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                given = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in given]
                message = dict(message, headers=[*message.get("headers", []), *extra])
            await send(message)

        await self.app(scope, receive, with_headers)
