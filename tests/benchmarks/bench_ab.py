"""A/B comparison benchmark: the cost of one look, ours against re-reading everything.

Two versions, 5-minute windows of 1,000 events with 20 numeric features each, on a SQLite
store. Our path (:class:`~watchkeeper.daemon.checks.ab_checks.ABChecks`) folds the
settled windows into a running roll-up and reads only the unsettled ones; the reference
rolls up every window since the experiment's start at each look (what a check would do
without the running state). Both give the same accuracy delta (checked); the ratio is
reference / ours, for experiments of growing length and both ``label_wait`` settings.

Run: ``python tests/benchmarks/bench_ab.py [--windows 300,1000]`` (``make bench``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from watchkeeper.daemon.checks.ab_checks import ABChecks
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.ab import ABComparison
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window import WindowSummary

from tests.unit.test_ab_checks import SIZE, T0, commit, policy, window

LOOKS = 3


def fat(version: str, start: int, seed: int) -> WindowSummary:
    w = window(version, start, 1000, 0.9, seed)
    rng = np.random.default_rng(seed)
    for j in range(20):
        s = NumericSketch()
        s.update(rng.normal(size=1000))
        w.features[f"f{j}"] = s
    return w


def filled(n: int) -> Store:
    store = Store.open(f"sqlite:///{tempfile.mkdtemp()}/s.db")
    for i in range(n):
        commit(store, [fat("3", T0 + i * SIZE, 2 * i), fat("4", T0 + i * SIZE, 2 * i + 1)])
    return store


def reference_look(store: Store, end: int) -> float:
    b, c = (
        WindowSummary.rollup(
            [w.summary for w in store.windows("fraud", v, T0, end)], T0, end - T0, v
        )
        for v in ("3", "4")
    )
    return ABComparison().compare(b, c).values["ab_accuracy_delta"].value


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--windows", default="300,1000")
    sizes = [int(x) for x in args.parse_args().windows.split(",")]
    print("windows/version  label_wait  ours ms/look  reference ms/look  reference / ours")
    for n in sizes:
        end = T0 + n * SIZE
        for wait in ("10m", "1d"):
            store = filled(n)
            p = policy({"baseline": "3", "candidate": "4", "label_wait": wait})
            checks = ABChecks(store, SIZE, settle_s=7 * 86_400)
            checks.findings(p, end - SIZE, end)  # the first look folds what has settled
            t = time.perf_counter()
            for _ in range(LOOKS):
                (f,) = checks.findings(p, end - SIZE, end)["ab_accuracy_delta"]
            ours = (time.perf_counter() - t) / LOOKS
            t = time.perf_counter()
            for _ in range(LOOKS):
                delta = reference_look(store, end)
            ref = (time.perf_counter() - t) / LOOKS
            assert f.details["estimate"] == delta, (f.details["estimate"], delta)
            ms = f"{ours * 1000:>12.0f}  {ref * 1000:>17.0f}"
            print(f"{n:>15,}  {wait:>10}  {ms}  {ref / ours:>16.1f}")
            store.close()


if __name__ == "__main__":
    main()
