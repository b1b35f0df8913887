"""Which replica runs the checks and delivers the notifications.

Every replica ingests its share of the partitions (Kafka's consumer group splits them);
exactly one — the leader — runs the scheduled checks, delivers the outbox and does the
housekeeping, so an incident is decided once and notified once per channel.

Leadership is a PostgreSQL session-level advisory lock (``pg_try_advisory_lock``) held
on a connection of its own, keyed by the consumer group: no table, no clock, no lease to
renew. The lock lives exactly as long as the leader's database session, so when the
leader dies (``kill -9``, host lost) the server ends the session and the lock is free at
once — or, when the network rather than the process fails, once TCP keepalives give up on
the session (``keepalives_*`` below: about 20 s). Standbys try to take it every
``interval``; the leader checks its session as often and steps down as soon as the
check fails, before another replica can have taken over (its session is gone), so two
leaders never overlap for longer than one ``interval`` of a leader that does not know yet.

A SQLite store cannot be shared between hosts: its one daemon is always the leader.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

# libpq keepalives on the lock's connection: a half-open session is noticed within
# idle + interval × count ≈ 5 + 5 × 3 = 20 s, and the server drops its lock as well.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def lock_key(group_id: str) -> int:
    """A stable signed 64-bit advisory-lock key for a consumer group."""
    digest = hashlib.sha256(f"watchkeeper-leader:{group_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Leadership:
    """Holds (or waits for) the leader lock; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        group_id: str,
        registry: CollectorRegistry,
        interval_s: float = 2.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.key = lock_key(group_id)
        self.interval_s = interval_s
        self.on_change = on_change
        self.shared = engine.dialect.name == "postgresql"
        # a one-connection engine of its own: the lock must not ride on a pooled
        # connection that other code could return, reset or share
        self._engine: Engine | None = (
            create_engine(engine.url, poolclass=NullPool, connect_args=KEEPALIVES)
            if self.shared
            else None
        )
        self._conn: Connection | None = None
        self._leading = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="wk-leadership", daemon=False)
        self._gauge = Gauge(
            "watchkeeper_leader",
            "1 while this replica runs the checks and delivers notifications.",
            registry=registry,
        )

    def is_leader(self) -> bool:
        return self._leading.is_set()

    def start(self) -> Leadership:
        if not self.shared:
            self._set(True)
            return self
        self._attempt()  # a lone replica leads from its first check on
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._release()
        if self._engine is not None:
            self._engine.dispose()

    # -- the loop -----------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.is_leader():
                self._confirm()
            else:
                self._attempt()

    def _attempt(self) -> None:
        assert self._engine is not None
        try:
            if self._conn is None:
                self._conn = self._engine.connect()
            got = self._conn.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}
            ).scalar()
            self._conn.commit()  # end the implicit transaction; the session lock stays
        except DBAPIError as exc:
            log.warning("leadership: the store is unreachable (%s)", type(exc).__name__)
            self._drop_connection()
            return
        if got:
            log.info("leadership: this replica leads (lock %d)", self.key)
            self._set(True)

    def _confirm(self) -> None:
        # a session lock lasts as long as its session: a live session still holds it
        try:
            assert self._conn is not None
            self._conn.execute(text("SELECT 1"))
            self._conn.commit()
        except (DBAPIError, AssertionError) as exc:
            log.error("leadership lost: the lock's session failed (%s)", type(exc).__name__)
            self._drop_connection()
            self._set(False)

    def _release(self) -> None:
        if self._conn is not None and self.is_leader():
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
                self._conn.commit()
            except DBAPIError:
                pass  # the session is going away: the server drops the lock with it
        self._drop_connection()
        self._set(False)

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(DBAPIError):
                self._conn.close()
            self._conn = None

    def _set(self, leading: bool) -> None:
        if leading == self.is_leader():
            return
        if leading:
            self._leading.set()
        else:
            self._leading.clear()
        self._gauge.set(1 if leading else 0)
        if self.on_change is not None:
            try:
                self.on_change(leading)
            except Exception:
                log.exception("acting on a leadership change failed")
