"""The daemon's HTTP endpoints: ``/healthz``, ``/readyz`` and ``/metrics``.

A small stdlib server on its own thread: liveness says the ingestion loop is turning,
readiness says the consumer holds partitions and the store answers, and ``/metrics``
renders the registry the daemon built (never the process-global default one).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, str]]


class _Handler(BaseHTTPRequestHandler):
    server: HttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _check(self, check: Check) -> None:
        ok, reason = check()
        body = json.dumps({"status": "ok" if ok else "unavailable", "reason": reason}).encode()
        self._send(200 if ok else 503, body, "application/json")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._check(self.server.liveness)
        elif path == "/readyz":
            self._check(self.server.readiness)
        elif path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, encoder(self.server.registry), content_type)
        else:
            self._send(404, b'{"error": "not found"}', "application/json")

    do_HEAD = do_GET  # noqa: N815


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
    ) -> None:
        super().__init__((host, port), _Handler)
        self.registry = registry
        self.liveness = liveness
        self.readiness = readiness
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
