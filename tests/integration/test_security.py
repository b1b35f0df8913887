"""The HTTP server's defaults: loopback unless told otherwise, and beyond loopback no
request that changes something without the bearer token."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from watchkeeper.daemon.config import HttpConfig
from watchkeeper.daemon.http.routes import Request, Response, Route
from watchkeeper.daemon.http.server import HttpServer

TOKEN = "a-long-random-token-for-tests"


def call(url: str, method: str = "GET", token: str | None = None) -> int:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    request.add_header("Content-Type", "application/json")  # a form type is refused (CSRF)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.fixture
def reloads() -> list[int]:
    return []


def serve(host: str, token: str | None, reloads: list[int]) -> HttpServer:
    def reload(_request: Request) -> Response:
        reloads.append(1)
        return Response.of_json(200, {"ok": True})

    return HttpServer(
        host,
        0,
        CollectorRegistry(),
        lambda: (True, "ok"),
        lambda: (True, "ok"),
        [Route("POST", "/-/reload", reload)],
        token,
    ).start()


@pytest.fixture
def open_server(reloads: list[int]) -> Iterator[str]:
    server = serve("0.0.0.0", None, reloads)  # beyond loopback, no token configured
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.close()


@pytest.fixture
def guarded_server(reloads: list[int]) -> Iterator[str]:
    server = serve("0.0.0.0", TOKEN, reloads)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.close()


def test_the_default_listen_address_is_loopback() -> None:
    assert HttpConfig().host == "127.0.0.1"


def test_beyond_loopback_without_a_token_nothing_can_be_changed(
    open_server: str, reloads: list[int]
) -> None:
    assert call(open_server + "/healthz") == 200  # reading stays open (probes, Prometheus)
    assert call(open_server + "/metrics") == 200
    assert call(open_server + "/-/reload", "POST") == 403
    assert call(open_server + "/-/reload", "POST", token="guess") == 403
    assert reloads == []


def test_beyond_loopback_with_a_token_changes_need_it(
    guarded_server: str, reloads: list[int]
) -> None:
    assert call(guarded_server + "/readyz") == 200
    assert call(guarded_server + "/-/reload", "POST") == 401
    assert call(guarded_server + "/-/reload", "POST", token=TOKEN[:-1]) == 401
    assert reloads == []
    assert call(guarded_server + "/-/reload", "POST", token=TOKEN) == 200
    assert reloads == [1]


def test_on_loopback_without_a_token_changes_are_allowed(reloads: list[int]) -> None:
    server = serve("127.0.0.1", None, reloads)
    try:
        assert call(f"http://127.0.0.1:{server.server_address[1]}/-/reload", "POST") == 200
    finally:
        server.close()
