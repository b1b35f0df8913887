"""Silences: notifications matching a silence are kept in the outbox as ``silenced`` and
not sent, until the silence expires (``watchkeeper silence add model=fraud --for 2h``).

Matchers work like routes': ``label=value`` or ``label=~regex`` over model, severity,
policy, rule, feature, metric and the policy's labels.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, insert, select, update
from watchkeeper.alerts.notification import Notification
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store.connection import reading, writing


def parse_matchers(items: list[str]) -> dict[str, str]:
    """``["model=fraud", "severity=~warn|critical"]`` → ``{"model": "fraud", …}``."""
    out: dict[str, str] = {}
    for item in items:
        label, sep, value = item.partition("=")
        if not sep or not label or not value:
            raise ValueError(f"'{item}' is not label=value or label=~regex")
        if value.startswith("~"):
            re.compile(value[1:])
        out[label] = value
    return out


def labels_of(n: Notification) -> dict[str, str]:
    """The labels routes and silences match on."""
    return {
        "model": n.model,
        "severity": n.severity,
        "policy": n.policy,
        "rule": n.rule,
        "feature": n.feature or "",
        "metric": n.metric,
        **n.labels,
    }


def matches(matchers: dict[str, str], n: Notification) -> bool:
    """Whether every matcher holds: ``value`` exactly, or ``~regex`` as a full match."""
    labels = labels_of(n)
    for label, pattern in matchers.items():
        value = labels.get(label, "")
        if pattern.startswith("~"):
            if re.fullmatch(pattern[1:], value) is None:
                return False
        elif value != pattern:
            return False
    return True


class Silences:
    def __init__(
        self, engine: Engine, clock: Callable[[], float] = time.time, cache_s: float = 5.0
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.cache_s = cache_s
        self._cached: tuple[float, list[dict[str, Any]]] = (0.0, [])
        self._lock = threading.Lock()

    def add(
        self,
        matchers: dict[str, str],
        duration_s: float,
        created_by: str = "cli",
        comment: str = "",
    ) -> int:
        if not matchers:
            raise ValueError("a silence needs at least one matcher (e.g. model=fraud)")
        now = int(self.clock() * 1000)
        with writing(self.engine, "add a silence") as conn:
            result = conn.execute(
                insert(t.silences).values(
                    matchers=json.dumps(matchers, sort_keys=True),
                    starts_ms=now,
                    ends_ms=now + int(duration_s * 1000),
                    created_by=created_by,
                    comment=comment,
                )
            )
            key = result.inserted_primary_key
        self._cached = (0.0, [])
        assert key is not None
        return int(key[0])

    def expire(self, silence_id: int) -> bool:
        now = int(self.clock() * 1000)
        with writing(self.engine, "expire a silence") as conn:
            done = conn.execute(
                update(t.silences)
                .where((t.silences.c.id == silence_id) & (t.silences.c.ends_ms > now))
                .values(ends_ms=now)
            ).rowcount
        self._cached = (0.0, [])
        return bool(done)

    def active(self) -> list[dict[str, Any]]:
        now = int(self.clock() * 1000)
        with reading(self.engine, "read silences") as conn:
            rows = conn.execute(
                select(t.silences).where(t.silences.c.ends_ms > now).order_by(t.silences.c.id)
            ).all()
        return [dict(r._mapping, matchers=json.loads(r.matchers)) for r in rows]

    def silenced(self, n: Notification) -> bool:
        """Whether an active silence covers ``n`` (reads the store at most every few s)."""
        now = self.clock()
        with self._lock:
            if now - self._cached[0] > self.cache_s:
                self._cached = (now, self.active())
            current = self._cached[1]
        return any(matches(s["matchers"], n) for s in current if s["ends_ms"] > now * 1000)
