"""Window parts on SQLite and PostgreSQL: a flush appends, reads merge, folds keep the numbers.

The reference computation is the old design's: the first flush's summary stored, each
later flush merged into it in commit order. Reads must equal it exactly (to_dict
equality, sketches and sample included), before and after parts are folded.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np
import orjson
import pytest
from sqlalchemy import func, select
from watchkeeper.daemon.checks.checker import Checker
from watchkeeper.daemon.eventtime.windows import WindowState
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store import window_parts
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.reservoir import record_keys
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window import WindowSummary
from watchkeeper.policies.loader import LoadedPolicy
from watchkeeper.policies.schema import Policy

HOUR = 3_600_000


def batch(rng: np.random.Generator, ts_ms: np.ndarray, start: int) -> ColumnBatch:
    n = ts_ms.size
    cats = np.array([f"c{i % 7}" for i in range(start, start + n)], dtype=object)
    return ColumnBatch(
        model="fraud",
        role="predictions",
        ts_ms=ts_ms.astype(np.int64),
        versions=np.array(["3"] * n, dtype=object),
        keys=record_keys(0, 0, np.arange(start, start + n)),
        features={
            "amount": Column("numeric", rng.normal(size=n), np.zeros(n, bool), np.zeros(n, bool)),
            "country": Column("categorical", cats, np.zeros(n, bool), np.zeros(n, bool)),
        },
        prediction=Column("numeric", rng.random(n), np.zeros(n, bool), np.zeros(n, bool)),
        latency_ms=np.full(n, 12.5),
    )


def exact(summary: WindowSummary) -> dict[str, Any]:
    """The summary without its KLL sketches' bytes: a KLL merge draws random bits (it
    always did, in the old design too), so equal inputs give equal counts, moments, exact
    bins, categories and samples, and KLL sketches of the same items within their bound."""

    def strip(sketch: Any) -> Any:
        return (
            {k: v for k, v in sketch.items() if k != "kll"} if isinstance(sketch, dict) else sketch
        )

    out = summary.to_dict()
    out["features"] = {n: strip(s) for n, s in out["features"].items()}
    for name in ("prediction", "prediction_class", "label", "latency"):
        out[name] = strip(out[name])
    return out


def same(got: WindowSummary, want: WindowSummary) -> None:
    assert exact(got) == exact(want)
    for name, sketch in want.features.items():
        if isinstance(sketch, NumericSketch):
            mine = got.features[name]
            assert isinstance(mine, NumericSketch)
            ranks = [0.1, 0.5, 0.9]
            bound = 2 * max(sketch.rank_error, mine.rank_error)
            step = 1 / sketch.count  # a rank falls between two of few values
            assert np.all(np.abs(mine.cdf(sketch.quantiles(ranks)) - ranks) <= bound + step)


def parts_count(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.window_parts)).scalar() or 0)


def test_reads_equal_the_sequential_merge_before_and_after_folding(store_url: str) -> None:
    rng = np.random.default_rng(7)
    flushes = window_parts.FOLD_AT + 3  # the busy window crosses the fold threshold
    expected: dict[int, WindowSummary] = {}
    with Store.open(store_url) as store:
        state = WindowState(3600, 10 * 3600)
        offset = 0
        for f in range(flushes):
            # every flush: the busy window 0, and one quiet window of its own
            ts = np.concatenate([rng.integers(0, HOUR, 300), np.full(5, (f + 1) * HOUR + f)])
            state.add(batch(rng, ts, offset))
            offset += ts.size
            delta = state.drain()
            for key, summary in delta.windows.items():
                mine = expected.get(key.start_ms)
                if mine is None:  # the old design stored the first flush's summary as is
                    expected[key.start_ms] = WindowSummary.from_dict(
                        orjson.loads(orjson.dumps(summary.to_dict()))
                    )
                else:
                    mine.merge(summary)
            store.commit("g", delta, {("preds", 0): offset})
            if f == window_parts.FOLD_AT - 2:  # not folded yet: the base row is missing
                (busy,) = store.windows("fraud", start_ms=0, end_ms=HOUR)
                same(busy.summary, expected[0])
        stored = {w.summary.start_ms: w for w in store.windows("fraud")}
        assert sorted(stored) == sorted(expected)
        for start, summary in expected.items():
            same(stored[start].summary, summary)
            assert stored[start].events == summary.count
        # the busy window was folded once it had FOLD_AT parts; the quiet ones never
        assert parts_count(store) == flushes + (flushes - window_parts.FOLD_AT)
        totals = store.model_totals()["fraud"]
        assert totals["events"] == offset and totals["windows"] == flushes + 1
        assert store.totals()["events"] == offset
        assert store.event_counts("fraud", 0, HOUR) == [(0, 300 * flushes)]
        assert store.first_window("fraud") == 0
        assert store.model_versions() == [("fraud", "3")]
        assert store.window_starts("fraud", 0, 3) == [
            flushes * HOUR,
            (flushes - 1) * HOUR,
            (flushes - 2) * HOUR,
        ]


def test_an_old_window_row_is_the_base_its_new_parts_merge_into(store_url: str) -> None:
    rng = np.random.default_rng(3)
    with Store.open(store_url) as store:
        state = WindowState(3600, 10 * 3600)
        state.add(batch(rng, rng.integers(0, HOUR, 200), 0))
        old = state.drain().windows
        (summary,) = old.values()
        with store.engine.begin() as conn:  # a row as the previous design wrote it
            conn.execute(
                t.windows.insert().values(
                    model="fraud",
                    model_version="3",
                    window_size_ms=HOUR,
                    window_start_ms=0,
                    events=summary.count,
                    late_events=4,
                    first_ts_ms=summary.first_ts_ms,
                    last_ts_ms=summary.last_ts_ms,
                    summary=orjson.dumps(summary.to_dict()),
                    updated_at=dt.datetime.now(dt.UTC),
                )
            )
        expected = WindowSummary.from_dict(orjson.loads(orjson.dumps(summary.to_dict())))
        state.add(batch(rng, rng.integers(0, HOUR, 100), 200))
        delta = state.drain()
        delta.late[next(iter(delta.windows))] = 2
        expected.merge(next(iter(delta.windows.values())))
        store.commit("g", delta, {("preds", 0): 300})
        (window,) = store.windows("fraud")
        same(window.summary, expected)
        assert (window.events, window.late_events) == (300, 6)
        with store.engine.begin() as conn:
            window_parts.fold(conn, store.dialect, ("fraud", "3", HOUR, 0))
        (folded,) = store.windows("fraud")
        same(folded.summary, expected)
        assert (folded.events, folded.late_events) == (300, 6) and parts_count(store) == 0
        assert store.totals() == {"events": 300, "late_events": 6, "quarantined": 0}


def test_replicas_merging_a_compact_part_with_a_full_one_read_what_one_pass_gives(
    store_url: str,
) -> None:
    """Replica A holds 5 events of a window (stored as rows, format 3), replica B 300 of
    it (stored as sketches): the read equals the old design's sequential merge exactly,
    and a single window that saw all 305 events in its exact numbers."""
    rng = np.random.default_rng(11)
    few = batch(rng, rng.integers(0, HOUR, 5), 0)
    many = batch(rng, rng.integers(0, HOUR, 300), 5)
    with Store.open(store_url) as store:
        replica_a, replica_b = WindowState(3600, 10 * 3600), WindowState(3600, 10 * 3600)
        replica_a.add(few)
        replica_b.add(many)
        delta_a, delta_b = replica_a.drain(), replica_b.drain()
        (part_a,) = delta_a.windows.values()
        (part_b,) = delta_b.windows.values()
        assert part_a.compact and not part_b.compact
        expected = WindowSummary.from_dict(orjson.loads(orjson.dumps(part_a.to_dict())))
        expected.merge(WindowSummary.from_dict(orjson.loads(orjson.dumps(part_b.to_dict()))))
        store.commit("g", delta_a, {("preds", 0): 5})
        store.commit("g", delta_b, {("preds", 1): 300})
        with store.engine.connect() as conn:
            formats = [
                orjson.loads(blob)["format"]
                for blob in conn.execute(
                    select(t.window_parts.c.summary).order_by(t.window_parts.c.id)
                ).scalars()
            ]
        assert formats == [3, 2]
        (window,) = store.windows("fraud")
        same(window.summary, expected)
        one_pass = WindowSummary("fraud", "3", 0, HOUR)
        one_pass.update(few, np.arange(5))
        one_pass.update(many, np.arange(300))
        got = window.summary
        for name in ("amount",):
            mine, want = got.features[name], one_pass.features[name]
            assert isinstance(mine, NumericSketch) and isinstance(want, NumericSketch)
            assert (mine.count, mine.min, mine.max) == (want.count, want.min, want.max)
            assert mine.mean == pytest.approx(want.mean, rel=1e-12)
            assert mine.variance == pytest.approx(want.variance, rel=1e-12)
        assert got.features["country"].to_dict() == one_pass.features["country"].to_dict()
        assert got.sample.rows == one_pass.sample.rows and got.count == 305
        with store.engine.begin() as conn:
            window_parts.fold(conn, store.dialect, ("fraud", "3", HOUR, 0))
        (folded,) = store.windows("fraud")
        same(folded.summary, expected)


def test_retention_deletes_bases_and_parts(store_url: str) -> None:
    rng = np.random.default_rng(5)
    with Store.open(store_url) as store:
        state = WindowState(3600, 10 * 3600)
        for f in range(3):
            state.add(batch(rng, np.array([0, HOUR, 5 * HOUR]) + f, 3 * f))
            store.commit("g", state.drain(), {("preds", 0): 3 * f + 3})
        with store.engine.begin() as conn:
            window_parts.fold(conn, store.dialect, ("fraud", "3", HOUR, 0))
        removed = store.prune_model("fraud", 2 * HOUR)
        assert removed["windows"] == 2
        assert [w.summary.start_ms for w in store.windows("fraud")] == [5 * HOUR]
        assert store.totals()["events"] == 3


def test_a_fold_keeps_the_part_another_replica_commits_meanwhile(pg_database: str) -> None:
    """PostgreSQL: replica A folds a window while replica B's part of it is uncommitted;
    B's part survives the fold, and the window reads as both together."""
    rng = np.random.default_rng(11)
    with Store.open(pg_database) as a, Store.open(pg_database, migrate=False) as b:
        state = WindowState(3600, 10 * 3600)
        for f in range(3):
            state.add(batch(rng, rng.integers(0, HOUR, 50), 50 * f))
            a.commit("g", state.drain(), {("preds", 0): 50 * f + 50})
        state.add(batch(rng, rng.integers(0, HOUR, 7), 150))
        late = state.drain()
        with b.engine.begin() as other:  # B's flush, open while A folds
            window_parts.append(other, late, {})
            with a.engine.begin() as conn:
                window_parts.fold(conn, a.dialect, ("fraud", "3", HOUR, 0))
        (window,) = a.windows("fraud")
        assert window.events == 157 and window.summary.features["amount"].count == 157
        assert parts_count(a) == 1  # B's part, committed after the fold
        with a.engine.begin() as conn:
            window_parts.fold(conn, a.dialect, ("fraud", "3", HOUR, 0))
        (folded,) = a.windows("fraud")
        assert exact(folded.summary) == exact(window.summary) and parts_count(a) == 0


def test_a_corrupt_part_is_named_logged_counted_and_skipped(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(5)
    with Store.open(store_url) as store:
        state = WindowState(3600, 10 * 3600)
        state.add(batch(rng, np.array([10, 20, 30, HOUR + 10, HOUR + 20]), 0))
        store.commit("g", state.drain(), {("preds", 0): 5})
        with store.engine.begin() as conn:
            part_id, blob = conn.execute(
                select(t.window_parts.c.id, t.window_parts.c.summary).where(
                    t.window_parts.c.window_start_ms == HOUR
                )
            ).one()
            data = orjson.loads(blob)
            assert data["format"] == 3  # a compact window: stored as its rows
            data["rows"][0]["keys"] = "AAAA"  # 3 bytes where 2 keys take 16
            conn.execute(
                t.window_parts.update()
                .where(t.window_parts.c.id == part_id)
                .values(summary=orjson.dumps(data))
            )
        with caplog.at_level(logging.ERROR, logger="watchkeeper.daemon.store"):
            read = store.windows("fraud")
        # the other window is read; the corrupt one is left out, named and counted
        assert [(w.summary.start_ms, w.events) for w in read] == [(0, 3)]
        (record,) = caplog.records
        message = record.getMessage()
        assert f"window {HOUR} of {HOUR} ms, part {part_id}" in message
        assert "model 'fraud'" in message and "'keys' does not hold 2 values" in message
        assert store.skipped_windows.counts() == {"fraud": 1}
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="watchkeeper.daemon.store"):
            store.windows("fraud", start_ms=HOUR)  # each read that meets it counts it
        assert store.skipped_windows.counts() == {"fraud": 2}
        assert not caplog.records  # logged once per part, not on every read
        assert store.skipped_windows.part_counts() == {"fraud": 1}
        (met,) = store.skipped_windows.recent()
        assert (met.window_start_ms, met.part, met.reads) == (HOUR, part_id, 2)
        # a fold meeting it sets the window aside (logged), and folds nothing
        caplog.clear()
        with store.engine.begin() as conn, caplog.at_level(logging.WARNING):
            window_parts.fold(conn, store.dialect, ("fraud", "3", HOUR, HOUR))
        assert any("window not folded" in r.getMessage() for r in caplog.records)
        assert any("window set aside" in r.getMessage() for r in caplog.records)
        assert parts_count(store) == 1  # window 0's part; window HOUR's is set aside
        assert store.set_aside_counts() == {"fraud": {"windows": 1, "rows": 1, "events": 2}}


def test_a_check_over_a_corrupt_window_scores_the_others(store_url: str) -> None:
    policy = Policy.model_validate(
        {
            "model": "fraud",
            "window": "2h",
            "schedule": {"every": "1h"},
            "min_samples": 1,
            "rules": [{"name": "eps", "metric": "throughput_eps", "critical": 1e9}],
        }
    )
    rng = np.random.default_rng(6)
    with Store.open(store_url) as store:
        state = WindowState(3600, 10 * 3600)
        state.add(batch(rng, np.array([10, 20, 30, HOUR + 10, HOUR + 20]), 0))
        store.commit("g", state.drain(), {("preds", 0): 5})
        with store.engine.begin() as conn:
            conn.execute(
                t.window_parts.update()
                .where(t.window_parts.c.window_start_ms == HOUR)
                .values(summary=b'{"format": 3, "rows": "not rows"}')
            )
        checker = Checker(store, IncidentStore(store.engine), 3600)
        result = checker.run(LoadedPolicy(policy, "/nowhere/fraud.yaml", "v1"), 2 * HOUR)
        # the check ran on the window that loads: its 3 events, not an exception
        assert result.events_seen == 3
        (evaluation,) = result.evaluations
        assert evaluation.value == pytest.approx(3 / (2 * HOUR / 1000))
        assert store.skipped_windows.counts() == {"fraud": 1}
