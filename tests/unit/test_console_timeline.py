"""The incident page reads the evaluations of its worst members, on whole ticks.

Review (2026-12-07): the page passed the first 20 members in stored order to the timeline
query, and the query's row limit could cut the oldest tick partway, so "worst member per
tick" and the severity history could miss the member that made a digest critical.
"""

from __future__ import annotations

from typing import Any

from watchkeeper.daemon.http.console_charts import severity_changes
from watchkeeper.daemon.http.console_timeline import MAX_MEMBERS, timeline_members, whole_ticks
from watchkeeper.policies.incident_model import DIGEST


def test_the_critical_member_of_a_wide_digest_is_read() -> None:
    # 30 members in stored order; the worst (highest PSI) is the 25th
    members: dict[str, float | None] = {f"f{i:02d}": 0.1 + i / 1000 for i in range(30)}
    members["f24"] = 0.9
    members[DIGEST] = None
    chosen = timeline_members(members, DIGEST, "above")
    assert chosen[0] == "f24" and len(chosen) == MAX_MEMBERS
    # independently: the 20 highest values
    by_value = sorted((k for k in members if k != DIGEST), key=lambda k: -(members[k] or 0))
    assert set(chosen) == set(by_value[:MAX_MEMBERS])


def test_a_rule_whose_bad_side_is_below_reads_its_lowest_members() -> None:
    members: dict[str, float | None] = {f"s{i:02d}": 0.9 - i / 100 for i in range(25)}
    chosen = timeline_members(members, None, "below")
    assert chosen[0] == "s24" and "s00" not in chosen


def test_a_one_feature_incident_reads_its_feature() -> None:
    assert timeline_members({}, "amount", "above") == ["amount"]
    assert timeline_members({}, None, "above") == []


def rows(ticks: list[dict[str, str | None]]) -> list[dict[str, Any]]:
    return [
        {"at_ms": at, "feature": f, "severity": s}
        for at, tick in enumerate(ticks)
        for f, s in tick.items()
    ]


def test_a_tick_cut_by_the_row_limit_is_dropped_whole() -> None:
    ticks: list[dict[str, str | None]] = [
        {"b": "critical", "a": "warn"},  # "b" stored first in its tick
        {"a": "warn", "b": "critical"},
        {"a": "warn", "b": None},
    ]
    full = rows(ticks)
    cut = full[1:]  # newest rows kept up to the limit: tick 0 lost its critical member "b"
    assert severity_changes(cut)[0] == {"at_ms": 0, "severity": "warn"}  # the cut reads warn
    kept = whole_ticks(cut, limit=len(cut))
    assert [r["at_ms"] for r in kept] == [1, 1, 2, 2]
    assert severity_changes(kept) == [
        {"at_ms": 1, "severity": "critical"},
        {"at_ms": 2, "severity": "warn"},
    ]
    assert whole_ticks(full, limit=len(full) + 1) == full  # under the limit: nothing cut
    one = rows([{"a": "warn", "b": "warn"}])
    assert whole_ticks(one, limit=2) == one  # one tick only: kept
