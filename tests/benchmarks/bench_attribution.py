"""What explanation consistency and A/B intervals cost: attributions per sampled row on a
small MLP run by ONNX Runtime, against shap's PermutationExplainer on the same session, and
the sequential-interval update and query.

For d = 5, 20, 50 features and background sizes 25, 50, 100 this prints, per explained row:
the model rows our explainer runs (its stated cost), its predict calls, the wall time,
the time ONNX Runtime alone needs for that many rows (the floor), and shap 0.51's
PermutationExplainer time at the same number of orderings with the same background (its
first call, which compiles numba kernels, is left out). ONNX Runtime runs on one thread
(``shadow.intra_op_threads`` default), as the shadow evaluator runs it.

Run: ``python tests/benchmarks/bench_attribution.py`` (``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from watchkeeper.detectors.attribution import AttributionComparison, AttributionSummary
from watchkeeper.detectors.sequential import MeanStats, SequentialDifference
from watchkeeper.detectors.shapley import ShapleyExplainer

HIDDEN = (32, 16)
PERMUTATIONS = 10  # the default: 5 orderings, each with its reverse


def onnx_mlp(d: int, seed: int = 0) -> Any:
    """An MLP d → 32 → 16 → 1 (ReLU, ReLU, sigmoid) as an ONNX Runtime session."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    sizes = [d, *HIDDEN, 1]
    nodes, inits, last = [], [], "x"
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        w = rng.normal(0, 1 / math.sqrt(a), (a, b)).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(rng.normal(0, 0.1, b).astype(np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("MatMul", [last, f"w{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
        ]
        act = "Relu" if i < len(sizes) - 2 else "Sigmoid"
        nodes.append(helper.make_node(act, [f"a{i}"], [f"h{i}"]))
        last = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, d])],
        [helper.make_tensor_value_info(last, TensorProto.FLOAT, [None, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    return session, last


class Probe:
    def __init__(self, session: Any, output: str) -> None:
        self.session, self.output, self.calls, self.rows = session, output, 0, 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.rows += len(x)
        return self.session.run([self.output], {"x": x.astype(np.float32, copy=False)})[0][:, 0]


def timed(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def shap_time(session: Any, output: str, background: np.ndarray, x: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import shap

    def f(z: np.ndarray) -> np.ndarray:
        return session.run([output], {"x": z.astype(np.float32)})[0][:, 0]

    d = x.shape[1]
    masker = shap.maskers.Independent(background, max_samples=len(background))
    explainer = shap.explainers.Permutation(f, masker, seed=0)
    evals = PERMUTATIONS // 2 * (2 * d + 1)
    explainer(x[:1], max_evals=evals, silent=True)  # numba compiles its kernels here
    return timed(lambda: explainer(x, max_evals=evals, silent=True), repeat=1) / len(x)


def bench_attribution(quick: bool) -> None:
    rows = 4 if quick else 16
    print("attributions per explained row (ONNX MLP d→32→16→1, 1 thread, 10 orderings)")
    print(
        f"{'d':>3} {'bg':>4} {'method':>11} {'model rows':>11} {'calls':>6} "
        f"{'ours ms':>8} {'ORT floor ms':>12} {'shap ms':>8} {'shap/ours':>9}"
    )
    for d in (5, 20, 50):
        session, output = onnx_mlp(d)
        rng = np.random.default_rng(d)
        for m in (25, 50, 100):
            background = rng.normal(size=(m, d)).astype(np.float32)
            x = rng.normal(size=(rows, d)).astype(np.float32)
            probe = Probe(session, output)
            explainer = ShapleyExplainer(probe, background, permutations=PERMUTATIONS)
            explainer.base_value()
            keys = np.arange(rows, dtype=np.uint64)
            ours = timed(lambda e=explainer, k=keys, x=x: e.explain(x, k)) / rows
            probe.calls = probe.rows = 0
            explainer.explain(x, keys)
            per_row = explainer.model_rows_per_row()
            calls = probe.calls / rows
            big = np.repeat(x, max(1, per_row // rows + 1), axis=0)[:per_row]
            floor = timed(lambda b=big, s=session, o=output: s.run([o], {"x": b}))
            theirs = shap_time(session, output, background, x[: max(2, rows // 4)])
            print(
                f"{d:>3} {m:>4} {explainer.method:>11} {per_row:>11,} {calls:>6.2f} "
                f"{ours * 1e3:>8.2f} {floor * 1e3:>12.2f} {theirs * 1e3:>8.1f} "
                f"{theirs / ours:>9.1f}"
            )


def bench_sequential() -> None:
    print("\nsequential intervals")
    rng = np.random.default_rng(0)
    errors = rng.exponential(1.0, 1_000_000)
    hits = rng.random(1_000_000) < 0.9
    s = MeanStats()
    t = timed(lambda: MeanStats.of(errors))
    print(f"MeanStats.update: {t / errors.size * 1e9:.2f} ns per value (1,000,000-value batch)")
    t = timed(lambda: MeanStats().update_binary(hits))
    print(f"MeanStats.update_binary: {t / hits.size * 1e9:.2f} ns per value")
    parts = [MeanStats.of(p) for p in np.array_split(errors, 1000)]

    def merge_all() -> None:
        out = MeanStats()
        for p in parts:
            out.merge(p)

    print(f"MeanStats.merge: {timed(merge_all) / len(parts) * 1e9:.0f} ns per merge")
    s = MeanStats.of(errors[:500_000])
    c = MeanStats.of(errors[500_000:])
    seq = SequentialDifference()
    n = 20_000
    t = timed(lambda: [seq.interval(s, c) for _ in range(n)])
    print(f"SequentialDifference.interval: {t / n * 1e6:.1f} µs per query")
    looks = 200 * 2_000
    arr = np.full(looks, 5e5)
    t = timed(lambda: seq.bounds((arr, arr * 0.9, arr * 0.9), (arr, arr * 0.88, arr * 0.88)))
    print(f"SequentialDifference.bounds (vectorised): {t / looks * 1e9:.0f} ns per look")
    a, b = (
        AttributionSummary([f"f{i}" for i in range(50)]),
        AttributionSummary([f"f{i}" for i in range(50)]),
    )
    phi = rng.normal(size=(1_000, 50))
    t = timed(lambda: a.update(phi))
    print(f"AttributionSummary.update: {t / 1_000 * 1e6:.2f} µs per row (d = 50)")
    b.update(phi[::-1] * 1.1)
    comparison = AttributionComparison(protected=("f3",))
    t = timed(lambda: [comparison.shadow_metrics(a, b) for _ in range(1_000)])
    print(f"AttributionComparison.shadow_metrics: {t / 1_000 * 1e6:.0f} µs per query (d = 50)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rows, for a smoke run")
    args = parser.parse_args()
    bench_attribution(args.quick)
    bench_sequential()


if __name__ == "__main__":
    main()
