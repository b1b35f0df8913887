"""Two replicas on one consumer group and one PostgreSQL store.

Promises: they split the partitions and together store every event once; exactly one of
them leads (runs the checks, delivers the notifications), so an incident is notified once
per channel; when the leader is killed (-9) the other takes over within a bounded time,
carries the incident on from the store, and still nothing is lost or counted twice."""

from __future__ import annotations

import signal
import threading
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from watchkeeper.daemon.demo.broker import EmbeddedBroker, free_port
from watchkeeper.daemon.store.store import Store

from tests.support import (
    SECRET,
    DaemonProcess,
    Receiver,
    create_topic,
    daemon_config_dict,
    produce,
    stored_events,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.broker, pytest.mark.postgres]
TAKEOVER_S = 20.0  # the promised bound: lock released with the session, retried every 2 s


def events(start: int, n: int, latency: float) -> list[bytes]:
    now = int(time.time() * 1000)
    return [
        orjson.dumps(
            {
                "model": "fraud",
                "model_version": "3",
                "request_id": f"r{i}",
                "ts": now,
                "features": {"amount": float(i % 97)},
                "prediction": (i % 100) / 100,
                "latency_ms": latency,
            }
        )
        for i in range(start, start + n)
    ]


def leader_metric(port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("watchkeeper_leader "):
            return float(line.split()[1])
    return None


def metric(port: int, name: str) -> float | None:
    """The sum of a metric's samples on one replica (every label set); ``None`` when the
    replica does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((f"{name} ", f"{name}{{"))
    )


def checks_run(ports: list[int]) -> float:
    """Policy checks run so far by whichever replicas answer (a counter to wait on)."""
    total = 0.0
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("watchkeeper_policy_checks_total{") and 'outcome="ok"' in line:
                total += float(line.split()[-1])
    return total


def more_check_rounds(ports: list[int], rounds: int = 3) -> None:
    """Wait for ``rounds`` more policy checks: time for a second leader to notify again,
    counted rather than slept."""
    seen = checks_run(ports)
    wait_until(lambda: checks_run(ports) >= seen + rounds, timeout=60)


def consumed(url: str, group: str) -> int:
    """Records the group has consumed and committed, over all partitions."""
    try:
        with Store.open(url, migrate=False) as store:
            return sum(store.offsets(group).values())
    except Exception:
        return 0


def test_two_replicas_share_the_work_and_one_leads_with_failover(
    broker: EmbeddedBroker,
    pg_database: str,
    tmp_path: Path,
    topic_name: str,
    kafka_client: str,
    monkeypatch: pytest.MonkeyPatch,
    processes: list[DaemonProcess],
    receiver: Receiver,
) -> None:
    create_topic(broker.bootstrap, topic_name, partitions=6)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "fraud.yaml").write_text(
        "model: fraud\nwindow: 4s\nschedule: {every: 1s}\nmin_samples: 10\n"
        "rules:\n  - name: latency\n    metric: latency_p99_ms\n    critical: 100\n"
        "    actions: {critical: [hook]}\n"
    )
    monkeypatch.setenv("WK_HOOK", SECRET)
    ports = [free_port(), free_port()]
    replicas = []
    group = f"g-{topic_name}"
    for i, port in enumerate(ports):
        data = daemon_config_dict(
            broker.bootstrap,
            pg_database,
            {"predictions": {"name": topic_name}},
            client=kafka_client,
            group=group,
            http={"listen": f"127.0.0.1:{port}"},
            windows={"size": "1s"},
            policies={"paths": [str(policies)]},
            alerts={
                "channels": {
                    "hook": {"type": "webhook", "url": receiver.url, "secret_env": "WK_HOOK"}
                },
                "group_wait": "0s",
                "group_interval": "0s",
            },
        )
        config = write_config(tmp_path / f"replica{i}.yaml", data)
        replica = DaemonProcess(config, tmp_path / f"replica{i}.log").start()
        processes.append(replica)
        replicas.append(replica)

    def leaders() -> list[int]:
        return [p for p in ports if leader_metric(p) == 1.0]

    wait_until(lambda: all(leader_metric(p) is not None for p in ports), timeout=60)  # both serving
    wait_until(lambda: len(leaders()) == 1, timeout=30, describe=leaders)
    produced = 0
    slow = events(0, 3000, latency=500.0)
    produce(broker.bootstrap, topic_name, slow)
    produced += len(slow)
    wait_until(
        lambda: stored_events(pg_database) == produced,
        timeout=90,
        describe=lambda: stored_events(pg_database),
    )

    def about_latency(kind: str) -> list[dict[str, object]]:
        with receiver.lock:
            return [
                b
                for b in receiver.received
                if b.get("type") == f"incident.{kind}"
                and (b.get("incident") or {}).get("rule") == "latency"
            ]

    wait_until(lambda: about_latency("opened"), timeout=60)
    more_check_rounds(ports)  # a second leader would notify again
    assert len({b["id"] for b in about_latency("opened")}) == 1
    assert len(leaders()) == 1

    # kill -9 the leader mid-stream; the other must lead within the bound
    (leader_port,) = leaders()
    leader = replicas[ports.index(leader_port)]
    survivor_port = ports[1 - ports.index(leader_port)]
    more = events(3000, 3000, latency=500.0)
    produce(broker.bootstrap, topic_name, more[:1500])
    assert leader.proc is not None
    leader.proc.send_signal(signal.SIGKILL)
    leader.proc.wait()
    killed_at = time.monotonic()
    produce(broker.bootstrap, topic_name, more[1500:])
    produced += len(more)
    wait_until(lambda: leader_metric(survivor_port) == 1.0, timeout=TAKEOVER_S)
    takeover = time.monotonic() - killed_at
    assert takeover < TAKEOVER_S
    # the survivor owns every partition after the session timeout and resumes from
    # the offsets committed in the store with the windows: nothing lost, nothing twice
    wait_until(
        lambda: stored_events(pg_database) == produced,
        timeout=90,
        describe=lambda: stored_events(pg_database),
    )

    # the incident carries on from the store: recovery is notified once, by the new
    # leader, and the opening is not repeated
    deadline = time.monotonic() + 60
    i = 6000
    while not about_latency("resolved") and time.monotonic() < deadline:
        fast = events(i, 300, latency=5.0)
        produce(broker.bootstrap, topic_name, fast)
        produced += len(fast)
        i += 300
        time.sleep(1)
    more_check_rounds(ports)  # a repeated resolution or opening would show by now
    assert len({b["id"] for b in about_latency("resolved")}) == 1
    assert len({b["id"] for b in about_latency("opened")}) == 1
    wait_until(
        lambda: stored_events(pg_database) == produced,
        timeout=90,
        describe=lambda: stored_events(pg_database),
    )
    survivor = replicas[1 - ports.index(leader_port)]
    assert survivor.proc is not None
    survivor.proc.send_signal(signal.SIGTERM)
    assert survivor.proc.wait(timeout=60) == 0


def test_rebalances_as_replicas_join_and_leave_mid_stream_lose_and_double_count_nothing(
    broker: EmbeddedBroker,
    pg_database: str,
    tmp_path: Path,
    topic_name: str,
    kafka_client: str,
    processes: list[DaemonProcess],
) -> None:
    """A replica joins while events flow (partitions move to it), then the first one
    leaves with SIGTERM (they move back): the store holds each event exactly once."""
    create_topic(broker.bootstrap, topic_name, partitions=6)
    group = f"g-{topic_name}"
    ports = [free_port(), free_port()]
    configs = [
        write_config(
            tmp_path / f"replica{i}.yaml",
            daemon_config_dict(
                broker.bootstrap,
                pg_database,
                {"predictions": {"name": topic_name}},
                client=kafka_client,
                group=group,
                http={"listen": f"127.0.0.1:{port}"},
            ),
        )
        for i, port in enumerate(ports)
    ]
    first = DaemonProcess(configs[0], tmp_path / "replica0.log").start()
    processes.append(first)
    wait_until(lambda: leader_metric(ports[0]) == 1.0, timeout=60)
    produced = 0
    stop = threading.Event()

    def stream() -> None:
        nonlocal produced
        i = 0
        while not stop.is_set():
            produce(broker.bootstrap, topic_name, events(i, 500, latency=5.0))
            produced += 500
            i += 500
            time.sleep(0.2)

    producer = threading.Thread(target=stream)
    producer.start()
    try:
        wait_until(lambda: stored_events(pg_database) > 2000, timeout=60)
        second = DaemonProcess(configs[1], tmp_path / "replica1.log").start()  # joins
        processes.append(second)
        wait_until(lambda: leader_metric(ports[1]) is not None, timeout=60)
        # the group rebalances onto both while events keep flowing: wait until the six
        # partitions are split between them and the newcomer has consumed from its share
        wait_until(
            lambda: (
                [metric(p, "watchkeeper_assigned_partitions") or 0 for p in ports]
                in ([a, 6 - a] for a in range(1, 6))
                and (metric(ports[1], "watchkeeper_ingest_records_total") or 0) >= 1000
            ),
            timeout=60,
            describe=lambda: [metric(p, "watchkeeper_assigned_partitions") for p in ports],
        )
        assert first.proc is not None
        first.proc.send_signal(signal.SIGTERM)  # leaves: commits, then its partitions move
        assert first.proc.wait(timeout=60) == 0
        wait_until(lambda: leader_metric(ports[1]) == 1.0, timeout=TAKEOVER_S)
        # the survivor takes every partition back and consumes from all of them for a
        # while (a few producer rounds) before the stream stops
        taken = metric(ports[1], "watchkeeper_ingest_records_total") or 0
        wait_until(
            lambda: (
                metric(ports[1], "watchkeeper_assigned_partitions") == 6
                and (metric(ports[1], "watchkeeper_ingest_records_total") or 0) >= taken + 3000
            ),
            timeout=60,
            describe=lambda: metric(ports[1], "watchkeeper_assigned_partitions"),
        )
    finally:
        stop.set()
        producer.join()
    # every record consumed: the committed offsets (one per partition, of a topic made for
    # this test) add up to what was produced. Offsets and windows commit in one
    # transaction, so anything counted twice is in the store by then.
    wait_until(
        lambda: consumed(pg_database, group) == produced,
        timeout=90,
        describe=lambda: (consumed(pg_database, group), stored_events(pg_database), produced),
    )
    assert stored_events(pg_database) == produced
