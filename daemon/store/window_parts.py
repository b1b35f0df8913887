"""Window state in the store as a base row plus parts: a flush costs what it changed.

A flush appends one ``window_parts`` row per window it touched, holding only what it
summarised since the last flush (its events' sketches, its sample of them, its late
count), in one multi-row ``INSERT``: nothing is read back, merged or rewritten, and no
replica takes a lock another one waits for (each writes rows of its own). The
``windows`` row of a window is its *base*: what earlier parts were folded into. Reads
merge the base with its parts in ``id`` order (:mod:`~watchkeeper.daemon.store.window_reads`).

A commit folds a window's parts into its base
(:func:`fold_crowded`) once it has :data:`FOLD_AT` of them, at most :data:`FOLD_MAX`
windows per commit, so reads stay cheap and the table small whatever the windows do:
a backfill touching thousands of windows once each writes thousands of small rows and
folds none, a live window written by every flush is folded every ``FOLD_AT`` flushes.
Folding locks the window's base row (PostgreSQL), reads its parts after the lock and
deletes exactly the parts it folded, so a part another replica commits meanwhile stays.

A window whose base or a part does not load is skipped by reads
(:mod:`~watchkeeper.daemon.store.window_reads`); the whole window, its rows as they were
stored, is then moved to ``set_aside_windows`` (:func:`set_aside`), so reads stop meeting
it while an operator can still look: by housekeeping for a window a read met
(:mod:`~watchkeeper.daemon.checks.set_aside`), by the fold for one it meets.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import Connection, delete, func, select
from sqlalchemy.exc import SQLAlchemyError
from watchkeeper.daemon.eventtime.windows import Delta, WindowKey
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store import window_reads
from watchkeeper.daemon.store.skipped_windows import (
    CorruptPartError,
    SkippedWindows,
    StoredKey,
    bounded,
    window_name,
)
from watchkeeper.daemon.store.window_reads import key_columns, merged
from watchkeeper.detectors.window import WindowSummary

log = logging.getLogger(__name__)

FOLD_AT = 16
"""Parts a window gathers before a commit folds them into its base row."""
FOLD_MAX = 64
"""Windows folded per commit at most: a commit's cost stays bounded."""


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
        select(*key_columns(t.window_parts), n)
        .group_by(*key_columns(t.window_parts))
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
        summary = merged(key, base.summary if base is not None else None, blobs)
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
        merged(key, None if base is None else base.summary, [(int(r.id), r.summary) for r in parts])
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


def delete_before(conn: Connection, model: str, before_ms: int) -> int:
    """Delete the model's windows (bases and parts) starting before ``before_ms``;
    returns how many windows that was."""
    every = window_reads.windows_of(window_reads.rows())
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
