"""The label join pairs what meets in one commit's buffer (or waits in the store) without
storing it, with the same pairs as storing and taking back: first prediction of a request
id wins, a stored one wins over a new one, every row joined or left waiting once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from watchkeeper.daemon.eventtime.windows import WindowState
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store.label_join import JoinBuffer
from watchkeeper.daemon.store.store import Store

T0 = 1_795_255_200_000
SIZE = 300_000


def pred(i: int, predicted: str = "1") -> dict[str, Any]:
    return {
        "model": "m",
        "request_id": f"r{i}",
        "model_version": "1",
        "window_start_ms": T0 - T0 % SIZE,
        "ts_ms": T0 + i,
        "score": 0.9 if predicted == "1" else 0.1,
        "predicted": predicted,
    }


def label(i: int) -> dict[str, Any]:
    return {"model": "m", "request_id": f"r{i}", "label": "1", "value": 1.0, "ts_ms": T0 + i}


def waiting(store: Store, table: Any) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(r for (r,) in conn.execute(select(table.c.request_id)).all())


def test_pairs_in_one_buffer_and_early_labels_join_without_being_stored(store_url: str) -> None:
    with Store.open(store_url) as store:
        # r0..r4 meet in the buffer; r1's second prediction is a duplicate (the first
        # wins); r5..r9 wait for labels; r20's label waits for its prediction
        first = JoinBuffer(
            predictions=[pred(i) for i in range(10)] + [pred(1, "0")],
            labels=[label(i) for i in range(5)] + [label(20)],
        )
        out = store.commit("g", WindowState(300, 600).drain(), {("p", 0): 11}, joins=first)
        assert out.joined == {"m": 5}
        assert out.in_buffer == {"m": 5}
        assert waiting(store, t.pending_predictions) == [f"r{i}" for i in range(5, 10)]
        assert waiting(store, t.pending_labels) == ["r20"]
        # a stored prediction wins over a new one of the same request id; an early label
        # joins its prediction when it comes
        second = JoinBuffer(
            predictions=[pred(20), pred(5, "0")], labels=[label(i) for i in range(5, 10)]
        )
        out = store.commit("g", WindowState(300, 600).drain(), {("p", 0): 13}, joins=second)
        assert out.joined == {"m": 6}
        assert not out.in_buffer  # each pair had a stored side
        assert waiting(store, t.pending_predictions) == []
        assert waiting(store, t.pending_labels) == []
        window = store.window_range("m", T0 - T0 % SIZE, T0 - T0 % SIZE + SIZE)
        assert window is not None and window.performance is not None
        assert window.performance.n == 11
        # every pair graded predicted "1" against label "1": the duplicates lost
        assert window.performance.metrics()["accuracy"] == 1.0
        assert store.join_counts()["m"]["joined"] == 11


def test_bulk_insert_keeps_stored_rows_and_the_first_of_twice_given_ones(store_url: str) -> None:
    """Multi-row inserts of ROWS_PER_INSERT rows and a shorter last one: every new row
    stored once, exactly, a stored row kept, and of a row given twice the first."""
    from watchkeeper.daemon.store.upsert import ROWS_PER_INSERT, insert_new

    n = 2 * ROWS_PER_INSERT + 50
    rows = [label(i) | {"created_ms": 1} for i in range(n)]
    rows[7]["label"] = "0"
    with Store.open(store_url) as store:
        with store.engine.begin() as conn:
            insert_new(
                conn, t.pending_labels, [label(3) | {"created_ms": 0}], ["model", "request_id"]
            )
            insert_new(
                conn, t.pending_labels, [*rows, rows[7] | {"label": "1"}], ["model", "request_id"]
            )
        with store.engine.connect() as conn:
            stored = conn.execute(
                select(
                    t.pending_labels.c.request_id,
                    t.pending_labels.c.label,
                    t.pending_labels.c.created_ms,
                )
            ).all()
    assert sorted(stored) == sorted(
        (f"r{i}", "0" if i == 7 else "1", 0 if i == 3 else 1) for i in range(n)
    )
