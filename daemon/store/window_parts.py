"""Window state in the store as a base row plus parts: a flush costs what it changed.

A flush appends one ``window_parts`` row per window it touched, holding only what it
summarised since the last flush (its events' sketches, its sample of them, its late
count), in one multi-row ``INSERT``: nothing is read back, merged or rewritten, and no
replica takes a lock another one waits for (each writes rows of its own). The
``windows`` row of a window is its *base*: what earlier parts were folded into.

Reading a window merges its base with its parts in ``id`` order, which is the order
the flushes committed in; the old design merged each flush into the row in that same
order, so the numbers read are the same. A commit folds a window's parts into its base
(:func:`fold_crowded`) once it has :data:`FOLD_AT` of them, at most :data:`FOLD_MAX`
windows per commit, so reads stay cheap and the table small whatever the windows do:
a backfill touching thousands of windows once each writes thousands of small rows and
folds none, a live window written by every flush is folded every ``FOLD_AT`` flushes.
Folding locks the window's base row (PostgreSQL), reads its parts after the lock and
deletes exactly the parts it folded, so a part another replica commits meanwhile stays.

A window whose base or a part does not load (a damaged or hand-edited row: never what a
release writes) is skipped by reads, logged once per part with its model, window and part,
and counted on every read (:mod:`~watchkeeper.daemon.store.skipped_windows`): one bad
window never fails a whole check or page. The whole window, its rows as they were
stored, is then moved to ``set_aside_windows`` (:func:`set_aside`), so reads stop meeting
it while an operator can still look: by housekeeping for a window a read met
(:mod:`~watchkeeper.daemon.checks.set_aside`), by the fold for one it meets.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, delete, func, select, union_all
from sqlalchemy.exc import SQLAlchemyError
from watchkeeper.daemon.eventtime.windows import Delta, WindowKey
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store.skipped_windows import (
    CorruptPartError,
    SkippedWindows,
    StoredKey,
    bounded,
    window_name,
)
from watchkeeper.detectors.errors import CorruptStateError
from watchkeeper.detectors.window import WindowSummary

log = logging.getLogger(__name__)

FOLD_AT = 16
"""Parts a window gathers before a commit folds them into its base row."""
FOLD_MAX = 64
"""Windows folded per commit at most: a commit's cost stays bounded."""


@dataclass(frozen=True)
class StoredWindow:
    """A window read back from the store."""

    summary: WindowSummary
    events: int
    late_events: int


def append(
    conn: Connection, delta: Delta, graded: Mapping[WindowKey, WindowSummary]
) -> list[StoredKey]:
    """One part per window of ``delta`` (and of the pairs ``graded`` into its windows),
    in one statement; returns the windows written."""
    keys = sorted(set(delta.windows) | set(delta.late) | set(graded))
    if not keys:
        return []
    size = delta.size_ms
    rows = []
    for key in keys:
        summary = delta.windows.get(key)
        extra = graded.get(key)
        if extra is not None:
            if summary is None:
                summary = extra
            else:  # never mutate the caller's delta: a failed commit restores it
                summary = WindowSummary.from_dict(summary.to_dict())
                summary.merge(extra)
        if summary is None:  # late events only
            summary = WindowSummary(key.model, key.version, key.start_ms, size)
        rows.append(
            {
                "model": key.model,
                "model_version": key.version,
                "window_size_ms": size,
                "window_start_ms": key.start_ms,
                "events": summary.count,
                "late_events": delta.late.get(key, 0),
                "first_ts_ms": summary.first_ts_ms,
                "last_ts_ms": summary.last_ts_ms,
                "summary": orjson.dumps(summary.to_dict()),
            }
        )
    conn.execute(t.window_parts.insert(), rows)
    return [(k.model, k.version, size, k.start_ms) for k in keys]


def _key_columns(table: Any) -> list[Any]:
    c = table.c
    return [c.model, c.model_version, c.window_size_ms, c.window_start_ms]


def _where_key(table: Any, key: StoredKey) -> Any:
    c = table.c
    return (
        (c.model == key[0])
        & (c.model_version == key[1])
        & (c.window_size_ms == key[2])
        & (c.window_start_ms == key[3])
    )


def fold_crowded(
    conn: Connection,
    dialect: str,
    at: int = FOLD_AT,
    most: int = FOLD_MAX,
    skipped: SkippedWindows | None = None,
) -> list[StoredKey]:
    """Fold the parts of up to ``most`` windows having ``at`` parts or more into their
    base rows (the most crowded first); returns the windows set aside instead (corrupt:
    the caller marks them settled in ``skipped`` once its transaction has committed)."""
    n = func.count().label("n")
    crowded = conn.execute(
        select(*_key_columns(t.window_parts), n)
        .group_by(*_key_columns(t.window_parts))
        .having(func.count() >= at)
        .order_by(n.desc())
        .limit(most)
    ).all()
    # a fixed order: two replicas folding the same windows lock them in the same order
    keys = sorted((str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in crowded)
    return [key for key in keys if fold(conn, dialect, key, skipped)]


def fold(
    conn: Connection, dialect: str, key: StoredKey, skipped: SkippedWindows | None = None
) -> bool:
    """Merge the window's parts into its base row (made if missing) and delete them; a
    window that does not load is set aside instead (:func:`set_aside`), in the same
    transaction, and noted in ``skipped`` (logged once per part), so no later commit
    picks it again as the most crowded. Returns whether it was set aside. A move that
    fails leaves the window as stored (logged): it never fails the caller's commit."""
    w = t.windows
    query = select(w.c.summary, w.c.events, w.c.late_events).where(_where_key(w, key))
    if dialect == "postgresql":
        query = query.with_for_update()
    base = conn.execute(query).first()
    # read after the lock: parts another replica folded meanwhile are gone
    parts = conn.execute(
        select(t.window_parts.c.id, t.window_parts.c.summary, t.window_parts.c.late_events)
        .where(_where_key(t.window_parts, key))
        .order_by(t.window_parts.c.id)
    ).all()
    if not parts:
        return False
    blobs = [(int(p.id), p.summary) for p in parts]
    try:
        summary = _merged(key, base.summary if base is not None else None, blobs)
    except CorruptPartError as exc:  # moved aside whole: its rows stay for a look
        if skipped is None:
            log.error("window not folded: %s", exc)
        else:
            skipped.record(exc, read=False)
        try:
            # a savepoint: a move that fails rolls back alone, the ingest commit goes on
            with conn.begin_nested():
                set_aside(conn, dialect, key)
        except (SQLAlchemyError, TypeError, ValueError):
            log.exception("corrupt window not set aside, left as stored: %s", window_name(key))
            return False
        return True
    late = (int(base.late_events) if base is not None else 0) + sum(
        int(p.late_events) for p in parts
    )
    values = {
        "events": summary.count,
        "late_events": late,
        "first_ts_ms": summary.first_ts_ms,
        "last_ts_ms": summary.last_ts_ms,
        "summary": orjson.dumps(summary.to_dict()),
        "updated_at": dt.datetime.now(dt.UTC),
    }
    if base is None:
        conn.execute(
            w.insert().values(
                model=key[0],
                model_version=key[1],
                window_size_ms=key[2],
                window_start_ms=key[3],
                **values,
            )
        )
    else:
        conn.execute(w.update().where(_where_key(w, key)).values(**values))
    conn.execute(delete(t.window_parts).where(t.window_parts.c.id.in_([p.id for p in parts])))
    return False


def _stored_bytes(summary: Any) -> bytes:
    """A stored summary as bytes: a row damaged by hand on SQLite (``UPDATE … SET summary
    = '…'``) reads back as text, which a binary column will not take as it is."""
    if isinstance(summary, bytes | bytearray | memoryview):
        return bytes(summary)
    return str(summary).encode("utf-8", "surrogatepass")


def set_aside(conn: Connection, dialect: str, key: StoredKey) -> int:
    """Move the window's base row and parts to ``set_aside_windows`` if it still does not
    load (the corrupt row marked, the error as the reason); returns the rows moved (0: it
    loads now, or is gone). Locks the base row like :func:`fold` and deletes exactly the
    rows it copied, so a part another replica commits meanwhile stays (a new window)."""
    w, p = t.windows, t.window_parts
    query = select(w).where(_where_key(w, key))
    if dialect == "postgresql":
        query = query.with_for_update()
    base = conn.execute(query).first()
    parts_query = select(p).where(_where_key(p, key)).order_by(p.c.id)
    if dialect == "postgresql":  # two replicas setting it aside at once: one moves it
        parts_query = parts_query.with_for_update()
    parts = conn.execute(parts_query).all()
    if base is None and not parts:
        return 0
    try:
        _merged(
            key, None if base is None else base.summary, [(int(r.id), r.summary) for r in parts]
        )
    except CorruptPartError as exc:
        error = exc
    else:
        return 0  # repaired since the read met it: nothing to move
    now = dt.datetime.now(dt.UTC)
    reason = bounded(str(error), 500)
    rows: list[tuple[int | None, Any]] = [(None, base)] if base is not None else []
    rows += [(int(r.id), r) for r in parts]
    conn.execute(
        t.set_aside_windows.insert(),
        [
            {
                "model": key[0],
                "model_version": key[1],
                "window_size_ms": key[2],
                "window_start_ms": key[3],
                "part_id": part_id,
                "corrupt": part_id == error.part,
                "events": int(r.events),
                "late_events": int(r.late_events),
                "first_ts_ms": r.first_ts_ms,
                "last_ts_ms": r.last_ts_ms,
                "summary": _stored_bytes(r.summary),
                "reason": reason,
                "set_aside_at": now,
            }
            for part_id, r in rows
        ],
    )
    if base is not None:
        conn.execute(delete(w).where(_where_key(w, key)))
    if parts:
        conn.execute(delete(p).where(p.c.id.in_([r.id for r in parts])))
    log.warning(
        "window set aside: %s — %d stored row(s) moved to set_aside_windows (reads no "
        "longer meet it; kept for a look, never deleted)",
        window_name(key),
        len(rows),
    )
    return len(rows)


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


def _merged(
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
        bounded(select(*_key_columns(t.windows), w.summary, w.late_events), t.windows)
    ).all()
    parts = conn.execute(
        bounded(
            select(*_key_columns(t.window_parts), p.id, p.summary, p.late_events),
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
            summary = _merged(key, None if base is None else base.summary, blobs, view)
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
        select(*_key_columns(t.windows), w.events, w.late_events),
        select(*_key_columns(t.window_parts), p.events, p.late_events),
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


def delete_before(conn: Connection, model: str, before_ms: int) -> int:
    """Delete the model's windows (bases and parts) starting before ``before_ms``;
    returns how many windows that was."""
    every = windows_of(rows())
    n = conn.execute(
        select(func.count())
        .select_from(every)
        .where((every.c.model == model) & (every.c.window_start_ms < before_ms))
    ).scalar()
    for table in (t.windows, t.window_parts):
        conn.execute(
            delete(table).where((table.c.model == model) & (table.c.window_start_ms < before_ms))
        )
    return int(n or 0)
