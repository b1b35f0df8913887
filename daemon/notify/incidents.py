"""Incidents and evaluations in the store: what fired, when, and why (or why not)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import Engine, delete, insert, select, update
from watchkeeper.alerts.notification import Notification
from watchkeeper.daemon.notify.outbox import enqueue, rows_for
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store.connection import reading, writing
from watchkeeper.daemon.store.incident_queries import evaluation_rows, incident_rows
from watchkeeper.daemon.store.upsert import upsert
from watchkeeper.policies.incident_model import Evaluation, IncidentEvent


class IncidentStore:
    """Persists one policy evaluation round (evaluations, incident changes, engine state)
    in one transaction; reads incidents and evaluations back."""

    def __init__(self, engine: Engine, retention_ms: int = 30 * 86_400_000) -> None:
        self.engine = engine
        self.retention_ms = retention_ms

    def record(
        self,
        policy: str,
        at_ms: int,
        evaluations: Sequence[Evaluation],
        events: Sequence[IncidentEvent],
        state: dict[str, Any],
        notifications: Sequence[tuple[str, Notification]] = (),
        silenced: Callable[[Notification], bool] | None = None,
        wall_ms: int | None = None,
        historical: bool = False,
        tick: bool = True,
    ) -> None:
        """Evaluations, incident changes, engine state and the notifications they cause, in
        one transaction: an incident change is never stored without its notifications.

        ``at_ms`` is the tick evaluated (event time); with ``tick`` it becomes the policy's
        last evaluated tick in the same transaction. ``wall_ms`` stamps the outbox rows
        (default ``at_ms``); ``historical`` rows are recorded, not sent."""
        # silences are read before the transaction: on SQLite a read inside it would wait
        # for the write lock the transaction itself holds
        queued = rows_for(
            notifications, wall_ms if wall_ms is not None else at_ms, silenced, historical
        )
        with writing(self.engine, "record evaluations") as conn:
            if evaluations:
                conn.execute(
                    insert(t.evaluations),
                    [
                        {
                            "at_ms": e.at_ms,
                            "policy": e.policy,
                            "model": e.model,
                            "rule": e.rule,
                            "metric": e.metric,
                            "feature": e.feature,
                            "value": e.value,
                            "warn": e.warn,
                            "critical": e.critical,
                            "resolve": e.resolve,
                            "decision": e.decision,
                            "severity": e.severity,
                            "state": e.state,
                            "n_current": e.n_current,
                            "reason": e.reason,
                        }
                        for e in evaluations
                    ],
                )
            for event in events:
                self._apply(conn, event)
            enqueue(conn, queued)
            row: dict[str, Any] = {
                "policy": policy,
                "state": orjson.dumps(state),
                "updated_ms": at_ms,
            }
            if tick:
                row["tick_ms"] = at_ms
            upsert(conn, t.policy_states, [row], ["policy"], [c for c in row if c != "policy"])
            # kept per policy, measured from its own tick: a backfill's evaluations are
            # not deleted by another policy evaluating live
            e = t.evaluations.c
            conn.execute(
                delete(t.evaluations).where(
                    (e.policy == policy) & (e.at_ms < at_ms - self.retention_ms)
                )
            )

    def _apply(self, conn: Any, event: IncidentEvent) -> None:
        i = event.incident
        values = {
            "state": "resolved" if event.kind == "resolved" else "open",
            "severity": i.severity,
            "summary": i.summary,
            "members": json.dumps(i.members, sort_keys=True),
            "updated_ms": event.at_ms,
        }
        if event.kind == "resolved":
            values["resolved_ms"] = event.at_ms
            values["note"] = event.note
        if event.kind == "opened":
            conn.execute(
                insert(t.incidents).values(
                    fingerprint=i.fingerprint,
                    policy=i.policy,
                    model=i.model,
                    rule=i.rule,
                    feature=i.feature,
                    metric=i.metric,
                    opened_ms=i.opened_ms,
                    note=event.note,
                    **values,
                )
            )
            return
        conn.execute(
            update(t.incidents)
            .where((t.incidents.c.fingerprint == i.fingerprint) & (t.incidents.c.state == "open"))
            .values(**values)
        )

    def cursor(self, policy: str) -> int | None:
        """The policy's last evaluated tick (event time), or None before its first."""
        c = t.policy_states.c
        with reading(self.engine, "read policy progress") as conn:
            value = conn.execute(select(c.tick_ms).where(c.policy == policy)).scalar()
        return None if value is None else int(value)

    def advance(self, policy: str, tick_ms: int) -> None:
        """Move the policy's cursor past ticks that read nothing (nothing else changes)."""
        c = t.policy_states.c
        with writing(self.engine, "record policy progress") as conn:
            conn.execute(
                update(t.policy_states)
                .where((c.policy == policy) & ((c.tick_ms < tick_ms) | c.tick_ms.is_(None)))
                .values(tick_ms=tick_ms)
            )

    def state(self, policy: str) -> dict[str, Any] | None:
        with reading(self.engine, "read policy state") as conn:
            blob = conn.execute(
                select(t.policy_states.c.state).where(t.policy_states.c.policy == policy)
            ).scalar()
        return None if blob is None else dict(orjson.loads(blob))

    def incidents(self, state: str | None = "open", limit: int = 200) -> list[dict[str, Any]]:
        return incident_rows(self.engine, state, limit)

    def evaluations(
        self,
        policy: str | None = None,
        rule: str | None = None,
        feature: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        return evaluation_rows(self.engine, policy, rule, feature, limit)
