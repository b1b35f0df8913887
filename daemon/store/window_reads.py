"""Reading window state from the store: each window its base row merged with its parts.

Reading a window merges its base with its parts in ``id`` order, which is the order
the flushes committed in; the old design merged each flush into the row in that same
order, so the numbers read are the same (how parts are written and folded:
:mod:`~watchkeeper.daemon.store.window_parts`). :func:`merged` is that merge, for the
reads here and for the fold.

A window whose base or a part does not load (a damaged or hand-edited row: never what a
release writes) is skipped by reads, logged once per part with its model, window and part,
and counted on every read (:mod:`~watchkeeper.daemon.store.skipped_windows`): one bad
window never fails a whole check or page (it is set aside later:
:func:`~watchkeeper.daemon.store.window_parts.set_aside`).

:func:`rows` and :func:`windows_of` are the per-window event totals the store's counts
aggregate without loading any summary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, func, select, union_all
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store.skipped_windows import CorruptPartError, SkippedWindows, StoredKey
from watchkeeper.detectors.errors import CorruptStateError
from watchkeeper.detectors.window import WindowSummary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredWindow:
    """A window read back from the store."""

    summary: WindowSummary
    events: int
    late_events: int


def key_columns(table: Any) -> list[Any]:
    """The columns naming a window: model, version, size, start."""
    c = table.c
    return [c.model, c.model_version, c.window_size_ms, c.window_start_ms]


View = Callable[[dict[str, Any]], WindowSummary]
"""Builds a summary from its stored form: :meth:`WindowSummary.from_dict`, or a reader
of only the parts a caller needs (one that skips the feature sketches)."""


def _load(view: View, key: StoredKey, part: int | None, blob: bytes) -> WindowSummary:
    """One stored base or part, or :class:`CorruptPartError` naming the window and part."""
    try:
        return view(orjson.loads(blob))
    except CorruptStateError as exc:
        raise CorruptPartError(exc, key, part) from exc
    except (ValueError, KeyError, TypeError) as exc:  # not JSON, or fields missing / wrong
        problem = f"{type(exc).__name__}: {exc}"
        raise CorruptPartError(CorruptStateError("window summary", problem), key, part) from exc


def merged(
    key: StoredKey,
    base: bytes | None,
    parts: Iterable[tuple[int, bytes]],
    view: View = WindowSummary.from_dict,
) -> WindowSummary:
    """The base summary with the parts (id, stored form) merged into it in order (the
    first part is the base when there is none, as the first flush's summary was)."""
    out: WindowSummary | None = None if base is None else _load(view, key, None, base)
    for part_id, blob in parts:
        part = _load(view, key, part_id, blob)
        if out is None:
            out = part
            continue
        try:
            out.merge(part)
        except CorruptStateError as exc:  # sketches that load but do not fit together
            raise CorruptPartError(exc, key, part_id) from exc
    assert out is not None, "a window has a base row or a part"
    return out


def read(
    conn: Connection,
    model: str | None = None,
    version: str | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    view: View = WindowSummary.from_dict,
    skipped: SkippedWindows | None = None,
) -> list[StoredWindow]:
    """Stored windows, each its base merged with its parts (each built by ``view``);
    ordered by model, version, start (and size). A window that does not load is left
    out, logged and counted in ``skipped`` (None: logged only)."""

    def bounded(query: Any, table: Any) -> Any:
        c = table.c
        if model is not None:
            query = query.where(c.model == model)
        if version is not None:
            query = query.where(c.model_version == version)
        if start_ms is not None:
            query = query.where(c.window_start_ms >= start_ms)
        if end_ms is not None:
            query = query.where(c.window_start_ms < end_ms)
        return query

    w, p = t.windows.c, t.window_parts.c
    bases = conn.execute(
        bounded(select(*key_columns(t.windows), w.summary, w.late_events), t.windows)
    ).all()
    parts = conn.execute(
        bounded(
            select(*key_columns(t.window_parts), p.id, p.summary, p.late_events),
            t.window_parts,
        ).order_by(p.id)
    ).all()
    base_of: dict[StoredKey, Any] = {}
    for r in bases:
        base_of[(r.model, r.model_version, int(r.window_size_ms), int(r.window_start_ms))] = r
    parts_of: dict[StoredKey, list[Any]] = {}
    for r in parts:
        key = (r.model, r.model_version, int(r.window_size_ms), int(r.window_start_ms))
        parts_of.setdefault(key, []).append(r)
    out = []
    for key in sorted(set(base_of) | set(parts_of), key=lambda k: (k[0], k[1], k[3], k[2])):
        base, mine = base_of.get(key), parts_of.get(key, [])
        blobs = [(int(r.id), r.summary) for r in mine]
        try:
            summary = merged(key, None if base is None else base.summary, blobs, view)
        except CorruptPartError as exc:
            if skipped is None:
                log.error("window skipped: %s", exc)
            else:
                skipped.record(exc)  # logged once per part, counted every time
            continue
        late = (0 if base is None else int(base.late_events)) + sum(
            int(r.late_events) for r in mine
        )
        out.append(StoredWindow(summary, summary.count, late))
    return out


def rows() -> Any:
    """Every base row and part as (model, model_version, window_size_ms,
    window_start_ms, events, late_events): what the totals and counts aggregate."""
    w, p = t.windows.c, t.window_parts.c
    return union_all(
        select(*key_columns(t.windows), w.events, w.late_events),
        select(*key_columns(t.window_parts), p.events, p.late_events),
    ).subquery("window_rows")


def windows_of(query_rows: Any) -> Any:
    """Per window (model, version, size, start) of ``query_rows``: its events and late
    events summed over its base and parts."""
    c = query_rows.c
    return (
        select(
            c.model,
            c.model_version,
            c.window_size_ms,
            c.window_start_ms,
            func.sum(c.events).label("events"),
            func.sum(c.late_events).label("late_events"),
        )
        .group_by(c.model, c.model_version, c.window_size_ms, c.window_start_ms)
        .subquery("stored_windows")
    )
