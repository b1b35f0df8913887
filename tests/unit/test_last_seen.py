"""LastSeen: the end of a model's newest stored window with traffic, remembered across
ticks. Each answer is compared with the whole walk (every stored window read, its traffic
looked at), and each tick's cost is counted in windows read from the store. Labels are
stored under version "" as ingest stores them, so a start holds a labels key beside the
predictions'; windows go aside through the real set-aside and by retention's delete."""

from __future__ import annotations

import itertools
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, update
from watchkeeper.daemon.checks import last_seen
from watchkeeper.daemon.checks.last_seen import LastSeen
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store import window_parts
from watchkeeper.daemon.store.store import Store

from tests.support import drained, role_columns, role_rows

MIN = 60_000
SIZE = 5 * MIN
T0 = 1_790_000_000_000 - 1_790_000_000_000 % (24 * 60 * MIN)


class Writer:
    """Commits rows of one role into given windows, each window's from its own partition;
    labels under version "" (as ingest stores them), the other roles under ``version``."""

    def __init__(self, store: Store, model: str = "m") -> None:
        self.store = store
        self.model = model
        self.partition = 0

    def rows(self, role: str, windows: range | list[int], n: int = 3, version: str = "1") -> None:
        batches = []
        version = "" if role == "labels" else version
        for w in windows:
            self.partition += 1
            ts = np.full(n, T0 + w * SIZE + MIN, dtype=np.int64)
            ids = np.array([f"p{self.partition}r{i}" for i in range(n)], dtype=object)
            columns = role_columns(role, n)
            batches.append(
                role_rows(role, ts, self.partition, self.model, version, request_ids=ids, **columns)
            )
        self.store.commit("g", drained(T0, *batches), {})


def whole_walk(store: Store, before_ms: int, model: str = "m") -> int | None:
    """The answer from every stored window of the model, read whole."""
    seen = [
        w.summary.start_ms for w in store.windows(model, None, 0, before_ms) if w.summary.traffic
    ]
    return max(seen) + SIZE if seen else None


def set_aside(store: Store, window: int, version: str, model: str = "m") -> None:
    """One key of a start moved aside by the real set-aside (its rows made corrupt first,
    in the same transaction, as a damaged window is)."""
    key = (model, version, SIZE, T0 + window * SIZE)
    with store.engine.begin() as conn:
        for table in (t.windows, t.window_parts):
            c = table.c
            where = (
                (c.model == model)
                & (c.model_version == version)
                & (c.window_start_ms == T0 + window * SIZE)
            )
            conn.execute(update(table).where(where).values(summary=b"not json"))
        window_parts.set_aside(conn, store.dialect, key)


def retain(store: Store, window: int, model: str = "m") -> None:
    """Retention's delete: every window of the model starting before ``window``."""
    with store.engine.begin() as conn:
        window_parts.delete_before(conn, model, T0 + window * SIZE)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as s:
        yield s


@pytest.fixture
def reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The window starts each store read returned (the cost counted, the store itself
    real; a start holds a labels key beside the predictions' or features')."""
    counted: list[int] = []
    real = store.windows

    def windows(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        counted.append(len({w.summary.start_ms for w in out}))
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
    assert last.windows_read == 43


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


def test_a_key_set_aside_and_as_many_labels_landing_read_the_start_again(store: Store) -> None:
    """Start 7's predictions key set aside, then as many label rows land there: its total
    is what it was, its traffic gone (the set-aside drops the model's entries)."""
    write, last = Writer(store), LastSeen()
    write.rows("predictions", [2, 7])
    write.rows("labels", range(12))
    assert last(store, "m", T0 + 12 * SIZE, SIZE) == T0 + 8 * SIZE
    set_aside(store, 7, "1")
    write.rows("labels", [7])  # 3 more labels: the start's total is 6 again
    assert whole_walk(store, T0 + 12 * SIZE) == T0 + 3 * SIZE
    for _ in range(2):
        assert last(store, "m", T0 + 12 * SIZE, SIZE) == T0 + 3 * SIZE


def test_the_predictions_of_the_last_seen_window_set_aside_its_labels_kept(store: Store) -> None:
    write, last = Writer(store), LastSeen()
    write.rows("predictions", [2, 7])
    write.rows("labels", range(12))
    assert last(store, "m", T0 + 12 * SIZE, SIZE) == T0 + 8 * SIZE
    set_aside(store, 7, "1")
    assert whole_walk(store, T0 + 12 * SIZE) == T0 + 3 * SIZE
    for _ in range(2):
        assert last(store, "m", T0 + 12 * SIZE, SIZE) == T0 + 3 * SIZE


def test_the_last_seen_window_losing_its_traffic_reads_back_past_it(store: Store) -> None:
    """Rows of the window last seen gone with no set-aside record (a hand delete): its
    totals changed, its traffic is read again, and the walk goes on below it."""
    write, last = Writer(store), LastSeen()
    write.rows("predictions", [2, 7])
    write.rows("labels", range(12))
    assert last(store, "m", T0 + 12 * SIZE, SIZE) == T0 + 8 * SIZE
    with store.engine.begin() as conn:
        for table in (t.windows, t.window_parts):
            c = table.c
            conn.execute(
                delete(table).where((c.window_start_ms == T0 + 7 * SIZE) & (c.model_version == "1"))
            )
    assert (
        last(store, "m", T0 + 12 * SIZE, SIZE) == T0 + 3 * SIZE == whole_walk(store, T0 + 12 * SIZE)
    )


def test_windows_retention_deleted_are_forgotten(store: Store) -> None:
    write, last = Writer(store), LastSeen()
    write.rows("predictions", [0])
    write.rows("labels", range(1, 30))
    assert last(store, "m", T0 + 30 * SIZE, SIZE) == T0 + SIZE
    assert len(last._models["m"].known) == 30
    retain(store, 20)
    assert last(store, "m", T0 + 30 * SIZE, SIZE) is None
    assert sorted(last._models["m"].known) == [T0 + w * SIZE for w in range(20, 30)]


def test_windows_retention_deleted_and_stored_again_are_read_again(store: Store) -> None:
    """Retention deletes windows 0 and 1; late labels store window 0 again with the total
    its predictions had: the gone window 1 drops the model's entries."""
    write, last = Writer(store), LastSeen()
    write.rows("predictions", [0])
    write.rows("labels", range(1, 30))
    assert last(store, "m", T0 + 30 * SIZE, SIZE) == T0 + SIZE
    retain(store, 2)
    write.rows("labels", [0])
    assert whole_walk(store, T0 + 30 * SIZE) is None
    assert last(store, "m", T0 + 30 * SIZE, SIZE) is None


def test_windows_set_aside_under_every_lookup_fall_back_to_the_whole_walk(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A set-aside between the first and last read of each try: nothing read is kept,
    and after the last try the whole walk answers."""
    write, last = Writer(store), LastSeen()
    write.rows("predictions", [2, 7])
    write.rows("labels", range(12))
    moved = itertools.count()
    monkeypatch.setattr(last_seen, "_set_aside_rows", lambda store, model: next(moved))
    assert last(store, "m", T0 + 12 * SIZE, SIZE) == T0 + 8 * SIZE
    assert last._models["m"].known == {}
    assert next(moved) == 2 * last_seen.ATTEMPTS


def test_models_and_entries_are_bounded(store: Store) -> None:
    last = LastSeen(run=4, limit=10, models=2)
    for model in ("a", "b", "c"):
        Writer(store, model).rows("labels", range(25))
        assert last(store, model, T0 + 25 * SIZE, SIZE) is None
        assert len(last._models[model].known) <= 10
    assert list(last._models) == ["b", "c"]  # the least recently asked went
    assert last(store, "c", T0 + 25 * SIZE, SIZE) is None  # what went is read again
    assert last(store, "a", T0 + 25 * SIZE, SIZE) is None


def test_a_fold_under_the_traffic_read_is_not_remembered(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read whose two SELECTs straddle a fold misses the folded parts: the start's
    count read is short of its totals, so the next tick reads it again."""
    write, last = Writer(store), LastSeen()
    write.rows("predictions", [2, 7])
    write.rows("labels", range(12))
    real = store.windows
    short = [True]

    def windows(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        if short[0]:  # the predictions of start 7 folded between the two SELECTs
            short[0] = False
            out = [
                w for w in out if (w.summary.start_ms, w.summary.version) != (T0 + 7 * SIZE, "1")
            ]
        return out

    monkeypatch.setattr(store, "windows", windows)
    assert last(store, "m", T0 + 12 * SIZE, SIZE) == T0 + 3 * SIZE  # what the read saw
    assert (
        last(store, "m", T0 + 12 * SIZE, SIZE) == T0 + 8 * SIZE == whole_walk(store, T0 + 12 * SIZE)
    )


def test_policies_at_different_ticks_keep_each_others_windows(store: Store) -> None:
    write = Writer(store)
    write.rows("predictions", [3, 200])
    write.rows("labels", range(300))
    last = LastSeen()
    for at in (300, 150):
        assert last(store, "m", T0 + at * SIZE, SIZE) == whole_walk(store, T0 + at * SIZE)
    before = last.windows_read
    for _ in range(3):
        for at in (300, 150):
            assert last(store, "m", T0 + at * SIZE, SIZE) == whole_walk(store, T0 + at * SIZE)
    assert last.windows_read == before  # nothing new: nothing read again


def test_policies_on_threads_answer_as_the_whole_walk(store: Store) -> None:
    write = Writer(store)
    write.rows("predictions", [3, 9])
    write.rows("labels", range(20))
    Writer(store, "n").rows("labels", range(20))
    last, wrong = LastSeen(run=2), []

    def ticks(model: str, at: int) -> None:
        expected = whole_walk(store, T0 + at * SIZE, model)
        for _ in range(20):
            got = last(store, model, T0 + at * SIZE, SIZE)
            if got != expected:
                wrong.append((model, at, got))

    threads = [
        threading.Thread(target=ticks, args=(m, at)) for m in ("m", "n") for at in (20, 8, 5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong
    assert last._models["m"].lock is not last._models["n"].lock


def apply(store: Store, write: Writer, op: tuple[Any, ...]) -> None:
    """One step of a random history (the ops of :func:`histories`)."""
    kind, *args = op
    if kind == "write":
        role, windows, n, version = args
        write.rows(role, windows, n, version)
    elif kind == "aside":
        set_aside(store, args[0], args[1], write.model)
    elif kind == "aside last seen":  # a key of the window the cache has found
        seen = whole_walk(store, T0 + 32 * SIZE, write.model)
        if seen is not None:
            set_aside(store, (seen - T0) // SIZE - 1, args[0], write.model)
    else:
        retain(store, args[0], write.model)


ROLES = st.sampled_from(["labels", "labels", "predictions", "features"])
OPS = st.one_of(
    st.tuples(
        st.just("write"),
        ROLES,
        st.lists(st.integers(0, 29), min_size=1, max_size=3, unique=True).map(sorted),
        st.integers(1, 3),
        st.sampled_from(["1", "2"]),
    ),
    st.tuples(st.just("aside"), st.integers(0, 29), st.sampled_from(["", "1", "2"])),
    st.tuples(st.just("aside last seen"), st.sampled_from(["", "1", "2"])),
    st.tuples(st.just("retain"), st.integers(0, 12)),
)
STEPS = st.lists(st.tuples(OPS, st.lists(st.integers(0, 32), min_size=1, max_size=3)), max_size=20)
MODELS = itertools.count()


@pytest.fixture(scope="module")
def shared() -> Iterator[Store]:
    """One store for every example (each its own model)."""
    with tempfile.TemporaryDirectory() as folder, Store.open(f"sqlite:///{folder}/s.db") as s:
        yield s


@settings(max_examples=150, deadline=None)
@given(steps=STEPS, run=st.integers(1, 4))
def test_random_histories_answer_as_the_whole_walk(
    shared: Store, steps: list[tuple[tuple[Any, ...], list[int]]], run: int
) -> None:
    """Writes of random roles and versions into random windows, keys set aside, retention,
    rewrites after both, between ticks of random order: every answer the whole walk's."""
    model = f"m{next(MODELS)}"
    write, last = Writer(shared, model), LastSeen(run=run)
    for op, ats in steps:
        apply(shared, write, op)
        for at in ats:
            expected = whole_walk(shared, T0 + at * SIZE, model)
            assert last(shared, model, T0 + at * SIZE, SIZE) == expected, (op, at)


@pytest.mark.parametrize("seed", range(24))
def test_random_histories_of_seeds_answer_as_the_whole_walk(store: Store, seed: int) -> None:
    """The review's history: the key set aside is often the window last seen's."""
    rng = np.random.default_rng(seed)
    write, last = Writer(store), LastSeen(run=int(rng.integers(1, 5)))
    for _ in range(25):
        op = str(rng.choice(["write", "write", "write", "aside", "retain"]))
        if op == "write":
            role = str(rng.choice(["labels", "labels", "predictions", "features"]))
            windows = sorted({int(w) for w in rng.integers(0, 30, size=3)})
            apply(
                store,
                write,
                (op, role, windows, int(rng.integers(1, 4)), str(rng.choice(["1", "2"]))),
            )
        elif op == "aside":
            seen = whole_walk(store, T0 + 32 * SIZE)
            w = int(rng.integers(0, 30))
            if seen is not None and rng.random() >= 0.3:
                w = (seen - T0) // SIZE - 1
            apply(store, write, (op, w, str(rng.choice(["", "1", "2"]))))
        else:
            apply(store, write, (op, int(rng.integers(0, 10))))
        for at in rng.integers(0, 32, size=2):
            expected = whole_walk(store, T0 + int(at) * SIZE)
            assert last(store, "m", T0 + int(at) * SIZE, SIZE) == expected
