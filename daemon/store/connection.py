"""The store's SQLAlchemy engine, set up for SQLite or PostgreSQL, and the two ways in:
:func:`writing` and :func:`reading`.

Every store call goes through one of them, so every database failure reaches the caller
the same way: as :class:`~watchkeeper.daemon.errors.StoreUnavailableError` naming the
operation, retriable — never as a raw SQLAlchemy error in one place and a translated one in
another.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import NullPool
from watchkeeper.daemon.errors import StoreUnavailableError

STORE_ERRORS = (DBAPIError, PoolTimeoutError)
"""What the database (or the connection pool) raises when the store cannot do its part."""

READ_ONLY = "watchkeeper_read_only"
"""Execution option marking a connection that only reads (see :func:`reader`)."""


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
        # one connection per use: SQLite connections are cheap, and a pooled one would
        # outlive a test or a fork; the file is the shared state
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})

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
    return create_engine(
        parsed,
        pool_size=2,
        max_overflow=2,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 10},
    )
