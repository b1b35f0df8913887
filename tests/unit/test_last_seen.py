"""LastSeen: the end of a model's newest stored window with traffic, remembered across
ticks. Each answer is compared with the whole walk (every stored window read, its traffic
looked at), and each tick's cost is counted in windows read from the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete
from watchkeeper.daemon.checks.last_seen import LastSeen
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store.store import Store

from tests.support import drained, role_columns, role_rows

MIN = 60_000
SIZE = 5 * MIN
T0 = 1_790_000_000_000 - 1_790_000_000_000 % (24 * 60 * MIN)


class Writer:
    """Commits rows of one role into given windows, each window's from its own partition."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.partition = 0

    def rows(self, role: str, windows: range | list[int], n: int = 3) -> None:
        batches = []
        for w in windows:
            self.partition += 1
            ts = np.full(n, T0 + w * SIZE + MIN, dtype=np.int64)
            ids = np.array([f"p{self.partition}r{i}" for i in range(n)], dtype=object)
            columns = role_columns(role, n)
            batches.append(role_rows(role, ts, self.partition, request_ids=ids, **columns))
        self.store.commit("g", drained(T0, *batches), {})


def whole_walk(store: Store, before_ms: int) -> int | None:
    """The answer from every stored window of the model, read whole."""
    seen = [w.summary.start_ms for w in store.windows("m", None, 0, before_ms) if w.summary.traffic]
    return max(seen) + SIZE if seen else None


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as s:
        yield s


@pytest.fixture
def reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The windows each store read returned (the cost counted, the store itself real)."""
    counted: list[int] = []
    real = store.windows

    def windows(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        counted.append(len(out))
        return out

    monkeypatch.setattr(store, "windows", windows)
    return counted


def tick(last: LastSeen, store: Store, reads: list[int], window: int) -> tuple[int | None, int]:
    """The answer at the start of ``window``, and the windows read to give it."""
    before = sum(reads)
    answer = last(store, "m", T0 + window * SIZE, SIZE)
    return answer, sum(reads) - before


def test_a_labels_only_model_reads_only_the_windows_written_since(
    store: Store, reads: list[int]
) -> None:
    write, last = Writer(store), LastSeen(run=4)
    write.rows("labels", range(40))
    assert whole_walk(store, T0 + 40 * SIZE) is None
    assert tick(last, store, reads, 40) == (None, 40)  # the first tick reads the history
    write.rows("labels", range(40, 43))
    assert tick(last, store, reads, 43) == (None, 3)  # the second only the three new ones
    assert tick(last, store, reads, 43) == (None, 0)  # nothing new: nothing read
    assert last.read == 43


def test_traffic_stopped_reads_the_new_windows_then_stops_at_the_known_one(
    store: Store, reads: list[int]
) -> None:
    write, last = Writer(store), LastSeen(run=2)
    write.rows("predictions", range(10))
    write.rows("labels", range(30))
    assert tick(last, store, reads, 30) == (whole_walk(store, T0 + 30 * SIZE), 30)  # 2+4+8+16
    assert whole_walk(store, T0 + 30 * SIZE) == T0 + 10 * SIZE
    write.rows("labels", range(30, 35))
    assert tick(last, store, reads, 35) == (T0 + 10 * SIZE, 5)
    write.rows("features", [36])  # a model whose features come without predictions
    assert tick(last, store, reads, 40) == (T0 + 37 * SIZE, 1)
    assert whole_walk(store, T0 + 40 * SIZE) == T0 + 37 * SIZE


def test_late_traffic_into_a_known_window_is_read_again(store: Store, reads: list[int]) -> None:
    """A window seen with labels only gains predictions (its total changes): re-read."""
    write, last = Writer(store), LastSeen()
    write.rows("predictions", range(5))
    write.rows("labels", range(20))
    assert tick(last, store, reads, 20)[0] == T0 + 5 * SIZE
    write.rows("predictions", [12])
    write.rows("labels", [15])  # labels only: its traffic is read again, still none
    assert tick(last, store, reads, 20) == (T0 + 13 * SIZE, 2)
    assert whole_walk(store, T0 + 20 * SIZE) == T0 + 13 * SIZE


def test_a_known_window_gone_and_earlier_ticks_answer_as_the_whole_walk(store: Store) -> None:
    write, last = Writer(store), LastSeen(run=3)
    write.rows("predictions", [2, 7])
    write.rows("labels", range(12))
    assert last(store, "m", T0 + 12 * SIZE, SIZE) == T0 + 8 * SIZE
    # an earlier tick (a backtest stepping back) and a window no longer stored (set aside)
    assert last(store, "m", T0 + 7 * SIZE, SIZE) == whole_walk(store, T0 + 7 * SIZE)
    with store.engine.begin() as conn:
        for table in (t.windows, t.window_parts):
            conn.execute(delete(table).where(table.c.window_start_ms == T0 + 7 * SIZE))
    for at in (12, 7, 3, 2, 0):
        assert last(store, "m", T0 + at * SIZE, SIZE) == whole_walk(store, T0 + at * SIZE)
    assert last(store, "m", T0 + 12 * SIZE, SIZE) == T0 + 3 * SIZE
    assert last(store, "other", T0 + 12 * SIZE, SIZE) is None


@pytest.mark.parametrize("seed", range(6))
def test_random_histories_answer_as_the_whole_walk(store: Store, seed: int) -> None:
    """Writes of random roles into random windows between ticks of random order."""
    rng = np.random.default_rng(seed)
    write, last = Writer(store), LastSeen(run=int(rng.integers(1, 5)))
    for _ in range(12):
        role = str(rng.choice(["labels", "labels", "predictions", "features"]))
        write.rows(role, sorted({int(w) for w in rng.integers(0, 30, size=3)}))
        for at in rng.integers(0, 32, size=2):
            expected = whole_walk(store, T0 + int(at) * SIZE)
            assert last(store, "m", T0 + int(at) * SIZE, SIZE) == expected
