"""The daemon's HTTP server: ``/healthz``, ``/readyz``, ``/metrics`` and the routes the daemon
adds (reports, and the API as it grows).

A small stdlib server on its own thread: liveness says the ingestion loop is turning,
readiness says the consumer holds partitions and the store answers, and ``/metrics``
renders the registry the daemon built (never the process-global default one).

Requests that change something (any method but GET / HEAD) need ``Authorization: Bearer
<token>`` when a token is configured (``http.token_env``), and are refused outright when
the server listens beyond loopback without one.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, str]]
MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, status: int, data: Any) -> Response:
        return cls(status, json.dumps(data).encode())


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    prefix: bool = False
    """Match every path under ``path`` (which then ends with ``/``)."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    server: HttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _request(self) -> Request:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_BODY)) if length else b""
        return Request(
            self.command,
            parts.path,
            parse_qs(parts.query),
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )

    def _dispatch(self) -> None:
        try:
            request = self._request()
            self._send(self.server.handle(request))
        except Exception:  # one bad request never takes the server down
            log.exception("HTTP %s %s failed", self.command, self.path)
            self._send(Response.of_json(500, {"error": "internal error"}))

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch  # noqa: N815


class HttpServer(ThreadingHTTPServer):
    """Serves the endpoints on ``host:port`` from a thread; ``close()`` stops it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        liveness: Check,
        readiness: Check,
        routes: list[Route] | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__((host, port), _Handler)
        self.registry = registry
        self.liveness = liveness
        self.readiness = readiness
        self.routes = list(routes or [])
        self.token = token
        self.loopback = is_loopback(host)
        self._thread = threading.Thread(target=self.serve_forever, name="wk-http", daemon=False)

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> HttpServer:
        self._thread.start()
        log.info("HTTP endpoints on http://%s", self.address)
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self.shutdown()
            self._thread.join(timeout=10)
        self.server_close()

    # -- routing --------------------------------------------------------------------------
    def _check(self, check: Check) -> Response:
        ok, reason = check()
        return Response.of_json(
            200 if ok else 503, {"status": "ok" if ok else "unavailable", "reason": reason}
        )

    def _authorised(self, request: Request) -> Response | None:
        if request.method in ("GET", "HEAD"):
            return None
        if self.token is None:
            if self.loopback:
                return None
            return Response.of_json(
                403,
                {"error": "changes need http.token_env when the server listens beyond loopback"},
            )
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return Response(
                401,
                b'{"error": "a valid bearer token is required"}',
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None

    def handle(self, request: Request) -> Response:
        if request.method in ("GET", "HEAD"):
            if request.path == "/healthz":
                return self._check(self.liveness)
            if request.path == "/readyz":
                return self._check(self.readiness)
            if request.path == "/metrics":
                encoder, content_type = choose_encoder(request.headers.get("accept", ""))
                return Response(200, encoder(self.registry), content_type)
        denied = self._authorised(request)
        if denied is not None:
            return denied
        method = "GET" if request.method == "HEAD" else request.method
        allowed = set()
        for route in self.routes:
            matches = (
                request.path.startswith(route.path) if route.prefix else request.path == route.path
            )
            if matches:
                if route.method == method:
                    return route.handler(request)
                allowed.add(route.method)
        if allowed:
            return Response(
                405,
                b'{"error": "method not allowed"}',
                headers={"Allow": ", ".join(sorted(allowed))},
            )
        return Response.of_json(404, {"error": "not found"})
