"""What Kafka's own tooling sees of the group, and how the client reaches the brokers:
offsets mirrored after each store commit, the lag per partition (informational only: the
store holds the offsets that count), and the client's broker connections."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from watchkeeper.daemon.ingest.metrics import IngestMetrics
from watchkeeper.daemon.ingest.source import KafkaClientError, Source

log = logging.getLogger(__name__)

TopicPartitionKey = tuple[str, int]


def mirror_offsets(consumer: Source, offsets: Mapping[TopicPartitionKey, int]) -> None:
    """Commit the stored offsets of the partitions still owned to Kafka."""
    owned = consumer.assignment()
    commit = {key: o for key, o in offsets.items() if key in owned}
    if commit:
        try:
            consumer.commit(commit)
        except KafkaClientError as exc:  # informational only: the store holds the truth
            log.debug("could not mirror offsets to Kafka: %s", exc)


def update_lag(
    consumer: Source, durable: Mapping[TopicPartitionKey, int], metrics: IngestMetrics
) -> None:
    """Each assigned partition's lag behind its end, from the committed positions."""
    for key in sorted(consumer.assignment()):
        high = consumer.end_offset(key)
        position = durable.get(key)
        if high is not None and position is not None:
            metrics.lag.labels(key[0], str(key[1])).set(max(0, high - position))


def track_connections(consumer: Source, client: str, metrics: IngestMetrics) -> None:
    """The client's broker connections, on ``/metrics``: a broker outage shows as 0."""
    connections = consumer.connections()
    if connections is not None:
        metrics.broker_connections.labels(client).set(connections)
