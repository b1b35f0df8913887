"""Ingest benchmark: watchkeeper's full path against raw consume, per Kafka client, in one run.

1. starts the embedded Tansu broker (or uses ``--bootstrap``) and produces ``--events``
   prediction events with 20 numeric features into one topic;
2. raw consume with each client (kafka-python, confluent-kafka) and watchkeeper's own
   client settings (crc32c installed, the same fetch sizes), records only, no decode;
3. watchkeeper with each client: consume, decode, sketch into windows, commit to a SQLite
   store;
4. with a labels topic (every prediction joined; with each client), and a backfill
   (100,000 events over 10,000 one-hour windows) beside raw consume of the same backfill
   topic;
5. prints events/s of each phase, the ratios (path / raw per client, confluent path /
   kafka-python path, labels / without per client, backfill / its raw consume) and each
   phase's peak RSS.

Each phase runs in its own process, so the RSS it reports is its own.
Run: ``make bench`` or ``python tests/benchmarks/bench_ingest.py [--events N]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson

FEATURES = 20


def produce(bootstrap: str, topic: str, n: int, kind: str = "predictions") -> float:
    """``n`` events to ``topic``: predictions (20 features), their labels (one per
    prediction, same request ids), or a backfill (predictions one hour apart per 10)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        acks=1,
        batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
    )
    rng = np.random.default_rng(1)
    base_ms = int(time.time() * 1000) - 60_000
    if kind == "backfill":  # 10 events per one-hour window, the last window ending now
        base_ms -= (n // BACKFILL_PER_WINDOW) * 3_600_000
    started = time.perf_counter()
    chunk = 50_000
    for lo in range(0, n, chunk):
        size = min(chunk, n - lo)
        values = np.round(rng.normal(size=(size, FEATURES)), 4).tolist()
        preds = np.round(rng.random(size), 4).tolist()
        for i in range(size):
            j = lo + i
            if kind == "labels":
                event: dict[str, Any] = {
                    "model": "fraud",
                    "request_id": f"r{j}",
                    "ts": base_ms + j // 20 + 1_000,
                    "label": int(preds[i] > 0.5),
                }
            else:
                ts = (
                    base_ms + (j // BACKFILL_PER_WINDOW) * 3_600_000 + j % BACKFILL_PER_WINDOW
                    if kind == "backfill"
                    else base_ms + j // 20
                )
                event = {
                    "model": "fraud",
                    "model_version": "3",
                    "request_id": f"r{j}",
                    "ts": ts,
                    "features": dict(zip(NAMES, values[i], strict=True)),
                    "prediction": preds[i],
                    "latency_ms": 12.5,
                }
            producer.send(topic, orjson.dumps(event))
    producer.flush()
    producer.close()
    return time.perf_counter() - started


BACKFILL_EVENTS = 100_000
BACKFILL_PER_WINDOW = 10
NAMES = [f"f{i:02d}" for i in range(FEATURES)]
PHASES = [
    "raw-kafka-python",
    "raw-confluent",
    "watchkeeper-kafka-python",
    "watchkeeper-confluent",
    "watchkeeper-kafka-python-labels",
    "watchkeeper-confluent-labels",
    "raw-kafka-python-backfill",
    "watchkeeper-kafka-python-backfill",
    "offline-kafka-python",
    "offline-confluent",
    "overlap-kafka-python",
    "overlap-confluent",
]
"""``offline-*``: watchkeeper's decode, summarising and commit alone, on batches fetched
before the timer starts (:class:`ReplaySource`): the ceiling of our own work, no Kafka.
``overlap-*``: an experiment, not the daemon's loop: the path of ``watchkeeper-*`` with each
poll's slices parsed on the worker while the loop polls the next one
(:func:`overlap_ingestor`)."""


def consumer_settings(bootstrap: str, client: str = "kafka-python") -> dict[str, object]:
    """The client settings watchkeeper uses (config defaults), for a fair baseline."""
    from watchkeeper.daemon.config import Config, validation_context
    from watchkeeper.daemon.ingest import confluent, kafka_python
    from watchkeeper.daemon.ingest.sources import option_checks

    config = Config.model_validate(
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "group_id": f"bench-{uuid.uuid4().hex[:6]}",
                "topics": {"predictions": {"name": "x"}},
                "session_timeout": "6s",
                "heartbeat_interval": "1s",
            }
        },
        context=validation_context(option_checks()),
    )
    if client == "confluent":
        return confluent.consumer_options(config)
    return kafka_python.consumer_options(config)


def phase_raw_confluent(bootstrap: str, topic: str, n: int) -> dict[str, float]:
    from confluent_kafka import Consumer

    consumer = Consumer(consumer_settings(bootstrap, "confluent"))
    consumer.subscribe([topic])
    count = 0
    started = None
    cpu = 0.0
    while count < n:
        messages = consumer.consume(num_messages=20_000, timeout=1.0)
        if messages and started is None:
            started, cpu = time.perf_counter(), time.process_time()
        count += sum(1 for m in messages if m.error() is None)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    cpu = time.process_time() - cpu
    consumer.close()
    return {"events": count, "seconds": elapsed, "cpu_s": cpu}


def phase_raw(bootstrap: str, topic: str, n: int) -> dict[str, float]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**consumer_settings(bootstrap))
    consumer.subscribe([topic])
    count = 0
    started = None
    cpu = 0.0
    while count < n:
        polled = consumer.poll(timeout_ms=1000)
        if polled and started is None:
            started, cpu = time.perf_counter(), time.process_time()
        for records in polled.values():
            count += len(records)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    cpu = time.process_time() - cpu
    consumer.close()
    return {"events": count, "seconds": elapsed, "cpu_s": cpu}


def bench_config(
    bootstrap: str,
    topic: str,
    store_url: str,
    client: str,
    labels: str | None = None,
    window_s: float | None = None,
) -> Any:
    """The daemon config the benchmarks run: watchkeeper's client settings, one topic
    (and a labels topic, and a window size, when given)."""
    from watchkeeper.daemon.config import Config, validation_context
    from watchkeeper.daemon.ingest.sources import option_checks

    topics: dict[str, Any] = {"predictions": {"name": topic}}
    if labels is not None:
        topics["labels"] = {"name": labels}
    raw: dict[str, Any] = {
        "kafka": {
            "client": client,
            "bootstrap_servers": bootstrap,
            "group_id": f"bench-{uuid.uuid4().hex[:6]}",
            "topics": topics,
            "session_timeout": "6s",
            "heartbeat_interval": "1s",
        },
        "store": {"url": store_url},
    }
    if window_s is not None:
        raw["windows"] = {"size": window_s}
    return Config.model_validate(raw, context=validation_context(option_checks()))


def consume(
    ingestor: Any, metrics: Any, expected: dict[str, int], from_start: bool = False
) -> float:
    """Step the ingestor until each topic's expected records were consumed, then commit;
    the seconds from the first record (``from_start``: from the first step, whose poll
    holds records already) to the end of that last commit (part of the path)."""
    import gc

    gc.collect()  # as Ingestor.run does
    gc.freeze()
    started = time.perf_counter() if from_start else None
    CPU.update(process=time.process_time(), loop=time.thread_time())
    while True:
        ingestor.step()
        consumed = {t: metrics.records.labels(t)._value.get() for t in expected}
        if any(consumed.values()) and started is None:
            started = time.perf_counter()
            CPU.update(process=time.process_time(), loop=time.thread_time())
        if all(consumed[t] >= n for t, n in expected.items()):
            break
    ingestor.flush()
    elapsed = time.perf_counter() - (started or time.perf_counter())
    CPU.update(process=time.process_time() - CPU["process"], loop=time.thread_time() - CPU["loop"])
    gc.unfreeze()
    return elapsed


CPU: dict[str, float] = {}
"""The last :func:`consume`'s CPU seconds over its timed span: the whole process's (every
thread: the parse worker, the client's threads) and the loop's thread's."""


def phase_watchkeeper(
    bootstrap: str,
    topic: str,
    n: int,
    workdir: str,
    client: str,
    labels: str | None = None,
    window_s: float | None = None,
    overlap: bool = False,
) -> dict[str, float]:
    from prometheus_client import CollectorRegistry
    from watchkeeper.daemon.ingest.loop import Ingestor
    from watchkeeper.daemon.ingest.metrics import IngestMetrics
    from watchkeeper.daemon.store.store import Store

    url = f"sqlite:///{workdir}/bench.db"
    config = bench_config(bootstrap, topic, url, client, labels, window_s)
    store = Store.open(config.store_url())
    expected = {topic: n, **({labels: n} if labels else {})}
    metrics = IngestMetrics(CollectorRegistry(), list(expected))
    ingestor = (overlap_ingestor if overlap else Ingestor)(config, store, metrics)
    ingestor.open()
    elapsed = consume(ingestor, metrics, expected)
    columnar = ingestor.decoders[topic].columnar
    ingestor.close()
    joins = (
        {"joined_in_buffer": ingestor.joined_in_buffer}  # pairs met in a commit's buffer
        if labels
        else {}
    )
    totals = store.totals()
    if labels:
        joins["joined"] = store.join_counts().get("fraud", {}).get("joined", 0)
    store.close()
    flush_hist = metrics.flush_duration.collect()[0].samples
    flush_sum = next(s.value for s in flush_hist if s.name.endswith("_sum"))
    flush_count = next(s.value for s in flush_hist if s.name.endswith("_count"))
    return {
        "events": totals["events"],
        "seconds": elapsed,
        "flush_mean_s": flush_sum / max(flush_count, 1),
        "flushes": flush_count,
        "columnar_fallbacks": columnar.fallbacks if columnar is not None else -1,
        "cpu_s": CPU["process"],
        "loop_cpu_s": CPU["loop"],
        **joins,
    }


def overlap_ingestor(config: Any, store: Any, metrics: Any) -> Any:
    """An experiment (2026-12-07), not the daemon's loop: an ``Ingestor`` whose step hands
    every slice of its poll to the parse worker at once and then processes the *previous*
    poll's slices, parsed while it polled; so Arrow's parse (GIL-free) runs during the
    client's poll, where the daemon's loop leaves the worker idle. It measures what that
    change to loop.py would give; it does not drop held records of a revoked partition, so
    it is only correct for one member with no rebalance (the benchmark's case)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from watchkeeper.daemon.ingest.loop import Ingestor

    class OverlapIngestor(Ingestor):  # type: ignore[misc]
        def open(self) -> None:
            super().open()
            self._pool = ThreadPoolExecutor(max_workers=1)
            self._held: list[tuple[Any, Future[Any]]] = []

        def close(self) -> None:
            for (key, records), parsed in self._held:
                self._process(key, records, parsed.result())
            self._held = []
            super().close()
            self._pool.shutdown()

        def step(self) -> None:
            consumer = self._consumer
            ingest = self.config.ingest
            # holding records: take what the client has now (no wait), then process them
            polled = consumer.poll(0.0 if self._held else ingest.poll_timeout)
            if consumer.assignment():
                self.ready.set()
            slices = self._slices(polled)
            held = self._held
            self._held = [(piece, self._pool.submit(self._prepare, piece)) for piece in slices]
            for (key, records), parsed in held:
                self._process(key, records, parsed.result())
                if self._crowded() and not self._paused:
                    self.flush()
            self._track_positions(consumer)
            if (
                time.monotonic() - self._last_flush >= ingest.flush_interval
                or self.windows.pending_events >= ingest.flush_max_events
                or self._crowded()
            ):
                self.flush()

    return OverlapIngestor(config, store, metrics)


class ReplaySource:
    """A :class:`~watchkeeper.daemon.ingest.source.Source` handing back polls a real client
    made beforehand (the same record objects: kafka-python's lists of records, confluent's
    ``MessageRun``), one poll a call, then nothing: the loop's own work without the client's
    fetch and unpacking. A benchmark reference only (one member, no rebalances)."""

    def __init__(self, polls: list[Any]) -> None:
        self._polls = polls
        self._assigned = {key for poll in polls for key in poll}

    def subscribe(self, topics: Any, listener: Any) -> None:
        listener.on_assigned(sorted(self._assigned))

    def poll(self, timeout_s: float) -> Any:
        return self._polls.pop(0) if self._polls else {}

    def assignment(self) -> set[Any]:
        return set(self._assigned)

    def pause(self, partitions: Any) -> None:
        pass

    def resume(self, partitions: Any) -> None:
        pass

    def paused(self) -> set[Any]:
        return set()

    def seek(self, partition: Any, offset: int) -> None:
        pass

    def commit(self, offsets: Any) -> None:
        pass

    def end_offset(self, partition: Any) -> int | None:
        return None

    def position(self, partition: Any) -> int | None:
        return None

    def connections(self) -> int | None:
        return 1

    def close(self) -> None:
        pass


class _Assigned:
    def on_revoked(self, partitions: Any) -> None:
        pass

    def on_assigned(self, partitions: Any) -> None:
        pass


def prefetch_polls(bootstrap: str, topic: str, n: int, client: str) -> list[Any]:
    """Every poll of ``n`` records by the named client's watchkeeper source (its own
    settings), kept: what :class:`ReplaySource` hands back."""
    from watchkeeper.daemon.ingest.sources import open_source

    with tempfile.TemporaryDirectory() as workdir:
        config = bench_config(bootstrap, topic, f"sqlite:///{workdir}/x.db", client)
    source = open_source(config)
    source.subscribe([topic], _Assigned())
    polls, count = [], 0
    while count < n:
        polled = source.poll(1.0)
        if polled:
            polls.append(dict(polled))
            count += sum(map(len, polled.values()))
    source.close()
    return polls


def phase_offline(
    bootstrap: str, topic: str, n: int, workdir: str, client: str
) -> dict[str, float]:
    from prometheus_client import CollectorRegistry
    from watchkeeper.daemon.ingest.loop import Ingestor
    from watchkeeper.daemon.ingest.metrics import IngestMetrics
    from watchkeeper.daemon.store.store import Store

    polls = prefetch_polls(bootstrap, topic, n, client)
    config = bench_config(bootstrap, topic, f"sqlite:///{workdir}/bench.db", client)
    store = Store.open(config.store_url())
    metrics = IngestMetrics(CollectorRegistry(), [topic])
    ingestor = Ingestor(config, store, metrics, source=lambda _config: ReplaySource(polls))
    ingestor.open()
    elapsed = consume(ingestor, metrics, {topic: n}, from_start=True)
    ingestor.close()
    totals = store.totals()
    store.close()
    return {
        "events": totals["events"],
        "seconds": elapsed,
        "cpu_s": CPU["process"],
        "loop_cpu_s": CPU["loop"],
    }


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not getrusage's ru_maxrss: that one survives
    execve, so a phase would report the parent's peak (the producer's) as its own."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_phase(args: argparse.Namespace) -> None:
    if args.profile and args.phase.startswith("watchkeeper-"):
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        _run_phase(args)
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.dump_stats(f"{args.profile}/{args.phase}.prof")
        stats.sort_stats("tottime").print_stats(25)
        return
    _run_phase(args)


def _run_phase(args: argparse.Namespace) -> None:
    if args.phase == "raw-kafka-python":
        result = phase_raw(args.bootstrap, args.topic, args.events)
    elif args.phase == "raw-kafka-python-backfill":  # the backfill's reference, same run
        result = phase_raw(args.bootstrap, args.backfill_topic, BACKFILL_EVENTS)
    elif args.phase == "raw-confluent":
        result = phase_raw_confluent(args.bootstrap, args.topic, args.events)
    elif args.phase.startswith("offline-"):
        with tempfile.TemporaryDirectory() as workdir:
            client = args.phase.removeprefix("offline-")
            result = phase_offline(args.bootstrap, args.topic, args.events, workdir, client)
    elif args.phase.startswith("overlap-"):
        with tempfile.TemporaryDirectory() as workdir:
            client = args.phase.removeprefix("overlap-")
            result = phase_watchkeeper(
                args.bootstrap, args.topic, args.events, workdir, client, overlap=True
            )
    else:
        client = args.phase.removeprefix("watchkeeper-")
        labels = window_s = None
        topic, n = args.topic, args.events
        if client.endswith("-labels"):
            client, labels = client.removesuffix("-labels"), args.labels_topic
        elif client.endswith("-backfill"):
            client, window_s = client.removesuffix("-backfill"), 3600.0
            topic, n = args.backfill_topic, BACKFILL_EVENTS
        with tempfile.TemporaryDirectory() as workdir:
            result = phase_watchkeeper(args.bootstrap, topic, n, workdir, client, labels, window_s)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def report(results: dict[str, dict[str, Any]], events: int) -> None:
    """Each ratio whose two phases ran, and the stored-event check of each phase."""
    rate = {phase: r["rate"] for phase, r in results.items()}
    for client in ("kafka-python", "confluent"):
        if {f"watchkeeper-{client}", f"raw-{client}"} <= set(rate):
            wk = results[f"watchkeeper-{client}"]
            print(
                f"watchkeeper/raw with {client:<13} = "
                f"{rate[f'watchkeeper-{client}'] / rate[f'raw-{client}']:.2f}"
                + ("  (goal >= 0.85)" if client == "kafka-python" else "")
                + f"; peak RSS {wk['peak_rss_mb']:.0f} MB (goal <= 250 MB); mean commit "
                f"{wk['flush_mean_s'] * 1000:.0f} ms"
            )
    if {"watchkeeper-confluent", "watchkeeper-kafka-python"} <= set(rate):
        print(
            "watchkeeper confluent / watchkeeper kafka-python = "
            f"{rate['watchkeeper-confluent'] / rate['watchkeeper-kafka-python']:.2f}  (goal >= 3)"
        )
    if {"raw-confluent", "raw-kafka-python"} <= set(rate):
        print(
            "raw confluent / raw kafka-python = "
            f"{rate['raw-confluent'] / rate['raw-kafka-python']:.2f}"
            "  (the confluent goal needs the confluent path >= 3 x 0.85 = 2.55 x raw kafka-python)"
        )
    for client in ("kafka-python", "confluent"):
        if {f"overlap-{client}", f"raw-{client}"} <= set(rate):
            print(
                f"experiment: parse during the poll, {client} = "
                f"{rate[f'overlap-{client}'] / rate[f'raw-{client}']:.2f} x raw {client}"
            )
    for client in ("kafka-python", "confluent"):
        if f"offline-{client}" in rate and "raw-kafka-python" in rate:
            print(
                f"our work alone on {client}'s batches (no Kafka) = "
                f"{rate[f'offline-{client}']:,.0f} events/s = "
                f"{rate[f'offline-{client}'] / rate['raw-kafka-python']:.2f} x raw kafka-python"
            )
    for client in ("kafka-python", "confluent"):
        if {f"watchkeeper-{client}-labels", f"watchkeeper-{client}"} <= set(rate):
            with_labels = results[f"watchkeeper-{client}-labels"]
            print(
                f"watchkeeper {client} with labels / without = "
                f"{rate[f'watchkeeper-{client}-labels'] / rate[f'watchkeeper-{client}']:.2f}"
                "  (goal >= 0.7; predictions/s, each prediction joined to its label); "
                f"peak RSS {with_labels['peak_rss_mb']:.0f} MB; mean commit "
                f"{with_labels['flush_mean_s'] * 1000:.0f} ms"
            )
    if "watchkeeper-kafka-python-backfill" in rate:
        print(
            f"backfill of {BACKFILL_EVENTS:,} events over "
            f"{BACKFILL_EVENTS // BACKFILL_PER_WINDOW:,} one-hour windows = "
            f"{rate['watchkeeper-kafka-python-backfill']:,.0f} events/s  (goal >= 50,000)"
        )
        if "raw-kafka-python-backfill" in rate:
            # the goal is absolute; the ratio to raw consume of the same topic in the same
            # run tells a slow machine from a slow path
            raw = rate["raw-kafka-python-backfill"]
            print(
                "backfill / raw kafka-python consume of the backfill topic = "
                f"{rate['watchkeeper-kafka-python-backfill'] / raw:.2f} (raw {raw:,.0f} events/s)"
            )
    peaks = [r["peak_rss_mb"] for p, r in results.items() if p.startswith("watchkeeper")]
    if peaks:
        print(f"peak RSS of the watchkeeper phases = {max(peaks):.0f} MB  (goal <= 250 MB)")
    for phase, want in (
        ("watchkeeper-kafka-python", events),
        ("watchkeeper-confluent", events),
        ("watchkeeper-kafka-python-labels", 2 * events),
        ("watchkeeper-confluent-labels", 2 * events),
        ("watchkeeper-kafka-python-backfill", BACKFILL_EVENTS),
        ("offline-kafka-python", events),
        ("offline-confluent", events),
    ):
        if phase in results:
            got = results[phase]["events"]
            assert got == want, f"{phase}: {got} events stored, {want} sent"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--bootstrap")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--phase", choices=PHASES)
    parser.add_argument("--topic")
    parser.add_argument("--labels-topic")
    parser.add_argument("--backfill-topic")
    parser.add_argument(
        "--profile", help="a directory: cProfile each watchkeeper phase into it (slower)"
    )
    parser.add_argument(
        "--phases",
        help="comma-separated phases to run (default: all; ratios need both of their phases): "
        + ", ".join(PHASES),
    )
    args = parser.parse_args()
    default = [p for p in PHASES if not p.startswith("overlap-")]  # experiments: by name
    chosen = default if not args.phases else args.phases.split(",")
    unknown = sorted(set(chosen) - set(PHASES))
    if unknown:
        parser.error(f"unknown phases {unknown}; choose from {PHASES}")
    if args.phase:
        run_phase(args)
        return

    from watchkeeper.daemon.demo.broker import EmbeddedBroker
    from watchkeeper.daemon.demo.setup import create_topics

    broker = None
    if args.bootstrap is None:
        broker = EmbeddedBroker().start()
        args.bootstrap = broker.bootstrap
    try:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        labels, backfill = f"{topic}-labels", f"{topic}-backfill"
        create_topics(args.bootstrap, [topic, labels, backfill], args.partitions)
        wanted = {
            "predictions": any(
                not p.endswith("-backfill") and p != "raw-kafka-python-backfill" for p in chosen
            ),
            "labels": any(p.endswith("-labels") for p in chosen),
            "backfill": any(p.endswith("-backfill") for p in chosen),
        }
        for name, kind, n in (
            (topic, "predictions", args.events),
            (labels, "labels", args.events),
            (backfill, "backfill", BACKFILL_EVENTS),
        ):
            if not wanted[kind]:
                continue
            print(f"producing {n:,} {kind} events ({FEATURES} numeric features) to {name} ...")
            seconds = produce(args.bootstrap, name, n, kind)
            print(f"  produced in {seconds:.1f}s ({n / seconds:,.0f}/s)")
        results = {}
        for phase in [p for p in PHASES if p in chosen]:
            out = subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--phase",
                    phase,
                    "--bootstrap",
                    args.bootstrap,
                    "--topic",
                    topic,
                    "--labels-topic",
                    labels,
                    "--backfill-topic",
                    backfill,
                    "--events",
                    str(args.events),
                    *(["--profile", args.profile] if args.profile else []),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            if args.profile and out.stderr:
                Path(args.profile, f"{phase}.txt").write_text(out.stderr)
            results[phase] = r = json.loads(out.stdout.strip().splitlines()[-1])
            # the labels phase stores 2 events per prediction (its window's and its label's):
            # its rate is predictions/s, comparable with the phase without labels
            sent = args.events if phase.endswith("-labels") else r["events"]
            r["rate"] = sent / r["seconds"]
            print(
                f"{phase:<34} {r['events']:>10,} events in {r['seconds']:6.2f}s = "
                f"{r['rate']:>10,.0f} {'predictions' if sent != r['events'] else 'events'}/s, "
                f"peak RSS {r['peak_rss_mb']:.0f} MB"
                + (
                    f", CPU {r['cpu_s'] / r['events'] * 1e6:.2f} µs an event"
                    + (
                        f" ({r['loop_cpu_s'] / r['events'] * 1e6:.2f} on the loop's thread)"
                        if "loop_cpu_s" in r
                        else ""
                    )
                    if "cpu_s" in r
                    else ""
                )
                + (
                    f", {r['flushes']:.0f} commits of {r['flush_mean_s'] * 1000:.0f} ms mean, "
                    f"{r['columnar_fallbacks']} batches decoded record by record"
                    if "flushes" in r
                    else ""
                )
                + (
                    f"; {r['joined']:,} joined, {r['joined_in_buffer']:,} of them in a "
                    "commit's buffer"
                    if "joined_in_buffer" in r
                    else ""
                )
            )
        report(results, args.events)
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
