"""The checks' Prometheus gauges: the latest value of every evaluated metric and its
thresholds, open incidents, and notifications recorded as historical.
"""

from __future__ import annotations

import contextlib
import math

from prometheus_client import CollectorRegistry, Counter, Gauge
from watchkeeper.policies.incident_model import Evaluation, IncidentEvent


class CheckMetrics:
    """Latest value of every evaluated metric, and open incidents, for Prometheus / Grafana.

    Cardinality is bounded by the policies: models × (features a rule selects) × metrics,
    and for incidents policies × rules × features × severities.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.value = Gauge(
            "watchkeeper_metric_value",
            "Latest value of a metric (NaN: not enough data).",
            ["model", "feature", "metric"],
            registry=registry,
        )
        self.threshold = Gauge(
            "watchkeeper_metric_threshold",
            "Threshold the latest value was compared with.",
            ["model", "feature", "metric", "severity"],
            registry=registry,
        )
        self.incident = Gauge(
            "watchkeeper_incident_open",
            "1 while an incident is open.",
            ["policy", "model", "rule", "feature", "severity"],
            registry=registry,
        )
        self.historical = Counter(
            "watchkeeper_notifications_historical",
            "Notifications about windows older than alerts.max_age: recorded, not sent.",
            ["channel"],
            registry=registry,
        )

    def observe(self, evaluations: list[Evaluation], events: list[IncidentEvent]) -> None:
        for e in evaluations:
            feature = e.feature or ""
            value = e.value if e.decision not in ("insufficient_data", "error") else None
            self.value.labels(e.model, feature, e.metric).set(math.nan if value is None else value)
            for severity, bound in (("warn", e.warn), ("critical", e.critical)):
                if bound is not None:
                    self.threshold.labels(e.model, feature, e.metric, severity).set(bound)
        for event in events:
            i = event.incident
            labels = (i.policy, i.model, i.rule, i.feature or "")
            for severity in ("warn", "critical"):
                with contextlib.suppress(KeyError):
                    self.incident.remove(*labels, severity)
            if event.kind != "resolved":
                self.incident.labels(*labels, i.severity).set(1)
