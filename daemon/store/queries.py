"""Reading the store: offsets, partition clocks, references, quarantine, totals.

:class:`StoreQueries` is the read half of :class:`~watchkeeper.daemon.store.store.Store`,
its window reads in its base :class:`~watchkeeper.daemon.store.window_queries.WindowQueries`;
every method raises :class:`StoreUnavailableError` when the store cannot be reached.
The lists of incidents and evaluations: :mod:`~watchkeeper.daemon.store.incident_queries`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from sqlalchemy import Connection, func, select
from watchkeeper.daemon.eventtime.watermarks import (
    ClockSettings,
    Mark,
    PartitionClock,
    PartitionKey,
    PartitionStatus,
)
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store import window_reads
from watchkeeper.daemon.store.window_queries import WindowQueries
from watchkeeper.detectors.profile import ReferenceProfile

TopicPartitionKey = tuple[str, int]


class StoreQueries(WindowQueries):
    """The store's reads beside its windows' (:class:`WindowQueries`): offsets, partition
    clocks, policy ticks, label-join counts, references, totals and the quarantine."""

    def offsets(self, group_id: str) -> dict[TopicPartitionKey, int]:
        with self._read(None) as conn:
            rows = conn.execute(
                select(t.consumer_offsets).where(t.consumer_offsets.c.group_id == group_id)
            ).all()
        return {(r.topic, r.partition): int(r.next_offset) for r in rows}

    def partition_marks(
        self, group_id: str, conn: Connection | None = None
    ) -> dict[PartitionKey, dict[str, Mark]]:
        """Per (topic, partition): each model's mark, as committed with the offsets."""
        c = t.partition_watermarks.c
        with self._read(conn) as db:
            rows = db.execute(
                select(c.topic, c.partition, c.model, c.event_ms, c.seen_ms).where(
                    c.group_id == group_id
                )
            ).all()
        out: dict[PartitionKey, dict[str, Mark]] = {}
        for r in rows:
            out.setdefault((r.topic, int(r.partition)), {})[r.model] = Mark(
                int(r.event_ms), int(r.seen_ms)
            )
        return out

    def partition_statuses(
        self, group_id: str, conn: Connection | None = None
    ) -> dict[PartitionKey, tuple[PartitionStatus, str, int]]:
        """Per (topic, partition): its status, owner and when the owner last wrote it."""
        c = t.partition_status.c
        with self._read(conn) as db:
            rows = db.execute(select(t.partition_status).where(c.group_id == group_id)).all()
        return {
            (r.topic, int(r.partition)): (
                PartitionStatus(
                    r.role,
                    None if r.position is None else int(r.position),
                    None if r.end_offset is None else int(r.end_offset),
                ),
                r.owner,
                int(r.updated_ms),
            )
            for r in rows
        }

    def partition_clocks(
        self,
        group_id: str,
        settings: ClockSettings,
        now_ms: int,
        conn: Connection | None = None,
    ) -> dict[PartitionKey, PartitionClock]:
        """Every partition of the group's topics as the watermark rules see it, from what
        the owners committed: a partition whose owner has not written for
        ``settings.stale_ms`` counts as behind."""
        with self._read(conn) as db:
            statuses = self.partition_statuses(group_id, db)
            marks = self.partition_marks(group_id, db)
        out: dict[PartitionKey, PartitionClock] = {}
        for key in set(statuses) | set(marks):
            role = settings.roles.get(key[0])
            if role is None:  # a topic the config no longer reads
                continue
            entry = statuses.get(key)
            fresh = entry is not None and now_ms - entry[2] <= settings.stale_ms
            caught_up = fresh and entry is not None and entry[0].caught_up
            out[key] = PartitionClock(role, caught_up, marks.get(key, {}))
        return out

    def policy_ticks(self) -> dict[str, int]:
        """Per policy, the last tick of its schedule evaluated (event time)."""
        c = t.policy_states.c
        with self._read(None) as conn:
            rows = conn.execute(select(c.policy, c.tick_ms).where(c.tick_ms.is_not(None))).all()
        return {r.policy: int(r.tick_ms) for r in rows}

    def join_counts(self) -> dict[str, dict[str, int]]:
        """Per model: labels joined, pending predictions and labels expired."""
        with self._read(None) as conn:
            rows = conn.execute(select(t.join_counts)).all()
            waiting: dict[str, dict[str, int]] = {
                name: dict(
                    conn.execute(select(table.c.model, func.count()).group_by(table.c.model)).all()
                )
                for name, table in (
                    ("pending_predictions", t.pending_predictions),
                    ("pending_labels", t.pending_labels),
                )
            }
        out: dict[str, dict[str, int]] = {}
        for r in rows:
            out[r.model] = {
                "joined": int(r.joined),
                "expired_predictions": int(r.expired_predictions),
                "expired_labels": int(r.expired_labels),
            }
        for name, counts in waiting.items():
            for model, n in counts.items():
                out.setdefault(model, {"joined": 0, "expired_predictions": 0, "expired_labels": 0})[
                    name
                ] = int(n)
        for entry in out.values():
            entry.setdefault("pending_predictions", 0)
            entry.setdefault("pending_labels", 0)
        return out

    def kinds(self) -> list[tuple[str, str, str]]:
        with self._read(None) as conn:
            rows = conn.execute(select(t.feature_kinds)).all()
        return [(r.model, r.feature, r.kind) for r in rows]

    def reference(self, model: str, name: str = "default") -> ReferenceProfile | None:
        with self._read(None) as conn:
            blob = conn.execute(
                select(t.reference_profiles.c.profile).where(
                    (t.reference_profiles.c.model == model) & (t.reference_profiles.c.name == name)
                )
            ).scalar()
        return None if blob is None else ReferenceProfile.from_dict(orjson.loads(blob))

    def references(self) -> list[tuple[str, str, dt.datetime]]:
        with self._read(None) as conn:
            rows = conn.execute(
                select(
                    t.reference_profiles.c.model,
                    t.reference_profiles.c.name,
                    t.reference_profiles.c.created_at,
                )
            ).all()
        return [(r.model, r.name, r.created_at) for r in rows]

    def totals(self) -> dict[str, int]:
        """Events and late events over all stored windows, and quarantined records."""
        with self._read(None) as conn:
            every = window_reads.rows().c
            events, late = conn.execute(
                select(
                    func.coalesce(func.sum(every.events), 0),
                    func.coalesce(func.sum(every.late_events), 0),
                )
            ).one()
            quarantined = conn.execute(select(func.count()).select_from(t.quarantine)).scalar()
        return {
            "events": int(events),
            "late_events": int(late),
            "quarantined": int(quarantined or 0),
        }

    def quarantined(
        self, reason: str | None = None, limit: int = 100, raw_prefix: int | None = None
    ) -> list[dict[str, Any]]:
        """The newest quarantined records (of ``reason``); with ``raw_prefix``, only that
        many bytes of each raw record are read (a page shows no more)."""
        query = select(t.quarantine).order_by(t.quarantine.c.id.desc()).limit(limit)
        if raw_prefix is not None:
            c = t.quarantine.c
            query = query.with_only_columns(
                *(col for col in t.quarantine.c if col.name != "raw"),
                func.substr(c.raw, 1, raw_prefix).label("raw"),
            )
        if reason is not None:
            query = query.where(t.quarantine.c.reason == reason)
        with self._read(None) as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]

    def quarantine_counts(self) -> dict[str, int]:
        with self._read(None) as conn:
            rows = conn.execute(
                select(t.quarantine.c.reason, func.count()).group_by(t.quarantine.c.reason)
            ).all()
        return {str(reason): int(n) for reason, n in rows}
