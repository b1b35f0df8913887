"""The model page plots the latency percentiles policies can name (p50, p95, p99).

It plotted p90 (trial, 2026-12-07), which no rule reads: a `latency_p95_ms` incident
linked to a page without that line.
"""

from __future__ import annotations

import numpy as np
from watchkeeper.daemon.eventtime.windows import WindowState
from watchkeeper.daemon.http.console_queries import LATENCY_NAMES, ConsoleQueries
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.registry import METRICS
from watchkeeper.detectors.reservoir import record_keys

START = 1_796_680_000_000 - 1_796_680_000_000 % 300_000


def test_the_plotted_percentiles_are_the_latency_metrics(store_url: str) -> None:
    assert LATENCY_NAMES == ("p50", "p95", "p99")
    assert all(f"latency_{name}_ms" in METRICS for name in LATENCY_NAMES)
    n = 150  # below the sketch's k: the window's latency quantiles are exact
    latency = np.random.default_rng(5).permutation(np.arange(1.0, n + 1))
    state = WindowState(300, 3_600_000)
    zeros = np.zeros(n, bool)
    state.add(
        ColumnBatch(
            model="penguin",
            role="predictions",
            ts_ms=START + np.arange(n, dtype=np.int64),
            versions=np.array(["1"] * n, dtype=object),
            keys=record_keys(0, 0, np.arange(n)),
            features={"x": Column("numeric", np.zeros(n), zeros, zeros)},
            latency_ms=latency,
        )
    )
    with Store.open(store_url) as store:
        store.commit("g", state.drain(), {("p", 0): n})
        (row,) = ConsoleQueries(store, dict).latency("penguin", START - 1)
    assert row["count"] == n
    # independently: the ranks of 1..150 (one value apart at most, the sketch's rank rule)
    for name, q in zip(LATENCY_NAMES, (0.5, 0.95, 0.99), strict=True):
        assert abs(row[name] - np.quantile(latency, q)) <= 1.0, (name, row[name])
