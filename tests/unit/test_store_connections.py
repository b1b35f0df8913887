"""The store's SQLite connections: kept open and reused for the store's lifetime, closed
when it closes, never shared with a forked process, and the WAL file still bounded
(checkpoints happen on commit, not only when the last connection closes)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from watchkeeper.daemon.store.connection import (
    SQLITE_JOURNAL_SIZE_LIMIT,
    create_store_engine,
    reading,
    writing,
)
from watchkeeper.daemon.store.store import Store


class Opened:
    """Every DBAPI connection the engine opens, in this process."""

    def __init__(self, store: Store) -> None:
        self.connections: list[sqlite3.Connection] = []
        event.listen(store.engine, "connect", self._connect)

    def _connect(self, dbapi_connection: Any, _record: Any) -> None:
        self.connections.append(dbapi_connection)


def _open(path: Path) -> tuple[Store, Opened]:
    """A migrated store, watched from its first connection on."""
    store = Store(create_store_engine(f"sqlite:///{path}"))
    opened = Opened(store)
    store.migrate()
    return store, opened


def _scratch(store: Store) -> None:
    with writing(store.engine, "test") as conn:
        conn.execute(text("CREATE TABLE scratch (id INTEGER PRIMARY KEY, body BLOB)"))


def test_connections_are_reused_and_closed_with_the_store(tmp_path: Path) -> None:
    store, opened = _open(tmp_path / "store.db")
    _scratch(store)
    for i in range(50):
        with writing(store.engine, "test") as conn:
            conn.execute(text("INSERT INTO scratch (id, body) VALUES (:i, x'00')"), {"i": i})
        with reading(store.engine, "test") as conn:
            assert conn.execute(text("SELECT count(*) FROM scratch")).scalar() == i + 1
        assert store.ping()
    # one connection served the migration and all 151 uses, one after another
    assert len(opened.connections) == 1
    store.close()
    for dbapi_connection in opened.connections:
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            dbapi_connection.execute("SELECT 1")


def test_the_wal_file_stays_bounded_over_many_commits(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with Store.open(f"sqlite:///{path}") as store:
        _scratch(store)
        page = 4096
        with reading(store.engine, "test") as conn:
            page = int(conn.execute(text("PRAGMA page_size")).scalar() or page)
        body = os.urandom(16 * 1024)
        sizes = []
        for i in range(2_000):  # ~32 MB committed, ~8 pages a commit: 16 autocheckpoints
            with writing(store.engine, "test") as conn:
                conn.execute(
                    text("INSERT INTO scratch (id, body) VALUES (:i, :b)"), {"i": i, "b": body}
                )
            sizes.append(Path(f"{path}-wal").stat().st_size)
        written = 2_000 * len(body)
        # the autocheckpoint (1000 pages) resets the WAL: it never holds much more than
        # 1000 pages and the last commit's, whatever was written
        bound = (1000 + 16) * (page + 24)
        assert max(sizes) <= bound < written / 4
        assert max(sizes) <= SQLITE_JOURNAL_SIZE_LIMIT


def test_a_forked_process_opens_its_own_connection(tmp_path: Path) -> None:
    store, opened = _open(tmp_path / "store.db")
    _scratch(store)
    with writing(store.engine, "test") as conn:
        conn.execute(text("INSERT INTO scratch (id, body) VALUES (1, x'00')"))
    parent = list(opened.connections)
    assert len(parent) == 1
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report how many connections it had to open, then exit
        code = 1
        try:
            with writing(store.engine, "child") as conn:
                conn.execute(text("INSERT INTO scratch (id, body) VALUES (2, x'00')"))
            mine = [c for c in opened.connections if c not in parent]
            os.write(write_fd, f"{len(mine)}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        reported = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert reported == "1"  # the child opened its own; the parent's was not used there
    # the parent's connection still works (the child did not close it) and sees the row
    with reading(store.engine, "test") as conn:
        assert conn.execute(text("SELECT count(*) FROM scratch")).scalar() == 2
    assert opened.connections == parent
    store.close()
