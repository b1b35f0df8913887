"""The console's chart data and time labels, built from the store's rows (pure: no I/O),
for the pages of :mod:`watchkeeper.daemon.http.console`."""

from __future__ import annotations

from typing import Any

from watchkeeper.daemon.http.console_queries import Distribution
from watchkeeper.daemon.http.status import iso


def when(ms: Any) -> str:
    """A time on the page (UTC, to the second); empty for none."""
    return iso(int(ms)) or "" if ms is not None else ""


def incident_chart(
    metric: str, timeline: list[dict[str, Any]], distributions: list[Distribution]
) -> dict[str, Any]:
    """The incident page's chart data: the metric per feature over the timeline, with its
    thresholds, and the distributions."""
    series: dict[str, list[dict[str, Any]]] = {}
    for row in timeline:
        series.setdefault(row["feature"] or "", []).append(row)
    return {
        "metric": metric,
        "series": [
            {
                "feature": name,
                "x": [when(r["at_ms"]) for r in rows],
                "value": [r["value"] for r in rows],
                "warn": [r["warn"] for r in rows],
                "critical": [r["critical"] for r in rows],
                "resolve": [r["resolve"] for r in rows],
            }
            for name, rows in series.items()
        ],
        "distributions": [
            {
                "feature": d.feature,
                "kind": d.kind,
                "labels": d.labels,
                "reference": d.reference,
                "current": d.current,
            }
            for d in distributions
        ],
    }


SEVERITY_RANK = {None: 0, "warn": 1, "critical": 2}


def severity_changes(timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The severity the rule's evaluations reached, as it changed: per tick the worst of
    its features' (a digest incident is as severe as its worst member), so two members of
    different severities at one tick are one row, not a de-escalation and an escalation.

    >>> rows = [{"at_ms": 1, "severity": "critical"}, {"at_ms": 1, "severity": "warn"},
    ...         {"at_ms": 2, "severity": "warn"}, {"at_ms": 2, "severity": "critical"},
    ...         {"at_ms": 3, "severity": "warn"}, {"at_ms": 3, "severity": None}]
    >>> [(c["at_ms"], c["severity"]) for c in severity_changes(rows)]
    [(1, 'critical'), (3, 'warn')]
    """
    worst: dict[int, str | None] = {}
    for row in timeline:  # oldest first; dicts keep the ticks in that order
        at, severity = row["at_ms"], row["severity"]
        if at not in worst or SEVERITY_RANK.get(severity, 0) > SEVERITY_RANK.get(worst[at], 0):
            worst[at] = severity
    changes: list[dict[str, Any]] = []
    for at, severity in worst.items():
        if not changes or changes[-1]["severity"] != severity:
            changes.append({"at_ms": at, "severity": severity})
    return changes
