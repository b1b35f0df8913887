"""The store on SQLite and PostgreSQL: migrations, one-transaction commits, reads."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import inspect, text
from watchkeeper.daemon.decode import Quarantined
from watchkeeper.daemon.errors import StoreUnavailableError
from watchkeeper.daemon.store import Store
from watchkeeper.daemon.windows import WindowState
from watchkeeper.detectors.reservoir import record_keys
from watchkeeper.detectors.window import Column, ColumnBatch


def batch(n: int, ts_ms: int = 0, start: int = 0) -> ColumnBatch:
    return ColumnBatch(
        model="fraud",
        role="predictions",
        ts_ms=np.full(n, ts_ms, dtype=np.int64),
        versions=np.array(["3"] * n, dtype=object),
        keys=record_keys(0, 0, np.arange(start, start + n)),
        features={
            "amount": Column(
                "numeric",
                np.arange(start, start + n, dtype=float),
                np.zeros(n, bool),
                np.zeros(n, bool),
            )
        },
    )


def q(offset: int) -> Quarantined:
    return Quarantined("preds", 0, offset, "not_json", "bad", b"{x", 2)


def test_migrations_create_the_schema(store_url: str) -> None:
    with Store.open(store_url) as store:
        names = set(inspect(store.engine).get_table_names())
        assert {
            "windows",
            "consumer_offsets",
            "watermarks",
            "feature_kinds",
            "quarantine",
            "reference_profiles",
            "pending_predictions",
            "pending_labels",
            "shadow_windows",
            "shadow_offsets",
            "shadow_candidates",
            "shadow_decisions",
            "store_secrets",
            "alembic_version",
        } <= names
        store.migrate()  # idempotent
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0008"


def test_commit_merges_windows_and_stores_offsets_atomically(store_url: str) -> None:
    with Store.open(store_url) as store:
        state = WindowState(300, 600)
        state.add(batch(100))
        store.commit(
            "g", state.drain(), {("preds", 0): 100}, {("fraud", "amount"): "numeric"}, [q(5)]
        )
        state.add(batch(50, start=100))
        store.commit("g", state.drain(), {("preds", 0): 150, ("preds", 1): 7}, {}, [q(120)])
        (window,) = store.windows("fraud")
        assert window.events == 150 and window.summary.events == {"predictions": 150}
        amount = window.summary.features["amount"]
        assert amount.count == 150 and amount.max == 149.0  # type: ignore[union-attr]
        assert store.offsets("g") == {("preds", 0): 150, ("preds", 1): 7}
        assert store.offsets("other-group") == {}
        assert store.kinds() == [("fraud", "amount", "numeric")]
        assert store.watermarks("g") == {("fraud", "predictions"): 0}
        assert store.totals() == {"events": 150, "late_events": 0, "quarantined": 2}
        assert store.quarantine_counts() == {"not_json": 2}


def test_window_range_rolls_stored_windows_up(store_url: str) -> None:
    with Store.open(store_url) as store:
        state = WindowState(60, 3600)
        for minute in range(10):
            state.add(batch(7, ts_ms=minute * 60_000, start=minute * 7))
        store.commit("g", state.drain(), {("preds", 0): 70})
        assert len(store.windows("fraud")) == 10
        ten = store.window_range("fraud", 0, 600_000)
        assert ten is not None and ten.count == 70 and ten.size_ms == 600_000
        assert ten.features["amount"].count == 70
        assert store.window_range("fraud", 0, 120_000).count == 14  # type: ignore[union-attr]
        assert store.window_range("other", 0, 600_000) is None


def test_quarantine_is_idempotent_per_record(store_url: str) -> None:
    with Store.open(store_url) as store:
        state = WindowState(300, 600)
        store.commit("g", state.drain(), {("preds", 0): 6}, {}, [q(5)])
        store.commit("g", state.drain(), {("preds", 0): 6}, {}, [q(5)])
        assert store.totals()["quarantined"] == 1


def test_a_failed_transaction_commits_nothing(store_url: str) -> None:
    with Store.open(store_url) as store:
        state = WindowState(300, 600)
        state.add(batch(10))
        store.commit("g", state.drain(), {("preds", 0): 10})
        state.add(batch(10, start=10))
        delta = state.drain()
        with store.engine.begin() as conn:  # sabotage: the offsets table is gone
            conn.execute(text("ALTER TABLE consumer_offsets RENAME TO consumer_offsets_x"))
        with pytest.raises(StoreUnavailableError):
            store.commit("g", delta, {("preds", 0): 20})
        with store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE consumer_offsets_x RENAME TO consumer_offsets"))
        assert store.totals()["events"] == 10  # the window update rolled back with it
        assert store.offsets("g") == {("preds", 0): 10}


def test_late_events_are_counted_on_their_window(store_url: str) -> None:
    with Store.open(store_url) as store:
        state = WindowState(60, 0)
        state.add(batch(5, ts_ms=10 * 60_000))
        state.add(batch(3, ts_ms=0))  # window [0, 1m) closed long ago
        store.commit("g", state.drain(), {("preds", 0): 8})
        windows = {w.summary.start_ms: w for w in store.windows()}
        assert windows[0].late_events == 3 and windows[0].events == 0
        assert store.totals() == {"events": 5, "late_events": 3, "quarantined": 0}


def test_unreachable_store_raises_a_retriable_error() -> None:
    store = Store.open("postgresql+psycopg://postgres@127.0.0.1:1/none", migrate=False)
    try:
        assert not store.ping()
        with pytest.raises(StoreUnavailableError) as info:
            store.commit("g", WindowState(60, 0).drain(), {("t", 0): 1})
        assert info.value.retriable
    finally:
        store.close()


def test_retention_prunes_old_windows_quarantine_and_delivered_notifications(
    store_url: str,
) -> None:
    import time as _time

    from watchkeeper.alerts.notification import Notification
    from watchkeeper.daemon.outbox import Outbox

    with Store.open(store_url) as store:
        state = WindowState(60, 10**9)
        state.add(batch(5, ts_ms=0))
        state.add(batch(5, ts_ms=10 * 86_400_000))
        store.commit("g", state.drain(), {("preds", 0): 10}, {}, [q(1)])
        outbox = Outbox(store.engine)
        note = Notification("opened", "fp", "critical", "s", "m", "p", "r", "psi", None, {}, 0, 0)
        outbox.add([("c", note), ("c", note)], 0)
        (first,) = outbox.due(10, limit=1)
        outbox.mark_sent(first.id, 10, 1)
        now_ms = int(_time.time() * 1000)
        removed = store.prune(5 * 86_400_000)  # older than day 5 goes
        assert removed["windows"] == 1 and removed["outbox"] == 1
        assert [w.summary.start_ms for w in store.windows()] == [10 * 86_400_000]
        assert [r["state"] for r in outbox.rows()] == ["pending"]  # unsent: kept
        assert store.prune(now_ms + 1)["quarantine"] == 1
