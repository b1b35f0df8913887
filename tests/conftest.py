"""Shared fixtures: the real Tansu broker, real SQLite and PostgreSQL stores, leak checks."""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from watchkeeper.daemon.demo.broker import EmbeddedBroker

from tests.support import (
    IN_CI,
    PG_ADMIN_URL,
    DaemonProcess,
    FakeSlack,
    Receiver,
    postgres_available,
)


# -- tiers -----------------------------------------------------------------------------
# What a test needs decides its markers, not who remembered to write them: a test using
# the broker is `broker`, one on PostgreSQL (directly, or as the postgresql run of a
# both-stores test) is `postgres`; and a test in unit/ may use neither.
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = {str(v) for v in callspec.params.values()} if callspec is not None else set()
        needs_broker = "broker" in names
        needs_postgres = "pg_database" in names or "postgresql" in params
        if needs_broker:
            item.add_marker(pytest.mark.broker)
        if needs_postgres:
            item.add_marker(pytest.mark.postgres)
        if "tests/unit/" in item.nodeid and (needs_broker or needs_postgres):
            raise pytest.UsageError(f"{item.nodeid}: a unit test uses a server; move it")


# -- leak check ------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every test stops what it started: no thread it created may outlive it."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 10
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"


@pytest.fixture(autouse=True, scope="session")
def kafka_python_closes_failed_connects() -> Iterator[None]:
    """kafka-python 3.0.12 leaves the socket of a connect that fails (refused, timed out)
    or is abandoned (the client closed while it connects) to the garbage collector
    (``KafkaNetSocket.connect`` in kafka/net/inet.py closes it on no path), and the
    collector's ``ResourceWarning`` fails whichever later test it lands in: the next
    daemon's ``gc.collect()`` at start-up put it in another client's test. In this process
    the connect closes its socket on those paths, so an unclosed socket reported here is
    one of ours. (In the daemon such a socket lives until the next collection: no warning
    is shown by default, and the descriptor is closed then.) Likewise a connected socket
    whose transport still had bytes to write when its client closed: the transport
    defers the close to its flush, which the closed loop never runs; here the loop's
    close closes the sockets it connected."""
    from kafka.net.inet import KafkaNetSocket
    from kafka.net.selector import NetworkSelector

    connected: weakref.WeakKeyDictionary[Any, weakref.WeakSet[Any]] = weakref.WeakKeyDictionary()
    close_loop = NetworkSelector.close

    def close(self: Any) -> None:
        close_loop(self)
        for sock in list(connected.pop(self, ())):
            if sock.fileno() != -1:
                sock.close()

    async def connect(
        self: Any, net: Any, addrinfo: Any, socket_options: Any = (), timeout_at: Any = None
    ) -> Any:
        # kafka-python's body, with the socket closed when connecting does not return it
        family, sock_type, proto, _canonname, sockaddr = addrinfo
        sock = self.socket(family, sock_type, proto)
        try:
            sock.setblocking(False)
            for option in socket_options:
                sock.setsockopt(*option)
            made = await self.sock_connect(net, sock, sockaddr, timeout_at=timeout_at)
            connected.setdefault(net, weakref.WeakSet()).add(made)
            return made
        except BaseException:  # GeneratorExit included: the client closed its loop
            sock.close()
            raise

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(KafkaNetSocket, "connect", connect)
        patch.setattr(NetworkSelector, "close", close)
        yield


# -- broker ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture(params=["kafka-python", "confluent"])
def kafka_client(request: pytest.FixtureRequest) -> str:
    """The ingestion, crash, rebalance and broker-restart tests run with every client."""
    client: str = request.param
    return client


@pytest.fixture
def topic_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


# -- stores ----------------------------------------------------------------------------
def _require_postgres() -> None:
    if not postgres_available():
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI and is not reachable at {PG_ADMIN_URL}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    _require_postgres()
    name = f"wk_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        yield url
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every store test runs on both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url


# -- Prometheus and Alertmanager (Debian packages, installed by `make system-deps`) -------
def _binary(*names: str) -> str:
    import shutil

    for name in names:
        found = shutil.which(name)
        if found:
            return found
    message = f"none of {names} is installed (make system-deps installs them)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError  # unreachable


class _Process:
    def __init__(self, argv: list[str], url: str, log: Path) -> None:
        import subprocess
        import urllib.request

        self.url = url
        self._log = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{argv[0]} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager on a free loopback port; yields its base URL."""
    from watchkeeper.daemon.demo.broker import free_port

    binary = _binary("prometheus-alertmanager", "alertmanager")
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n")
    port = free_port()
    proc = _Process(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        f"http://127.0.0.1:{port}",
        tmp_path / "alertmanager.log",
    )
    yield proc.url
    proc.stop()


@pytest.fixture
def prometheus_binary() -> str:
    return _binary("prometheus")


@pytest.fixture
def promtool() -> str:
    return _binary("promtool")


@pytest.fixture
def processes() -> Iterator[list[DaemonProcess]]:
    """Daemon processes a test starts; killed at its end whatever happened."""
    started: list[DaemonProcess] = []
    yield started
    for p in started:
        p.stop()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A local server answering like Slack's Web API (429s on request included)."""
    server = FakeSlack()
    server.thread.start()
    yield server
    server.shutdown()
    server.thread.join()
    server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook endpoint that verifies signatures and can fail on purpose."""
    server = Receiver()
    server.thread.start()
    yield server
    server.shutdown()
    server.thread.join()
    server.server_close()
