"""Which quantile sketch for window state? KLL (Apache DataSketches) against the others.

For 1,000,000 values (normal and lognormal) this measures per sketch: update time, merge
of 10 partial sketches, serialized size, and the worst *rank* error over the 1st..99th
percentiles against the exact sorted data (the error that matters for PSI / KS on bins:
how much probability mass lands on the wrong side of a bin edge).

Run: ``make bench`` or ``python tests/benchmarks/bench_sketches.py``.
"""

from __future__ import annotations

import time

import numpy as np
from datasketches import kll_doubles_sketch

N = 1_000_000
QS = np.linspace(0.01, 0.99, 99)


def rank_error(sorted_x: np.ndarray, estimates: np.ndarray) -> float:
    lo = np.searchsorted(sorted_x, estimates, side="left") / sorted_x.size
    hi = np.searchsorted(sorted_x, estimates, side="right") / sorted_x.size
    # an estimate is exact if the target rank falls anywhere in [lo, hi]
    err = np.maximum(0, np.maximum(lo - QS, QS - hi))
    return float(err.max())


def bench_kll(x: np.ndarray, k: int) -> dict[str, float]:
    t = time.perf_counter()
    s = kll_doubles_sketch(k)
    s.update(x)
    upd = time.perf_counter() - t
    parts = np.array_split(x, 10)
    t = time.perf_counter()
    merged = kll_doubles_sketch(k)
    for p in parts:
        part = kll_doubles_sketch(k)
        part.update(p)
        merged.merge(part)
    mrg = time.perf_counter() - t
    est = np.asarray(merged.get_quantiles(QS.tolist()))
    return {
        "update_s": upd,
        "split_merge_s": mrg,
        "bytes": len(merged.serialize()),
        "est": est,
        "bound": s.normalized_rank_error(False),
    }


def bench_tdigest(x: np.ndarray) -> dict[str, float]:
    from fastdigest import TDigest

    t = time.perf_counter()
    TDigest.from_values(x)
    upd = time.perf_counter() - t
    t = time.perf_counter()
    merged = TDigest.from_values(np.array_split(x, 10)[0])
    for p in np.array_split(x, 10)[1:]:
        merged.merge_inplace(TDigest.from_values(p))
    mrg = time.perf_counter() - t
    est = np.array([merged.quantile(q) for q in QS])
    return {
        "update_s": upd,
        "split_merge_s": mrg,
        "bytes": len(merged.to_bytes()),
        "est": est,
        "bound": float("nan"),
    }


def bench_ddsketch(x: np.ndarray) -> dict[str, float]:
    from ddsketch import DDSketch

    sub = x[:200_000]  # pure Python, one call per value: measured on 200k, scaled
    t = time.perf_counter()
    s = DDSketch(relative_accuracy=0.01)
    for v in sub.tolist():
        s.add(v)
    upd = (time.perf_counter() - t) * x.size / sub.size
    est = np.array([s.get_quantile_value(q) for q in QS])
    return {
        "update_s": upd,
        "split_merge_s": float("nan"),
        "bytes": float("nan"),
        "est": est,
        "bound": float("nan"),
        "n": sub.size,
    }


def main() -> None:
    rng = np.random.default_rng(0)
    datasets = {"normal": rng.normal(size=N), "lognormal": rng.lognormal(3, 1, N)}
    print(
        f"{'sketch':<22}{'data':<11}{'update s':>10}{'10-way merge s':>16}{'bytes':>9}"
        f"{'max rank err':>14}{'stated bound':>14}"
    )
    for name, x in datasets.items():
        exact_sorted = np.sort(x)
        t = time.perf_counter()
        np.sort(x)
        sort_s = time.perf_counter() - t
        print(
            f"{'exact (numpy sort)':<22}{name:<11}{sort_s:>10.3f}{'-':>16}{x.nbytes:>9}"
            f"{0.0:>14.4%}{'-':>14}"
        )
        runs = {
            "KLL k=200": bench_kll(x, 200),
            "KLL k=400": bench_kll(x, 400),
            "t-digest (fastdigest)": bench_tdigest(x),
            "DDSketch 1%": bench_ddsketch(x),
        }
        for label, r in runs.items():
            ref = np.sort(x[: int(r.get("n", x.size))])
            err = rank_error(ref if "n" in r else exact_sorted, r["est"])
            bound = "-" if r["bound"] != r["bound"] else f"{r['bound']:.4%}"
            merge = "-" if r["split_merge_s"] != r["split_merge_s"] else f"{r['split_merge_s']:.3f}"
            size = "-" if r["bytes"] != r["bytes"] else f"{int(r['bytes'])}"
            print(
                f"{label:<22}{name:<11}{r['update_s']:>10.3f}{merge:>16}{size:>9}"
                f"{err:>14.4%}{bound:>14}"
            )


if __name__ == "__main__":
    main()
