"""Helpers shared by the tests: topics, producing, configs, waiting."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import orjson
import yaml
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from standardwebhooks import Webhook
from watchkeeper.daemon.config import Config, load_config
from watchkeeper.daemon.demo.broker import free_port
from watchkeeper.daemon.eventtime.windows import Delta, WindowState
from watchkeeper.daemon.http.console import Console, ConsoleSources
from watchkeeper.daemon.http.console_queries import ConsoleQueries
from watchkeeper.daemon.http.server import HttpServer
from watchkeeper.daemon.http.status import status
from watchkeeper.daemon.ingest.sources import option_checks
from watchkeeper.daemon.notify.silences import Silences
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.reservoir import record_keys
from watchkeeper.policies.schema import Policy

PG_ADMIN_URL = os.environ.get(
    "WATCHKEEPER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        try:
            admin.create_topics([NewTopic(name, partitions, 1)])
        except TopicAlreadyExistsError:
            # kafka-python retries a CreateTopics answered NotController (a broker just
            # started) and the retry finds the topic its first attempt made: accept it only
            # with the partitions asked for; the metadata of a topic just made may lag, so
            # look again for a few seconds before calling it someone else's topic
            def described() -> dict[str, Any]:
                (found,) = admin.describe_topics([name])
                return dict(found)

            wait_until(
                lambda: len(described().get("partitions") or ()) == partitions,
                timeout=10,
                interval=0.2,
                describe=described,
            )
    finally:
        admin.close()
    return name


def produce(bootstrap: str, topic: str, values: list[bytes], partition: int | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=256 * 1024)
    try:
        for value in values:
            producer.send(topic, value, partition=partition)
        producer.flush()
    finally:
        producer.close()


def postgres_available() -> bool:
    engine = create_engine(PG_ADMIN_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except OperationalError:
        return False
    finally:
        engine.dispose()


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def store_config(tmp_path: Path, store_url: str, **sections: Any) -> Path:
    """``watchkeeper.yaml`` for the commands that only read the store (``policy
    backtest``, ``policy check``): an unreachable broker, one predictions topic."""
    data: dict[str, Any] = {
        "kafka": {"bootstrap_servers": "x:1", "topics": {"predictions": {"name": "p"}}},
        "store": {"url": store_url},
        **sections,
    }
    return write_config(tmp_path / "watchkeeper.yaml", data)


def daemon_config_dict(
    bootstrap: str,
    store_url: str,
    topics: dict[str, Any],
    group: str | None = None,
    client: str | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A config for tests: fast group joins on Tansu and frequent flushes; ``client``
    names the Kafka client (the config's default when None)."""
    data: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": group or f"g-{uuid.uuid4().hex[:8]}",
            "topics": topics,
            "session_timeout": "6s",
            "heartbeat_interval": "1s",
        },
        "store": {"url": store_url},
        "http": {"listen": "127.0.0.1:0"},
        "ingest": {"flush_interval": "200ms", "poll_timeout": "200ms"},
        "windows": {"size": "5m", "allowed_lateness": "10m"},
    }
    if client is not None:
        data["kafka"]["client"] = client
    for name, section in sections.items():
        data.setdefault(name, {}).update(section)
    return data


def make_config(tmp_path: Path, *args: Any, **kwargs: Any) -> Config:
    path = write_config(tmp_path / "watchkeeper.yaml", daemon_config_dict(*args, **kwargs))
    return load_config(path, clients=option_checks())


def wait_until(
    predicate: Any, timeout: float = 60.0, interval: float = 0.1, describe: Any = None
) -> Any:
    """Poll ``predicate`` until it is true; on timeout, say what ``describe()`` shows."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            state = f": {describe()}" if describe is not None else ""
            raise AssertionError(f"condition not met within {timeout}s{state}")
        time.sleep(interval)


class TcpProxy:
    """A loopback TCP forwarder that a test can cut and restore, to make a real server
    unreachable without touching it (the store-outage tests)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._listener: Any = None
        self._conns: list[Any] = []
        self._threads: list[Any] = []
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(32)
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), name="proxy-accept")
        thread.start()
        self._threads.append(thread)
        return self

    def _accept(self, listener: Any) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                t = threading.Thread(target=self._pipe, args=(a, b), name="proxy-pipe")
                t.start()
                self._threads.append(t)

    @staticmethod
    def _pipe(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Refuse new connections and cut the live ones."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = [t for t in self._threads if t.is_alive()]


class DaemonProcess:
    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watchkeeper.daemon", "run", "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def get_json(url: str) -> Any:
    """The JSON body at ``url``; None while nothing answers there (a daemon starting)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return orjson.loads(response.read())
    except OSError:
        return None


@dataclass(frozen=True)
class PolicyDaemon:
    """A daemon process's config (its policies in one folder, its API on a free port),
    its log and its API's address; :meth:`start` (again after a stop) runs it."""

    config: Path
    log: Path
    base: str

    def start(self) -> DaemonProcess:
        return DaemonProcess(self.config, self.log).start()

    def get(self, path: str) -> Any:
        """The JSON of the daemon's ``path`` (``/api/shadow``); None while it does not answer."""
        return get_json(self.base + path)

    def tail(self) -> str:
        """The end of its log: what a failed wait shows."""
        return self.log.read_text()[-2000:]


def policy_daemon(
    tmp_path: Path,
    bootstrap: str,
    topics: dict[str, Any],
    policies: Path,
    store: str = "wk.db",
    **sections: Any,
) -> PolicyDaemon:
    """A daemon on ``topics`` with the policy files of ``policies``, a SQLite store in
    ``tmp_path`` and its config (:func:`daemon_config_dict`, ``sections`` added) written
    there; not started."""
    port = free_port()
    data = daemon_config_dict(
        bootstrap,
        f"sqlite:///{tmp_path / store}",
        topics,
        http={"listen": f"127.0.0.1:{port}"},
        policies={"paths": [str(policies)]},
        **sections,
    )
    config = write_config(tmp_path / "watchkeeper.yaml", data)
    return PolicyDaemon(config, tmp_path / "daemon.log", f"http://127.0.0.1:{port}")


# -- a Slack-compatible Web API server (slack-sdk's real client talks to it) ---------------
TOKEN = "xoxb-test-0123456789-secret"


class FakeSlack(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SlackHandler)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.ratelimit_next = 0
        self.webhook_posts: list[dict[str, Any]] = []
        self.counter = 0
        self.thread = threading.Thread(target=self.serve_forever, name="fake-slack")

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/"


class _SlackHandler(BaseHTTPRequestHandler):
    server: FakeSlack

    def log_message(self, *args: Any) -> None:
        return None

    def _reply(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Type", "").startswith("application/json"):
            body = json.loads(raw or b"{}")
        else:
            body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        slack = self.server
        if self.path == "/hook":
            slack.webhook_posts.append(body)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            return
        method = self.path.removeprefix("/api/")
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._reply(200, {"ok": False, "error": "invalid_auth"})
            return
        if slack.ratelimit_next > 0:
            slack.ratelimit_next -= 1
            self._reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
            return
        slack.calls.append((method, body))
        if method == "chat.postMessage":
            slack.counter += 1
            self._reply(
                200,
                {
                    "ok": True,
                    "channel": "C123",
                    "ts": f"1700000000.{slack.counter:06d}",
                    "message": {"text": body.get("text")},
                },
            )
        elif method == "chat.update":
            self._reply(200, {"ok": True, "channel": body["channel"], "ts": body["ts"]})
        else:
            self._reply(200, {"ok": False, "error": "unknown_method"})


# -- a pipeline's webhook endpoint, verifying Standard Webhooks signatures ------------------
SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


class Receiver(ThreadingHTTPServer):
    """A pipeline's endpoint: verifies every signature, can fail on purpose."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.verifier = Webhook(SECRET)
        self.fail_next = 0
        self.fail_status = 503
        self.received: list[dict[str, Any]] = []
        self.rejected = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, name="test-receiver")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        receiver = self.server
        with receiver.lock:
            try:
                receiver.verifier.verify(body, dict(self.headers.items()))
            except Exception:
                receiver.rejected += 1
                self.send_response(401)
                self.end_headers()
                return
            if receiver.fail_next > 0:
                receiver.fail_next -= 1
                self.send_response(receiver.fail_status)
                self.send_header("Retry-After", "0")
                self.end_headers()
                return
            receiver.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()


def stored_events(url: str) -> int:
    """The events the store at ``url`` holds; 0 while a starting daemon process has not
    created or migrated it yet (what a wait on its progress reads)."""
    try:
        with Store.open(url, migrate=False) as store:
            return int(store.totals()["events"])
    except Exception:
        return 0


# -- window state as the ingestor commits it (unit tests of the checks on a real store) ----
def numeric(values: Any) -> Column:
    """A numeric column of ``values``, none missing or invalid."""
    flags = np.zeros(len(values), dtype=bool)
    return Column("numeric", np.asarray(values, dtype=np.float64), flags, flags.copy())


def role_columns(role: str, n: int) -> dict[str, Any]:
    """The columns of ``n`` rows of ``role``: a label, or a feature ``x`` (and a prediction)."""
    if role == "labels":
        return {"label": numeric(np.ones(n))}
    columns: dict[str, Any] = {"features": {"x": numeric(np.arange(n, dtype=np.float64))}}
    if role == "predictions":
        columns["prediction"] = numeric(np.zeros(n))
    return columns


def role_rows(
    role: str, ts: Any, partition: int = 0, model: str = "m", version: str = "1", **columns: Any
) -> ColumnBatch:
    """Rows of ``role`` of ``model`` at event times ``ts``, one version, keyed by their
    offsets (from 0) in ``partition``."""
    n = len(ts)
    versions = np.array([version] * n, dtype=object)
    keys = record_keys(partition, 0, np.arange(n))
    return ColumnBatch(model, role, np.asarray(ts, dtype=np.int64), versions, keys, **columns)


def drained(now_ms: int, *batches: ColumnBatch, size_s: float = 300) -> Delta:
    """What the ingestor commits at ``now_ms`` after reading ``batches`` into new window
    state of ``size_s`` windows (10 minutes' lateness)."""
    state = WindowState(size_s, 600)
    for batch in batches:
        state.add(batch)
    delta = state.drain()
    delta.now_ms = now_ms
    return delta


@contextmanager
def console_server(
    store: Store,
    config: Config,
    policy: Policy,
    *,
    clock: Callable[[], float],
    reference_of: Callable[[Any], Any] = lambda _key: None,
    shadow: Callable[[], Any] = dict,
) -> Iterator[str]:
    """The console of one model's policy over ``store``, served on a free loopback port
    (no token, a fixed CSRF key, the daemon's injected wall clock): its base URL."""
    model = policy.model
    silences = Silences(store.engine)
    sources = ConsoleSources(
        queries=ConsoleQueries(store, lambda: {model: policy}),
        policies=lambda: {model: policy},
        reference_of=reference_of,
        status=lambda: status(store, config, {model: policy}, int(clock() * 1000)),
        shadow=shadow,
        silences=silences.active,
        add_silence=lambda m, d, by, note: silences.add(m, d, created_by=by, comment=note),
        window_size_ms=300_000,
        csrf_key=b"k" * 32,
        token_required=False,
        clock=clock,
    )
    server = HttpServer(
        "127.0.0.1",
        0,
        CollectorRegistry(),
        lambda: (True, ""),
        lambda: (True, ""),
        Console(sources).routes(),
    ).start()
    try:
        yield f"http://{server.address}"
    finally:
        server.close()
