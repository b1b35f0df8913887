"""The store: window summaries, consumer offsets and quarantined records, via SQLAlchemy 2.

SQLite (a file, the default) or PostgreSQL (by URL; several replicas may share it).
The one promise everything rests on: :meth:`Store.commit` writes the window deltas, the
consumer offsets that produced them, the per-partition watermarks and consumer status,
newly learned feature kinds, the quarantined records and the label joins in ONE
transaction. After a crash the consumer seeks to the stored offsets and resumes from the
stored watermarks, so every event is in the store exactly once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from watchkeeper.daemon.errors import MigrationError, StoreUnavailableError
from watchkeeper.daemon.eventtime.watermarks import ClockSettings, Mark, MarkKey
from watchkeeper.daemon.eventtime.windows import Delta, WindowKey
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store import window_parts
from watchkeeper.daemon.store.connection import create_store_engine, reader, writing
from watchkeeper.daemon.store.group_offsets import Snapshot, check_alone, claim_offsets
from watchkeeper.daemon.store.label_join import (
    JoinBuffer,
    JoinOutcome,
    JoinSettings,
    join_in_transaction,
)
from watchkeeper.daemon.store.quarantine import Quarantined
from watchkeeper.daemon.store.queries import StoreQueries, TopicPartitionKey
from watchkeeper.daemon.store.skipped_windows import SkippedWindows
from watchkeeper.daemon.store.upsert import dialect_insert, upsert
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
        # shared by every reading thread (HTTP, checks, ingest): made here, never lazily
        self.skipped_windows = SkippedWindows()
        # group → (its topics, the other groups' offsets for them when it claimed them)
        self._claims: dict[str, tuple[tuple[str, ...], Snapshot]] = {}

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
        clocks: ClockSettings | None = None,
        owner: str = "",
    ) -> JoinOutcome:
        """Write everything of one flush in one transaction, or nothing.

        ``joins`` are the predictions and labels to store and match (:mod:`labels`); the
        performance of the pairs they complete is merged into their windows here too.
        Waiting rows expire (when ``expire_joins``) on the group's partition clocks as
        this transaction leaves them (``clocks`` says how to read them). ``owner`` names
        the replica in the partition status rows. Returns what the join did.

        Raises :class:`StoreUnavailableError` when the store cannot be reached or the
        transaction fails; nothing is then committed and the caller keeps its state.
        """
        attempts = 3
        for attempt in range(attempts):
            try:
                with self.engine.begin() as conn:
                    self._upsert_offsets(conn, group_id, offsets)
                    claim = self._claims.get(group_id)
                    if claim is not None and offsets:
                        check_alone(conn, group_id, claim[0], claim[1])
                    self._merge_marks(conn, group_id, delta.marks)
                    self._upsert_statuses(conn, group_id, delta, owner)
                    graded: dict[WindowKey, WindowSummary] = {}
                    outcome = JoinOutcome()
                    if joins is not None and (joins or expire_joins):
                        partitions = (
                            self.partition_clocks(group_id, clocks, delta.now_ms, conn)
                            if clocks is not None
                            else {}
                        )
                        graded, outcome = join_in_transaction(
                            conn,
                            joins,
                            delta,
                            join_settings or JoinSettings(),
                            expire_joins,
                            partitions,
                        )
                        self._count_joins(conn, outcome)
                    # each window's delta as a part of its own; crowded windows folded
                    window_parts.append(conn, delta, graded)
                    set_aside = window_parts.fold_crowded(
                        conn, self.dialect, skipped=self.skipped_windows
                    )
                    if kinds:
                        self._insert_kinds(conn, kinds)
                    if quarantined:
                        self._insert_quarantine(conn, quarantined)
                # settled once committed: a commit rolled back leaves them pending
                for key in set_aside:
                    self.skipped_windows.settled(key)
                return outcome
            except IntegrityError as exc:
                # another replica folded the same new window first: retry, it updates it
                if attempt == attempts - 1:
                    raise StoreUnavailableError("commit", exc) from exc
            except (OperationalError, DBAPIError) as exc:
                raise StoreUnavailableError("commit", exc) from exc
        raise AssertionError("unreachable: the last attempt returns or raises")

    def claim_offsets(
        self, group_id: str, topics: Sequence[str], adopt_from: str | None = None
    ) -> int:
        """See :func:`~watchkeeper.daemon.store.group_offsets.claim_offsets`."""
        adopted, others = claim_offsets(self.engine, group_id, topics, adopt_from)
        # each commit of this group checks that no other group's offsets move meanwhile
        self._claims[group_id] = (tuple(topics), others)
        return adopted

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

    def _merge_marks(self, conn: Connection, group_id: str, marks: Mapping[MarkKey, Mark]) -> None:
        """Per (partition, model), the later of the stored and the new mark: a partition's
        event time never goes back, whoever owned it."""
        if not marks:
            return
        stored = self.partition_marks(group_id, conn=conn)
        rows = []
        for (topic, part, model), mark in sorted(marks.items()):
            old = stored.get((topic, part), {}).get(model)
            merged = mark if old is None else old.merge(mark)
            rows.append(
                {
                    "group_id": group_id,
                    "topic": topic,
                    "partition": part,
                    "model": model,
                    "event_ms": merged.event_ms,
                    "seen_ms": merged.seen_ms,
                }
            )
        upsert(
            conn,
            t.partition_watermarks,
            rows,
            ["group_id", "topic", "partition", "model"],
            ["event_ms", "seen_ms"],
        )

    def _upsert_statuses(self, conn: Connection, group_id: str, delta: Delta, owner: str) -> None:
        rows = [
            {
                "group_id": group_id,
                "topic": topic,
                "partition": part,
                "role": status.role,
                "position": status.position,
                "end_offset": status.end_offset,
                "owner": owner[:255],
                "updated_ms": delta.now_ms,
            }
            for (topic, part), status in sorted(delta.partitions.items())
        ]
        upsert(
            conn,
            t.partition_status,
            rows,
            ["group_id", "topic", "partition"],
            ["role", "position", "end_offset", "owner", "updated_ms"],
        )

    def _count_joins(self, conn: Connection, outcome: JoinOutcome) -> None:
        models = sorted(set(outcome.joined) | {m for m, _ in outcome.expired})
        if not models:
            return
        rows = [
            {
                "model": m,
                "joined": outcome.joined.get(m, 0),
                "expired_predictions": outcome.expired.get((m, "prediction"), 0),
                "expired_labels": outcome.expired.get((m, "label"), 0),
            }
            for m in models
        ]
        insert = dialect_insert(self.dialect)(t.join_counts)
        c = t.join_counts.c
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=["model"],
                set_={
                    name: c[name] + insert.excluded[name]
                    for name in ("joined", "expired_predictions", "expired_labels")
                },
            ),
            rows,
        )

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
        """Delete quarantined records and delivered, given-up or historical notifications
        older than ``before_ms`` (wall clock); returns how many rows each lost. Windows go
        by their model's event time: :meth:`prune_model`."""
        from sqlalchemy import delete

        received = dt.datetime.fromtimestamp(before_ms / 1000, dt.UTC)
        statements = {
            "quarantine": delete(t.quarantine).where(t.quarantine.c.received_at < received),
            "outbox": delete(t.outbox).where(
                (t.outbox.c.created_ms < before_ms) & (t.outbox.c.state != "pending")
            ),
        }
        with writing(self.engine, "prune") as conn:
            return {
                name: int(conn.execute(stmt).rowcount or 0) for name, stmt in statements.items()
            }

    def secret(self, name: str, size: int = 32) -> bytes:
        """A random secret of the store's own, made on first use and kept: every replica
        reads the same one (the first writer wins a race)."""
        import secrets

        with writing(self.engine, "read a store secret") as conn:
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

    def prune_model(self, model: str, before_ms: int) -> dict[str, int]:
        """Delete the model's windows starting before ``before_ms`` (event time), the
        label joins still waiting for them (counted as expired), and the A/B comparisons
        last looked at before it (pairs no longer in force: one in force is looked at at
        every check)."""
        from sqlalchemy import delete

        p, lab, ab = t.pending_predictions.c, t.pending_labels.c, t.ab_comparisons.c
        statements = {
            "ab_comparisons": delete(t.ab_comparisons).where(
                (ab.model == model) & (ab.updated_ms < before_ms)
            ),
            "pending_predictions": delete(t.pending_predictions).where(
                (p.model == model) & (p.window_start_ms < before_ms)
            ),
            "pending_labels": delete(t.pending_labels).where(
                (lab.model == model) & (lab.ts_ms < before_ms)
            ),
        }
        with writing(self.engine, "prune") as conn:
            out = {"windows": window_parts.delete_before(conn, model, before_ms)}
            out |= {
                name: int(conn.execute(stmt).rowcount or 0) for name, stmt in statements.items()
            }
            outcome = JoinOutcome()
            outcome.expired[(model, "prediction")] = out["pending_predictions"]
            outcome.expired[(model, "label")] = out["pending_labels"]
            if out["pending_predictions"] or out["pending_labels"]:
                self._count_joins(conn, outcome)
            return out

    def save_reference(self, profile: ReferenceProfile, name: str = "default") -> None:
        """Keep a reference profile under (model, name), replacing an older one."""
        row = {
            "model": profile.model,
            "name": name,
            "created_at": _utcnow(),
            "profile": orjson.dumps(profile.to_dict()),
        }
        with writing(self.engine, "save reference") as conn:
            upsert(conn, t.reference_profiles, [row], ["model", "name"], ["created_at", "profile"])
