"""The store: window summaries, consumer offsets and quarantined records, via SQLAlchemy 2.

SQLite (a file, the default) or PostgreSQL (by URL; several replicas may share it).
The one promise everything rests on: :meth:`Store.commit` writes the window deltas, the
consumer offsets that produced them, the watermarks, newly learned feature kinds and the
quarantined records in ONE transaction. After a crash the consumer seeks to the stored
offsets, so every event is in the store exactly once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from watchkeeper.daemon import tables as t
from watchkeeper.daemon.decode import Quarantined
from watchkeeper.daemon.engine import create_store_engine, reader
from watchkeeper.daemon.errors import MigrationError, StoreUnavailableError
from watchkeeper.daemon.labels import JoinBuffer, JoinSettings, join_in_transaction
from watchkeeper.daemon.queries import StoreQueries, TopicPartitionKey
from watchkeeper.daemon.upsert import dialect_insert, upsert
from watchkeeper.daemon.windows import Delta, StreamKey, WindowKey
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.window import WindowSummary

_MIGRATION_LOCK = 0x5741_5443  # "WATC": PostgreSQL advisory lock id for migrations


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Store(StoreQueries):
    """Access to the store; see the module docstring. Build with :meth:`open`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        store = cls(create_store_engine(url))
        if migrate:
            store.migrate()
        return store

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------------------
    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with Alembic; replicas take turns on PostgreSQL."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        except DBAPIError as exc:
            # the URL without its password and query (credentials may sit there)
            shown = self.engine.url.set(query={}).render_as_string(hide_password=True)
            raise MigrationError(shown, exc) from exc

    def ping(self) -> bool:
        try:
            with reader(self.engine) as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError:
            return False
        return True

    # -- the commit -----------------------------------------------------------------------
    def commit(
        self,
        group_id: str,
        delta: Delta,
        offsets: Mapping[TopicPartitionKey, int],
        kinds: Mapping[tuple[str, str], str] | None = None,
        quarantined: Sequence[Quarantined] = (),
        joins: JoinBuffer | None = None,
        join_settings: JoinSettings | None = None,
        expire_joins: bool = True,
    ) -> None:
        """Write everything of one flush in one transaction, or nothing.

        ``joins`` are the predictions and labels to store and match (:mod:`labels`); the
        performance of the pairs they complete is merged into their windows here too.

        Raises :class:`StoreUnavailableError` when the store cannot be reached or the
        transaction fails; nothing is then committed and the caller keeps its state.
        """
        attempts = 3
        for attempt in range(attempts):
            try:
                with self.engine.begin() as conn:
                    graded: dict[WindowKey, WindowSummary] = {}
                    if joins:
                        settings = join_settings or JoinSettings()
                        graded = join_in_transaction(
                            conn, self._insert_fn(), joins, delta, settings, expire_joins
                        )
                    self._merge_windows(conn, delta, graded)
                    self._upsert_offsets(conn, group_id, offsets)
                    self._merge_watermarks(conn, group_id, delta.watermarks)
                    if kinds:
                        self._insert_kinds(conn, kinds)
                    if quarantined:
                        self._insert_quarantine(conn, quarantined)
                return
            except IntegrityError as exc:
                # another replica inserted the same new window first: retry as an update
                if attempt == attempts - 1:
                    raise StoreUnavailableError("commit", exc) from exc
            except (OperationalError, DBAPIError) as exc:
                raise StoreUnavailableError("commit", exc) from exc

    def _insert_fn(self) -> Any:
        return dialect_insert(self.dialect)

    def _merge_windows(
        self, conn: Connection, delta: Delta, graded: Mapping[WindowKey, WindowSummary]
    ) -> None:
        keys = set(delta.windows) | set(delta.late) | set(graded)
        if not keys:
            return
        size = delta.size_ms
        now = _utcnow()
        for key in sorted(keys):  # a fixed order: two replicas lock rows in the same order
            fresh = delta.windows.get(key)
            if key in graded:
                if fresh is None:
                    fresh = graded[key]
                else:  # never mutate the caller's delta: a failed commit restores it
                    fresh = WindowSummary.from_dict(fresh.to_dict())
                    fresh.merge(graded[key])
            where = (
                (t.windows.c.model == key.model)
                & (t.windows.c.model_version == key.version)
                & (t.windows.c.window_size_ms == size)
                & (t.windows.c.window_start_ms == key.start_ms)
            )
            query = select(t.windows.c.summary, t.windows.c.late_events).where(where)
            if self.dialect == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).first()
            late = delta.late.get(key, 0)
            if row is None:
                summary = fresh or WindowSummary(key.model, key.version, key.start_ms, size)
                conn.execute(
                    t.windows.insert().values(
                        model=key.model,
                        model_version=key.version,
                        window_size_ms=size,
                        window_start_ms=key.start_ms,
                        events=summary.count,
                        late_events=late,
                        first_ts_ms=summary.first_ts_ms,
                        last_ts_ms=summary.last_ts_ms,
                        summary=orjson.dumps(summary.to_dict()),
                        updated_at=now,
                    )
                )
                continue
            stored = WindowSummary.from_dict(orjson.loads(row.summary))
            if fresh is not None:
                stored.merge(fresh)
            conn.execute(
                t.windows.update()
                .where(where)
                .values(
                    events=stored.count,
                    late_events=row.late_events + late,
                    first_ts_ms=stored.first_ts_ms,
                    last_ts_ms=stored.last_ts_ms,
                    summary=orjson.dumps(stored.to_dict()),
                    updated_at=now,
                )
            )

    def _upsert_offsets(
        self, conn: Connection, group_id: str, offsets: Mapping[TopicPartitionKey, int]
    ) -> None:
        now = _utcnow()
        rows = [
            {
                "group_id": group_id,
                "topic": topic,
                "partition": part,
                "next_offset": off,
                "updated_at": now,
            }
            for (topic, part), off in sorted(offsets.items())
        ]
        upsert(
            conn,
            t.consumer_offsets,
            rows,
            ["group_id", "topic", "partition"],
            ["next_offset", "updated_at"],
        )

    def _merge_watermarks(
        self, conn: Connection, group_id: str, marks: Mapping[StreamKey, int]
    ) -> None:
        if not marks:
            return
        stored = self.watermarks(group_id, conn=conn)
        rows = [
            {
                "group_id": group_id,
                "model": m[0],
                "role": m[1],
                "watermark_ms": max(v, stored.get(m, v)),
            }
            for m, v in sorted(marks.items())
        ]
        upsert(conn, t.watermarks, rows, ["group_id", "model", "role"], ["watermark_ms"])

    def _insert_kinds(self, conn: Connection, kinds: Mapping[tuple[str, str], str]) -> None:
        rows = [{"model": m, "feature": f, "kind": k} for (m, f), k in sorted(kinds.items())]
        upsert(conn, t.feature_kinds, rows, ["model", "feature"], None)

    def _insert_quarantine(self, conn: Connection, entries: Sequence[Quarantined]) -> None:
        now = _utcnow()
        rows = [
            {
                "received_at": now,
                "topic": q.topic,
                "partition": q.partition,
                "offset": q.offset,
                "reason": q.reason,
                "detail": q.detail,
                "size": q.size,
                "raw": q.raw,
            }
            for q in entries
        ]
        upsert(conn, t.quarantine, rows, ["topic", "partition", "offset"], None)

    def prune(self, before_ms: int) -> dict[str, int]:
        """Delete windows (by start), quarantined records and delivered or given-up
        notifications older than ``before_ms``; returns how many rows each lost."""
        from sqlalchemy import delete

        received = dt.datetime.fromtimestamp(before_ms / 1000, dt.UTC)
        statements = {
            "windows": delete(t.windows).where(t.windows.c.window_start_ms < before_ms),
            "quarantine": delete(t.quarantine).where(t.quarantine.c.received_at < received),
            "outbox": delete(t.outbox).where(
                (t.outbox.c.created_ms < before_ms) & (t.outbox.c.state != "pending")
            ),
        }
        try:
            with self.engine.begin() as conn:
                return {
                    name: int(conn.execute(stmt).rowcount or 0) for name, stmt in statements.items()
                }
        except DBAPIError as exc:
            raise StoreUnavailableError("prune", exc) from exc

    def secret(self, name: str, size: int = 32) -> bytes:
        """A random secret of the store's own, made on first use and kept: every replica
        reads the same one (the first writer wins a race)."""
        import secrets

        with self.engine.begin() as conn:
            upsert(
                conn,
                t.store_secrets,
                [{"name": name, "value": secrets.token_bytes(size)}],
                ["name"],
                None,
            )
            value = conn.execute(
                select(t.store_secrets.c.value).where(t.store_secrets.c.name == name)
            ).scalar_one()
        return bytes(value)

    def save_reference(self, profile: ReferenceProfile, name: str = "default") -> None:
        """Keep a reference profile under (model, name), replacing an older one."""
        row = {
            "model": profile.model,
            "name": name,
            "created_at": _utcnow(),
            "profile": orjson.dumps(profile.to_dict()),
        }
        try:
            with self.engine.begin() as conn:
                upsert(
                    conn, t.reference_profiles, [row], ["model", "name"], ["created_at", "profile"]
                )
        except (OperationalError, DBAPIError) as exc:
            raise StoreUnavailableError("save reference", exc) from exc
