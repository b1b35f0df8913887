"""The incident page's severity history of a digest incident: one row per change of the
incident's severity (its worst member's), never a warn member read as a de-escalation.

Trial on the Palmer penguins (2026-12-07): a feature-drift digest critical from 22:00 to
22:15 (body_mass_g critical, bill_depth_mm warn) showed "22:05 warn, 22:05 critical, 22:10
warn, 22:10 critical …", 31 rows for 5 real transitions.
"""

from __future__ import annotations

from typing import Any

from watchkeeper.daemon.http.console_charts import severity_changes

TICK = 300_000


def rows(*ticks: dict[str, str | None]) -> list[dict[str, Any]]:
    """The timeline as the console reads it: oldest tick first, a row per feature."""
    return [
        {"at_ms": i * TICK, "feature": feature, "severity": severity}
        for i, tick in enumerate(ticks)
        for feature, severity in tick.items()
    ]


def changes(timeline: list[dict[str, Any]]) -> list[tuple[int, str | None]]:
    return [(c["at_ms"] // TICK, c["severity"]) for c in severity_changes(timeline)]


def test_a_digest_is_as_severe_as_its_worst_member_at_each_tick() -> None:
    timeline = rows(
        {"body_mass_g": None, "bill_depth_mm": None},
        {"body_mass_g": "warn", "bill_depth_mm": "warn"},
        {"body_mass_g": "critical", "bill_depth_mm": "warn"},
        {"bill_depth_mm": "warn", "body_mass_g": "critical"},  # either order in a tick
        {"body_mass_g": "warn", "bill_depth_mm": None},
        {"body_mass_g": None, "bill_depth_mm": None},
    )
    assert changes(timeline) == [(0, None), (1, "warn"), (2, "critical"), (4, "warn"), (5, None)]


def test_one_feature_rules_are_unchanged() -> None:
    timeline = rows({"": "warn"}, {"": "warn"}, {"": "critical"}, {"": None})
    assert changes(timeline) == [(0, "warn"), (2, "critical"), (3, None)]


def test_no_evaluations_no_history() -> None:
    assert severity_changes([]) == []
