"""A/B comparisons in the store: each pair's running state (``ab_comparisons``, migration
0011) and which pair of a policy is in force (``in_force``, migration 0012), and when each
version of a model was first seen (``ab_versions``, migration 0012: recorded from the
stored windows at each look and kept when retention deletes them)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, Engine, func, select, update
from watchkeeper.daemon.checks.ab_state import ABState
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store import window_reads
from watchkeeper.daemon.store.connection import reading, writing
from watchkeeper.daemon.store.upsert import upsert


def _seen(
    conn: Connection, model: str, until_ms: int | None = None
) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    """(what ``ab_versions`` holds, that merged with the stored windows' figures);
    ``until_ms``: only the windows that start before it, and not ``ab_versions`` (whose
    figures are those of the daemon's latest look: a replay at an earlier tick must not
    see versions or events that came later)."""
    c = window_reads.rows().c
    v = t.ab_versions.c
    # the empty version is no model version (labels, unversioned predictions): a compare
    # names non-empty versions only, so it is never recorded (trial finding F11)
    where = (c.model == model) & (c.events > 0) & (c.model_version != "")
    if until_ms is not None:
        where = where & (c.window_start_ms < until_ms)
    query = (
        select(c.model_version, func.min(c.window_start_ms), func.sum(c.events))
        .where(where)
        .group_by(c.model_version)
    )
    stored = (
        {}
        if until_ms is not None
        else {
            str(r.version): (int(r.first_seen_ms), int(r.events))
            for r in conn.execute(
                select(v.version, v.first_seen_ms, v.events).where(
                    (v.model == model) & (v.version != "")
                )
            ).all()
        }
    )
    seen = dict(stored)
    for version, start, events in conn.execute(query).all():
        old = seen.get(str(version))
        new = (int(start), int(events or 0))
        seen[str(version)] = new if old is None else (min(old[0], new[0]), max(old[1], new[1]))
    return stored, seen


class ABStore:
    """See the module docstring."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def first_seen(self, model: str) -> dict[str, tuple[int, int]]:
        """Version → (start of the first window it was seen in, its events), durably: the
        stored windows' figures are merged into ``ab_versions`` (earliest start, largest
        count), so retention deleting a version's first windows changes neither."""
        with writing(self.engine, "record a model's versions") as conn:
            stored, seen = _seen(conn, model)
            rows = [
                {"model": model, "version": k, "first_seen_ms": f, "events": n}
                for k, (f, n) in sorted(seen.items())
                if stored.get(k) != (f, n)
            ]
            if rows:
                upsert(conn, t.ab_versions, rows, ["model", "version"], ["first_seen_ms", "events"])
        return seen

    def in_force(self, policy: str) -> tuple[str, str] | None:
        """The policy's pair in force (baseline, candidate), as the last look recorded it."""
        c = t.ab_comparisons.c
        with reading(self.engine, "read the A/B pair in force") as conn:
            row = conn.execute(
                select(c.baseline, c.candidate).where((c.policy == policy) & c.in_force)
            ).first()
        return None if row is None else (str(row.baseline), str(row.candidate))

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
        """Write ``state`` in the caller's transaction (a decision and its notifications);
        its pair becomes the policy's pair in force."""
        c = t.ab_comparisons.c
        conn.execute(
            update(t.ab_comparisons)
            .where(
                (c.policy == state.policy)
                & c.in_force
                & ((c.baseline != state.baseline) | (c.candidate != state.candidate))
            )
            .values(in_force=False)
        )
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
                    "in_force": True,
                }
            ],
            ["policy", "baseline", "candidate"],
            ["model", "since_ms", "state", "last", "updated_ms", "in_force"],
        )

    def looks(self, policy: str | None = None) -> list[dict[str, Any]]:
        """Every stored comparison's latest look (what ``/api/shadow`` shows), newest first;
        reads stored rows only."""
        c = t.ab_comparisons.c
        query = select(
            c.policy, c.baseline, c.candidate, c.model, c.since_ms, c.last, c.updated_ms, c.in_force
        )
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
                    "in_force": bool(r.in_force),
                    "last": state.get("last", {}),
                    "decision": state.get("decision"),
                }
            )
        return out


class ReplayABStore(ABStore):
    """An :class:`ABStore` that reads the store's windows and versions but keeps the
    comparisons it would record in memory (``policy backtest``: a replay over stored
    history writes nothing, and a running daemon's experiments are left alone). States
    go through the same serialisation as the stored ones, so a look loads exactly what
    the daemon's would."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.states: dict[tuple[str, str, str], tuple[str, bytes, int]] = {}
        """(policy, baseline, candidate) → (model, serialised state, look's tick)."""
        self.current: dict[str, tuple[str, str]] = {}
        self.until_ms: int | None = None
        """The replay's tick: versions and their events are counted from the windows
        that start before it, as the daemon at that tick had them (None: all)."""

    def first_seen(self, model: str) -> dict[str, tuple[int, int]]:
        with reading(self.engine, "read a model's versions") as conn:
            return _seen(conn, model, self.until_ms)[1]

    def in_force(self, policy: str) -> tuple[str, str] | None:
        return self.current.get(policy)

    def load(self, policy: str, baseline: str, candidate: str) -> ABState | None:
        kept = self.states.get((policy, baseline, candidate))
        if kept is None:
            return None
        return ABState.from_dict(policy, baseline, candidate, orjson.loads(kept[1]))

    def save(self, state: ABState, model: str, now_ms: int) -> None:
        blob = orjson.dumps(state.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY)
        self.states[(state.policy, state.baseline, state.candidate)] = (model, blob, now_ms)
        self.current[state.policy] = (state.baseline, state.candidate)

    def write(self, conn: Connection, state: ABState, model: str, now_ms: int) -> None:
        self.save(state, model, now_ms)

    def looks(self, policy: str | None = None) -> list[dict[str, Any]]:
        out = []
        for (key, b, c), (model, blob, at) in self.states.items():
            if policy is not None and key != policy:
                continue
            state = ABState.from_dict(key, b, c, orjson.loads(blob))
            out.append(
                {
                    "policy": key,
                    "model": model,
                    "baseline": b,
                    "candidate": c,
                    "since_ms": state.since_ms,
                    "updated_ms": at,
                    "in_force": self.current.get(key) == (b, c),
                    "last": state.last,
                    "decision": state.decision,
                }
            )
        return sorted(out, key=lambda r: -int(r["updated_ms"]))
