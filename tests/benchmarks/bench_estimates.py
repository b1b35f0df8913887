"""Performance-estimate benchmark: window-state updates and estimates from stored state.

0. The daemon's whole ingest path (consume from the embedded broker, decode, window
   state, commit to a SQLite store) for a binary classifier's prediction events with 20
   numeric features, with estimation off and on (the reference's estimation in force, so
   every prediction batch updates the estimate state too): events/s of each, best of two
   runs each in their own process, and the ratio on / off (goal ≥ 0.9).
1. Updating the estimate sketches per 100,000 rows (batches of 10,000, as ingest hands
   them over), against the existing per-window update of the same rows (a
   ``WindowSummary`` of 20 numeric features + the score): the ratio is what estimation
   adds to the window-state part of ingest. Binary (step counts), multiclass (3 classes,
   fixed-point sums) and regression (the exported loss models, 20 features).
2. Computing the estimates of one window from its stored state (JSON → sketch →
   metrics + bands), for windows of 1,000 and 1,000,000 events: the cost depends on the
   number of calibrator steps, not on the events.
3. With ``--libraries``: the loss-model library choice, scikit-learn's
   HistGradientBoostingRegressor against LightGBM (if installed): fit time, accuracy of
   the estimated MAE on held-out windows, and installed size.

Run: ``python tests/benchmarks/bench_estimates.py [--ingest-events N] [--libraries]``
(``make bench``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.estimate_sketch import estimate_sketch_from_dict
from watchkeeper.detectors.estimation_reference import (
    Estimation,
    fit_binary_estimation,
    fit_multiclass_estimation,
    fit_regression_estimation,
)
from watchkeeper.detectors.loss_sketch import LossSketch
from watchkeeper.detectors.reservoir import record_keys
from watchkeeper.detectors.window import SketchSettings, WindowSummary

ROWS = 100_000
BATCH = 10_000
FEATURES = 20


def best(fn: Callable[[], Any], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def window_batches(x: np.ndarray, score: np.ndarray) -> list[ColumnBatch]:
    out = []
    for lo in range(0, len(score), BATCH):
        n = min(BATCH, len(score) - lo)
        no = np.zeros(n, dtype=bool)
        out.append(
            ColumnBatch(
                model="m",
                role="predictions",
                ts_ms=np.full(n, 1_000, dtype=np.int64),
                versions=np.array(["1"] * n, dtype=object),
                keys=record_keys(0, 0, np.arange(lo, lo + n)),
                features={
                    f"f{j:02d}": Column("numeric", x[lo : lo + n, j], no, no)
                    for j in range(FEATURES)
                },
                prediction=Column("numeric", score[lo : lo + n], no, no),
            )
        )
    return out


def bench_updates(rng: np.random.Generator) -> dict[str, float]:
    x = rng.normal(size=(ROWS, FEATURES))
    z = x[:, 0] - 0.5 * x[:, 1]
    score = sigmoid(2 * z)
    y = rng.random(ROWS) < sigmoid(z)
    binary = fit_binary_estimation(score, y)
    logits = np.column_stack([x[:, 0], x[:, 1], -x[:, 0] - x[:, 1]])
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array(["a", "b", "c"])[
        (rng.random(ROWS)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    ]
    multi = fit_multiclass_estimation(probs, labels, ("a", "b", "c"))
    pred = x[:, 0] + x[:, 1]
    target = pred + rng.normal(size=ROWS) * (0.5 + np.abs(x[:, 2]))
    columns = {f"f{j:02d}": x[:, j] for j in range(FEATURES)}
    regression = fit_regression_estimation(
        {k: v[:20_000] for k, v in columns.items()}, pred[:20_000], target[:20_000]
    )
    batches = window_batches(x, score)
    idx = np.arange(BATCH)

    def window_update() -> None:
        summary = WindowSummary("m", "1", 0, 60_000, SketchSettings(reservoir_size=0))
        for b in batches:
            summary.update(b, idx[: len(b)])

    def binary_update() -> None:
        sketch = binary.new_sketch()
        for lo in range(0, ROWS, BATCH):
            sketch.update(binary.calibrator, score[lo : lo + BATCH])  # type: ignore[arg-type]

    def multi_update() -> None:
        sketch = multi.new_sketch()
        for lo in range(0, ROWS, BATCH):
            sketch.update(multi.calibrator, probs[lo : lo + BATCH])  # type: ignore[arg-type]

    def loss_update() -> None:
        sketch = regression.new_sketch()
        assert isinstance(sketch, LossSketch)
        for lo in range(0, ROWS, BATCH):
            part = {k: v[lo : lo + BATCH] for k, v in columns.items()}
            sketch.update(regression.model, part, pred[lo : lo + BATCH])  # type: ignore[arg-type]

    base = best(window_update)
    out = {"window_update_s": base}
    for name, fn in (("binary", binary_update), ("multiclass", multi_update)):
        out[f"{name}_s"] = best(fn)
    out["regression_s"] = best(loss_update, repeat=2)
    trees = regression.model.fit["trees"]  # type: ignore[union-attr]
    print(f"\n1. window-state update per {ROWS:,} rows (batches of {BATCH:,}), best of 5")
    print(f"   existing WindowSummary.update, {FEATURES} features + score: {base * 1e3:8.1f} ms")
    for name, what in (
        ("binary", f"binary step counts ({binary.calibrator.steps} steps)"),
        ("multiclass", "multiclass, 3 classes (fixed-point sums)"),
        ("regression", f"loss models, {FEATURES} features + prediction ({trees} trees)"),
    ):
        t = out[f"{name}_s"]
        print(
            f"   + {what:<52} {t * 1e3:8.1f} ms  ratio {t / base:6.3f}"
            f"  (ingest with / without ≈ {base / (base + t):.3f})"
        )
    return out


def bench_reading(rng: np.random.Generator) -> None:
    s = rng.random(50_000)
    est = fit_binary_estimation(s, rng.random(50_000) < s)
    logits = rng.normal(size=(30_000, 3))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array(["a", "b", "c"])[rng.integers(0, 3, 30_000)]
    multi = fit_multiclass_estimation(probs, labels, ("a", "b", "c"))
    print("\n2. estimates of one window from its stored state (JSON → sketch → all metrics)")
    for name, reference, make in (
        ("binary", est, lambda n: rng.random(n)),
        ("multiclass", multi, lambda n: rng.dirichlet([1, 1, 1], n)),
    ):
        for events in (1_000, 1_000_000):
            sketch = reference.new_sketch()
            sketch.update(reference.calibrator, make(events))  # type: ignore[arg-type]
            stored = json.dumps(sketch.to_dict())

            def read(stored: str = stored, reference: Estimation = reference) -> None:
                window = estimate_sketch_from_dict(json.loads(stored))
                assert len(reference.estimate_all(window)) == len(reference.metrics)

            t = statistics.median(best(read, repeat=1) for _ in range(50))
            print(
                f"   {name:<10} {events:>9,} events: {t * 1e6:8.0f} µs"
                f"  ({len(reference.metrics)} metrics, {len(stored):,} bytes stored)"
            )


def bench_libraries(rng: np.random.Generator) -> None:
    """Loss-model library: fit time, estimated-MAE accuracy, installed size."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    n = 50_000
    x = rng.normal(size=(n, FEATURES))
    pred = x[:, 0] + x[:, 1]
    err = rng.normal(size=n) * (0.5 + np.abs(x[:, 2]) + (x[:, 3] > 1))
    target = np.abs(err)
    train, test = slice(0, 40_000), slice(40_000, None)
    features = np.column_stack([x, pred])
    params = {"max_iter": 50, "max_leaf_nodes": 15, "learning_rate": 0.1}
    candidates: dict[str, Callable[[], Any]] = {
        "scikit-learn HistGradientBoostingRegressor": lambda: HistGradientBoostingRegressor(
            random_state=0, **params
        ).fit(features[train], target[train])
    }
    try:
        import lightgbm

        candidates["LightGBM LGBMRegressor"] = lambda: lightgbm.LGBMRegressor(
            n_estimators=50, num_leaves=15, learning_rate=0.1, verbose=-1, random_state=0
        ).fit(features[train], target[train])
    except ImportError:
        print("   (LightGBM not installed: `pip install lightgbm` to compare)")
    print("\n3. loss-model library (50,000 rows, 21 columns, 50 trees of 15 leaves)")
    windows = np.array_split(np.arange(40_000, n), 10)
    for name, fit in candidates.items():
        started = time.perf_counter()
        model = fit()
        seconds = time.perf_counter() - started
        hat = model.predict(features[test])
        rmse_row = math.sqrt(float(np.mean((hat - target[test]) ** 2)))
        gaps = [abs(model.predict(features[w]).mean() - target[w].mean()) for w in windows]
        print(
            f"   {name:<44} fit {seconds:6.2f} s  per-row RMSE {rmse_row:.4f}"
            f"  |est − real| MAE per 1k window: mean {np.mean(gaps):.4f}"
        )
    for dist in ("sklearn", "scipy", "joblib", "threadpoolctl", "lightgbm"):
        size = _installed_mb(dist)
        if size is not None:
            print(f"   installed: {dist:<14} {size:6.1f} MB")


def _installed_mb(package: str) -> float | None:
    try:
        module = __import__(package)
    except ImportError:
        return None
    path = Path(module.__file__ or "")
    if path.name != "__init__.py":  # a single-module distribution
        return path.stat().st_size / 1e6
    root = path.parent
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    libs = root.parent / f"{package}.libs"  # wheels' vendored shared libraries
    if libs.is_dir():
        total += sum(p.stat().st_size for p in libs.rglob("*") if p.is_file())
    return total / 1e6


def ingest_phase(bootstrap: str, topic: str, n: int, mode: str) -> dict[str, float]:
    """One ingest run in this process: events/s, with no estimation in force (``off``), a
    binary calibrator (``on``) or a regressor's loss models (``regression``)."""
    import sys
    import tempfile

    from prometheus_client import CollectorRegistry
    from watchkeeper.daemon.ingest.loop import Ingestor
    from watchkeeper.daemon.ingest.metrics import IngestMetrics
    from watchkeeper.daemon.store.store import Store

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_ingest import NAMES, bench_config, consume

    with tempfile.TemporaryDirectory() as workdir:
        config = bench_config(bootstrap, topic, f"sqlite:///{workdir}/bench.db", "kafka-python")
        store = Store.open(config.store_url())
        metrics = IngestMetrics(CollectorRegistry(), [topic])
        ingestor = Ingestor(config, store, metrics)
        estimation = mode != "off"
        rng = np.random.default_rng(3)
        if mode == "on":
            s = rng.random(50_000)
            ingestor.references.replace(
                {}, {"fraud": fit_binary_estimation(s, rng.random(s.size) < s)}
            )
        elif mode == "regression":  # the same events, read as a regressor's
            x = np.round(rng.normal(size=(20_000, len(NAMES))), 4)
            pred = np.round(rng.random(20_000), 4)
            target = pred + rng.normal(size=pred.size) * (0.5 + np.abs(x[:, 2]))
            columns = {name: x[:, j] for j, name in enumerate(NAMES)}
            ingestor.references.replace(
                {}, {"fraud": fit_regression_estimation(columns, pred, target)}
            )
        ingestor.open()
        elapsed = consume(ingestor, metrics, {topic: n})
        ingestor.close()
        windows = store.windows("fraud")
        estimated = sum(
            sketch.n for w in windows for sketch in w.summary.estimates.sketches.values()
        )
        events = store.totals()["events"]
        store.close()
    if estimation:
        assert estimated == events, f"{estimated} of {events} predictions estimated"
    return {"events": events, "seconds": elapsed, "estimated": estimated}


def bench_ingest_path(events: int) -> None:
    import subprocess
    import sys
    import uuid

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_ingest import produce
    from watchkeeper.daemon.demo.broker import EmbeddedBroker
    from watchkeeper.daemon.demo.setup import create_topics

    broker = EmbeddedBroker().start()
    try:
        topic = f"bench-est-{uuid.uuid4().hex[:8]}"
        create_topics(broker.bootstrap, [topic], 3)
        print(f"\n0. ingest path, {events:,} prediction events (20 features, a score P(1))")
        produce(broker.bootstrap, topic, events)
        rates: dict[str, list[float]] = {"off": [], "on": [], "regression": []}
        for _ in range(2):
            for mode in rates:
                out = subprocess.run(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "--ingest-phase",
                        mode,
                        "--bootstrap",
                        broker.bootstrap,
                        "--topic",
                        topic,
                        "--ingest-events",
                        str(events),
                    ],
                    check=False,
                    capture_output=True,
                    text=True,
                )
                if out.returncode:
                    raise RuntimeError(f"ingest phase {mode} failed:\n{out.stderr[-3000:]}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                assert r["events"] == events, f"ingest {mode} stored {r['events']} events"
                rates[mode].append(r["events"] / r["seconds"])
        off, on, regression = (max(rates[m]) for m in ("off", "on", "regression"))
        for mode, rate in (("off", off), ("on", on), ("regression", regression)):
            runs = ", ".join(f"{r:,.0f}" for r in rates[mode])
            print(f"   estimation {mode + ':':<11} {rate:>10,.0f} events/s   (runs: {runs})")
        print(f"   on / off = {on / off:.3f}  (goal >= 0.9)")
        print(f"   regression (loss models) / off = {regression / off:.3f}")
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--libraries", action="store_true", help="compare loss-model libraries")
    parser.add_argument("--ingest-events", type=int, default=300_000)
    parser.add_argument(
        "--ingest-phase", choices=["off", "on", "regression"], help=argparse.SUPPRESS
    )
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ingest_phase:
        result = ingest_phase(args.bootstrap, args.topic, args.ingest_events, args.ingest_phase)
        print(json.dumps(result))
        return
    rng = np.random.default_rng(1)
    if args.ingest_events:
        bench_ingest_path(args.ingest_events)
    bench_updates(rng)
    bench_reading(rng)
    if args.libraries:
        bench_libraries(rng)


if __name__ == "__main__":
    main()
