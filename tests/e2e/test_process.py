"""The daemon as a process: kill -9 mid-stream loses and double-counts nothing; SIGTERM
commits and exits 0; the HTTP endpoints answer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import orjson
import pytest
from watchkeeper.daemon.demo.broker import EmbeddedBroker, free_port
from watchkeeper.daemon.store.store import Store

from tests.support import (
    DaemonProcess,
    create_topic,
    daemon_config_dict,
    produce,
    stored_events,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.broker]
NOW_MS = 1_795_255_200_000


def events(start: int, n: int) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "model": "fraud",
                "model_version": "3",
                "request_id": f"r{i}",
                "ts": NOW_MS + i * 10,
                "features": {f"f{j}": float((i * (j + 1)) % 97) for j in range(8)} | {"c": "DE"},
                "prediction": (i % 100) / 100,
                "latency_ms": 1.0 + i % 9,
            }
        )
        for i in range(start, start + n)
    ]


def test_kill_9_mid_stream_then_restart_counts_every_event_exactly_once(
    broker: EmbeddedBroker,
    store_url: str,
    tmp_path: Path,
    topic_name: str,
    kafka_client: str,
    processes: list[DaemonProcess],
) -> None:
    """Promise: window state and offsets commit together, so totals equal what was produced."""
    total = 40_000
    create_topic(broker.bootstrap, topic_name, partitions=3)
    data = daemon_config_dict(
        broker.bootstrap,
        store_url,
        {"predictions": {"name": topic_name}},
        client=kafka_client,
        ingest={"flush_interval": "100ms", "max_record_bytes": 65536},
        http={"listen": f"127.0.0.1:{free_port()}"},
    )
    config = write_config(tmp_path / "watchkeeper.yaml", data)
    log = tmp_path / "daemon.log"
    first = DaemonProcess(config, log).start()
    processes.append(first)
    killed = threading.Event()

    def produce_all() -> None:
        # The last batch waits for the kill: a fast client (confluent-kafka) can otherwise
        # have committed all of the stream before the first store read sees anything.
        for i in range(0, total, 2000):
            if i == total - 2000:
                killed.wait(timeout=120)
            produce(broker.bootstrap, topic_name, events(i, 2000))

    producer = threading.Thread(target=produce_all, name="wk-test-producer")
    producer.start()
    try:
        # kill while the stream is still flowing and something has been committed
        wait_until(lambda: stored_events(store_url) > 0, timeout=90)
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
    finally:
        killed.set()
        producer.join()
    at_kill = stored_events(store_url)
    second = DaemonProcess(config, log).start()
    processes.append(second)
    wait_until(lambda: stored_events(store_url) >= total, timeout=120)
    # a few more commits must not add anything
    second_stored = stored_events(store_url)
    assert second.proc is not None
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(timeout=60) == 0
    assert second_stored == stored_events(store_url) == total, log.read_text()[-3000:]
    assert 0 < at_kill < total
    with Store.open(store_url, migrate=False) as store:
        assert sum(store.offsets(data["kafka"]["group_id"]).values()) == total
        assert store.totals() == {"events": total, "late_events": 0, "quarantined": 0}
        windows = store.windows("fraud")
        assert sum(w.summary.features["f0"].count for w in windows) == total


def test_sigterm_commits_pending_state_and_exits_zero(
    broker: EmbeddedBroker,
    tmp_path: Path,
    topic_name: str,
    processes: list[DaemonProcess],
) -> None:
    create_topic(broker.bootstrap, topic_name)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    port = free_port()
    data = daemon_config_dict(
        broker.bootstrap,
        url,
        {"predictions": {"name": topic_name}},
        ingest={"flush_interval": "1h"},  # only the final commit
        http={"listen": f"127.0.0.1:{port}"},
    )
    config = write_config(tmp_path / "watchkeeper.yaml", data)
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    processes.append(daemon)
    produce(broker.bootstrap, topic_name, events(0, 1000))
    base = f"http://127.0.0.1:{port}"

    def consumed() -> bool:
        try:
            with urllib.request.urlopen(base + "/metrics", timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            return False
        return f'watchkeeper_ingest_records_total{{topic="{topic_name}"}} 1000.0' in text

    wait_until(consumed, timeout=90)
    with urllib.request.urlopen(base + "/readyz", timeout=2) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(base + "/healthz", timeout=2) as resp:
        assert resp.status == 200
    assert stored_events(url) == 0  # nothing committed yet: the flush interval is an hour
    assert daemon.proc is not None
    os.kill(daemon.proc.pid, signal.SIGTERM)
    assert daemon.proc.wait(timeout=60) == 0
    assert stored_events(url) == 1000
    log = (tmp_path / "daemon.log").read_text()
    assert "stopping: committing window state and offsets" in log


def test_a_bad_config_fails_at_start_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "watchkeeper.yaml"
    path.write_text(
        "kafka:\n  bootstrap_servers: x:1\n  topics: {predictions: {name: p}}\n  grup_id: oops\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "watchkeeper.daemon", "run", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"{path}:4:3: kafka.grup_id: unknown key 'grup_id'; did you mean 'group_id'?" in (
        result.stderr
    )


def test_the_demo_runs_and_stops_by_itself(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "watchkeeper.daemon", "demo", "--duration", "12", "--rate", "200"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "demo finished" in result.stdout
    assert "fraud" in result.stdout and "churn" in result.stdout


def test_sighup_reloads_the_policies(
    broker: EmbeddedBroker,
    tmp_path: Path,
    topic_name: str,
    processes: list[DaemonProcess],
) -> None:
    import json

    create_topic(broker.bootstrap, topic_name)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "fraud.yaml").write_text("model: fraud\nrules: [{metric: psi, critical: 0.25}]\n")
    port = free_port()
    data = daemon_config_dict(
        broker.bootstrap,
        f"sqlite:///{tmp_path / 's.db'}",
        {"predictions": {"name": topic_name}},
        http={"listen": f"127.0.0.1:{port}"},
        policies={"paths": [str(policies)]},
    )
    config = write_config(tmp_path / "watchkeeper.yaml", data)
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    processes.append(daemon)

    def status() -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/policies", timeout=2) as resp:
                return dict(json.loads(resp.read()))
        except OSError:
            return None

    first = wait_until(status, timeout=60)
    assert daemon.proc is not None
    os.kill(daemon.proc.pid, signal.SIGHUP)  # nothing changed on disk: only SIGHUP reloads
    wait_until(
        lambda: (s := status()) is not None and s["loaded_at"] != first["loaded_at"], timeout=20
    )
    assert "SIGHUP: reloading policies" in (tmp_path / "daemon.log").read_text()
    os.kill(daemon.proc.pid, signal.SIGTERM)
    assert daemon.proc.wait(timeout=60) == 0


def test_the_broker_stopping_and_starting_neither_stops_the_daemon_nor_loses_what_it_had(
    tmp_path: Path, topic_name: str, kafka_client: str, processes: list[DaemonProcess]
) -> None:
    """Promise: a broker outage is waited out (the daemon stays alive and keeps what it
    had committed), and when the broker is back consumption resumes exactly at the offsets
    committed in the store. Tansu keeps its log in memory only, so the restarted broker's
    topic is created again and refilled up to and past those offsets (DESIGN.md): what
    lies before them was consumed already, what lies after must be consumed once."""
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log").start()

    def fill(start: int, per_partition: int) -> None:
        batch = events(start, 3 * per_partition)
        for p in range(3):
            chunk = batch[p * per_partition : (p + 1) * per_partition]
            produce(broker.bootstrap, topic_name, chunk, partition=p)

    try:
        create_topic(broker.bootstrap, topic_name, partitions=3)
        url = f"sqlite:///{tmp_path / 'store.db'}"
        port = free_port()
        data = daemon_config_dict(
            broker.bootstrap,
            url,
            {"predictions": {"name": topic_name}},
            client=kafka_client,
            http={"listen": f"127.0.0.1:{port}"},
        )
        config = write_config(tmp_path / "watchkeeper.yaml", data)
        fill(0, 200)
        daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
        processes.append(daemon)
        wait_until(lambda: stored_events(url) == 600, timeout=60)
        group = data["kafka"]["group_id"]
        with Store.open(url, migrate=False) as store:
            assert sorted(store.offsets(group).values()) == [200] * 3

        def connections() -> float | None:
            """The daemon's broker connections, as it reports them on /metrics."""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                return None
            sample = f'watchkeeper_kafka_broker_connections{{client="{kafka_client}"}} '
            lines = [line for line in text.splitlines() if line.startswith(sample)]
            return float(lines[0].rsplit(" ", 1)[1]) if lines else None

        wait_until(lambda: (connections() or 0) >= 1, timeout=30, describe=connections)
        broker.stop()  # the broker is gone
        # the daemon has seen it go (its client holds no connection), and waits
        wait_until(lambda: connections() == 0, timeout=60, describe=connections)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200  # alive, waiting
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert stored_events(url) == 600  # what it had is kept
        # Tansu keeps topics in memory and creates a topic a client's metadata request asks
        # for, whatever the request's allow_auto_topic_creation says (4 partitions): a
        # daemon reconnecting before create_topic below would make the topic itself. It is
        # held still (SIGSTOP) while the new broker starts and the topic is made, as if its
        # reconnection backoff were longer; from its side the broker was down, then back.
        daemon.proc.send_signal(signal.SIGSTOP)
        try:
            broker = EmbeddedBroker(port=broker.port, log_path=tmp_path / "b2.log").start()
            create_topic(broker.bootstrap, topic_name, partitions=3)
        finally:
            daemon.proc.send_signal(signal.SIGCONT)
        fill(10_000, 250)  # offsets 0..249 again; 200..249 are new to the daemon

        def offsets() -> list[int]:
            with Store.open(url, migrate=False) as store:
                return sorted(store.offsets(group).values())

        # every record consumed: offsets and windows are committed in one transaction, so
        # once the offsets stand at the end, anything counted twice is in the store already
        wait_until(lambda: offsets() == [250] * 3, timeout=90, describe=offsets)
        assert stored_events(url) == 750  # and nothing twice
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=60) == 0
    finally:
        broker.stop()
