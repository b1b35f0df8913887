"""The security tier's daemon: one real daemon process per module, on loopback, with the
real broker and a SQLite store, probed as an attacker would (tests/security/probes.py)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from watchkeeper.daemon.demo.broker import EmbeddedBroker, free_port

from tests.security.probes import get
from tests.support import DaemonProcess, create_topic, daemon_config_dict, write_config

GOOD_POLICY = """\
model: {model}
reference: store:default
window: 5m
schedule: {{every: 1m}}
rules:
  - name: drift
    metric: psi
    features: [amount]
    critical: 0.3
    actions: {{critical: [console]}}
"""


@dataclass
class RunningDaemon:
    process: DaemonProcess
    address: tuple[str, int]
    base: str
    topic: str
    policies: Path
    log: Path
    bootstrap: str

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    def alive(self) -> bool:
        return self.process.proc is not None and self.process.proc.poll() is None

    def json(self, path: str, method: str = "GET", data: bytes | None = None) -> Any:
        import json

        request = urllib.request.Request(self.base + path, method=method, data=data)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def metrics(self) -> str:
        return get(self.address, "/metrics").body.decode()


def start_daemon(
    tmp: Path, broker: EmbeddedBroker, *, sections: dict[str, Any] | None = None
) -> RunningDaemon:
    topic = create_topic(broker.bootstrap, f"sec-{time.monotonic_ns()}")
    policies = tmp / "policies"
    policies.mkdir()
    (policies / "fraud.yaml").write_text(GOOD_POLICY.format(model="fraud"))
    (policies / "churn.yaml").write_text(GOOD_POLICY.format(model="churn"))
    port = free_port()
    extra = {
        "http": {"listen": f"127.0.0.1:{port}"},
        "policies": {"paths": [str(policies)]},
        "alerts": {"channels": {"console": {"type": "console", "format": "line"}}},
        "reports": {"dir": str(tmp / "reports")},
    }
    for name, section in (sections or {}).items():
        extra.setdefault(name, {}).update(section)
    config = write_config(
        tmp / "watchkeeper.yaml",
        daemon_config_dict(
            broker.bootstrap,
            f"sqlite:///{tmp / 'store.db'}",
            {"predictions": {"name": topic}},
            **extra,
        ),
    )
    log = tmp / "daemon.log"
    process = DaemonProcess(config, log).start()
    address = ("127.0.0.1", port)
    deadline = time.monotonic() + 60
    while True:
        try:
            # ready (consuming) and the policies loaded: every component is up
            if get(address, "/readyz", timeout=2).status == 200 and b'"loaded_at": 0' not in (
                get(address, "/api/policies", timeout=2).body
            ):
                break
        except OSError:
            pass
        if process.proc is not None and process.proc.poll() is not None:
            raise AssertionError(f"the daemon exited: {log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            process.stop()
            raise AssertionError(f"the daemon did not answer: {log.read_text()[-3000:]}")
        time.sleep(0.2)
    return RunningDaemon(
        process, address, f"http://127.0.0.1:{port}", topic, policies, log, broker.bootstrap
    )


@pytest.fixture(scope="module")
def daemon(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningDaemon]:
    """A daemon process on loopback (no token: loopback rules), shared by a module."""
    running = start_daemon(
        tmp_path_factory.mktemp("daemon"),
        broker,
        sections={"ingest": {"max_models": 20, "max_versions": 5}},
    )
    yield running
    running.process.stop()
