"""Reading the store: offsets, partition clocks, windows, references, quarantine, totals.

:class:`StoreQueries` is the read half of :class:`~watchkeeper.daemon.store.store.Store`; every
method raises :class:`StoreUnavailableError` when the store cannot be reached.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, func, select
from watchkeeper.daemon.eventtime.watermarks import (
    ClockSettings,
    Mark,
    PartitionClock,
    PartitionKey,
    PartitionStatus,
)
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store import window_reads
from watchkeeper.daemon.store.connection import reading
from watchkeeper.daemon.store.incident_values import current_values
from watchkeeper.daemon.store.skipped_windows import SkippedWindows
from watchkeeper.daemon.store.window_reads import StoredWindow
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.window import WindowSummary
from watchkeeper.detectors.window_storage import check_format, load_counts

TopicPartitionKey = tuple[str, int]


def incident_rows(
    engine: Engine, state: str | None = "open", limit: int = 200
) -> list[dict[str, Any]]:
    """Incidents (in ``state``, or all), most recently updated first, members parsed.

    The one query for lists of incidents: the API, the CLI and the console read it."""
    query = select(t.incidents).order_by(t.incidents.c.updated_ms.desc()).limit(limit)
    if state is not None:
        query = query.where(t.incidents.c.state == state)
    with reading(engine, "read incidents") as conn:
        rows = [dict(r._mapping) for r in conn.execute(query).all()]
        for row in rows:
            row["members"] = json.loads(row["members"])
            row["current"] = current_values(conn, row)
    return rows


def evaluation_rows(
    engine: Engine,
    policy: str | None = None,
    rule: str | None = None,
    feature: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The newest ``limit`` evaluations (of ``policy``, ``rule``, ``feature``), newest first.

    The one query for recent evaluations: the API, the CLI and the console read it."""
    query = select(t.evaluations).order_by(t.evaluations.c.id.desc()).limit(limit)
    for column, value in (("policy", policy), ("rule", rule), ("feature", feature)):
        if value is not None:
            query = query.where(t.evaluations.c[column] == value)
    with reading(engine, "read evaluations") as conn:
        return [dict(r._mapping) for r in conn.execute(query).all()]


class StoreQueries:
    engine: Engine
    skipped_windows: SkippedWindows
    """Window reads skipped because a stored part is corrupt (counted, logged once per
    part): made in the store's ``__init__``, before any thread reads, and locked inside."""

    # -- reading --------------------------------------------------------------------------
    @contextmanager
    def _read(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
            return
        with reading(self.engine, "read") as own:
            yield own

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

    def model_totals(self) -> dict[str, dict[str, int]]:
        """Per model: stored events, late events, windows, first and last window start."""
        c = window_reads.windows_of(window_reads.rows()).c
        query = select(
            c.model,
            func.sum(c.events),
            func.sum(c.late_events),
            func.count(),
            func.min(c.window_start_ms),
            func.max(c.window_start_ms),
        ).group_by(c.model)
        with self._read(None) as conn:
            rows = conn.execute(query).all()
        return {
            str(m): {
                "events": int(e or 0),
                "late_events": int(late or 0),
                "windows": int(n),
                "first_window_ms": int(lo),
                "last_window_ms": int(hi),
            }
            for m, e, late, n, lo, hi in rows
        }

    def first_window(self, model: str, since_ms: int | None = None) -> int | None:
        """The start of the model's earliest stored window holding events (at or after
        ``since_ms``)."""
        c = window_reads.rows().c  # events never go negative: a row with some = a window
        query = select(func.min(c.window_start_ms)).where((c.model == model) & (c.events > 0))
        if since_ms is not None:
            query = query.where(c.window_start_ms >= since_ms)
        with self._read(None) as conn:
            value = conn.execute(query).scalar()
        return None if value is None else int(value)

    def window_starts(self, model: str, since_ms: int, limit: int) -> list[int]:
        """The newest ``limit`` distinct window starts of ``model`` at or after ``since_ms``."""
        c = window_reads.rows().c
        with self._read(None) as conn:
            return [
                int(s)
                for (s,) in conn.execute(
                    select(c.window_start_ms)
                    .where((c.model == model) & (c.window_start_ms >= since_ms))
                    .group_by(c.window_start_ms)
                    .order_by(c.window_start_ms.desc())
                    .limit(limit)
                ).all()
            ]

    def kinds(self) -> list[tuple[str, str, str]]:
        with self._read(None) as conn:
            rows = conn.execute(select(t.feature_kinds)).all()
        return [(r.model, r.feature, r.kind) for r in rows]

    def model_versions(self) -> list[tuple[str, str]]:
        """Every (model, version) with stored windows: who was admitted before a restart."""
        c = window_reads.rows().c
        with self._read(None) as conn:
            rows = conn.execute(select(c.model, c.model_version).distinct()).all()
        return [(str(m), str(v)) for m, v in rows]

    def windows(
        self,
        model: str | None = None,
        version: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        view: window_reads.View = WindowSummary.from_dict,
    ) -> list[StoredWindow]:
        """Stored windows, oldest first; ``start_ms``/``end_ms`` bound their start times.
        Each is its stored row merged with the parts flushes appended since
        (:mod:`~watchkeeper.daemon.store.window_reads`); ``view`` builds each from its
        stored form (a reader of only the parts a caller needs)."""
        with self._read(None) as conn:
            skipped = self.skipped_windows
            return window_reads.read(conn, model, version, start_ms, end_ms, view, skipped)

    def set_aside_counts(self) -> dict[str, dict[str, int]]:
        """Per model, the corrupt windows set aside (``set_aside_windows``, by housekeeping
        or a fold): windows, their stored rows and events; every replica's, kept across
        restarts."""
        c = t.set_aside_windows.c
        window = (c.model_version, c.window_size_ms, c.window_start_ms)
        per_window = (
            select(c.model, *window, func.count().label("rows"), func.sum(c.events).label("events"))
            .group_by(c.model, *window)
            .subquery("set_aside_window")
        )
        s = per_window.c
        query = select(s.model, func.count(), func.sum(s.rows), func.sum(s.events)).group_by(
            s.model
        )
        with self._read(None) as conn:
            found = conn.execute(query).all()
        return {
            str(model): {"windows": int(n), "rows": int(rows or 0), "events": int(events or 0)}
            for model, n, rows, events in found
        }

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

    def event_counts(
        self, model: str, start_ms: int, end_ms: int, role: str | None = None
    ) -> list[tuple[int, int]]:
        """(window start, events) of the model's stored windows starting in [start, end);
        with ``role``, only that role's events (``"predictions"``: what ``traffic_ratio``
        counts). The ``events`` column is every role's total, so a role's count is read
        from the stored summaries' counts, without building their sketches."""
        if role is not None:
            return self._counts_by_start(model, start_ms, end_ms, lambda w: w.events.get(role, 0))
        c = window_reads.rows().c
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

    def traffic_counts(self, model: str, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
        """(window start, traffic) of the model's stored windows starting in [start, end):
        each window's :attr:`WindowSummary.traffic` (predictions or features rows, never
        labels), from the stored counts, without building sketches."""
        return self._counts_by_start(model, start_ms, end_ms, lambda w: w.traffic)

    def _counts_by_start(
        self, model: str, start_ms: int, end_ms: int, count: Callable[[WindowSummary], int]
    ) -> list[tuple[int, int]]:
        per_start: dict[int, int] = {}
        for w in self.windows(model, None, start_ms, end_ms, view=_counts_view):
            s = w.summary.start_ms
            per_start[s] = per_start.get(s, 0) + count(w.summary)
        return sorted(per_start.items())

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


def _counts_view(data: dict[str, Any]) -> WindowSummary:
    """A stored window's event counts per role and time bounds only (no sketches): what
    :meth:`StoreQueries.event_counts` reads for one role and
    :meth:`StoreQueries.traffic_counts` for the traffic."""
    check_format(data)
    out = WindowSummary(data["model"], data["version"], int(data["start_ms"]), int(data["size_ms"]))
    load_counts(out, data)
    return out
