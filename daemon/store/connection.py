"""The store's SQLAlchemy engine, set up for SQLite or PostgreSQL, and the two ways in:
:func:`writing` and :func:`reading`.

Every store call goes through one of them, so every database failure reaches the caller
the same way: as :class:`~watchkeeper.daemon.errors.StoreUnavailableError` naming the
operation, retriable — never as a raw SQLAlchemy error in one place and a translated one in
another.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, QueuePool
from watchkeeper.daemon.errors import StoreUnavailableError

STORE_ERRORS = (DBAPIError, PoolTimeoutError)
"""What the database (or the connection pool) raises when the store cannot do its part."""

READ_ONLY = "watchkeeper_read_only"
"""Execution option marking a connection that only reads (see :func:`reader`)."""

SQLITE_POOL_SIZE = 4
"""SQLite connections kept open for the store's lifetime: the loop's writer, the check
scheduler, readers on the HTTP server's threads; more are opened when all are out and
closed when returned (``SQLITE_POOL_OVERFLOW``)."""
SQLITE_POOL_OVERFLOW = 16
"""Beyond the pool: more than every thread that may hold one at once (the HTTP server's 8
workers, the loop, the scheduler, delivery), so no thread waits on the pool (an overflow
connection costs an open and a close; closing it is never the last, so no checkpoint)."""

SQLITE_JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024
"""Bytes a WAL file is truncated back to after a checkpoint resets it: SQLite checkpoints
on commit once the WAL holds 1000 pages (``wal_autocheckpoint``, ~4 MB) and then reuses
the file from its start, so without a limit one large transaction would leave a large
file behind for good (SQLite docs, "PRAGMA journal_size_limit")."""


def reader(engine: Engine) -> Connection:
    """A connection for reading only; on SQLite it does not wait for the write lock."""
    return engine.connect().execution_options(**{READ_ONLY: True})


@contextmanager
def writing(engine: Engine, operation: str) -> Iterator[Connection]:
    """One write transaction (committed when the block ends, rolled back when it raises);
    a database error becomes :class:`StoreUnavailableError` for ``operation``."""
    try:
        with engine.begin() as conn:
            yield conn
    except STORE_ERRORS as exc:
        raise StoreUnavailableError(operation, exc) from exc


@contextmanager
def reading(engine: Engine, operation: str) -> Iterator[Connection]:
    """A read-only connection (see :func:`reader`); a database error becomes
    :class:`StoreUnavailableError` for ``operation``."""
    try:
        with reader(engine) as conn:
            yield conn
    except STORE_ERRORS as exc:
        raise StoreUnavailableError(operation, exc) from exc


def create_store_engine(url: str) -> Engine:
    """An engine set up for the daemon's access pattern on SQLite or PostgreSQL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # connections are kept for the store's lifetime (disposed in Store.close): with
        # one connection per use, closing the last connection to a WAL database ran a
        # checkpoint on every commit (6–18 ms each, measured). Checkpoints still happen:
        # SQLite runs one on the commit that takes the WAL past 1000 pages.
        # check_same_thread off: a pooled connection serves one thread at a time, but
        # not always the thread that opened it (SQLAlchemy's pysqlite docs).
        engine = create_engine(
            url,
            poolclass=QueuePool,
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=SQLITE_POOL_OVERFLOW,
            pool_timeout=30,
            connect_args={"timeout": 30, "check_same_thread": False},
        )
        _forget_across_fork(engine)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            # pysqlite's own BEGIN is deferred; writers take the lock up front instead
            # (BEGIN IMMEDIATE below) so two writers never deadlock on a lock upgrade.
            dbapi_connection.isolation_level = None
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable against a process crash (kill -9) in WAL mode; only an OS
            # crash or power loss can lose the last commits (SQLite docs, "PRAGMA synchronous")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute(f"PRAGMA journal_size_limit={SQLITE_JOURNAL_SIZE_LIMIT}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # readers (connections marked read_only) take no write lock: in WAL mode they
            # read a snapshot while a writer commits
            read_only = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(
        parsed,
        pool_size=2,
        max_overflow=2,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 10},
    )
    _forget_across_fork(engine)
    return engine


PID = "watchkeeper_pid"
"""Key of the pool record's ``info``: the process that opened the connection."""


def _forget_across_fork(engine: Engine) -> None:
    """A pooled connection is used only by the process that opened it.

    A process forked with the store open (tests fork the daemon's parts) inherits the
    parent's pooled connections: using one from the child would share the parent's SQLite
    file handle and locks, or PostgreSQL socket. The child's checkout of such a connection
    drops it without closing it (closing would end the parent's session) and the pool
    opens a fresh one — the recipe of SQLAlchemy's "Using Connection Pools with
    Multiprocessing or os.fork()"."""

    @event.listens_for(engine, "connect")
    def _mark(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[PID] = os.getpid()

    @event.listens_for(engine, "checkout")
    def _check(
        _dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        if record.info.get(PID, os.getpid()) != os.getpid():
            record.dbapi_connection = proxy.dbapi_connection = None  # type: ignore[misc]
            raise DisconnectionError(
                f"connection opened by process {record.info[PID]}, used by {os.getpid()}"
            )
