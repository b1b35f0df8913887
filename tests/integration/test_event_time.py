"""Event time under backfill, live streaming, catch-up and replay, on the real broker
(3 partitions per topic) and both stores.

One data set, three weeks of a fraud model's event time ending two months ago, a few
predictions an hour with labels 1–12 h later, drift on days 8–10 and bad labels on days
15–16. Filled before the daemon starts (a backfill), it must give: every event stored, none
late, every label joined, nothing expired, nothing pruned, one evaluation per policy
period over the span — and exactly the evaluations and incidents of the same data
streamed live, of a run stopped for a week of production and restarted, while a replay
from offset 0 into a fresh store rebuilds the same windows. Small volumes, long spans,
short windows: the suite stays fast. Timing rides on an injected clock (the idle rule
fires when the test moves it), absence is proven by counters.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from sqlalchemy import create_engine, text
from watchkeeper.daemon.app import Daemon
from watchkeeper.daemon.config import Config
from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.notify.outbox import Outbox
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.profile import (
    ReferenceProfile,
    bin_counts,
    numeric_profile,
    quantile_edges,
)
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window import WindowSummary

from tests.integration.test_ingest import fetch, running
from tests.support import (
    IN_CI,
    PG_ADMIN_URL,
    create_topic,
    make_config,
    postgres_available,
    produce,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]

HOUR = 3_600_000
DAY = 24 * HOUR
NOW = int(time.time() * 1000)
START = (NOW - 66 * DAY) // DAY * DAY  # a UTC midnight; wall-clock retention would drop all
SPAN_DAYS = 21
PARTITIONS = 3
POLICY = """\
model: fraud
reference: store:default
window: 1d
schedule: {every: 1d}
min_samples: 20
rules:
  - {name: drift, metric: psi, features: [amount], critical: 0.25, actions: {critical: [console]}}
  - {name: accuracy, metric: accuracy, warn: 0.62, actions: {warn: [console]}}
  - {name: latency, metric: latency_p99_ms, critical: 500, actions: {critical: [console]}}
"""


# -- the data set ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    ts: int
    value: bytes


def dataset(seed: int = 11) -> tuple[list[Event], list[Event]]:
    """Predictions (about 6 an hour) and their labels 1–12 h later, in event-time order."""
    rng = np.random.default_rng(seed)
    n = SPAN_DAYS * 24 * 6
    ts = START + np.sort(rng.integers(0, SPAN_DAYS * DAY, n))
    day = (ts - START) // DAY
    amount = rng.normal(np.where((day >= 8) & (day <= 10), 1.5, 0.0), 1.0)
    p = rng.random(n)
    y = (rng.random(n) < p).astype(int)
    flip = (day >= 15) & (day <= 16) & (rng.random(n) < 0.4)
    y = np.where(flip, 1 - y, y)
    delay = rng.integers(HOUR, 12 * HOUR, n)
    preds = [
        Event(
            int(ts[i]),
            orjson.dumps(
                {
                    "model": "fraud",
                    "model_version": "1",
                    "request_id": f"r{i}",
                    "ts": int(ts[i]),
                    "features": {"amount": float(amount[i])},
                    "prediction": [1 - float(p[i]), float(p[i])],
                    "latency_ms": float(20 + (i * 37) % 80),
                }
            ),
        )
        for i in range(n)
    ]
    labels = sorted(
        (
            Event(
                int(ts[i] + delay[i]),
                orjson.dumps(
                    {
                        "model": "fraud",
                        "request_id": f"r{i}",
                        "ts": int(ts[i] + delay[i]),
                        "label": int(y[i]),
                    }
                ),
            )
            for i in range(n)
        ),
        key=lambda e: e.ts,
    )
    return preds, labels


PREDICTIONS, LABELS = dataset()


def _reference() -> ReferenceProfile:
    x = np.random.default_rng(1).normal(size=20_000)
    sketch = NumericSketch(2000)
    sketch.update(x)
    edges = quantile_edges(sketch, 10)
    return ReferenceProfile(
        "fraud", {"amount": numeric_profile(sketch, edges, bin_counts(x, edges))}, 20_000
    )


REFERENCE = _reference()
"""One profile for every run: a KLL sketch of 20,000 values is randomised, its edges would
differ from one build to the next."""


def store_reference(url: str) -> None:
    with Store.open(url) as store:
        store.save_reference(REFERENCE)


def fill(bootstrap: str, topic: str, events: list[Event]) -> None:
    """Round-robin over the partitions: each partition in event-time order."""
    for p in range(PARTITIONS):
        produce(bootstrap, topic, [e.value for e in events[p::PARTITIONS]], partition=p)


def between(events: list[Event], lo_day: int, hi_day: int) -> list[Event]:
    return [e for e in events if START + lo_day * DAY <= e.ts < START + hi_day * DAY]


# -- stores and daemons ----------------------------------------------------------------------
class Stores:
    """Fresh stores of one backend, made on demand for the module and dropped after it."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind, self.tmp = kind, tmp
        self.databases: list[str] = []

    def new(self) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.tmp / f's-{uuid.uuid4().hex[:6]}.db'}"
        name = f"wk_test_{uuid.uuid4().hex[:12]}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        self.databases.append(name)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def drop(self) -> None:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                for name in self.databases:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()


class Clock:
    """The daemon's wall clock: real time, moved forward by the test (idleness)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Setup:
    bootstrap: str
    stores: Stores
    tmp: Path

    def topics(self) -> tuple[str, str]:
        tag = uuid.uuid4().hex[:8]
        preds = create_topic(self.bootstrap, f"p-{tag}", PARTITIONS)
        labels = create_topic(self.bootstrap, f"l-{tag}", PARTITIONS)
        return preds, labels

    def config(self, preds: str, labels: str, url: str) -> Config:
        folder = self.tmp / uuid.uuid4().hex[:8]
        (folder / "policies").mkdir(parents=True)
        (folder / "policies" / "fraud.yaml").write_text(POLICY)
        return make_config(
            folder,
            self.bootstrap,
            url,
            {"predictions": {"name": preds}, "labels": {"name": labels}},
            # small fetches: partitions are read in many slices, at different speeds
            kafka={"max_poll_records": 300, "max_partition_fetch_bytes": 32768},
            windows={"size": "6h", "allowed_lateness": "2h"},
            ingest={"idle_timeout": "10m", "label_ttl": "2d"},
            policies={"paths": [str(folder / "policies")], "poll_interval": "200ms"},
            alerts={"channels": {"console": {"type": "console"}}},
        )


def stored(url: str) -> int:
    with Store.open(url, migrate=False) as store:
        return store.totals()["events"]


def joined(url: str) -> int:
    with Store.open(url, migrate=False) as store:
        return store.join_counts().get("fraud", {}).get("joined", 0)


def wait_for(url: str, events: int, pairs: int) -> None:
    wait_until(
        lambda: stored(url) >= events and joined(url) >= pairs,
        timeout=90,
        describe=lambda: (stored(url), joined(url)),
    )


def finish(daemon: Daemon, clock: Clock, url: str) -> None:
    """Everything is read: let the idle rule evaluate the last ticks (the clock moves past
    the idle timeout; the ingestor's next status refresh makes it visible)."""
    clock.offset += 11 * 60
    end = START + (SPAN_DAYS + 2) * DAY

    def cursor() -> int:
        with Store.open(url, migrate=False) as store:
            return IncidentStore(store.engine).cursor("fraud") or 0

    wait_until(lambda: cursor() >= end, timeout=60, describe=cursor)


# -- what a run leaves in the store ----------------------------------------------------------
@dataclass
class Result:
    url: str
    totals: dict[str, int]
    joins: dict[str, int]
    evaluations: list[tuple[Any, ...]]
    incidents: list[tuple[Any, ...]]
    windows: list[tuple[Any, ...]]
    outbox: list[str] = field(default_factory=list)


def window_content(summary: WindowSummary, samples: bool) -> tuple[Any, ...]:
    """What a window holds, independent of how its events were batched."""

    def column(sketch: Any) -> Any:
        if sketch is None:
            return None
        d = sketch.to_dict()
        if "kll" in d:  # exact below k values: the quantiles are the values themselves
            ranks = np.linspace(0, 1, 11)
            q = tuple(float(v) for v in sketch.quantiles(ranks)) if d["count"] else ()
            return (d["count"], d["nulls"], d["min"], d["max"], q)
        return tuple(sorted(d.items(), key=str))

    perf = summary.performance
    return (
        summary.model,
        summary.version,
        summary.start_ms,
        tuple(sorted(summary.events.items())),
        summary.first_ts_ms,
        summary.last_ts_ms,
        tuple((n, column(s)) for n, s in sorted(summary.features.items())),
        column(summary.prediction),
        column(summary.prediction_class),
        column(summary.latency),
        None if perf is None else (perf.n, tuple(sorted(perf.confusion.items()))),
        tuple(sorted(r.get("request_id", "") for r in summary.sample.rows)) if samples else (),
    )


def result(url: str, samples: bool = True) -> Result:
    with Store.open(url, migrate=False) as store:
        incidents = IncidentStore(store.engine)
        evaluations = sorted(
            (
                tuple(v for k, v in row.items() if k != "id")
                for row in incidents.evaluations(limit=100_000)
            ),
            key=lambda e: (e[0], e[3], e[5] or ""),  # at_ms, rule, feature
        )
        opened = sorted(
            (
                (
                    i["rule"],
                    i["feature"],
                    i["severity"],
                    i["state"],
                    i["opened_ms"],
                    i["resolved_ms"],
                    i["summary"],
                )
                for i in incidents.incidents(None)
            ),
            key=lambda i: (i[4], i[0], i[1] or ""),
        )
        windows = [
            (w.events, w.late_events, window_content(w.summary, samples)) for w in store.windows()
        ]
        joins = store.join_counts().get("fraud", {})
        states = [r["state"] for r in Outbox(store.engine).rows()]
        return Result(url, store.totals(), joins, evaluations, opened, windows, states)


# -- the backfill, shared by the comparisons -------------------------------------------------
@dataclass
class Backfill:
    setup: Setup
    topics: tuple[str, str]
    result: Result
    metrics: str


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backfill(
    request: pytest.FixtureRequest, broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backfill]:
    """Both topics filled with the three weeks before the daemon starts."""
    if request.param == "postgresql" and not postgres_available():
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI and is not reachable at {PG_ADMIN_URL}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    stores = Stores(request.param, tmp_path_factory.mktemp(f"event-time-{request.param}"))
    setup = Setup(broker.bootstrap, stores, stores.tmp)
    try:
        preds, labels = setup.topics()
        fill(broker.bootstrap, preds, PREDICTIONS)
        fill(broker.bootstrap, labels, LABELS)
        url = stores.new()
        store_reference(url)
        clock = Clock()
        config = setup.config(preds, labels, url)
        with running(config, clock) as daemon:
            wait_for(url, len(PREDICTIONS) + len(LABELS), len(PREDICTIONS))
            finish(daemon, clock, url)
            # retention is due (an hour after the last prune, by the daemon's clock)
            windows = len(result(url).windows)
            clock.offset += 3600
            assert daemon.housekeeper is not None
            daemon.housekeeper.run_once()
            assert len(result(url).windows) == windows  # nothing within retention goes
            assert daemon.http is not None
            metrics = fetch(f"http://{daemon.http.address}/metrics")[1]
        yield Backfill(setup, (preds, labels), result(url), metrics)
    finally:
        if request.param == "postgresql":
            stores.drop()


def test_a_backfill_loses_nothing_and_is_evaluated_once_per_period(backfill: Backfill) -> None:
    r = backfill.result
    n = len(PREDICTIONS)
    assert r.totals == {"events": 2 * n, "late_events": 0, "quarantined": 0}
    assert r.joins == {
        "joined": n,
        "expired_predictions": 0,
        "expired_labels": 0,
        "pending_predictions": 0,
        "pending_labels": 0,
    }
    # one evaluation per rule and period, from the first day that reads a full window to
    # the last day with predictions, each tick once, in event time; the day after it holds
    # only labels (1-12 h late), which is no traffic (WindowSummary.traffic): not evaluated
    ticks = sorted({e[0] for e in r.evaluations})
    assert ticks == [START + d * DAY for d in range(1, SPAN_DAYS + 1)]
    per_tick = {t: [e for e in r.evaluations if e[0] == t] for t in ticks}
    assert all(len(es) == 3 for es in per_tick.values())  # drift(amount), accuracy, latency
    # the drift of days 8–10 and the bad labels of days 15–16 were found, and ended
    opened = {(i[0], i[4], i[5]) for i in r.incidents if i[0]}
    assert ("drift", START + 9 * DAY, START + 12 * DAY) in opened
    assert any(
        rule == "accuracy" and START + 16 * DAY <= o <= START + 17 * DAY for rule, o, _ in opened
    )
    # all about windows two months old: recorded, not sent (alerts.max_age)
    assert r.outbox and set(r.outbox) == {"historical"}
    assert 'watchkeeper_notifications_historical_total{channel="console"}' in backfill.metrics
    assert f'watchkeeper_labels_joined_total{{model="fraud"}} {n}.0' in backfill.metrics
    assert "watchkeeper_late_events_dropped_total{" not in backfill.metrics  # none, ever
    assert "watchkeeper_label_join_expired_total{" not in backfill.metrics


def test_the_same_data_streamed_live_gives_the_same_evaluations(backfill: Backfill) -> None:
    setup = backfill.setup
    preds, labels = setup.topics()
    url = setup.stores.new()
    store_reference(url)
    clock = Clock()
    with running(setup.config(preds, labels, url), clock) as daemon:
        for lo in range(0, SPAN_DAYS + 1, 3):  # three days at a time, as it happens
            fill(setup.bootstrap, preds, between(PREDICTIONS, lo, lo + 3))
            fill(setup.bootstrap, labels, between(LABELS, lo, lo + 3))
            produced_p = len(between(PREDICTIONS, 0, lo + 3))
            produced_l = len(between(LABELS, 0, lo + 3))
            # every label produced so far has its (earlier) prediction produced too
            wait_for(url, produced_p + produced_l, produced_l)
        finish(daemon, clock, url)
    live = result(url, samples=False)
    assert live.totals == backfill.result.totals
    assert live.joins == backfill.result.joins
    assert live.evaluations == backfill.result.evaluations
    assert live.incidents == backfill.result.incidents
    first = [(e, late, w[:-1]) for e, late, w in backfill.result.windows]
    assert [(e, late, w[:-1]) for e, late, w in live.windows] == first


def test_a_daemon_stopped_while_production_goes_on_catches_up_to_the_same_result(
    backfill: Backfill,
) -> None:
    setup = backfill.setup
    preds, labels = setup.topics()
    url = setup.stores.new()
    store_reference(url)
    clock = Clock()
    config = setup.config(preds, labels, url)
    with running(config, clock):
        fill(setup.bootstrap, preds, between(PREDICTIONS, 0, 7))
        fill(setup.bootstrap, labels, between(LABELS, 0, 7))
        first = len(between(LABELS, 0, 7))
        wait_for(url, len(between(PREDICTIONS, 0, 7)) + first, first)
    # down while a week of traffic (seven policy windows) is produced
    fill(setup.bootstrap, preds, between(PREDICTIONS, 7, 14))
    fill(setup.bootstrap, labels, between(LABELS, 7, 14))
    with running(config, clock) as daemon:
        fill(setup.bootstrap, preds, between(PREDICTIONS, 14, SPAN_DAYS + 1))
        fill(setup.bootstrap, labels, between(LABELS, 14, SPAN_DAYS + 2))
        wait_for(url, len(PREDICTIONS) + len(LABELS), len(PREDICTIONS))
        finish(daemon, clock, url)
    caught_up = result(url, samples=False)
    assert caught_up.totals == backfill.result.totals
    assert caught_up.joins == backfill.result.joins
    assert caught_up.evaluations == backfill.result.evaluations
    assert caught_up.incidents == backfill.result.incidents


def test_a_replay_from_offset_zero_into_a_fresh_store_rebuilds_the_same_windows(
    backfill: Backfill,
) -> None:
    setup = backfill.setup
    preds, labels = backfill.topics  # the backfill's own topics, read again from the start
    url = setup.stores.new()
    store_reference(url)
    clock = Clock()
    with running(setup.config(preds, labels, url), clock) as daemon:
        wait_for(url, len(PREDICTIONS) + len(LABELS), len(PREDICTIONS))
        finish(daemon, clock, url)
    replay = result(url)
    assert replay.windows == backfill.result.windows  # samples included: same offsets
    assert replay.totals == backfill.result.totals
    assert replay.evaluations == backfill.result.evaluations


# -- real lateness, and label joins on the labels' clock ---------------------------------------
def test_real_lateness_is_counted_exactly_and_shown(
    broker: EmbeddedBroker,
    store_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Events older than a window every partition has closed (end + allowed lateness) are
    late — no more, no fewer: a partition's own out-of-order events within the lateness,
    and a slow partition's events behind a fast one, are not."""
    import logging

    from watchkeeper.daemon.cli.main import main

    tag = uuid.uuid4().hex[:8]
    topic = create_topic(broker.bootstrap, f"late-{tag}", PARTITIONS)
    config = make_config(
        tmp_path,
        broker.bootstrap,
        store_url,
        {"predictions": {"name": topic}},
        windows={"size": "1h", "allowed_lateness": "2h"},
    )
    t = START

    def events(times: list[int], tag: str) -> list[bytes]:
        return [
            orjson.dumps({"model": "fraud", "request_id": f"{tag}{i}", "ts": ts, "prediction": 0.5})
            for i, ts in enumerate(times)
        ]

    # partition 2 runs a day ahead of the others: nothing of 0 and 1 becomes late for it
    fast = [t + 24 * HOUR + m * 60_000 for m in range(0, 360, 10)]
    produce(broker.bootstrap, topic, events(fast, "fast"), partition=2)
    first = [t + m * 60_000 for m in range(0, 6 * 60, 10)]  # 0h … 5h50
    for p in (0, 1):
        produce(broker.bootstrap, topic, events(first, f"p{p}-"), partition=p)
    produced = len(fast) + 2 * len(first)
    with (
        caplog.at_level(logging.WARNING, logger="watchkeeper.daemon.ingest.loop"),
        running(config, Clock()) as daemon,
    ):
        wait_until(lambda: stored(store_url) == produced, timeout=60)
        assert totals_late(store_url) == 0
        # the watermark: min over partitions = 5h50 (partitions 0 and 1)
        late = [t + 1 * HOUR + m * 60_000 for m in (0, 15, 30, 59)]  # [1h, 2h): closed at 4h
        on_time = [t + 4 * HOUR + m * 60_000 for m in (0, 20, 40)]  # [4h, 5h): open till 7h
        produce(broker.bootstrap, topic, events(late[:2] + on_time, "a"), partition=0)
        produce(broker.bootstrap, topic, events(late[2:], "b"), partition=1)
        produced += len(late) + len(on_time)
        wait_until(lambda: stored(store_url) + totals_late(store_url) == produced, timeout=60)
        assert daemon.http is not None
        base = f"http://{daemon.http.address}"
        metrics = fetch(base + "/metrics")[1]
        status = orjson.loads(fetch(base + "/api/status")[1])
        while_running = late_lines(caplog)
    assert len(while_running) == 1  # rate-limited: once a minute per model, however many batches
    # and what the minute carried is logged at close: the lines' counts reach the counter's
    assert sum(count for count, _ in late_lines(caplog)) == len(late)
    assert totals_late(store_url) == len(late)
    assert stored(store_url) == produced - len(late)
    assert f'watchkeeper_late_events_dropped_total{{model="fraud"}} {len(late)}.0' in metrics
    assert status["models"]["fraud"]["late_events"] == len(late)
    assert status["totals"]["late_events"] == len(late)
    assert main(["status", "-c", str(tmp_path / "watchkeeper.yaml")]) == 0
    out = capsys.readouterr().out
    assert f"late events {len(late)}" in out


def late_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    """(count, oldest) of each late-events log line."""
    found = (
        re.search(r": (\d+) late predictions event\(s\) dropped .*the oldest at (\S+);", m)
        for m in (r.getMessage() for r in caplog.records)
    )
    return [(int(m[1]), m[2]) for m in found if m]


def totals_late(url: str) -> int:
    with Store.open(url, migrate=False) as store:
        return store.totals()["late_events"]


def test_labels_expire_on_the_labels_clock_and_every_join_and_expiry_is_counted(
    broker: EmbeddedBroker, store_url: str, tmp_path: Path
) -> None:
    """Predictions five days ahead of their labels expire nothing; once the labels stream
    is ``label_ttl`` past a waiting prediction it expires, as does a label whose
    prediction the predictions stream has passed; the wall-clock cap ends the rest."""
    tag = uuid.uuid4().hex[:8]
    preds = create_topic(broker.bootstrap, f"p-{tag}", PARTITIONS)
    labels = create_topic(broker.bootstrap, f"l-{tag}", PARTITIONS)
    config = make_config(
        tmp_path,
        broker.bootstrap,
        store_url,
        {"predictions": {"name": preds}, "labels": {"name": labels}},
        windows={"size": "1h", "allowed_lateness": "1h"},
        ingest={"label_ttl": "1d", "label_max_wait": "10d"},
    )
    t = START
    n = 120  # one an hour for five days

    def prediction(i: int) -> bytes:
        ts = t + i * HOUR
        return orjson.dumps({"model": "fraud", "request_id": f"r{i}", "ts": ts, "prediction": 0.9})

    def label(rid: str, ts: int) -> bytes:
        return orjson.dumps({"model": "fraud", "request_id": rid, "ts": ts, "label": 1})

    def per_partition(values: list[bytes], topic: str) -> None:
        for p in range(PARTITIONS):
            produce(broker.bootstrap, topic, values[p::PARTITIONS], partition=p)

    def joins() -> dict[str, int]:
        with Store.open(store_url, migrate=False) as store:
            return store.join_counts().get("fraud", {})

    clock = Clock()
    per_partition([prediction(i) for i in range(n)], preds)
    # the labels stream is behind: at 2h, labels for r0–r2, and two for unknown requests
    early = [label(f"r{i}", t + 2 * HOUR) for i in range(3)]
    ghosts = [label(f"ghost{j}", t + 2 * HOUR) for j in range(2)]
    per_partition(early + ghosts + [label("r0-dup", t + 2 * HOUR)], labels)
    with running(config, clock) as daemon:
        wait_until(lambda: joins().get("joined") == 3, timeout=60, describe=joins)
        clock.offset += 61  # expiry runs once a minute (by the daemon's clock)
        wait_until(lambda: joins().get("expired_labels") == 3, timeout=60, describe=joins)
        # the predictions stream is days ahead: it expired the labels with no prediction
        # (ghosts, r0-dup), but the labels stream expires no prediction
        assert joins()["expired_predictions"] == 0
        assert joins()["pending_predictions"] == n - 3
        # the labels stream moves to day 3 on every partition: predictions before day 2
        # (label_ttl behind it) expire; r48… keep waiting. r5's label comes 67 h after it,
        # beyond label_ttl: it joins nothing, however soon the expiry runs
        later = [label(f"r{i}", t + 72 * HOUR) for i in (50, 51, 52, 5)]
        per_partition(later, labels)
        wait_until(lambda: joins().get("joined") == 6, timeout=60, describe=joins)
        clock.offset += 61  # expiry runs once a minute (by the daemon's clock)
        expected = len(range(3, 48))  # ts < day 2, r5 included
        wait_until(
            lambda: joins().get("expired_predictions") == expected, timeout=60, describe=joins
        )
        # the wall-clock cap: ten days later every row still waiting goes
        clock.offset += 10 * 86_400 + 61
        wait_until(lambda: joins().get("pending_predictions") == 0, timeout=60, describe=joins)
        assert daemon.http is not None
        metrics = fetch(f"http://{daemon.http.address}/metrics")[1]
    final = joins()
    assert final["joined"] == 6 and final["expired_labels"] == 4
    assert final["expired_predictions"] == n - 6  # every prediction joined or expired
    assert 'watchkeeper_labels_joined_total{model="fraud"} 6.0' in metrics
    assert (
        f'watchkeeper_label_join_expired_total{{model="fraud",side="prediction"}} {n - 6}.0'
        in metrics
    )
    assert 'watchkeeper_label_join_expired_total{model="fraud",side="label"} 4.0' in metrics
