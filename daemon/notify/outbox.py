"""The durable outbox: every notification is written to the store before it is sent.

Rows are inserted in the same transaction as the incident change that caused them, so a
crash can lose neither; a row is marked sent only after its channel accepted it, so a
restart resumes what was not sent (at least once: a crash between the send and the mark
sends again, with the same delivery id for the receiver to drop). Per channel and
incident, notifications go out in order: a later one waits for an earlier one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from watchkeeper.alerts.notification import Notification
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store.connection import reading, writing
from watchkeeper.daemon.store.upsert import upsert

PENDING, SENT, FAILED, SILENCED = "pending", "sent", "failed", "silenced"
SUPERSEDED = "superseded"
HISTORICAL = "historical"
"""About a window older than ``alerts.max_age``: recorded, never sent."""
GROUPED = {"opened", "updated", "escalated", "de-escalated", "reminder", "resolved"}
COALESCED = {"updated", "escalated", "de-escalated", "reminder"}
"""Changes of which only the newest waiting one is worth sending."""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    channel: str
    notification: Notification
    attempts: int
    created_ms: int


def rows_for(
    notes: Sequence[tuple[str, Notification]],
    now_ms: int,
    silenced: Callable[[Notification], bool] | None = None,
    historical: bool = False,
) -> list[dict[str, Any]]:
    """Outbox rows for (channel, notification) pairs; silenced and historical ones are
    kept, not sent."""

    def state(n: Notification) -> str:
        if historical:
            return HISTORICAL
        return SILENCED if silenced is not None and silenced(n) else PENDING

    return [
        {
            "channel": channel,
            "fingerprint": n.fingerprint,
            "kind": n.kind,
            "payload": json.dumps(n.to_dict()),
            "state": state(n),
            "created_ms": now_ms,
            "attempts": 0,
            "next_attempt_ms": now_ms,
            "last_error": "",
        }
        for channel, n in notes
    ]


def enqueue(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(t.outbox), rows)


class Outbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, notes: Sequence[tuple[str, Notification]], now_ms: int) -> None:
        with writing(self.engine, "add notifications") as conn:
            enqueue(conn, rows_for(notes, now_ms))

    def announce(
        self,
        notes: Sequence[tuple[str, Notification]],
        now_ms: int,
        write: Callable[[Connection], None],
        *,
        silenced: Callable[[Notification], bool] | None = None,
        operation: str = "record and announce",
    ) -> None:
        """``write`` (the caller's own rows: a shadow decision) and the routed notifications
        announcing it, in one transaction: nothing is recorded without its notifications,
        and nothing announced that was not recorded. Silenced notifications are kept, not
        sent, as for incidents."""
        # silences are read before the transaction: on SQLite a read inside it would wait
        # for the write lock the transaction itself holds
        queued = rows_for(notes, now_ms, silenced)
        with writing(self.engine, operation) as conn:
            write(conn)
            enqueue(conn, queued)

    def due(
        self,
        now_ms: int,
        limit: int = 200,
        group_wait_ms: int = 0,
        group_interval_ms: int = 0,
        exact: frozenset[str] = frozenset(),
    ) -> list[OutboxRow]:
        """The first pending row of each (channel, incident), when its time has come.

        Noise control, with Alertmanager's meaning: a new incident's first notification
        waits ``group_wait`` (an incident that resolves meanwhile is never notified at
        all); later changes go out at most every ``group_interval``, and only the newest
        of several waiting changes is sent (the others are superseded). Channels in
        ``exact`` (webhooks, Alertmanager: they group for themselves) get every
        notification, in order, without waiting.
        """
        rows, last_sent = self._pending_rows()
        groups: dict[tuple[str, str], list[Any]] = {}
        for row in rows:
            groups.setdefault((row.channel, row.fingerprint), []).append(row)
        superseded: list[int] = []
        out: list[OutboxRow] = []
        for key, queue in sorted(groups.items(), key=lambda kv: kv[1][0].id):
            grouped = queue[0].kind in GROUPED and key[0] not in exact
            head = _head(queue, grouped, now_ms, group_wait_ms, group_interval_ms, superseded)
            if head is None:
                continue
            when = _due_at(head, grouped, last_sent.get(key), group_wait_ms, group_interval_ms)
            if when <= now_ms and len(out) < limit:
                n = Notification.from_dict(json.loads(head.payload))
                n = Notification.from_dict({**n.to_dict(), "delivery_id": f"wk-{head.id}"})
                out.append(OutboxRow(head.id, head.channel, n, head.attempts, head.created_ms))
        if superseded:
            with writing(self.engine, "mark superseded notifications") as conn:
                conn.execute(
                    update(t.outbox).where(t.outbox.c.id.in_(superseded)).values(state=SUPERSEDED)
                )
        return out

    def _pending_rows(self) -> tuple[list[Any], dict[tuple[str, str], int]]:
        """Pending rows in insertion order, and when each (channel, incident) last sent."""
        o = t.outbox.c
        with reading(self.engine, "read due notifications") as conn:
            rows = conn.execute(
                select(
                    o.id,
                    o.channel,
                    o.fingerprint,
                    o.kind,
                    o.payload,
                    o.attempts,
                    o.created_ms,
                    o.next_attempt_ms,
                )
                .where(o.state == PENDING)
                .order_by(o.id)
                .limit(5000)
            ).all()
            last_sent = {
                (c, f): int(m)
                for c, f, m in conn.execute(
                    select(o.channel, o.fingerprint, func.max(o.sent_ms))
                    .where(o.state == SENT)
                    .group_by(o.channel, o.fingerprint)
                ).all()
            }
        return list(rows), last_sent

    def _update(self, row_id: int, **values: Any) -> None:
        with writing(self.engine, "update a notification") as conn:
            conn.execute(update(t.outbox).where(t.outbox.c.id == row_id).values(**values))

    def mark_sent(self, row_id: int, now_ms: int, attempts: int) -> None:
        self._update(row_id, state=SENT, sent_ms=now_ms, attempts=attempts)

    def mark_retry(self, row_id: int, attempts: int, next_ms: int, error: str) -> None:
        self._update(row_id, attempts=attempts, next_attempt_ms=next_ms, last_error=error[:500])

    def mark_failed(self, row_id: int, attempts: int, error: str) -> None:
        self._update(row_id, state=FAILED, attempts=attempts, last_error=error[:500])

    def depth(self) -> dict[str, int]:
        o = t.outbox.c
        with reading(self.engine, "read the outbox depth") as conn:
            rows = conn.execute(
                select(o.channel, func.count()).where(o.state == PENDING).group_by(o.channel)
            ).all()
        return {str(c): int(n) for c, n in rows}

    def rows(self, channel: str | None = None) -> list[dict[str, Any]]:
        query = select(t.outbox).order_by(t.outbox.c.id)
        if channel is not None:
            query = query.where(t.outbox.c.channel == channel)
        with reading(self.engine, "read the outbox") as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]

    # -- per channel and incident state (e.g. the Slack message to update) ----------------
    def channel_state(self, channel: str, fingerprint: str) -> dict[str, Any] | None:
        c = t.channel_state.c
        with reading(self.engine, "read channel state") as conn:
            raw = conn.execute(
                select(c.state).where((c.channel == channel) & (c.fingerprint == fingerprint))
            ).scalar()
        return None if raw is None else dict(json.loads(raw))

    def set_channel_state(self, channel: str, fingerprint: str, state: dict[str, Any]) -> None:
        with writing(self.engine, "record channel state") as conn:
            upsert(
                conn,
                t.channel_state,
                [{"channel": channel, "fingerprint": fingerprint, "state": json.dumps(state)}],
                ["channel", "fingerprint"],
                ["state"],
            )


def _head(
    queue: list[Any],
    grouped: bool,
    now_ms: int,
    group_wait_ms: int,
    group_interval_ms: int,
    superseded: list[int],
) -> Any | None:
    """The row of one (channel, incident) queue to send next; the rows it makes moot are
    added to ``superseded`` (None: the whole queue is moot)."""
    flapped = grouped and queue[0].kind == "opened" and any(r.kind == "resolved" for r in queue)
    if flapped and now_ms - queue[0].created_ms < group_wait_ms:
        superseded += [r.id for r in queue]  # a flap inside group_wait: silence
        return None
    while grouped and group_interval_ms and len(queue) > 1 and queue[0].kind in COALESCED:
        superseded.append(queue.pop(0).id)
    return queue[0]


def _due_at(
    head: Any, grouped: bool, last_sent: int | None, group_wait_ms: int, group_interval_ms: int
) -> int:
    """When ``head`` may go out: its retry time, held by group_wait (a new incident) or
    group_interval (a change after the last send)."""
    when = int(head.next_attempt_ms)
    if grouped and head.kind == "opened":
        when = max(when, head.created_ms + group_wait_ms)
    elif grouped and head.kind in COALESCED and last_sent is not None:
        when = max(when, last_sent + group_interval_ms)
    return when
