"""Shadow evaluation in the store: comparison summaries, progress, candidates, decisions.

Summaries are merged per (model, candidate, window) together with the per-partition
offset up to which rows were evaluated, in one transaction: after a crash, rows below
that offset are not evaluated again (nothing is counted twice), and rows that were still
queued are not evaluated at all (shadow evaluation samples; it never holds ingestion).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, delete, select
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store.connection import reading, writing
from watchkeeper.daemon.store.queries import TopicPartitionKey
from watchkeeper.daemon.store.upsert import upsert
from watchkeeper.detectors.shadow import ShadowStats

ShadowKey = tuple[str, str, int]
"""(model, candidate, window start ms)."""
PRODUCTION = "@production"
"""The candidate column's value for production's own rows: its window attributions (in
``shadow_windows``) and its reference summary (in ``shadow_candidates``), the two sides
of ``attribution_shift``. No candidate can be named so (names start with a letter or a
digit)."""


class ShadowStore:
    """See the module docstring."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- writing -----------------------------------------------------------------------
    def commit(
        self,
        group_id: str,
        size_ms: int,
        stats: Mapping[ShadowKey, ShadowStats],
        offsets: Mapping[TopicPartitionKey, int],
    ) -> None:
        with writing(self.engine, "commit shadow summaries") as conn:
            for key in sorted(stats):
                self._merge(conn, size_ms, key, stats[key])
            upsert(
                conn,
                t.shadow_offsets,
                [
                    {"group_id": group_id, "topic": tp, "partition": p, "next_offset": o}
                    for (tp, p), o in sorted(offsets.items())
                ],
                ["group_id", "topic", "partition"],
                ["next_offset"],
            )

    def _merge(self, conn: Connection, size_ms: int, key: ShadowKey, fresh: ShadowStats) -> None:
        model, candidate, start = key
        c = t.shadow_windows.c
        where = (
            (c.model == model)
            & (c.candidate == candidate)
            & (c.window_size_ms == size_ms)
            & (c.window_start_ms == start)
        )
        query = select(c.stats).where(where)
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update()
        blob = conn.execute(query).scalar()
        if blob is None:
            conn.execute(
                t.shadow_windows.insert().values(
                    model=model,
                    candidate=candidate,
                    window_size_ms=size_ms,
                    window_start_ms=start,
                    rows=fresh.rows,
                    stats=orjson.dumps(fresh.to_dict()),
                )
            )
            return
        stored = ShadowStats.from_dict(orjson.loads(blob))
        stored.merge(fresh)
        conn.execute(
            t.shadow_windows.update()
            .where(where)
            .values(rows=stored.rows, stats=orjson.dumps(stored.to_dict()))
        )

    def set_candidate(
        self, model: str, candidate: str, state: str, reason: str, info: dict[str, Any], at_ms: int
    ) -> None:
        row = {
            "model": model,
            "candidate": candidate,
            "state": state,
            "reason": reason,
            "info": json.dumps(info, sort_keys=True),
            "updated_ms": at_ms,
        }
        with writing(self.engine, "record candidate state") as conn:
            upsert(
                conn,
                t.shadow_candidates,
                [row],
                ["model", "candidate"],
                ["state", "reason", "info", "updated_ms"],
            )

    def set_reference_attribution(
        self,
        model: str,
        identity: str,
        summary: dict[str, Any] | None,
        at_ms: int,
        reason: str = "",
    ) -> None:
        """Production's attributions of its reference's rows (an ``AttributionSummary``
        as a dict; None: pending, ``reason`` says why), with the reference's identity:
        kept beside the candidates' states, so a restart or another replica reads it
        instead of computing it again."""
        info = {"identity": identity, "summary": summary}
        state = "reference" if summary is not None else "pending"
        self.set_candidate(model, PRODUCTION, state, reason, info, at_ms)

    def reference_attribution(self, model: str) -> dict[str, Any] | None:
        """``{"identity", "summary" (None: pending), "reason", "updated_ms"}``, or None
        (never computed)."""
        c = t.shadow_candidates.c
        with reading(self.engine, "read a reference attribution") as conn:
            row = conn.execute(
                select(c.info, c.reason, c.updated_ms).where(
                    (c.model == model) & (c.candidate == PRODUCTION)
                )
            ).first()
        if row is None:
            return None
        info = json.loads(row.info)
        if not isinstance(info, dict) or "summary" not in info:
            return None
        return {**info, "reason": row.reason, "updated_ms": int(row.updated_ms)}

    def write_decision(
        self,
        conn: Connection,
        policy: str,
        candidate: str,
        decision: str,
        reasons: Sequence[str],
        table: Mapping[str, Any],
        at_ms: int,
    ) -> None:
        """The new decision, inside the caller's transaction: the checker records it with
        the notifications announcing it (:meth:`Outbox.announce
        <watchkeeper.daemon.notify.outbox.Outbox.announce>`), as every notification is
        written — by the notify layer, as the router planned it."""
        row = {
            "policy": policy,
            "candidate": candidate,
            "decision": decision,
            "reasons": json.dumps(list(reasons)),
            "table": json.dumps(table, sort_keys=True),
            "at_ms": at_ms,
        }
        upsert(
            conn,
            t.shadow_decisions,
            [row],
            ["policy", "candidate"],
            ["decision", "reasons", "table", "at_ms"],
        )

    def prune(self, before_ms: int, model: str | None = None) -> int:
        """Delete shadow windows starting before ``before_ms`` (of ``model``, or all)."""
        where = t.shadow_windows.c.window_start_ms < before_ms
        if model is not None:
            where = where & (t.shadow_windows.c.model == model)
        with writing(self.engine, "prune shadow summaries") as conn:
            result = conn.execute(delete(t.shadow_windows).where(where))
            return int(result.rowcount or 0)

    # -- reading -----------------------------------------------------------------------
    def reference_sample(self, model: str, name: str) -> list[dict[str, Any]]:
        """The sample rows of a stored reference profile (``[]`` if none): the background
        of shadow attributions."""
        c = t.reference_profiles.c
        with reading(self.engine, "read a reference sample") as conn:
            blob = conn.execute(
                select(c.profile).where((c.model == model) & (c.name == name))
            ).scalar()
        if blob is None:
            return []
        sample = orjson.loads(blob).get("sample") or []
        return [r for r in sample if isinstance(r, dict)]

    def offsets(self, group_id: str) -> dict[TopicPartitionKey, int]:
        c = t.shadow_offsets.c
        with reading(self.engine, "read shadow offsets") as conn:
            rows = conn.execute(
                select(c.topic, c.partition, c.next_offset).where(c.group_id == group_id)
            ).all()
        return {(r.topic, int(r.partition)): int(r.next_offset) for r in rows}

    def stats(self, model: str, start_ms: int, end_ms: int) -> dict[str, ShadowStats]:
        """Per candidate, the merged summary of windows starting in [start, end)."""
        c = t.shadow_windows.c
        query = (
            select(c.candidate, c.stats)
            .where((c.model == model) & (c.window_start_ms >= start_ms))
            .where(c.window_start_ms < end_ms)
            .order_by(c.candidate, c.window_start_ms)
        )
        out: dict[str, ShadowStats] = {}
        with reading(self.engine, "read shadow summaries") as conn:
            for row in conn.execute(query):
                s = ShadowStats.from_dict(orjson.loads(row.stats))
                if row.candidate in out:
                    out[row.candidate].merge(s)
                else:
                    out[row.candidate] = s
        return out

    def candidates(self, model: str | None = None) -> list[dict[str, Any]]:
        query = (
            select(t.shadow_candidates)
            .where(t.shadow_candidates.c.candidate != PRODUCTION)
            .order_by(t.shadow_candidates.c.model, t.shadow_candidates.c.candidate)
        )
        if model is not None:
            query = query.where(t.shadow_candidates.c.model == model)
        with reading(self.engine, "read candidates") as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["info"] = json.loads(row["info"])
        return rows

    def decisions(self, policy: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        query = select(t.shadow_decisions)
        if policy is not None:
            query = query.where(t.shadow_decisions.c.policy == policy)
        with reading(self.engine, "read shadow decisions") as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        out = {}
        for row in rows:
            row["reasons"] = json.loads(row["reasons"])
            row["table"] = json.loads(row["table"])
            out[(row["policy"], row["candidate"])] = row
        return out
