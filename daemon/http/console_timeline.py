"""Which evaluations the incident page reads: its members worst first, whole ticks.

The page plots "the worst member per tick" and the severity history of a digest incident
from the rule's evaluations (console_queries.timeline, newest ``MAX_TIMELINE`` rows). Two
cuts could hide the member that made it critical: the first 20 members in stored order
(a digest of 30 features may list its critical one 25th), and the row limit falling
inside the oldest tick (some of its members read, the worst one not).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from watchkeeper.daemon.http.console_queries import MAX_TIMELINE
from watchkeeper.policies.incident_model import DIGEST
from watchkeeper.policies.member_order import worst_first

MAX_MEMBERS = 20
"""Members whose evaluations the page reads (the worst ones)."""


def timeline_members(
    members: Mapping[str, float | None],
    feature: str | None,
    bad_side: Literal["above", "below"],
) -> list[str]:
    """The incident's members worst first on ``bad_side`` (as the summary lists them), at
    most :data:`MAX_MEMBERS`; its own feature when it has no members.

    >>> timeline_members({"a": 0.1, "b": 0.9, "*": None}, None, "above")
    ['b', 'a']
    >>> timeline_members({}, "amount", "above")
    ['amount']
    """
    named = {f: v for f, v in members.items() if f and f != DIGEST}
    ordered = worst_first(named, bad_side)[:MAX_MEMBERS]
    return ordered or ([feature] if feature and feature != DIGEST else [])


def whole_ticks(timeline: list[dict[str, Any]], limit: int = MAX_TIMELINE) -> list[dict[str, Any]]:
    """``timeline`` (oldest first, at most ``limit`` rows) without its oldest tick when
    the limit may have cut that tick partway; a timeline of one tick is kept.

    >>> rows = [{"at_ms": 1}, {"at_ms": 2}, {"at_ms": 2}, {"at_ms": 3}]
    >>> [r["at_ms"] for r in whole_ticks(rows, limit=4)]
    [2, 2, 3]
    >>> [r["at_ms"] for r in whole_ticks(rows, limit=5)]
    [1, 2, 2, 3]
    """
    if len(timeline) < limit or not timeline:
        return timeline
    oldest = timeline[0]["at_ms"]
    rest = [r for r in timeline if r["at_ms"] != oldest]
    return rest or timeline
