"""The daemon's HTTP server: ``/healthz``, ``/readyz``, ``/metrics`` and the routes the daemon
adds (reports, the API, and later the console).

The application is Starlette (:mod:`watchkeeper.daemon.http.application`), served by Hypercorn on
an event loop in one thread that the daemon starts and stops through its exit stack.
Hypercorn was chosen over uvicorn by measurement against the probes of issue 15 (README,
"HTTP server"): it closes connections whose request head does not arrive within
``keep_alive_timeout`` and refuses request heads over ``h11_max_incomplete_size`` (431),
where uvicorn, as shipped, keeps a half-sent request open forever and accepts a 1 MiB
header line. No signal handler is installed (a shutdown trigger is passed instead), and
shutdown is bounded by ``graceful_timeout``. The listening socket is bound here and handed
to Hypercorn as a :class:`_CountingListener`, so every connection is counted from its
accept to its close (``watchkeeper_http_open_connections``), request head or not.

Handlers are plain functions ``Request -> Response`` that read the store, so they run on
a bounded pool of worker threads, never on the event loop; the limits (body size, header
size, timeouts, backlog, concurrency) are :class:`~watchkeeper.daemon.http.guard.Limits`.

Requests that change something (any method but GET / HEAD) need ``Authorization: Bearer
<token>`` when a token is configured (``http.token_env``), are refused outright when the
server listens beyond loopback without one, and must not come from another origin
(``application`` documents the cross-site rule).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from watchkeeper.daemon.http.application import build_app
from watchkeeper.daemon.http.guard import Limits
from watchkeeper.daemon.http.routes import Check, Route, is_loopback

log = logging.getLogger(__name__)

MAX_BODY = Limits().max_body


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    """The listening socket, bound here so the port is known before the loop starts and
    ``[::1]`` works like ``127.0.0.1``."""
    family = socket.AF_INET
    bare = host.strip("[]")
    try:
        if ipaddress.ip_address(bare).version == 6:
            family = socket.AF_INET6
    except ValueError:
        infos = socket.getaddrinfo(bare or None, port, type=socket.SOCK_STREAM)
        family = infos[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bare, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Connections:
    """The connections the server has accepted, and those still open
    (``watchkeeper_http_open_connections``). Counted where the event loop accepts and
    closes them, so a client that never completes its request head is counted too: the
    application sees requests only."""

    def __init__(self) -> None:
        self.accepted = 0
        self.open = 0


class _CountedConnection(socket.socket):
    """An accepted connection that counts itself out when it closes (asyncio's transport
    closes its socket once the connection is lost)."""

    def count_in(self, connections: Connections) -> None:
        self._connections: Connections | None = connections
        connections.accepted += 1
        connections.open += 1

    def close(self) -> None:
        connections = getattr(self, "_connections", None)
        if connections is not None:
            self._connections = None
            connections.open -= 1
        super().close()


class _CountingListener(socket.socket):
    """The listening socket handed to Hypercorn: asyncio's selector loop accepts through
    ``sock.accept()``, which builds each connection as a :class:`_CountedConnection`."""

    def __init__(self, fileno: int, connections: Connections) -> None:
        super().__init__(fileno=fileno)
        self._counts = connections

    def accept(self) -> tuple[socket.socket, Any]:
        # socket.socket.accept, building the connection of our own class
        fd, address = self._accept()  # type: ignore[attr-defined]
        conn = _CountedConnection(self.family, self.type, self.proto, fileno=fd)
        if socket.getdefaulttimeout() is None and self.gettimeout():
            conn.setblocking(True)
        conn.count_in(self._counts)
        return conn, address


class HttpServer:
    """Serves the endpoints on ``host:port`` from a thread; ``close()`` stops it."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        liveness: Check,
        readiness: Check,
        routes: list[Route] | None = None,
        token: str | None = None,
        *,
        limits: Limits | None = None,
        public_url: str | None = None,
        extra_routes: list[Any] | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.token = token
        self.loopback = is_loopback(host)
        self._socket = _bind(host, port, self.limits.backlog)
        self.connections = Connections()
        Gauge(
            "watchkeeper_http_open_connections",
            "HTTP connections accepted and not yet closed (those still sending their "
            "request head included).",
            registry=registry,
        ).set_function(lambda: self.connections.open)
        self._executor = ThreadPoolExecutor(
            max_workers=self.limits.workers, thread_name_prefix="wk-http-worker"
        )
        self.app = build_app(
            registry,
            liveness,
            readiness,
            list(routes or []),
            token=token,
            loopback=self.loopback,
            limits=self.limits,
            executor=self._executor,
            public_url=public_url,
            extra_routes=extra_routes,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="wk-http", daemon=False)

    @property
    def server_address(self) -> tuple[str, int]:
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def address(self) -> str:
        host, port = self.server_address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _listener(self) -> socket.socket:
        # Hypercorn closes the listening socket it serves at shutdown: give it a copy
        listener = _CountingListener(os.dup(self._socket.fileno()), self.connections)
        listener.setblocking(False)
        return listener

    def _config(self) -> Any:
        from hypercorn.config import Config as HypercornConfig
        from hypercorn.config import Sockets

        listener = self._listener

        class ServingConfig(HypercornConfig):
            def create_sockets(self) -> Sockets:
                """The socket bound by :func:`_bind`, counting its connections (in place
                of Hypercorn binding ``config.bind`` itself)."""
                return Sockets([], [listener()], [])

        limits = self.limits
        config = ServingConfig()
        config.backlog = limits.backlog
        config.keep_alive_timeout = limits.header_timeout
        config.read_timeout = int(limits.read_timeout)
        config.graceful_timeout = limits.shutdown_timeout
        config.h11_max_incomplete_size = limits.max_head_bytes
        # HTTP/2 (prior knowledge or an h2c upgrade) cannot be switched off in Hypercorn:
        # bound it as HTTP/1.1 is bounded
        config.h2_max_inbound_frame_size = 16 * 1024
        config.h2_max_concurrent_streams = 16
        config.h2_max_header_list_size = limits.max_head_bytes
        config.max_app_queue_size = 10
        config.include_server_header = False
        config.accesslog = None
        config.errorlog = logging.getLogger("watchkeeper.daemon.http.server")
        config.use_reloader = False
        return config

    def _serve(self) -> None:
        from hypercorn.asyncio import serve

        loop = asyncio.new_event_loop()
        self._loop = loop
        shutdown = self._shutdown = asyncio.Event()

        async def main() -> None:
            async def started() -> None:
                await shutdown.wait()

            loop.call_soon(self._ready.set)
            await serve(self.app, self._config(), shutdown_trigger=started)  # type: ignore[arg-type]

        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # reported by start(); the thread ends either way
            self._failed = exc
            log.exception("the HTTP server stopped")
        finally:
            self._ready.set()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def start(self) -> HttpServer:
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._failed is not None:
            raise RuntimeError(f"the HTTP server did not start: {self._failed}")
        log.info("HTTP endpoints on http://%s", self.address)
        return self

    def close(self) -> None:
        loop, shutdown = self._loop, self._shutdown
        if self._thread.is_alive() and loop is not None and shutdown is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(shutdown.set)
            self._thread.join(timeout=self.limits.shutdown_timeout + 10)
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._socket.close()
