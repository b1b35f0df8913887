"""Realised beside estimated, per window: the rows the status shows.

:func:`performance_rows` — per recent stored window of a model, its estimates (value and
band, rows estimated from) and its realised metrics (labelled pairs so far), for
``GET /api/status``, ``watchkeeper status`` and the console's model page. Bounded: the
last ``limit`` windows, each computed from its stored state (no raw rows), parsed once
per stored row by the daemon's :class:`PerformanceRowCache`.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from typing import Any

import orjson
from sqlalchemy import select, tuple_
from watchkeeper.daemon.store import tables
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.estimated_performance import ESTIMATED_METRICS
from watchkeeper.detectors.loss_sketch import LossSketch
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.window import WindowSummary

MAX_ROWS = 48


def compare(reference: ReferenceProfile | None, window: WindowSummary) -> dict[str, Any] | None:
    """A window's estimates and realised metrics side by side (None: neither is known)."""
    est = reference.estimation if reference is not None else None
    state = window.estimates.of(est) if est is not None else None
    perf = window.performance
    realised = perf.metrics() if perf is not None else {}
    if state is None and not realised:
        return None
    estimated: dict[str, Any] = {}
    if est is not None and state is not None and state.n:
        try:
            found = est.estimate_all(state)
        except InsufficientDataError:
            found = {}
        for name, e in found.items():
            estimated[name] = {
                "value": e.value,
                "lower": None if e.band is None else e.band.lower,
                "upper": None if e.band is None else e.band.upper,
                "realised": realised.get(ESTIMATED_METRICS[name].realised),
            }
    return {
        "window_start_ms": window.start_ms,
        "window_end_ms": window.end_ms,
        "n_estimated": state.n if state is not None else 0,
        # rows a regression estimate could not see (no loss-model feature), counted
        **(
            {"missing_features": state.missing_features, "partial_features": state.partial_features}
            if isinstance(state, LossSketch)
            else {}
        ),
        "n_labelled": perf.n if perf is not None else 0,
        "estimated": estimated,
        "realised": realised,
    }


class PerformanceRowCache:
    """The stored windows' performance and estimate state, kept between requests.

    ``GET /api/status`` must not start expensive work. A stored window is a base row
    plus the parts later flushes appended (:mod:`~watchkeeper.daemon.store.window_parts`);
    a request reads only their key columns (a base row's ``updated_at``, a part's id:
    parts are written once and never rewritten, only folded into the base and deleted),
    and parses a stored summary only when that row is new or its base was rewritten —
    and then only its performance and estimate parts
    (:meth:`WindowSummary.performance_view`), not every feature's sketch. The views of
    one window's rows are merged by the caller's roll-up (sums: exact in any order).
    Bounded: at most ``capacity`` rows, the oldest read dropped."""

    def __init__(self, capacity: int = 16 * MAX_ROWS) -> None:
        self.capacity = capacity
        self._views: OrderedDict[tuple[Any, ...], tuple[Any, WindowSummary]] = OrderedDict()
        self.parsed = 0
        """Stored summaries parsed (a counter for tests)."""

    def windows(self, store: Store, model: str, since: int) -> list[WindowSummary]:
        """The performance views of the stored rows (bases and parts) of ``model``'s
        windows starting at ``since`` or later, ordered by window start."""
        w, p = tables.windows, tables.window_parts
        with store.engine.connect() as conn:
            bases: list[tuple[tuple[Any, ...], Any, int]] = [
                (("base", str(v), int(size), int(start)), updated, int(start))
                for v, size, start, updated in conn.execute(
                    select(
                        w.c.model_version, w.c.window_size_ms, w.c.window_start_ms, w.c.updated_at
                    ).where((w.c.model == model) & (w.c.window_start_ms >= since))
                ).all()
            ]
            parts: list[tuple[tuple[Any, ...], Any, int]] = [
                (("part", int(i)), None, int(start))
                for i, start in conn.execute(
                    select(p.c.id, p.c.window_start_ms).where(
                        (p.c.model == model) & (p.c.window_start_ms >= since)
                    )
                ).all()
            ]
            keys = sorted(bases + parts, key=lambda k: k[2])

            def stale(key: tuple[Any, ...], stamp: Any) -> bool:
                cached = self._views.get(key)
                return cached is None or cached[0] != stamp

            stale_bases = [k[1:] for k, stamp, _ in bases if stale(k, stamp)]
            stale_parts = [k[1] for k, stamp, _ in parts if stale(k, stamp)]
            fresh: dict[tuple[Any, ...], tuple[Any, WindowSummary]] = {}
            key_columns = (w.c.model_version, w.c.window_size_ms, w.c.window_start_ms)
            if stale_bases:
                for v, size, start, updated, blob in conn.execute(
                    select(*key_columns, w.c.updated_at, w.c.summary).where(
                        (w.c.model == model) & tuple_(*key_columns).in_(stale_bases)
                    )
                ).all():
                    view = WindowSummary.performance_view(orjson.loads(blob))
                    fresh[("base", str(v), int(size), int(start))] = (updated, view)
            for chunk in range(0, len(stale_parts), 1000):
                for i, blob in conn.execute(
                    select(p.c.id, p.c.summary).where(p.c.id.in_(stale_parts[chunk : chunk + 1000]))
                ).all():
                    fresh[("part", int(i))] = (
                        None,
                        WindowSummary.performance_view(orjson.loads(blob)),
                    )
        self.parsed += len(fresh)
        for key, value in fresh.items():
            self._views[key] = value
            self._views.move_to_end(key)
        out = []
        for key, _, _ in keys:
            hit = fresh.get(key) or self._views.get(key)
            if hit is not None:
                out.append(hit[1])
        while len(self._views) > self.capacity:
            self._views.popitem(last=False)
        return out


def performance_rows(
    store: Store,
    reference: ReferenceProfile | None,
    model: str,
    now_ms: int,
    size_ms: int,
    limit: int = 12,
    cache: PerformanceRowCache | None = None,
) -> list[dict[str, Any]]:
    """The last ``limit`` windows of ``model`` (versions rolled up) with an estimate or
    realised metrics, newest first; see the module docstring. ``cache`` (the daemon's,
    kept across requests) parses a stored window only when it changed; without it, each
    call parses the windows' performance and estimate parts afresh."""
    limit = max(1, min(limit, MAX_ROWS))
    since = now_ms - now_ms % size_ms - limit * size_ms
    parts: dict[int, list[WindowSummary]] = defaultdict(list)
    for view in (cache or PerformanceRowCache()).windows(store, model, since):
        parts[view.start_ms].append(view)
    rows = []
    for start in sorted(parts, reverse=True):
        window = WindowSummary.rollup(parts[start], start, parts[start][0].size_ms)
        row = compare(reference, window)
        if row is not None:
            rows.append(row)
    return rows[:limit]
