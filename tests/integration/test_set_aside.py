"""Corrupt stored windows set aside (SQLite and PostgreSQL): housekeeping's step moves a
window its reads found corrupt, every stored row as it was, to ``set_aside_windows``;
reads stop meeting it, status counts it, nothing is deleted; a window repaired meanwhile
stays."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from watchkeeper.daemon.checks.set_aside import SetAside
from watchkeeper.daemon.cli.main import main
from watchkeeper.daemon.eventtime.windows import WindowState
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store import window_parts
from watchkeeper.daemon.store.store import Store

from tests.integration.test_window_parts import HOUR, batch, parts_count
from tests.support import wait_until, write_config

DAMAGED = b'{"format": 3, "rows": "not rows"}'


def two_windows(store: Store, flushes: int) -> None:
    """Windows 0 and HOUR of "fraud", ``flushes`` parts each (3 + 2 events per flush)."""
    rng = np.random.default_rng(11)
    for i in range(flushes):
        state = WindowState(3600, 10 * 3600)
        state.add(batch(rng, np.array([10, 20, 30, HOUR + 10, HOUR + 20]), 5 * i))
        store.commit("g", state.drain(), {("preds", 0): 5 * (i + 1)})


def stored(store: Store) -> list[tuple[int, bytes]]:
    p = t.window_parts.c
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(p.id, p.summary).where(p.window_start_ms == HOUR).order_by(p.id)
        ).all()
    return [(int(r.id), bytes(r.summary)) for r in rows]


def damage(store: Store, part_id: int, blob: bytes = DAMAGED) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            t.window_parts.update().where(t.window_parts.c.id == part_id).values(summary=blob)
        )


def test_a_corrupt_window_is_moved_aside_whole_and_reads_stop_meeting_it(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Store.open(store_url) as store:
        two_windows(store, 2)
        (first, first_blob), (second, _) = stored(store)
        damage(store, second)
        assert [w.summary.start_ms for w in store.windows("fraud")] == [0]
        assert store.skipped_windows.counts() == {"fraud": 1}
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="watchkeeper.daemon.store.window_parts"):
            assert SetAside(store)() == 2  # both parts of window HOUR
        (record,) = [r for r in caplog.records if "set aside" in r.getMessage()]
        assert f"model 'fraud' version '3', window {HOUR} of {HOUR} ms" in record.getMessage()
        # reads no longer meet it: nothing more skipped, the other window read as before
        (left,) = store.windows("fraud")
        assert (left.summary.start_ms, left.events) == (0, 6)
        assert store.skipped_windows.counts() == {"fraud": 1}
        assert parts_count(store) == 2  # window 0's two parts
        # kept as stored, the corrupt row marked, the error as the reason
        a = t.set_aside_windows.c
        with store.engine.connect() as conn:
            rows = conn.execute(select(t.set_aside_windows).order_by(a.id)).all()
        assert [(r.part_id, r.corrupt, r.events) for r in rows] == [
            (first, False, 2),
            (second, True, 2),
        ]
        assert bytes(rows[0].summary) == first_blob and bytes(rows[1].summary) == DAMAGED
        assert all(f"part {second}" in r.reason and "corrupt" in r.reason for r in rows)
        assert all(r.window_start_ms == HOUR and r.model_version == "3" for r in rows)
        assert store.set_aside_counts() == {"fraud": {"windows": 1, "rows": 2, "events": 4}}
        (met,) = store.skipped_windows.recent()
        assert met.set_aside and store.skipped_windows.pending(10) == []
        assert SetAside(store)() == 0  # nothing pending: no query, no move


def test_a_corrupt_base_row_goes_with_its_parts(store_url: str) -> None:
    with Store.open(store_url) as store:
        two_windows(store, 1)
        with store.engine.begin() as conn:
            window_parts.fold(conn, store.dialect, ("fraud", "3", HOUR, HOUR))
        two_windows(store, 1)  # one more part on top of the base
        w = t.windows.c
        with store.engine.begin() as conn:
            conn.execute(
                t.windows.update().where(w.window_start_ms == HOUR).values(summary=b"{oops")
            )
        assert [x.summary.start_ms for x in store.windows("fraud")] == [0]
        assert SetAside(store)() == 2
        a = t.set_aside_windows.c
        with store.engine.connect() as conn:
            got = conn.execute(select(a.part_id, a.corrupt).order_by(a.id)).all()
            bases = conn.execute(select(func.count()).select_from(t.windows)).scalar()
        assert [(r.part_id is None, r.corrupt) for r in got] == [(True, True), (False, False)]
        assert bases == 0 and store.set_aside_counts()["fraud"]["events"] == 4


def test_a_window_repaired_before_housekeeping_stays(store_url: str) -> None:
    with Store.open(store_url) as store:
        two_windows(store, 1)
        ((part_id, blob),) = stored(store)
        damage(store, part_id)
        store.windows("fraud")
        damage(store, part_id, blob)  # an operator put the row back
        assert SetAside(store)() == 0
        assert [w.summary.start_ms for w in store.windows("fraud")] == [0, HOUR]
        assert store.set_aside_counts() == {}
        assert store.skipped_windows.pending(10) == []  # settled: not tried every round
        with store.engine.connect() as conn:
            n = conn.execute(select(func.count()).select_from(t.set_aside_windows)).scalar()
        assert n == 0


def lock_waiters(url: str) -> int:
    """Backends of this database waiting for a row lock (another connection's view)."""
    with Store.open(url, migrate=False) as probe, probe.engine.connect() as conn:
        query = text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(conn.execute(query).scalar() or 0)


def test_two_replicas_setting_the_same_window_aside_move_it_once(pg_database: str) -> None:
    with Store.open(pg_database) as a, Store.open(pg_database) as b:
        two_windows(a, 2)
        _, (second, _) = stored(a)
        damage(a, second)
        a.windows("fraud")
        b.windows("fraud")
        key = ("fraud", "3", HOUR, HOUR)
        with a.engine.begin() as conn_a:
            assert window_parts.set_aside(conn_a, a.dialect, key) == 2
            # b's transaction waits on a's row locks; once a commits it finds nothing
            moved: list[int] = []

            def other() -> None:
                with b.engine.begin() as conn_b:
                    moved.append(window_parts.set_aside(conn_b, b.dialect, key))

            thread = threading.Thread(target=other)
            thread.start()
            wait_until(lambda: lock_waiters(pg_database) == 1, timeout=30)
            assert thread.is_alive()  # held by a's locks
        thread.join(timeout=30)
        assert moved == [0]
        assert a.set_aside_counts() == {"fraud": {"windows": 1, "rows": 2, "events": 4}}


def test_a_commit_folding_a_crowded_corrupt_window_sets_it_aside(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Store.open(store_url) as store:
        two_windows(store, window_parts.FOLD_AT - 1)  # one part short of a fold
        damage(store, stored(store)[3][0])
        with caplog.at_level(logging.WARNING, logger="watchkeeper.daemon.store"):
            two_windows(store, 1)  # the 16th part: this commit folds both windows
        messages = [r.getMessage() for r in caplog.records]
        assert sum("window not folded" in m for m in messages) == 1
        assert sum("window set aside" in m for m in messages) == 1
        skipped = store.skipped_windows
        assert skipped.counts() == {} and skipped.part_counts() == {"fraud": 1}  # no read
        assert skipped.pending(10) == []  # moved in the commit: nothing left to do
        assert store.set_aside_counts() == {
            "fraud": {"windows": 1, "rows": window_parts.FOLD_AT, "events": 2 * 16}
        }
        (left,) = store.windows("fraud")  # window 0, folded; nothing skipped
        assert (left.summary.start_ms, left.events) == (0, 3 * window_parts.FOLD_AT)
        assert parts_count(store) == 0 and skipped.counts() == {}


def test_a_part_damaged_as_text_on_sqlite_is_set_aside_as_its_bytes(tmp_path: Path) -> None:
    """``sqlite3 store.db "UPDATE window_parts SET summary = '…'"`` stores text, which
    reads back as ``str``: the commit that folds it sets it aside as those bytes."""
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        two_windows(store, window_parts.FOLD_AT - 1)
        part_id = stored(store)[3][0]
        with store.engine.begin() as conn:
            conn.execute(
                text("UPDATE window_parts SET summary = :s WHERE id = :id"),
                {"s": "not json é", "id": part_id},
            )
        two_windows(store, 1)  # the 16th part: this commit folds both windows
        a = t.set_aside_windows.c
        with store.engine.connect() as conn:
            (row,) = conn.execute(select(a.summary).where(a.corrupt)).all()
        assert bytes(row.summary) == "not json é".encode()
        assert store.set_aside_counts()["fraud"]["windows"] == 1
        assert store.skipped_windows.pending(10) == []


def test_a_move_that_fails_leaves_the_window_and_the_commit_goes_through(
    store_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*_args: object) -> int:
        raise SQLAlchemyError("the move is refused")

    with Store.open(store_url) as store:
        two_windows(store, window_parts.FOLD_AT - 1)
        damage(store, stored(store)[3][0])
        monkeypatch.setattr(window_parts, "set_aside", refused)
        with caplog.at_level(logging.ERROR, logger="watchkeeper.daemon.store.window_parts"):
            two_windows(store, 1)  # folds window 0; window HOUR's move fails
        assert any("not set aside, left as stored" in r.getMessage() for r in caplog.records)
        assert store.offsets("g") == {("preds", 0): 5}  # the last commit's offsets: committed
        assert store.skipped_windows.pending(10) == [("fraud", "3", HOUR, HOUR)]
        assert store.set_aside_counts() == {}
        assert parts_count(store) == window_parts.FOLD_AT  # window HOUR, as stored
        monkeypatch.undo()
        assert SetAside(store)() == window_parts.FOLD_AT  # housekeeping moves it later


def test_the_status_command_shows_the_windows_set_aside(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Store.open(store_url) as store:
        two_windows(store, 2)
        damage(store, stored(store)[1][0])
        store.windows("fraud")
        assert SetAside(store)() == 2
    config = write_config(
        tmp_path / "watchkeeper.yaml",
        {
            "kafka": {"bootstrap_servers": "x:1", "topics": {"predictions": {"name": "p"}}},
            "store": {"url": store_url},
        },
    )
    assert main(["status", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "windows set aside: corrupt" in out
    (row,) = [line for line in out.splitlines() if "│ fraud" in line and "│ 1 " in line]
    assert [c.strip() for c in row.strip("│ ").split("│")] == ["fraud", "1", "2", "4"]
