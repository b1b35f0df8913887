"""A/B comparisons in the store: each pair's running state (``ab_comparisons``, migration
0011), and when each version of a model was first seen (from the stored windows)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, Engine, func, select
from watchkeeper.daemon.checks.ab_state import ABState
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store import window_parts
from watchkeeper.daemon.store.connection import reading, writing
from watchkeeper.daemon.store.upsert import upsert


class ABStore:
    """See the module docstring."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def first_seen(self, model: str) -> dict[str, int]:
        """Version → start of its earliest stored window holding events (event time)."""
        c = window_parts.rows().c
        query = (
            select(c.model_version, func.min(c.window_start_ms))
            .where((c.model == model) & (c.events > 0))
            .group_by(c.model_version)
        )
        with reading(self.engine, "read a model's versions") as conn:
            return {str(v): int(s) for v, s in conn.execute(query).all()}

    def load(self, policy: str, baseline: str, candidate: str) -> ABState | None:
        c = t.ab_comparisons.c
        with reading(self.engine, "read an A/B comparison") as conn:
            blob = conn.execute(
                select(c.state).where(
                    (c.policy == policy) & (c.baseline == baseline) & (c.candidate == candidate)
                )
            ).scalar()
        if blob is None:
            return None
        return ABState.from_dict(policy, baseline, candidate, orjson.loads(blob))

    def save(self, state: ABState, model: str, now_ms: int) -> None:
        with writing(self.engine, "record an A/B comparison") as conn:
            self.write(conn, state, model, now_ms)

    def write(self, conn: Connection, state: ABState, model: str, now_ms: int) -> None:
        """Write ``state`` in the caller's transaction (a decision and its notifications)."""
        upsert(
            conn,
            t.ab_comparisons,
            [
                {
                    "policy": state.policy,
                    "baseline": state.baseline,
                    "candidate": state.candidate,
                    "model": model,
                    "since_ms": state.since_ms,
                    "state": orjson.dumps(state.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY),
                    # the latest look and decision apart, so reading them parses no summaries
                    "last": orjson.dumps(
                        {"last": state.last, "decision": state.decision},
                        option=orjson.OPT_SERIALIZE_NUMPY,
                    ).decode(),
                    "updated_ms": now_ms,
                }
            ],
            ["policy", "baseline", "candidate"],
            ["model", "since_ms", "state", "last", "updated_ms"],
        )

    def looks(self, policy: str | None = None) -> list[dict[str, Any]]:
        """Every stored comparison's latest look (what ``/api/shadow`` shows), newest first;
        reads stored rows only."""
        c = t.ab_comparisons.c
        query = select(c.policy, c.baseline, c.candidate, c.model, c.since_ms, c.last, c.updated_ms)
        if policy is not None:
            query = query.where(c.policy == policy)
        with reading(self.engine, "read A/B comparisons") as conn:
            rows = conn.execute(query.order_by(c.updated_ms.desc())).all()
        out = []
        for r in rows:
            state = orjson.loads(r.last)
            out.append(
                {
                    "policy": r.policy,
                    "model": r.model,
                    "baseline": r.baseline,
                    "candidate": r.candidate,
                    "since_ms": int(r.since_ms),
                    "updated_ms": int(r.updated_ms),
                    "last": state.get("last", {}),
                    "decision": state.get("decision"),
                }
            )
        return out
