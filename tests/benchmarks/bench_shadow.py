"""Shadow-evaluation benchmark: ingest throughput with and without one candidate at 10 %
sampling on a 20-feature model — and with feature attributions on at their default
sampling — in one run, and INT8 vs FP32 offline latency.

1. builds a 20-feature MLP classifier (scikit-learn → skl2onnx) and its dynamic INT8
   candidate with ``watchkeeper compress``'s code, and prints their offline latency;
2. produces ``--events`` prediction events into the embedded Tansu broker;
3. (a) watchkeeper ingestion alone; (b) the same with the shadow evaluator running the
   candidate on 10 % of rows (its worker at the default ``max_cpu_share``), attributions
   off; (c) as (b) with attributions on at the defaults (1 % of the shadow rows, at most
   200 per window and candidate, half the shadow CPU budget; background: the first 50
   live rows, as the policy names no reference);
4. runs the three phases ``--rounds`` times (5), (b) (a) (c) then (c) (a) (b), each
   phase in its own process: one 3-second phase is short beside the load changes of a
   shared machine, so a single (a) against a single (c) measures the neighbours as much
   as attribution;
5. prints per phase the rate, the CPU seconds of each thread of the process
   (``/proc/self/task/*/stat``) and the load average, the rows the candidate ran on and
   dropped, and in (c) the rows attributed, skipped for the budget, and the shadow
   worker's CPU time per attributed row (both models) as the daemon counts it; then
   each round's ratios (b)/(a) and (c)/(a) — a round's phases run back to back — and
   their medians (goal ≥ 0.8 each).

Run: ``make bench`` or ``python tests/benchmarks/bench_shadow.py [--events N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.bench_ingest import (
    FEATURES,
    NAMES,
    bench_config,
    consume,
    peak_rss_mb,
    produce,
)

POLICY = """\
model: fraud
rules: [{metric: shadow_agreement, critical: 0.9}]
shadow:
  task: classification
  inputs: {features: [%s]}
  outputs: {label: label, probabilities: probabilities}
  baseline: ../fp32.onnx
  sample_rate: 0.1
  attributions: {enabled: %s}
  candidates: [{name: int8, onnx: ../fp32.int8-dynamic.onnx}]
"""
PHASES = ("plain", "shadow", "attributions")
TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, by thread name
    (Python's names for Python threads, the kernel's ``comm`` for the others), from
    ``/proc/self/task/*/stat``."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
        name = names.get(int(task.name), comm)
        out[name] = out.get(name, 0.0) + seconds
    return out


def build_models(folder: Path) -> dict[str, float]:
    from skl2onnx import to_onnx
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from watchkeeper.daemon.config_shadow import ShadowConfig
    from watchkeeper.daemon.shadow.compress import compress, table
    from watchkeeper.policies.shadow import Inputs, Outputs

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, FEATURES)).astype(np.float32)
    y = (x[:, :5].sum(axis=1) > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(128, 64), max_iter=30, random_state=0).fit(x, y)
    source = folder / "fp32.onnx"
    source.write_bytes(to_onnx(clf, x[:1], options={"zipmap": False}).SerializeToString())
    for name, enabled in (("shadow", "false"), ("attributions", "true")):
        (folder / name).mkdir()
        (folder / name / "fraud.yaml").write_text(POLICY % (", ".join(NAMES), enabled))
    results = compress(
        source,
        folder,
        x[:1000],
        Inputs(features=tuple(NAMES)),
        "classification",
        Outputs(label="label", probabilities="probabilities"),
        ShadowConfig(),
        variants=("int8-dynamic",),
        repeats=200,
    )
    rows = {r["variant"]: r for r in table(results)}
    return {
        "fp32_batch_ms": rows["fp32"]["batch_ms"],
        "int8_batch_ms": rows["int8-dynamic"]["batch_ms"],
        "fp32_row_ms": rows["fp32"]["row_ms"],
        "int8_row_ms": rows["int8-dynamic"]["row_ms"],
        "agreement": rows["int8-dynamic"]["agreement"],
    }


def phase(bootstrap: str, topic: str, n: int, folder: str, name: str) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry
    from watchkeeper.daemon.ingest.loop import Ingestor
    from watchkeeper.daemon.ingest.metrics import IngestMetrics
    from watchkeeper.daemon.shadow.evaluator import ShadowEvaluator
    from watchkeeper.daemon.shadow.store import ShadowStore
    from watchkeeper.daemon.store.store import Store
    from watchkeeper.policies.loader import load_all

    url = f"sqlite:///{folder}/bench-{uuid.uuid4().hex[:6]}.db"
    config = bench_config(bootstrap, topic, url, "kafka-python")
    store = Store.open(config.store_url())
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry, [topic])
    evaluator = None
    if name != "plain":
        settings = config.shadow.model_copy(update={"model_dirs": (folder,)})
        evaluator = ShadowEvaluator(
            settings, ShadowStore(store.engine), config.kafka.group_id, 300_000, registry
        )
        loaded = load_all([str(Path(folder) / name)])
        assert loaded.ok, loaded.errors
        evaluator.configure({p.policy.key: p for p in loaded.policies})
        evaluator.start()
    ingestor = Ingestor(config, store, metrics, shadow=evaluator)
    ingestor.open()
    before = thread_cpu()
    elapsed = consume(ingestor, metrics, {topic: n})
    after = thread_cpu()
    ingestor.close()
    cpu = {k: v - before.get(k, 0.0) for k, v in after.items()}
    out: dict[str, Any] = {"events": store.totals()["events"], "seconds": elapsed}
    out["cpu_s"] = {k: round(v, 2) for k, v in sorted(cpu.items()) if v > 0.005}
    out["load"] = os.getloadavg()[0]
    if evaluator is not None:
        evaluator.close()
        rows = ShadowStore(store.engine).stats("fraud", 0, 2**62).get("int8")
        out["shadow_rows"] = rows.rows if rows else 0
        out["shadow_dropped"] = rows.dropped if rows else 0
        labels = {"model": "fraud", "candidate": "int8"}
        attributed = registry.get_sample_value("watchkeeper_shadow_attributed_rows_total", labels)
        skipped = registry.get_sample_value(
            "watchkeeper_shadow_attribution_skipped_rows_total", labels
        )
        seconds = sum(
            registry.get_sample_value(
                "watchkeeper_shadow_attribution_seconds_total",
                {"model": "fraud", "explained": side},
            )
            or 0.0
            for side in ("production", "int8")
        )
        out["attributed"] = attributed or 0.0
        out["attribution_skipped"] = skipped or 0.0
        out["attribution_seconds"] = seconds
    store.close()
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def events_per_s(r: dict[str, Any]) -> float:
    return float(r["events"] / r["seconds"])


def run_phase(args: argparse.Namespace, topic: str, folder: str, name: str) -> dict[str, Any]:
    """One phase in its own process (a fresh group, store and evaluator)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", name]
    cmd += ["--bootstrap", args.bootstrap, "--topic", topic]
    cmd += ["--events", str(args.events), "--folder", folder]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"phase {name} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def report(name: str, r: dict[str, Any]) -> None:
    extra = ""
    if name != "plain":
        extra = f", candidate ran on {r['shadow_rows']:,} rows, dropped {r['shadow_dropped']:,}"
    if name == "attributions":
        per_row = r["attribution_seconds"] / max(1.0, r["attributed"]) * 1000
        extra += (
            f"; attributed {r['attributed']:,.0f} rows, skipped "
            f"{r['attribution_skipped']:,.0f} (budget), {per_row:.2f} ms of worker CPU per "
            "attributed row (production + candidate)"
        )
    threads = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_s"].items())
    extra += f"\n      CPU s by thread: {threads}; load average {r['load']:.2f}"
    print(
        f"  ({'abc'[PHASES.index(name)]}) {name:<12} {r['events']:>9,} events in "
        f"{r['seconds']:.2f}s = {events_per_s(r):>9,.0f}/s, peak RSS "
        f"{r['peak_rss_mb']:.0f} MB{extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="rounds of the three phases (the median of their ratios is reported)",
    )
    parser.add_argument("--bootstrap")
    parser.add_argument("--phase", choices=PHASES)
    parser.add_argument("--topic")
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.phase:
        result = phase(args.bootstrap, args.topic, args.events, args.folder, args.phase)
        print(json.dumps(result))
        return

    from watchkeeper.daemon.demo.broker import EmbeddedBroker
    from watchkeeper.daemon.demo.setup import create_topics

    broker = None
    if args.bootstrap is None:
        broker = EmbeddedBroker().start()
        args.bootstrap = broker.bootstrap
    try:
        with tempfile.TemporaryDirectory() as folder:
            offline = build_models(Path(folder))
            print(
                f"offline, 256-row batch: FP32 {offline['fp32_batch_ms']:.3f} ms, INT8 "
                f"{offline['int8_batch_ms']:.3f} ms → ratio "
                f"{offline['int8_batch_ms'] / offline['fp32_batch_ms']:.2f}; one row: FP32 "
                f"{offline['fp32_row_ms']:.3f} ms, INT8 {offline['int8_row_ms']:.3f} ms → "
                f"{offline['int8_row_ms'] / offline['fp32_row_ms']:.2f}; agreement "
                f"{offline['agreement']:.4f}"
            )
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            create_topics(args.bootstrap, [topic], 3)
            print(f"producing {args.events:,} events ({FEATURES} numeric features) ...")
            produce(args.bootstrap, topic, args.events)
            runs: dict[str, list[dict[str, Any]]] = {n: [] for n in PHASES}
            for round_ in range(args.rounds):
                # plain in the middle, so each of the others runs right beside it; the
                # two others swap places every round, so a drift in the machine's load
                # does not always fall on the same one
                order = ("shadow", "plain", "attributions")[:: 1 if round_ % 2 == 0 else -1]
                print(f"round {round_ + 1} of {args.rounds}:")
                for name in order:
                    runs[name].append(r := run_phase(args, topic, folder, name))
                    report(name, r)
            for label, name in (("(b)/(a)", "shadow"), ("(c)/(a)", "attributions")):
                # each round's own ratio: its two phases ran back to back, under (nearly)
                # the same load from the rest of the machine
                ratios = [
                    events_per_s(c) / events_per_s(a)
                    for a, c in zip(runs["plain"], runs[name], strict=True)
                ]
                each = ", ".join(f"{r:.2f}" for r in ratios)
                goal = "goal ≥ 0.8" + (", attributions at the defaults" if name != "shadow" else "")
                print(
                    f"ratio {label} = {statistics.median(ratios):.2f}: the median of the "
                    f"rounds' {each}  ({goal})"
                )
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
