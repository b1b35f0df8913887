"""The daemon's Prometheus metrics, registered on a registry the daemon builds and passes in.

Names follow Prometheus' conventions (base units, ``_total`` for counters, ``_seconds``
for durations). Label cardinality is bounded: ``topic`` by the configured topics,
``reason`` by the decoder's fixed list, ``model`` by ``ingest.max_models`` (records of
further models are quarantined before they reach a metric, ``daemon/ingest/admission.py``), each
value by ``ingest.max_name_chars``, ``partition`` by the topics' partition counts.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from watchkeeper.daemon.ingest.decode import REASONS


class IngestMetrics:
    """Metrics of ingestion: records, bytes, quarantine, lag, flushes, windows."""

    def __init__(self, registry: CollectorRegistry, topics: Iterable[str] = ()) -> None:
        self.records = Counter(
            "watchkeeper_ingest_records", "Kafka records consumed.", ["topic"], registry=registry
        )
        self.bytes = Counter(
            "watchkeeper_ingest_bytes",
            "Bytes of Kafka record values consumed.",
            ["topic"],
            registry=registry,
        )
        self.events = Counter(
            "watchkeeper_events",
            "Events decoded and summarised into windows.",
            ["model", "role"],
            registry=registry,
        )
        self.quarantined = Counter(
            "watchkeeper_quarantined_records",
            "Records set aside as unusable, by reason.",
            ["topic", "reason"],
            registry=registry,
        )
        self.late = Counter(
            "watchkeeper_late_events_dropped",
            "Events for windows already closed by the watermark (past allowed lateness).",
            ["model"],
            registry=registry,
        )
        self.joined = Counter(
            "watchkeeper_labels_joined",
            "Labels joined to their predictions (pairs graded).",
            ["model"],
            registry=registry,
        )
        self.late_labels_joined = Counter(
            "watchkeeper_late_labels_joined",
            "Late labels (past allowed lateness in the labels stream) still joined to the "
            "prediction waiting for them, graded into the prediction's window.",
            ["model"],
            registry=registry,
        )
        self.late_labels_unmatched = Counter(
            "watchkeeper_late_labels_unmatched",
            "Late labels with no prediction waiting for them: dropped, never stored.",
            ["model"],
            registry=registry,
        )
        self.join_expired = Counter(
            "watchkeeper_label_join_expired",
            "Waiting predictions (side=prediction) or labels (side=label) that expired "
            "without their partner.",
            ["model", "side"],
            registry=registry,
        )
        self.watermark = Gauge(
            "watchkeeper_watermark_timestamp_seconds",
            "Event time of a model's stream of a role: the minimum over its partitions.",
            ["model", "role"],
            registry=registry,
        )
        self.ignored_features = Counter(
            "watchkeeper_ignored_feature_values",
            "Feature values ignored because the model already has ingest.max_features features.",
            registry=registry,
        )
        self.lag = Gauge(
            "watchkeeper_consumer_lag_records",
            "Records between the last consumed offset and the partition's high watermark.",
            ["topic", "partition"],
            registry=registry,
        )
        self.broker_connections = Gauge(
            "watchkeeper_kafka_broker_connections",
            "Connections the Kafka client holds to brokers, as the client counts them "
            "(0: no broker reachable; consumption waits and the client reconnects).",
            ["client"],
            registry=registry,
        )
        self.assigned = Gauge(
            "watchkeeper_assigned_partitions",
            "Partitions assigned to this replica.",
            registry=registry,
        )
        self.flush_duration = Histogram(
            "watchkeeper_flush_duration_seconds",
            "Time to commit window state and offsets to the store (one transaction).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.flush_failures = Counter(
            "watchkeeper_flush_failures",
            "Commits to the store that failed (and were retried).",
            registry=registry,
        )
        self.last_flush = Gauge(
            "watchkeeper_last_flush_timestamp_seconds",
            "Unix time of the last successful commit to the store.",
            registry=registry,
        )
        self.windows_open = Gauge(
            "watchkeeper_windows_open",
            "Windows holding events in memory that are not yet committed.",
            registry=registry,
        )
        self.windows_committed = Counter(
            "watchkeeper_window_commits",
            "Window deltas merged into the store.",
            registry=registry,
        )
        self.store_up = Gauge(
            "watchkeeper_store_up",
            "1 when the last store operation succeeded.",
            registry=registry,
        )
        for topic in topics:  # show zeros from the start, so rate() works from the first scrape
            self.records.labels(topic)
            self.bytes.labels(topic)
            for reason in REASONS:
                self.quarantined.labels(topic, reason)
