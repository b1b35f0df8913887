"""The loop thread's cost per event, stage by stage, without Kafka (issue 14).

Builds ``--events`` of the ingest benchmark's events (20 numeric features) as
kafka-python ``ConsumerRecord``s in polls of 3 × 6,667 (what watchkeeper's kafka-python
source hands the loop: a ``RecordRun`` per partition where the source makes one), runs
the real :class:`~watchkeeper.daemon.ingest.loop.Ingestor` over them through the ingest
benchmark's ``ReplaySource`` into a SQLite store, and times each stage where it runs
(``time.perf_counter`` around the named functions; nested stages are indented and
included in their parent). With ``--inline`` the parse runs on the loop's thread (no
prefetch worker): one thread, so each stage's time is its CPU and every stage but
Arrow's ``read_json`` holds the GIL — the "b" of README Performance's ceiling
a / (a + b). Runs against any checkout: ``cd /work/main && .venv/bin/python
/path/to/bench_stages.py`` times main's code.

Run: ``python tests/benchmarks/bench_stages.py [--events N] [--inline] [--slice N]``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).parent))
import bench_ingest as bench

TOPIC = "bench"
POLL_PER_PARTITION = 6_667  # max_poll_records 20,000 over 3 partitions


def polls_of(n: int) -> list[dict[Any, Any]]:
    from kafka.consumer.fetcher import ConsumerRecord

    wrap: Any = list
    try:  # the source's own wrapping, where this checkout has one
        from watchkeeper.daemon.ingest import record_run

        wrap = record_run.RecordRun
    except ImportError:
        pass
    rng = np.random.default_rng(1)
    base_ms = int(time.time() * 1000) - 60_000
    values = np.round(rng.normal(size=(n, bench.FEATURES)), 4).tolist()
    preds = np.round(rng.random(n), 4).tolist()
    parts: dict[int, list[Any]] = {p: [] for p in range(3)}
    for j in range(n):
        value = orjson.dumps(
            {
                "model": "fraud",
                "model_version": "3",
                "request_id": f"r{j}",
                "ts": base_ms + j // 20,
                "features": dict(zip(bench.NAMES, values[j], strict=True)),
                "prediction": preds[j],
                "latency_ms": 12.5,
            }
        )
        p = j % 3
        off = len(parts[p])
        parts[p].append(
            ConsumerRecord(
                TOPIC, p, -1, off, base_ms + j, 0, None, value, [], None, -1, len(value), -1
            )
        )
    return [
        {(TOPIC, p): wrap(parts[p][lo : lo + POLL_PER_PARTITION]) for p in range(3)}
        for lo in range(0, (n + 2) // 3, POLL_PER_PARTITION)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--inline", action="store_true", help="no prefetch worker")
    parser.add_argument("--slice", type=int, help="the loop's PROCESS_SLICE (default: its own)")
    args = parser.parse_args()

    from prometheus_client import CollectorRegistry
    from watchkeeper.daemon.eventtime import windows as windows_module
    from watchkeeper.daemon.ingest import columnar_decode, decode, loop
    from watchkeeper.daemon.ingest.loop import Ingestor
    from watchkeeper.daemon.ingest.metrics import IngestMetrics
    from watchkeeper.daemon.store.store import Store
    from watchkeeper.detectors import sketches, window

    n = args.events
    polls = polls_of(n)
    workdir = tempfile.mkdtemp()
    config = bench.bench_config("127.0.0.1:1", TOPIC, f"sqlite:///{workdir}/b.db", "kafka-python")
    store = Store.open(config.store_url())
    metrics = IngestMetrics(CollectorRegistry(), [TOPIC])
    ingestor = Ingestor(config, store, metrics, source=lambda _c: bench.ReplaySource(polls))
    ingestor.open()
    if args.inline and ingestor._prefetch is not None:
        ingestor._prefetch.close()
        ingestor._prefetch = None
    if args.slice:
        loop.PROCESS_SLICE = args.slice
    loop_thread = threading.get_ident()
    spent: dict[str, float] = defaultdict(float)

    def timed(owner: Any, name: str, label: str) -> None:
        inner: Callable[..., Any] = getattr(owner, name)

        def wrapper(*a: Any, **k: Any) -> Any:
            key = label if threading.get_ident() == loop_thread else f"worker: {label.strip()}"
            t = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                spent[key] += time.perf_counter() - t

        setattr(owner, name, wrapper)

    decoder = ingestor.decoders[TOPIC]
    columnar = decoder.columnar
    assert columnar is not None
    timed(ingestor, "_process_locked", "a slice's processing (all)")
    timed(decoder, "decode", "  decode")
    timed(columnar, "_parse", "    Arrow parse (values, join, read_json)")
    timed(columnar, "_decode", "    columnar tail")
    timed(columnar_decode, "_texts", "      model / version / request id text")
    timed(columnar, "_timestamps", "      event time")
    timed(columnar, "_build", "      numbers to numpy, kinds")
    timed(columnar_decode, "offsets_of", "      offsets")
    timed(columnar_decode, "record_keys", "      record keys")
    timed(columnar.admission, "check", "      admission")
    timed(loop, "bytes_of", "  byte count")
    timed(ingestor.time.clocks, "event_watermarks", "  event watermarks")
    timed(ingestor.windows, "summarise", "  summarise")
    timed(window.WindowSummary, "update", "    window update (sketches, sample)")
    timed(sketches.NumericSketch, "_keep", "      exact buffer / KLL update")
    timed(ingestor, "flush", "commit (flush)")
    del decode, windows_module  # imported for their side: the modules are loaded

    gc.collect()
    gc.freeze()
    started, cpu, loop_cpu = time.perf_counter(), time.process_time(), time.thread_time()
    while metrics.records.labels(TOPIC)._value.get() < n:
        ingestor.step()
    ingestor.flush()
    wall = time.perf_counter() - started
    cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
    ingestor.close()
    store.close()
    us = 1e6 / n
    mode = "inline" if args.inline else "parse on the prefetch worker"
    print(
        f"{n:,} events, {mode}: {n / wall:,.0f} events/s; µs an event: wall {wall * us:.2f}, "
        f"process CPU {cpu * us:.2f}, loop thread CPU {loop_cpu * us:.2f}; "
        f"pandas imported: {'pandas' in sys.modules}"
    )
    order = [
        "a slice's processing (all)",
        "  decode",
        "    Arrow parse (values, join, read_json)",
        "    columnar tail",
        "      model / version / request id text",
        "      event time",
        "      numbers to numpy, kinds",
        "      offsets",
        "      record keys",
        "      admission",
        "  byte count",
        "  event watermarks",
        "  summarise",
        "    window update (sketches, sample)",
        "      exact buffer / KLL update",
        "commit (flush)",
    ]
    for label in order + sorted(k for k in spent if k.startswith("worker")):
        if label in spent:
            print(f"  {label:48s} {spent[label] * us:6.2f}")


if __name__ == "__main__":
    main()
