"""The store on SQLite and PostgreSQL: migrations, one-transaction commits, reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import inspect, text
from watchkeeper.daemon.errors import StoreUnavailableError
from watchkeeper.daemon.eventtime.watermarks import Mark, PartitionStatus
from watchkeeper.daemon.eventtime.windows import WindowState
from watchkeeper.daemon.store.quarantine import Quarantined
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.reservoir import record_keys


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
            "partition_watermarks",
            "partition_status",
            "join_counts",
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
            "window_parts",
            "ab_comparisons",
            "set_aside_windows",
            "alembic_version",
        } <= names
        columns = {c["name"] for c in inspect(store.engine).get_columns("pending_predictions")}
        assert "segments" in columns  # 0013: waiting predictions keep their segment labels
        store.migrate()  # idempotent
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0014"


def test_commit_merges_windows_and_stores_offsets_atomically(store_url: str) -> None:
    with Store.open(store_url) as store:
        state = WindowState(300, 600)
        state.add(batch(100))
        store.commit(
            "g", state.drain(), {("preds", 0): 100}, {("fraud", "amount"): "numeric"}, [q(5)]
        )
        state.add(batch(50, start=100))
        delta = state.drain()
        delta.marks = {("preds", 0, "fraud"): Mark(0, 1_000)}
        delta.partitions = {("preds", 0): PartitionStatus("predictions", 150, 150)}
        delta.now_ms = 2_000
        store.commit("g", delta, {("preds", 0): 150, ("preds", 1): 7}, {}, [q(120)])
        (window,) = store.windows("fraud")
        assert window.events == 150 and window.summary.events == {"predictions": 150}
        amount = window.summary.features["amount"]
        assert amount.count == 150 and amount.max == 149.0  # type: ignore[union-attr]
        assert store.offsets("g") == {("preds", 0): 150, ("preds", 1): 7}
        assert store.offsets("other-group") == {}
        assert store.kinds() == [("fraud", "amount", "numeric")]
        assert store.partition_marks("g") == {("preds", 0): {"fraud": Mark(0, 1_000)}}
        ((status, _owner, updated),) = store.partition_statuses("g").values()
        assert status.caught_up and updated == 2_000
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
        state.add(batch(3, ts_ms=0), 10 * 60_000)  # window [0, 1m) closed long ago
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


def test_retention_runs_in_event_time_per_model_and_logs_what_it_removed(
    store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Windows go by their model's newest event time, never the wall clock, and never
    before a policy of the model has evaluated them; quarantine and sent notifications
    go by the wall clock."""
    import logging
    import time as _time

    from watchkeeper.alerts.notification import Notification
    from watchkeeper.daemon.checks.retention import Retention
    from watchkeeper.daemon.notify.incidents import IncidentStore
    from watchkeeper.daemon.notify.outbox import Outbox
    from watchkeeper.policies.loader import load_policy

    day = 86_400_000
    year_ago = int(_time.time() * 1000) - 365 * day  # a backfill: event time long past
    with Store.open(store_url) as store:
        state = WindowState(60, 10**9)
        for d in (0, 20, 45):
            state.add(batch(5, ts_ms=year_ago + d * day, start=d))
        delta = state.drain()
        delta.marks = {("preds", 0, "fraud"): Mark(year_ago + 45 * day, 0)}
        store.commit("g", delta, {("preds", 0): 15}, {}, [q(1)])
        outbox = Outbox(store.engine)
        note = Notification("opened", "fp", "critical", "s", "m", "p", "r", "psi", None, {}, 0, 0)
        outbox.add([("c", note), ("c", note)], 0)
        (first,) = outbox.due(10, limit=1)
        outbox.mark_sent(first.id, 10, 1)
        (tmp_path / "p.yaml").write_text(
            "model: fraud\nwindow: 1d\nrules: [{metric: throughput_eps, critical: 1}]\n"
        )
        policy = load_policy(tmp_path / "p.yaml").policy
        policies = {"fraud": policy}
        prune = Retention(store, "g", 30 * 86_400, 60_000, lambda: policies)
        now = _time.time()
        # the policy has not started: it will evaluate the whole history, nothing goes
        removed = prune(now)
        assert removed["windows"] == 0 and len(store.windows()) == 3
        assert removed["outbox"] == 1  # sent at the epoch: older than 30 d by the wall clock
        assert removed["quarantine"] == 0  # received just now
        assert [r["state"] for r in outbox.rows()] == ["pending"]  # unsent: kept
        # it evaluated up to day 2: its next ticks (and their six-window traffic baseline)
        # still read day 0, which stays although it is 45 d behind the newest event
        IncidentStore(store.engine).record("fraud", year_ago + 2 * day, [], [], {})
        assert prune(now)["windows"] == 0
        # up to day 44: day 0 goes; day 20 is within 30 d of the newest event (day 45)
        IncidentStore(store.engine).record("fraud", year_ago + 44 * day, [], [], {})
        with caplog.at_level(logging.INFO, logger="watchkeeper.daemon.checks.retention"):
            removed = prune(now)
        assert removed["windows"] == 1  # day 0; day 20 is within 30 d of day 45
        starts = [w.summary.start_ms for w in store.windows()]
        assert starts == [(year_ago + d * day) // 60_000 * 60_000 for d in (20, 45)]
        assert "retention: fraud: deleted 1 window(s)" in caplog.text
        assert prune(now + 31 * 86_400)["quarantine"] == 1


def test_a_logged_class_grades_accuracy_and_the_score_grades_ranking(store_url: str) -> None:
    """A model logging its score and its own decision (threshold 0.7, not 0.5): accuracy,
    precision and recall grade the decision; ROC AUC and log-loss the score."""
    import orjson
    from sklearn.metrics import accuracy_score, log_loss, recall_score, roc_auc_score
    from watchkeeper.daemon.config import IngestConfig
    from watchkeeper.daemon.config_kafka import FieldPaths, TopicConfig
    from watchkeeper.daemon.ingest.decode import Decoder
    from watchkeeper.daemon.ingest.kinds import KindRegistry
    from watchkeeper.daemon.store.label_join import JoinBuffer

    rng = np.random.default_rng(5)
    n = 2000
    proba = rng.random(n)
    y = (rng.random(n) < proba).astype(int)
    decision = (proba >= 0.7).astype(int)
    assert (decision != (proba >= 0.5)).mean() > 0.15  # the two graders would differ

    class Rec:
        def __init__(self, offset: int, value: dict[str, object]) -> None:
            self.offset, self.value, self.timestamp = offset, orjson.dumps(value), 0

    kinds = KindRegistry()
    ingest = IngestConfig()
    fields = FieldPaths(prediction="y_pred_proba", prediction_class="y_pred")
    preds = Decoder("p", "predictions", TopicConfig(name="p", fields=fields), ingest, kinds)
    labels = Decoder("l", "labels", TopicConfig(name="l"), ingest, kinds)
    t0 = 1_795_255_200_000
    pred_records = [
        Rec(
            i,
            {
                "model": "m",
                "request_id": f"r{i}",
                "ts": t0 + i,
                "y_pred_proba": float(proba[i]),
                "y_pred": int(decision[i]),
            },
        )
        for i in range(n)
    ]
    label_records = [
        Rec(i, {"model": "m", "request_id": f"r{i}", "ts": t0 + 60_000 + i, "label": int(y[i])})
        for i in range(n)
    ]
    buffer = JoinBuffer()
    state = WindowState(300, 600)
    for decoder, records in ((preds, pred_records), (labels, label_records)):
        for b in decoder.decode(0, records, t0 + 10**6).batches:
            state.add(b)
            buffer.add(b, 300_000)
    with Store.open(store_url) as store:
        outcome = store.commit("g", state.drain(), {("p", 0): n, ("l", 0): n}, joins=buffer)
        assert outcome.joined == {"m": n}
        window = store.window_range("m", t0 - t0 % 300_000, t0 - t0 % 300_000 + 300_000)
        assert window is not None and window.performance is not None
        metrics = window.performance.metrics()
        assert metrics["accuracy"] == accuracy_score(y, decision)
        assert metrics["recall"] == recall_score(y, decision)
        assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, proba), abs=2e-3)
        assert metrics["log_loss"] == pytest.approx(log_loss(y, proba), rel=1e-9)
        assert store.join_counts()["m"]["joined"] == n
