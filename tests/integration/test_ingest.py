"""Ingestion on the real Tansu broker into the real stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from watchkeeper.daemon.app import Daemon
from watchkeeper.daemon.config import Config
from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.store.store import Store

from tests.support import create_topic, make_config, produce, wait_until

pytestmark = pytest.mark.broker
NOW_MS = 1_795_255_200_000


def event(i: int, model: str = "fraud", ts: int | None = None) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "model_version": "3",
            "request_id": f"r{i}",
            "ts": ts if ts is not None else NOW_MS + i,
            "features": {"amount": float(i % 100), "country": ["DE", "FR"][i % 2]},
            "prediction": [0.2, 0.8],
            "latency_ms": 5.0 + i % 7,
        }
    )


@contextmanager
def running(config: Config, clock: Callable[[], float] = time.time) -> Iterator[Daemon]:
    """The daemon in a thread, stopped (and checked to have stopped) on exit; ``clock`` is
    its wall clock."""
    daemon = Daemon(config, clock=clock)
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            daemon.run(stop)
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)

    thread = threading.Thread(target=target, name="wk-test-daemon")
    thread.start()
    try:
        wait_until(lambda: daemon.started.is_set() or errors, timeout=30)
        assert not errors, errors
        yield daemon
        assert thread.is_alive() and not errors, f"the daemon died: {errors}"
    finally:
        stop.set()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the daemon did not stop"
    assert not errors, errors


def totals(config: Config) -> dict[str, int]:
    with Store.open(config.store_url(), migrate=False) as store:
        return store.totals()


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


BAD = {
    "not_json": b"{oops",
    "not_object": b'"a string"',
    "missing_field": orjson.dumps({"model": "fraud", "prediction": 1}),
    "wrong_type": orjson.dumps(
        {"model": "fraud", "ts": NOW_MS, "prediction": [0.1, 0.9], "features": {"amount": "many"}}
    ),
    "not_finite": b'{"model": "fraud", "ts": 1795255200000, "prediction": [0.1, 0.9], '
    b'"latency_ms": NaN}',
    "bad_timestamp": orjson.dumps({"model": "fraud", "ts": "noon", "prediction": [0.5, 0.5]}),
    "oversized": orjson.dumps(
        {"model": "fraud", "ts": NOW_MS, "prediction": [0.5, 0.5], "pad": "x" * 5000}
    ),
}


def test_good_and_bad_records_land_where_they_belong(
    broker: EmbeddedBroker, store_url: str, tmp_path: Path, topic_name: str, kafka_client: str
) -> None:
    create_topic(broker.bootstrap, topic_name, partitions=2)
    values = [event(i) for i in range(300)]
    for j, bad in enumerate(BAD.values()):
        values.insert(40 * j + 7, bad)  # bad records among good ones
    produce(broker.bootstrap, topic_name, values)
    config = make_config(
        tmp_path,
        broker.bootstrap,
        store_url,
        {"predictions": {"name": topic_name}},
        ingest={"max_record_bytes": 4096},
        client=kafka_client,
    )
    with running(config) as daemon:
        wait_until(lambda: totals(config)["events"] + totals(config)["quarantined"] == len(values))
        assert daemon.http is not None
        base = f"http://{daemon.http.address}"
        status, body = fetch(base + "/healthz")
        assert status == 200 and '"ok"' in body
        wait_until(lambda: fetch(base + "/readyz")[0] == 200, timeout=10)
        _, metrics = fetch(base + "/metrics")
    assert totals(config) == {"events": 300, "late_events": 0, "quarantined": len(BAD)}
    with Store.open(config.store_url(), migrate=False) as store:
        assert store.quarantine_counts() == dict.fromkeys(BAD, 1)
        for row in store.quarantined():
            assert row["topic"] == topic_name and row["detail"]
            assert bytes(row["raw"]) == BAD[row["reason"]][:1024]
        assert sum(store.offsets(config.kafka.group_id).values()) == len(values)
        (window,) = store.windows("fraud")
        amount = window.summary.features["amount"]
        assert amount.count == 300 and window.summary.prediction_class is not None
        with store.engine.connect() as conn:  # no labels topic: no prediction waits for one
            from sqlalchemy import func, select
            from watchkeeper.daemon.store import tables as t

            waiting = select(func.count()).select_from(t.pending_predictions)
            assert conn.execute(waiting).scalar() == 0
    assert f'watchkeeper_ingest_records_total{{topic="{topic_name}"}} {len(values)}.0' in metrics
    assert (
        f'watchkeeper_quarantined_records_total{{reason="not_json",topic="{topic_name}"}} 1.0'
        in metrics
    )
    assert 'watchkeeper_events_total{model="fraud",role="predictions"} 300.0' in metrics
    assert "watchkeeper_flush_duration_seconds_count" in metrics
    assert "watchkeeper_consumer_lag_records" in metrics


def test_a_restart_resumes_from_the_stored_offsets(
    broker: EmbeddedBroker, store_url: str, tmp_path: Path, topic_name: str, kafka_client: str
) -> None:
    create_topic(broker.bootstrap, topic_name, partitions=3)
    config = make_config(
        tmp_path,
        broker.bootstrap,
        store_url,
        {"predictions": {"name": topic_name}},
        client=kafka_client,
    )
    produce(broker.bootstrap, topic_name, [event(i) for i in range(400)])
    with running(config):
        wait_until(lambda: totals(config)["events"] == 400)
    produce(broker.bootstrap, topic_name, [event(i) for i in range(400, 700)])
    with running(config):
        wait_until(lambda: totals(config)["events"] >= 700)
    assert totals(config)["events"] == 700


def test_labels_topic_and_late_events(
    broker: EmbeddedBroker, store_url: str, tmp_path: Path, topic_name: str
) -> None:
    preds = create_topic(broker.bootstrap, f"p-{topic_name}")
    labels = create_topic(broker.bootstrap, f"l-{topic_name}")
    config = make_config(
        tmp_path,
        broker.bootstrap,
        store_url,
        {"predictions": {"name": preds}, "labels": {"name": labels}},
        windows={"size": "1m", "allowed_lateness": "1m"},
    )
    produce(broker.bootstrap, preds, [event(i, ts=NOW_MS + 10 * 60_000) for i in range(50)])
    labelled = [
        {"model": "fraud", "request_id": f"r{i}", "ts": NOW_MS + 10 * 60_000, "label": i % 2}
        for i in range(20)
    ]
    labelled[3]["model_version"] = "3"  # versions optional on labels: unversioned → ""
    produce(broker.bootstrap, labels, [orjson.dumps(e) for e in labelled])
    with running(config):
        wait_until(lambda: totals(config)["events"] == 70)
        # the watermark is now 10 min ahead: these belong to a window closed 8 min ago
        produce(broker.bootstrap, preds, [event(i, ts=NOW_MS) for i in range(5)])
        wait_until(lambda: totals(config)["late_events"] == 5)
    assert totals(config)["events"] == 70
    with Store.open(config.store_url(), migrate=False) as store:
        windows = {(w.summary.version, w.summary.start_ms): w for w in store.windows("fraud")}
    start = NOW_MS + 10 * 60_000 - (NOW_MS + 10 * 60_000) % 60_000
    assert windows[("3", start)].summary.events == {"predictions": 50, "labels": 1}
    unversioned = windows[("", start)].summary
    assert unversioned.events == {"labels": 19}
    assert unversioned.label is not None and unversioned.label.count == 19
    assert windows[("3", NOW_MS - NOW_MS % 60_000)].late_events == 5


def test_a_store_outage_pauses_ingestion_and_loses_nothing(
    broker: EmbeddedBroker, pg_database: str, tmp_path: Path, topic_name: str, kafka_client: str
) -> None:
    """Promise: a store unreachable for 30 s delays commits but loses and double-counts
    nothing, and memory does not grow with the events that arrive meanwhile."""
    from sqlalchemy.engine import make_url

    from tests.support import TcpProxy

    real = make_url(pg_database)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432).start()
    try:
        via_proxy = real.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
        create_topic(broker.bootstrap, topic_name, partitions=2)
        config = make_config(
            tmp_path,
            broker.bootstrap,
            via_proxy,
            {"predictions": {"name": topic_name}},
            ingest={"store_retry_interval": "300ms"},
            client=kafka_client,
        )
        produce(broker.bootstrap, topic_name, [event(i) for i in range(300)])
        with running(config) as daemon:
            direct = Store.open(pg_database, migrate=False)
            try:
                wait_until(lambda: direct.totals()["events"] == 300)
                proxy.stop()  # the store is gone while events keep coming
                assert daemon.http is not None and daemon.ingestor is not None
                base = f"http://{daemon.http.address}"
                registry = daemon.registry

                def failures() -> float:
                    return registry.get_sample_value("watchkeeper_flush_failures_total") or 0.0

                def consumed() -> float:
                    value = registry.get_sample_value(
                        "watchkeeper_ingest_records_total", {"topic": topic_name}
                    )
                    return value or 0.0

                # the first flush after the outage fails: consumption pauses
                produced = 300
                produce(broker.bootstrap, topic_name, [event(i) for i in range(300, 400)])
                produced += 100
                wait_until(lambda: failures() >= 1, timeout=60)
                paused_at, pending_at = consumed(), daemon.ingestor.windows.pending_events
                # the stream goes on; ten more commit retries (300 ms apart) later, not one
                # more record was consumed and nothing more waits in memory
                produce(broker.bootstrap, topic_name, [event(i) for i in range(400, 3400)])
                produced += 3000
                retried = failures()
                wait_until(lambda: failures() >= retried + 10, timeout=60)
                assert consumed() == paused_at
                assert daemon.ingestor.windows.pending_events == pending_at
                assert fetch(base + "/readyz")[0] == 503
                assert "store is unavailable" in fetch(base + "/readyz")[1]
                _, metrics = fetch(base + "/metrics")
                assert "watchkeeper_store_up 0.0" in metrics
                assert direct.totals()["events"] == 300  # nothing committed meanwhile
                proxy.start()  # the store is back
                wait_until(lambda: direct.totals()["events"] >= produced, timeout=60)
                wait_until(lambda: fetch(base + "/readyz")[0] == 200, timeout=30)
                assert direct.totals() == {
                    "events": produced,
                    "late_events": 0,
                    "quarantined": 0,
                }
                assert sum(direct.offsets(config.kafka.group_id).values()) == produced
            finally:
                direct.close()
    finally:
        proxy.stop()


def test_a_full_disk_under_a_sqlite_store_pauses_ingestion_and_loses_nothing(
    broker: EmbeddedBroker, tmp_path: Path, topic_name: str
) -> None:
    """Promise: when SQLite cannot grow its file ("database or disk is full"), commits fail
    and ingestion pauses, nothing crashes; once there is room again it resumes, and the
    store holds each event once. The disk is made full with SQLite's own page limit
    (``PRAGMA max_page_count``), which fails writes with the very error a full disk does."""
    from sqlalchemy import event as sa_event

    url = f"sqlite:///{tmp_path / 'store.db'}"
    create_topic(broker.bootstrap, topic_name, partitions=2)
    config = make_config(
        tmp_path,
        broker.bootstrap,
        url,
        {"predictions": {"name": topic_name}},
        ingest={"store_retry_interval": "300ms"},
    )
    produce(broker.bootstrap, topic_name, [event(i) for i in range(300)])
    full = threading.Event()
    with running(config) as daemon:
        assert daemon.store is not None
        engine = daemon.store.engine

        @sa_event.listens_for(engine, "checkout")
        def limit(dbapi_conn: Any, *_: Any) -> None:
            cursor = dbapi_conn.cursor()
            if full.is_set():  # no page beyond what the file has now
                pages = cursor.execute("PRAGMA page_count").fetchone()[0]
                cursor.execute(f"PRAGMA max_page_count = {pages}")
            else:
                cursor.execute("PRAGMA max_page_count = 1073741823")
            cursor.close()

        direct = Store.open(url, migrate=False)
        try:
            wait_until(lambda: direct.totals()["events"] == 300)
            full.set()
            # new windows (another hour of event time) need new pages
            later = NOW_MS + 3_600_000
            produce(
                broker.bootstrap,
                topic_name,
                [event(i, ts=later + i * 1000) for i in range(300, 900)],
            )
            assert daemon.http is not None
            base = f"http://{daemon.http.address}"
            wait_until(lambda: fetch(base + "/readyz")[0] == 503, timeout=30)
            assert "store is unavailable" in fetch(base + "/readyz")[1]
            assert direct.totals()["events"] == 300  # nothing half-committed
            assert fetch(base + "/healthz")[0] == 200  # alive, waiting for room
            full.clear()  # room again
            wait_until(lambda: direct.totals()["events"] >= 900, timeout=60)
            wait_until(lambda: fetch(base + "/readyz")[0] == 200, timeout=30)
            assert direct.totals()["events"] == 900
            assert sum(direct.offsets(config.kafka.group_id).values()) == 900
        finally:
            direct.close()
            sa_event.remove(engine, "checkout", limit)


def test_a_backfill_over_many_windows_flushes_at_the_open_window_bound(
    broker: EmbeddedBroker,
    store_url: str,
    tmp_path: Path,
    topic_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the interval an hour away, only the bound on open windows commits, between
    slices of one poll too: every event is stored while the daemon runs, over several
    commits, and read back exactly (one part per window and flush)."""
    from watchkeeper.daemon.ingest import loop

    monkeypatch.setattr(loop, "FLUSH_MAX_WINDOWS", 40)
    monkeypatch.setattr(loop, "PROCESS_SLICE", 10)
    hour = 3_600_000
    create_topic(broker.bootstrap, topic_name, partitions=1)
    n = 300  # one event per hour: 300 windows of one hour, oldest first
    produce(broker.bootstrap, topic_name, [event(i, ts=NOW_MS - (n - i) * hour) for i in range(n)])
    config = make_config(
        tmp_path,
        broker.bootstrap,
        store_url,
        {"predictions": {"name": topic_name}},
        ingest={"flush_interval": "1h"},
        windows={"size": "1h", "allowed_lateness": "1h"},
    )
    with running(config) as daemon:
        # every 40 windows committed while running; the last 20 by the final flush
        wait_until(lambda: totals(config)["events"] == n - n % 40)
        assert daemon.http is not None
        _, metrics = fetch(f"http://{daemon.http.address}/metrics")
    (line,) = [
        m for m in metrics.splitlines() if m.startswith("watchkeeper_flush_duration_seconds_count")
    ]
    assert float(line.split()[-1]) >= n // 40  # 7 commits at the bound, then the last
    assert totals(config)["events"] == n
    with Store.open(config.store_url(), migrate=False) as store:
        windows = store.windows("fraud")
        assert [w.summary.start_ms for w in windows] == [NOW_MS - (n - i) * hour for i in range(n)]
        assert all(w.events == 1 and w.summary.features["amount"].count == 1 for w in windows)
        assert store.model_totals()["fraud"]["windows"] == n


def test_waiting_label_joins_flush_at_their_bound(
    broker: EmbeddedBroker,
    store_url: str,
    tmp_path: Path,
    topic_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the interval an hour away, predictions waiting for labels commit once 40 of
    them wait (slices of 10 records), and a label then joins its stored prediction."""
    from watchkeeper.daemon.ingest import loop

    monkeypatch.setattr(loop, "FLUSH_MAX_JOIN_ROWS", 40)
    monkeypatch.setattr(loop, "PROCESS_SLICE", 10)
    preds = create_topic(broker.bootstrap, f"p-{topic_name}", partitions=1)
    labels = create_topic(broker.bootstrap, f"l-{topic_name}", partitions=1)
    config = make_config(
        tmp_path,
        broker.bootstrap,
        store_url,
        {"predictions": {"name": preds}, "labels": {"name": labels}},
        ingest={"flush_interval": "1h"},
    )
    produce(broker.bootstrap, preds, [event(i) for i in range(100)])
    with running(config) as daemon:
        wait_until(lambda: totals(config)["events"] == 80)  # 2 × 40; 20 wait in memory
        label = {"model": "fraud", "request_id": "r7", "ts": NOW_MS + 50, "label": 1}
        produce(broker.bootstrap, labels, [orjson.dumps(label)])
        assert daemon.http is not None
        read = f'watchkeeper_ingest_records_total{{topic="{labels}"}} 1.0'
        wait_until(lambda: read in fetch(f"http://{daemon.http.address}/metrics")[1])
    # the final flush stored the rest
    with Store.open(config.store_url(), migrate=False) as store:
        assert store.totals()["events"] == 101
        assert store.join_counts()["fraud"]["joined"] == 1
        assert store.join_counts()["fraud"]["pending_predictions"] == 99
