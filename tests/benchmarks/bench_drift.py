"""Drift check benchmark: watchkeeper's check on stored summaries against Evidently.

Reference 1,000,000 rows × 20 numeric features; current window 100,000 rows with the
first 5 features shifted by 0.3 σ. In one run, each in its own process (so peak RSS is
its own):

(a) Evidently ``DataDriftPreset(method="psi")`` on the raw frames;
(b) watchkeeper: summarising the reference into a profile and the window into sketches
    (done once, and by ingestion as events arrive), then the check itself: every default
    drift metric of every feature scored on the summaries — what runs on each schedule.

Prints the times, the ratio Evidently / check, peak RSS, and the features each flags.
Run: ``make bench`` or ``python tests/benchmarks/bench_drift.py [--rows N]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = 20
SHIFTED = 5


def data(rows: int, current_rows: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(42)
    ref = rng.normal(size=(rows, FEATURES))
    cur = rng.normal(size=(current_rows, FEATURES))
    cur[:, :SHIFTED] += 0.3
    return ref, cur, [f"f{i:02d}" for i in range(FEATURES)]


def phase_evidently(rows: int, current_rows: int) -> dict[str, Any]:
    import pandas as pd

    ref, cur, names = data(rows, current_rows)
    ref_df, cur_df = pd.DataFrame(ref, columns=names), pd.DataFrame(cur, columns=names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently import Report
        from evidently.presets import DataDriftPreset

        started = time.perf_counter()
        snapshot = Report([DataDriftPreset(method="psi")]).run(
            current_data=cur_df, reference_data=ref_df
        )
        seconds = time.perf_counter() - started
        flagged = []
        values = {}
        for result in snapshot.dict()["metrics"]:
            name = str(result.get("metric_name", ""))
            if name.startswith("ValueDrift") and "column=" in name:
                column = name.split("column=")[1].split(",")[0].rstrip(")")
                value = result["value"]
                threshold = result.get("config", {}).get("threshold") or 0.1
                values[column] = round(float(value), 4)
                if isinstance(value, int | float) and value >= threshold:
                    flagged.append(column)
    return {"seconds": seconds, "flagged": sorted(flagged), "psi": values}


def phase_watchkeeper(rows: int, current_rows: int) -> dict[str, Any]:
    from watchkeeper.daemon.offline.reference import REFERENCE_K
    from watchkeeper.detectors.evaluate import evaluate
    from watchkeeper.detectors.profile import (
        ReferenceProfile,
        bin_counts,
        numeric_profile,
        quantile_edges,
    )
    from watchkeeper.detectors.registry import DEFAULT_DRIFT_METRICS
    from watchkeeper.detectors.sketches import NumericSketch
    from watchkeeper.detectors.window import WindowSummary
    from watchkeeper.policies.defaults import severity

    ref, cur, names = data(rows, current_rows)
    started = time.perf_counter()
    columns = {}
    for j, name in enumerate(names):
        sketch = NumericSketch(REFERENCE_K)
        sketch.update(ref[:, j])
        edges = quantile_edges(sketch, 10)
        columns[name] = numeric_profile(sketch, edges, bin_counts(ref[:, j], edges))
    profile = ReferenceProfile("bench", columns, rows=rows)
    profile_s = time.perf_counter() - started
    started = time.perf_counter()
    window = WindowSummary("bench", "1", 0, 300_000)
    for j, name in enumerate(names):
        sketch = NumericSketch(200)  # the daemon's default window sketch
        sketch.update(np.ascontiguousarray(cur[:, j]))
        window.features[name] = sketch
    window.events = {"predictions": current_rows}
    summarise_s = time.perf_counter() - started
    # the check: what a schedule runs, on a window read back from its stored form
    stored = window.to_dict()
    started = time.perf_counter()
    findings = evaluate(profile, WindowSummary.from_dict(stored), DEFAULT_DRIFT_METRICS)
    check_s = time.perf_counter() - started
    flagged: dict[str, list[str]] = {}
    psi = {}
    for f in findings:
        if f.metric == "psi":
            psi[f.feature] = round(f.value or 0.0, 4)
        if severity(f.metric, f.value) != "ok":
            flagged.setdefault(str(f.feature), []).append(f.metric)
    return {
        "profile_seconds": profile_s,
        "summarise_seconds": summarise_s,
        "check_seconds": check_s,
        "flagged": flagged,
        "psi": psi,
        "metrics": list(DEFAULT_DRIFT_METRICS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--current-rows", type=int, default=100_000)
    parser.add_argument("--phase", choices=["evidently", "watchkeeper"])
    args = parser.parse_args()
    if args.phase:
        fn = phase_evidently if args.phase == "evidently" else phase_watchkeeper
        result = fn(args.rows, args.current_rows)
        with open("/proc/self/status") as status:  # VmHWM: ru_maxrss survives execve
            hwm = next(line for line in status if line.startswith("VmHWM:"))
        result["peak_rss_mb"] = int(hwm.split()[1]) / 1024
        print(json.dumps(result))
        return
    print(
        f"reference {args.rows:,} × {FEATURES}, current {args.current_rows:,} × {FEATURES}, "
        f"features f00–f{SHIFTED - 1:02d} shifted by 0.3 σ"
    )
    out = {}
    for phase in ("watchkeeper", "evidently"):
        done = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--phase",
                phase,
                "--rows",
                str(args.rows),
                "--current-rows",
                str(args.current_rows),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        out[phase] = json.loads(done.stdout.strip().splitlines()[-1])
    wk, ev = out["watchkeeper"], out["evidently"]
    print(
        f"(a) Evidently DataDriftPreset(psi): {ev['seconds']:.2f} s, peak RSS "
        f"{ev['peak_rss_mb']:.0f} MB; flags {ev['flagged'] or 'nothing'}"
    )
    print(
        f"(b) watchkeeper: reference profile {wk['profile_seconds']:.2f} s (once), window "
        f"sketches {wk['summarise_seconds'] * 1000:.0f} ms (at ingest), check "
        f"{wk['check_seconds'] * 1000:.1f} ms for {len(wk['metrics'])} metrics × "
        f"{FEATURES} features; peak RSS {wk['peak_rss_mb']:.0f} MB"
    )
    print(
        f"    flags {sorted(wk['flagged'])}: "
        + "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(wk["flagged"].items()))
    )
    shifted = [f"f{i:02d}" for i in range(SHIFTED)]
    print(
        f"    PSI of the shifted features: watchkeeper (reference deciles) "
        f"{[wk['psi'][f] for f in shifted]}, Evidently (Sturges bins) "
        f"{[ev['psi'].get(f) for f in shifted]}"
    )
    print(
        f"ratio Evidently / check = {ev['seconds'] / wk['check_seconds']:,.0f}× "
        f"(goal ≥ 100×); Evidently / (check + window sketches) = "
        f"{ev['seconds'] / (wk['check_seconds'] + wk['summarise_seconds']):,.0f}×"
    )


if __name__ == "__main__":
    main()
