"""Segments benchmark: ingest with 2 segment features (K = 20) against ingest without, in
one run, and the memory of one segment.

1. starts the embedded Tansu broker (or uses ``--bootstrap``) and produces ``--events``
   prediction events with 20 numeric features and two categorical ones, ``country`` (40
   values, Zipf-like) and ``channel`` (6 values), into one topic of 3 partitions;
2. builds a reference with segments of both (their 20 most frequent values) from rows
   of the same distribution;
3. runs the daemon's ingest path (consume with kafka-python, decode, sketch into windows,
   commit to SQLite), each run in its own process, with that reference in force: without
   segments, and with ``segments: [country, channel]``, ``segment_top_k: 20``; alternated,
   ``--repeat`` times each (best kept: the machine is shared);
4. prints both rates, their ratio (goal ≥ 0.8), and the memory of one segment: the bytes
   a window with segments holds beyond one without, per segment child (tracemalloc), and
   a child's stored (JSON) size.

Run: ``make bench`` or ``python tests/benchmarks/bench_segments.py [--events N]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import bench_config, consume, peak_rss_mb

FEATURES = 20
NAMES = [f"f{i:02d}" for i in range(FEATURES)]
COUNTRIES = [f"C{i:02d}" for i in range(40)]
CHANNELS = ["web", "app", "pos", "phone", "partner", "batch"]
SEGMENTS = ("country", "channel")
K = 20


def _weights(n: int) -> np.ndarray[Any, Any]:
    w = 1.0 / np.arange(1, n + 1)
    return w / w.sum()


def rows(
    n: int, seed: int
) -> tuple[np.ndarray[Any, Any], list[str], list[str], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(size=(n, FEATURES)), 4)
    country = rng.choice(COUNTRIES, size=n, p=_weights(len(COUNTRIES))).tolist()
    channel = rng.choice(CHANNELS, size=n, p=_weights(len(CHANNELS))).tolist()
    return values, country, channel, np.round(rng.random(n), 4)


def produce(bootstrap: str, topic: str, n: int) -> float:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        acks=1,
        batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
    )
    base_ms = int(time.time() * 1000) - 60_000
    started = time.perf_counter()
    chunk = 50_000
    for lo in range(0, n, chunk):
        size = min(chunk, n - lo)
        values, country, channel, preds = rows(size, lo)
        table = values.tolist()
        scores = preds.tolist()
        for i in range(size):
            features: dict[str, Any] = dict(zip(NAMES, table[i], strict=True))
            features["country"] = country[i]
            features["channel"] = channel[i]
            event = {
                "model": "fraud",
                "model_version": "3",
                "request_id": f"r{lo + i}",
                "ts": base_ms + (lo + i) // 20,
                "features": features,
                "prediction": scores[i],
                "latency_ms": 12.5,
            }
            producer.send(topic, orjson.dumps(event))
    producer.flush()
    producer.close()
    return time.perf_counter() - started


def batch_of(n: int, seed: int) -> Any:
    """The same rows as a decoded batch (what the window state sees)."""
    from watchkeeper.detectors.column_batch import Column, ColumnBatch

    values, country, channel, preds = rows(n, seed)
    none = np.zeros(n, dtype=bool)
    features = {
        name: Column("numeric", values[:, i].copy(), none, none) for i, name in enumerate(NAMES)
    }
    features["country"] = Column("categorical", np.array(country, dtype=object), none, none)
    features["channel"] = Column("categorical", np.array(channel, dtype=object), none, none)
    return ColumnBatch(
        "fraud",
        "predictions",
        np.arange(n, dtype=np.int64),
        np.full(n, "3", dtype=object),
        np.arange(n, dtype=np.uint64),
        features=features,
        prediction=Column("numeric", preds, none, none),
        latency_ms=np.full(n, 12.5),
    )


def build_reference(path: str) -> None:
    """A reference with segments of country and channel (their K most frequent values),
    its numeric columns cut where its whole reference is."""
    from watchkeeper.detectors.profile import profile_from_window
    from watchkeeper.detectors.segments import SegmentSpec
    from watchkeeper.detectors.window import SketchSettings, WindowSummary

    batch = batch_of(100_000, 10**6)
    first = WindowSummary("fraud", "3", 0, 10**12)
    first.update(batch, np.arange(len(batch)))
    whole = profile_from_window(first)
    # fixed value sets: the K most frequent values of the reference's rows
    counts = {
        name: dict(
            zip(
                *np.unique(batch.features[name].values.astype(str), return_counts=True), strict=True
            )
        )
        for name in SEGMENTS
    }
    fixed = tuple(
        SegmentSpec(
            name,
            K,
            tuple(str(v) for v, _ in sorted(counts[name].items(), key=lambda kv: -kv[1])[:K]),
        )
        for name in SEGMENTS
    )
    edges = {n: p.edges for n, p in whole.features.items() if p.kind == "numeric"}
    settings = SketchSettings(
        bins=lambda model, column: edges.get(column), segments=lambda model: fixed
    )
    w = WindowSummary("fraud", "3", 0, 10**12, settings)
    w.update(batch, np.arange(len(batch)))
    profile_from_window(w, edges=edges).save(path)


def phase(args: argparse.Namespace) -> None:
    from prometheus_client import CollectorRegistry
    from watchkeeper.daemon.ingest.loop import Ingestor
    from watchkeeper.daemon.ingest.metrics import IngestMetrics
    from watchkeeper.daemon.store.store import Store
    from watchkeeper.detectors.profile import ReferenceProfile
    from watchkeeper.detectors.segments import SegmentSpec

    reference = ReferenceProfile.load(args.reference)
    with tempfile.TemporaryDirectory() as workdir:
        config = bench_config(
            args.bootstrap, args.topic, f"sqlite:///{workdir}/b.db", "kafka-python"
        )
        store = Store.open(config.store_url())
        metrics = IngestMetrics(CollectorRegistry(), [args.topic])
        ingestor = Ingestor(config, store, metrics)
        if args.phase == "segments":
            ingestor.references.declared_segments = {
                "fraud": tuple(SegmentSpec(name, K) for name in SEGMENTS)
            }
        ingestor.references.adopt([reference])
        ingestor.open()
        cpu = time.process_time()
        elapsed = consume(ingestor, metrics, {args.topic: args.events})
        cpu = time.process_time() - cpu
        ingestor.close()
        totals = store.totals()
        store.close()
    print(
        json.dumps(
            {"events": totals["events"], "seconds": elapsed, "cpu": cpu, "rss": peak_rss_mb()}
        )
    )


def memory_per_segment() -> tuple[float, float, int]:
    """(bytes held per segment child, stored bytes per child, children) of a window of
    100,000 rows with both segment features, against the same window without."""
    from watchkeeper.detectors.grid_sketch import GridSketch
    from watchkeeper.detectors.profile import ReferenceProfile
    from watchkeeper.detectors.segment_reference import segment_plan
    from watchkeeper.detectors.segments import SegmentSpec
    from watchkeeper.detectors.sketches import NumericSketch
    from watchkeeper.detectors.window import SketchSettings, WindowSummary

    with tempfile.TemporaryDirectory() as tmp:
        build_reference(f"{tmp}/ref.json")
        reference = ReferenceProfile.load(f"{tmp}/ref.json")
    plan = segment_plan([SegmentSpec(n, K) for n in SEGMENTS], [reference])
    edges = {n: p.edges for n, p in reference.features.items() if p.kind == "numeric"}
    if reference.prediction is not None and reference.prediction.edges:
        edges["__prediction__"] = reference.prediction.edges  # as the daemon's bins give
    batch = batch_of(100_000, 7)
    held = []
    for segments in (None, plan):
        settings = SketchSettings(
            bins=lambda model, column: edges.get(column),
            segments=None if segments is None else (lambda model, s=segments: s),
            reservoir_size=0,
        )
        tracemalloc.start()
        w = WindowSummary("fraud", "3", 0, 10**12, settings)
        w.update(batch, np.arange(len(batch)))
        held.append(tracemalloc.get_traced_memory()[0])
        tracemalloc.stop()
    children = [c for s in w.segments.values() for c in s.children.values()]
    stored = np.mean([len(json.dumps(c.to_dict())) for c in children])
    # tracemalloc sees Python's allocations and numpy's (a grid sketch's counts), not the
    # KLL's C++ buffers (a child's latency): add their serialised size
    kll = sum(
        len(sketch.kll_bytes())
        for c in children
        for sketch in [*c.features.values(), c.prediction, c.latency]
        if isinstance(sketch, NumericSketch) and not isinstance(sketch, GridSketch)
    )
    return (held[1] - held[0] + kll) / len(children), float(stored), len(children)


def in_process(events: int, repeat: int) -> tuple[float, float]:
    """Seconds per row (without, with segments) of the window state alone — updates from
    batches of 2,000 rows, one settle and one stored form per 100,000 (a flush), no broker
    or store — best of ``repeat`` alternated runs: the segments' own cost, steadier than
    the whole path's rates on a shared machine."""
    from watchkeeper.daemon.eventtime.windows import settle_windows
    from watchkeeper.detectors.profile import ReferenceProfile
    from watchkeeper.detectors.segment_reference import segment_plan
    from watchkeeper.detectors.segments import SegmentSpec
    from watchkeeper.detectors.window import SketchSettings, WindowSummary

    with tempfile.TemporaryDirectory() as tmp:
        build_reference(f"{tmp}/ref.json")
        reference = ReferenceProfile.load(f"{tmp}/ref.json")
    plan = segment_plan([SegmentSpec(n, K) for n in SEGMENTS], [reference])
    edges = {n: p.edges for n, p in reference.features.items() if p.kind == "numeric"}
    if reference.prediction is not None and reference.prediction.edges:
        edges["__prediction__"] = reference.prediction.edges
    batches = [batch_of(2000, seed) for seed in range(max(1, events // 2000))]
    rows = 2000 * len(batches)

    def run(segments: Any) -> float:
        settings = SketchSettings(
            bins=lambda model, column: edges.get(column),
            segments=None if segments is None else (lambda model: segments),
        )
        started = time.perf_counter()
        window = None
        for i, batch in enumerate(batches):
            if window is None:
                window = WindowSummary("fraud", "3", 0, 10**12, settings)
            window.update(batch, np.arange(len(batch)))
            if (i + 1) % 50 == 0 or i + 1 == len(batches):
                settle_windows([window])
                orjson.dumps(window.to_dict())
                window = None
        return (time.perf_counter() - started) / rows

    best = {"plain": np.inf, "segments": np.inf}
    for name in ("plain", "segments") * repeat:
        best[name] = min(best[name], run(None if name == "plain" else plan))
    return best["plain"], best["segments"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--bootstrap")
    parser.add_argument("--phase", choices=["plain", "segments"])
    parser.add_argument("--topic")
    parser.add_argument("--reference")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each phase (best kept)")
    parser.add_argument("--profile", help="a directory: cProfile each phase into it")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="only the window state's cost per row, without and with segments (no broker)",
    )
    args = parser.parse_args()
    if args.in_process:
        plain, segmented = in_process(args.events, max(args.repeat, 3))
        print(
            f"in-process, best of {max(args.repeat, 3)}: {plain * 1e6:.2f} µs a row without "
            f"segments, {segmented * 1e6:.2f} with: segments add "
            f"{(segmented - plain) * 1e6:.2f} µs a row"
        )
        return
    if args.phase:
        if args.profile:
            import cProfile

            cProfile.runctx("phase(args)", globals(), locals(), f"{args.profile}/{args.phase}.prof")
        else:
            phase(args)
        return
    from watchkeeper.daemon.demo.broker import EmbeddedBroker
    from watchkeeper.daemon.demo.setup import create_topics
    from watchkeeper.detectors.fine_grid import GRID_STEPS

    broker = None
    if args.bootstrap is None:
        broker = EmbeddedBroker().start()
        args.bootstrap = broker.bootstrap
    try:
        topic = f"bench-seg-{uuid.uuid4().hex[:8]}"
        create_topics(args.bootstrap, [topic], 3)
        print(f"producing {args.events:,} events (20 numeric features, country, channel) ...")
        seconds = produce(args.bootstrap, topic, args.events)
        print(f"  produced in {seconds:.1f}s ({args.events / seconds:,.0f}/s)")
        with tempfile.TemporaryDirectory() as tmp:
            reference = f"{tmp}/ref.json"
            build_reference(reference)
            rates: dict[str, float] = {}
            cpu_us: dict[str, float] = {}
            # alternated, best of --repeat each: the machine is shared, so one slow run
            # of either phase would decide the ratio
            for name in ("plain", "segments") * args.repeat:
                out = subprocess.run(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "--phase",
                        name,
                        "--bootstrap",
                        args.bootstrap,
                        "--topic",
                        topic,
                        "--reference",
                        reference,
                        "--events",
                        str(args.events),
                        *(["--profile", args.profile] if args.profile else []),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                r = json.loads(out.stdout.strip().splitlines()[-1])
                assert r["events"] == args.events, f"{name}: {r['events']} stored"
                rate = r["events"] / r["seconds"]
                rates[name] = max(rates.get(name, 0.0), rate)
                # CPU seconds of the ingest process (every thread): what the segments add,
                # less at the mercy of other processes on a shared machine than wall time
                cpu_us[name] = min(cpu_us.get(name, np.inf), r["cpu"] / r["events"] * 1e6)
                label = "without segments" if name == "plain" else f"segments {SEGMENTS}, K={K}"
                print(
                    f"ingest {label:<36} {r['events']:>9,} events in {r['seconds']:6.2f}s = "
                    f"{rate:>9,.0f} events/s, peak RSS {r['rss']:.0f} MB"
                )
        ratio = rates["segments"] / rates["plain"]
        print(
            f"best of {args.repeat}: {rates['plain']:,.0f} vs {rates['segments']:,.0f} events/s; "
            f"with segments / without = {ratio:.2f}  (goal >= 0.8)"
        )
        print(
            f"CPU, best of {args.repeat}: {cpu_us['plain']:.2f} vs {cpu_us['segments']:.2f} µs "
            f"an event; segments add {cpu_us['segments'] - cpu_us['plain']:.2f} µs "
            f"(ratio {cpu_us['plain'] / cpu_us['segments']:.2f})"
        )
        held, stored, children = memory_per_segment()
        print(
            f"memory per segment (22 columns: 21 grid sketches, {GRID_STEPS} steps per "
            "reference bin, and the latency's KLL): "
            f"{held / 1024:.1f} KiB held, {stored / 1024:.1f} KiB stored, "
            f"{children} segments per window"
        )
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
