"""Reading the store: offsets, watermarks, windows, references, quarantine, totals.

:class:`StoreQueries` is the read half of :class:`~watchkeeper.daemon.store.Store`; every
method raises :class:`StoreUnavailableError` when the store cannot be reached.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import DBAPIError, OperationalError
from watchkeeper.daemon import tables as t
from watchkeeper.daemon.engine import reader
from watchkeeper.daemon.errors import StoreUnavailableError
from watchkeeper.daemon.windows import StreamKey
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.window import WindowSummary

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True)
class StoredWindow:
    """A window read back from the store."""

    summary: WindowSummary
    events: int
    late_events: int


class StoreQueries:
    engine: Engine

    # -- reading --------------------------------------------------------------------------
    @contextmanager
    def _read(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
            return
        try:
            with reader(self.engine) as own:
                yield own
        except (OperationalError, DBAPIError) as exc:
            raise StoreUnavailableError("read", exc) from exc

    def offsets(self, group_id: str) -> dict[TopicPartitionKey, int]:
        with self._read(None) as conn:
            rows = conn.execute(
                select(t.consumer_offsets).where(t.consumer_offsets.c.group_id == group_id)
            ).all()
        return {(r.topic, r.partition): int(r.next_offset) for r in rows}

    def watermarks(self, group_id: str, conn: Connection | None = None) -> dict[StreamKey, int]:
        with self._read(conn) as c:
            rows = c.execute(select(t.watermarks).where(t.watermarks.c.group_id == group_id)).all()
        return {(r.model, r.role): int(r.watermark_ms) for r in rows}

    def kinds(self) -> list[tuple[str, str, str]]:
        with self._read(None) as conn:
            rows = conn.execute(select(t.feature_kinds)).all()
        return [(r.model, r.feature, r.kind) for r in rows]

    def model_versions(self) -> list[tuple[str, str]]:
        """Every (model, version) with stored windows: who was admitted before a restart."""
        c = t.windows.c
        with self._read(None) as conn:
            rows = conn.execute(select(c.model, c.model_version).distinct()).all()
        return [(str(m), str(v)) for m, v in rows]

    def windows(
        self,
        model: str | None = None,
        version: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[StoredWindow]:
        """Stored windows, oldest first; ``start_ms``/``end_ms`` bound their start times."""
        query = select(t.windows).order_by(
            t.windows.c.model, t.windows.c.model_version, t.windows.c.window_start_ms
        )
        if model is not None:
            query = query.where(t.windows.c.model == model)
        if version is not None:
            query = query.where(t.windows.c.model_version == version)
        if start_ms is not None:
            query = query.where(t.windows.c.window_start_ms >= start_ms)
        if end_ms is not None:
            query = query.where(t.windows.c.window_start_ms < end_ms)
        with self._read(None) as conn:
            rows = conn.execute(query).all()
        return [
            StoredWindow(
                WindowSummary.from_dict(orjson.loads(r.summary)), int(r.events), int(r.late_events)
            )
            for r in rows
        ]

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

    def window_range(
        self, model: str, start_ms: int, end_ms: int, version: str | None = None
    ) -> WindowSummary | None:
        """The stored windows of ``model`` starting in ``[start_ms, end_ms)``, rolled up."""
        parts = [w.summary for w in self.windows(model, version, start_ms, end_ms)]
        if not parts:
            return None
        return WindowSummary.rollup(parts, start_ms, end_ms - start_ms, version)

    def event_counts(self, model: str, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
        """(window start, events) of the model's stored windows starting in [start, end)."""
        c = t.windows.c
        query = (
            select(c.window_start_ms, func.sum(c.events))
            .where(
                (c.model == model) & (c.window_start_ms >= start_ms) & (c.window_start_ms < end_ms)
            )
            .group_by(c.window_start_ms)
            .order_by(c.window_start_ms)
        )
        with self._read(None) as conn:
            return [(int(s), int(n)) for s, n in conn.execute(query).all()]

    def totals(self) -> dict[str, int]:
        """Events and late events over all stored windows, and quarantined records."""
        with self._read(None) as conn:
            events, late = conn.execute(
                select(
                    func.coalesce(func.sum(t.windows.c.events), 0),
                    func.coalesce(func.sum(t.windows.c.late_events), 0),
                )
            ).one()
            quarantined = conn.execute(select(func.count()).select_from(t.quarantine)).scalar()
        return {
            "events": int(events),
            "late_events": int(late),
            "quarantined": int(quarantined or 0),
        }

    def quarantined(self, reason: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = select(t.quarantine).order_by(t.quarantine.c.id.desc()).limit(limit)
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
