"""The Starlette application behind :class:`~watchkeeper.daemon.http.HttpServer`.

Layers, outermost first: :class:`~watchkeeper.daemon.http.guard.RequestGuard` (framing,
size, concurrency), :class:`~watchkeeper.daemon.http.guard.SecurityHeaders`, the
:class:`Gate` (host, authentication, cross-site rule), then Starlette's router. The
daemon's handlers (``Request -> Response`` functions, :class:`~watchkeeper.daemon.http.Route`)
become Starlette routes run on the bounded worker pool; ``extra_routes`` takes Starlette
routes as they are (pages, static files, an OpenAPI description), behind the same layers.

The rule for requests that change something (any method but GET and HEAD):

1. With ``http.token_env`` set, ``Authorization: Bearer <token>`` is required (the scheme
   is case-insensitive, RFC 7235 §2.1); beyond loopback without a token, such requests
   are refused (403).
2. Without a token (loopback only), a request must not come from a web page of another
   origin, which any page the on-call opens could send: it is refused (403) when
   ``Sec-Fetch-Site`` is present and not ``same-origin`` / ``none``, or when ``Origin``
   is present and is not this server's own origin (``null`` included); and a request with
   a body must send it as ``application/json`` (415 otherwise), which a page can only do
   cross-origin after a CORS preflight this server never grants. ``curl -X POST`` and the
   CLI (no Origin, no body or JSON) pass.
3. On a loopback listener, the ``Host`` header must name a loopback address,
   ``localhost`` or the host of ``http.public_url`` (403 otherwise), so a DNS-rebinding
   page cannot make itself same-origin with the daemon, for reads or changes.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, Counter, make_asgi_app
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.routing import BaseRoute
from starlette.routing import Route as StarletteRoute
from watchkeeper.daemon.http.guard import (
    SECURITY_HEADERS,
    BodyTooLargeError,
    Limits,
    RequestGuard,
    SecurityHeaders,
)
from watchkeeper.daemon.http.routes import Check, Handler, Request, Response, Route, is_loopback

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD"})
SIMPLE_TYPES = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain", ""}
)
MAX_QUERY_FIELDS = 50


class _AsgiApp:
    """An ASGI application as a route endpoint (Starlette calls plain functions with a
    request; prometheus-client's app is a function taking scope, receive, send)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


# the methods a response is counted under; any other is "other", so a client cannot grow
# the metric's label set
_COUNTED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ResponseCounter:
    """Counts every response the application sends, by method and status, in
    ``watchkeeper_http_responses_total``: refusals (413, 401, 403) as well as answers, so
    what the server did — and did not do — is visible without reading its logs."""

    def __init__(self, app: Any, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "")
        method = method if method in _COUNTED_METHODS else "other"

        async def counted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.counter.labels(method, str(int(message["status"]))).inc()
            await send(message)

        await self.app(scope, receive, counted)


def _json(status: int, message: str, headers: dict[str, str] | None = None) -> StarletteResponse:
    return StarletteResponse(
        json.dumps({"error": message}).encode(),
        status,
        headers=headers,
        media_type="application/json",
    )


def _host_name(value: str) -> str:
    """The host part of a ``Host`` header or an origin's netloc (port and brackets off)."""
    if value.startswith("["):
        return value[1:].split("]", 1)[0].lower()
    return value.rsplit(":", 1)[0].lower() if value.count(":") == 1 else value.lower()


class Gate:
    """Host check, authentication and the cross-site rule (module docstring)."""

    def __init__(self, app: Any, token: str | None, loopback: bool, public_url: str | None) -> None:
        self.app = app
        self.token = token
        self.loopback = loopback
        self._is_loopback = is_loopback
        self.public_host = urlsplit(public_url).hostname if public_url else None

    def _host_allowed(self, host: str) -> bool:
        if not self.loopback or not host:
            return True
        name = _host_name(host)
        return name == "localhost" or self._is_loopback(name) or name == self.public_host

    def _refusal(self, scope: dict[str, Any]) -> StarletteResponse | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not self._host_allowed(host):
            return _json(403, "this server answers to its loopback address or http.public_url")
        if scope["method"] in SAFE_METHODS:
            return None
        if self.token is None:
            if not self.loopback:
                return _json(
                    403, "changes need http.token_env when the server listens beyond loopback"
                )
            return self._cross_site(headers, host, scope)
        scheme, _, credentials = headers.get("authorization", "").strip().partition(" ")
        valid = scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self.token.encode()
        )
        if not valid:
            return _json(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
        return None

    @staticmethod
    def _cross_site(
        headers: dict[str, str], host: str, scope: dict[str, Any]
    ) -> StarletteResponse | None:
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return _json(403, f"cross-site request refused (Sec-Fetch-Site: {site[:20]})")
        origin = headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin)
            if origin == "null" or not parts.netloc or parts.netloc.lower() != host.lower():
                return _json(403, "cross-origin request refused (Origin is not this server)")
        has_body = "transfer-encoding" in headers or headers.get("content-length", "0") != "0"
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if has_body and media in SIMPLE_TYPES:
            return _json(415, "send the body as application/json")
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refused = self._refusal(scope)
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _request(scope: dict[str, Any], body: bytes) -> Request:
    query = scope.get("query_string", b"").decode("latin-1")
    try:
        parsed = parse_qs(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError as exc:
        raise HTTPException(400, f"query: {exc}") from None
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    return Request(scope["method"], scope["path"], parsed, headers, body)


def _response(response: Response, method: str) -> StarletteResponse:
    headers = dict(response.headers)
    body = response.body
    if method == "HEAD":
        headers["content-length"] = str(len(body))
        body = b""
    return StarletteResponse(
        body, response.status, headers=headers, media_type=response.content_type
    )


def build_app(
    registry: CollectorRegistry,
    liveness: Check,
    readiness: Check,
    routes: list[Route],
    *,
    token: str | None,
    loopback: bool,
    limits: Limits,
    executor: Executor,
    public_url: str | None = None,
    extra_routes: list[BaseRoute] | None = None,
) -> Starlette:
    """The application; see the module docstring."""

    async def in_pool(function: Callable[[], Response]) -> Response:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, function)
        except RuntimeError:  # the pool is shutting down with the server
            return Response.of_json(503, {"error": "shutting down"})

    def endpoint(handler: Handler) -> Callable[[StarletteRequest], Any]:
        async def run(request: StarletteRequest) -> StarletteResponse:
            body = await request.body() if request.method not in SAFE_METHODS else b""
            ours = _request(dict(request.scope), body)

            def call() -> Response:
                try:
                    return handler(ours)
                except Exception:  # one bad request never takes the server down
                    log.exception("HTTP %s %s failed", ours.method, ours.path)
                    return Response.of_json(500, {"error": "internal error"})

            return _response(await in_pool(call), request.method)

        return run

    def check(probe: Check) -> Handler:
        def handler(_request: Request) -> Response:
            ok, reason = probe()
            body = {"status": "ok" if ok else "unavailable", "reason": reason}
            return Response.of_json(200 if ok else 503, body)

        return handler

    table: list[BaseRoute] = [
        StarletteRoute("/healthz", endpoint(check(liveness)), methods=["GET"]),
        StarletteRoute("/readyz", endpoint(check(readiness)), methods=["GET"]),
        StarletteRoute("/metrics", _AsgiApp(make_asgi_app(registry)), methods=["GET"]),
    ]
    for route in routes:
        path = route.path + "{rest:path}" if route.prefix else route.path
        table.append(StarletteRoute(path, endpoint(route.handler), methods=[route.method]))
    table.extend(extra_routes or [])

    async def too_large(_request: StarletteRequest, _exc: Exception) -> StarletteResponse:
        return _json(
            413,
            f"the body is larger than the limit of {limits.max_body} bytes",
            {"Connection": "close"},
        )

    async def http_error(_request: StarletteRequest, exc: Exception) -> StarletteResponse:
        assert isinstance(exc, HTTPException)
        message = {404: "not found", 405: "method not allowed"}.get(exc.status_code, exc.detail)
        return _json(exc.status_code, str(message), dict(exc.headers or {}))

    responses = Counter(
        "watchkeeper_http_responses",
        "HTTP responses sent, by request method and status (refusals included)",
        ["method", "status"],
        registry=registry,
    )
    return Starlette(
        routes=table,
        middleware=[
            Middleware(ResponseCounter, counter=responses),
            Middleware(RequestGuard, limits=limits),
            Middleware(SecurityHeaders, headers=SECURITY_HEADERS),
            Middleware(Gate, token=token, loopback=loopback, public_url=public_url),
        ],
        exception_handlers={BodyTooLargeError: too_large, HTTPException: http_error},
    )
