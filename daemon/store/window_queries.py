"""Reading the store's windows: whole windows, their counts per start, per model totals.

:class:`WindowQueries` is the window half of the store's reads (the base of
:class:`~watchkeeper.daemon.store.queries.StoreQueries`); each window read is its base row
merged with its parts (:mod:`~watchkeeper.daemon.store.window_reads`). The counts read
only the stored event totals, or the summaries' counts without their sketches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store import window_reads
from watchkeeper.daemon.store.connection import reading
from watchkeeper.daemon.store.skipped_windows import SkippedWindows
from watchkeeper.daemon.store.window_reads import StoredWindow
from watchkeeper.detectors.window import WindowSummary
from watchkeeper.detectors.window_storage import check_format, load_counts


class WindowQueries:
    """The window reads of the store, and the connection every read takes (:meth:`_read`);
    a base of :class:`~watchkeeper.daemon.store.queries.StoreQueries`."""

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
        for w in self.windows(model, None, start_ms, end_ms, view=counts_view):
            s = w.summary.start_ms
            per_start[s] = per_start.get(s, 0) + count(w.summary)
        return sorted(per_start.items())


def counts_view(data: dict[str, Any]) -> WindowSummary:
    """A stored window's event counts per role and time bounds only (no sketches): what
    :meth:`WindowQueries.event_counts` reads for one role,
    :meth:`WindowQueries.traffic_counts` for the traffic, and
    :class:`~watchkeeper.daemon.checks.last_seen.LastSeen` for each window's traffic."""
    check_format(data)
    out = WindowSummary(data["model"], data["version"], int(data["start_ms"]), int(data["size_ms"]))
    load_counts(out, data)
    return out
