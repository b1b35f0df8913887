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
from watchkeeper.daemon import tables as t
from watchkeeper.daemon.engine import reader

PENDING, SENT, FAILED, SILENCED = "pending", "sent", "failed", "silenced"


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
) -> list[dict[str, Any]]:
    """Outbox rows for (channel, notification) pairs; silenced ones are kept, not sent."""
    return [
        {
            "channel": channel,
            "fingerprint": n.fingerprint,
            "kind": n.kind,
            "payload": json.dumps(n.to_dict()),
            "state": SILENCED if silenced is not None and silenced(n) else PENDING,
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
        with self.engine.begin() as conn:
            enqueue(conn, rows_for(notes, now_ms))

    def due(self, now_ms: int, limit: int = 200) -> list[OutboxRow]:
        """The first pending row of each (channel, incident), when its time has come."""
        o = t.outbox.c
        with reader(self.engine) as conn:
            rows = conn.execute(
                select(
                    o.id,
                    o.channel,
                    o.fingerprint,
                    o.payload,
                    o.attempts,
                    o.created_ms,
                    o.next_attempt_ms,
                )
                .where(o.state == PENDING)
                .order_by(o.id)
                .limit(5000)
            ).all()
        heads: dict[tuple[str, str], Any] = {}
        for row in rows:
            heads.setdefault((row.channel, row.fingerprint), row)
        out = []
        for row in sorted(heads.values(), key=lambda r: r.id):
            if row.next_attempt_ms <= now_ms:
                n = Notification.from_dict(json.loads(row.payload))
                n = Notification.from_dict({**n.to_dict(), "delivery_id": f"wk-{row.id}"})
                out.append(OutboxRow(row.id, row.channel, n, row.attempts, row.created_ms))
            if len(out) >= limit:
                break
        return out

    def _update(self, row_id: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(t.outbox).where(t.outbox.c.id == row_id).values(**values))

    def mark_sent(self, row_id: int, now_ms: int, attempts: int) -> None:
        self._update(row_id, state=SENT, sent_ms=now_ms, attempts=attempts)

    def mark_retry(self, row_id: int, attempts: int, next_ms: int, error: str) -> None:
        self._update(row_id, attempts=attempts, next_attempt_ms=next_ms, last_error=error[:500])

    def mark_failed(self, row_id: int, attempts: int, error: str) -> None:
        self._update(row_id, state=FAILED, attempts=attempts, last_error=error[:500])

    def depth(self) -> dict[str, int]:
        o = t.outbox.c
        with reader(self.engine) as conn:
            rows = conn.execute(
                select(o.channel, func.count()).where(o.state == PENDING).group_by(o.channel)
            ).all()
        return {str(c): int(n) for c, n in rows}

    def rows(self, channel: str | None = None) -> list[dict[str, Any]]:
        query = select(t.outbox).order_by(t.outbox.c.id)
        if channel is not None:
            query = query.where(t.outbox.c.channel == channel)
        with reader(self.engine) as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]

    # -- per channel and incident state (e.g. the Slack message to update) ----------------
    def channel_state(self, channel: str, fingerprint: str) -> dict[str, Any] | None:
        c = t.channel_state.c
        with reader(self.engine) as conn:
            raw = conn.execute(
                select(c.state).where((c.channel == channel) & (c.fingerprint == fingerprint))
            ).scalar()
        return None if raw is None else dict(json.loads(raw))

    def set_channel_state(self, channel: str, fingerprint: str, state: dict[str, Any]) -> None:
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = self.engine.dialect.name
        ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(t.channel_state)
        with self.engine.begin() as conn:
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["channel", "fingerprint"], set_={"state": ins.excluded.state}
                ),
                [{"channel": channel, "fingerprint": fingerprint, "state": json.dumps(state)}],
            )
