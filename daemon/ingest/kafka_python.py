"""kafka-python 3 (with ``crc32c``) behind the :class:`~watchkeeper.daemon.ingest.source.Source`
protocol: the default client.

Its options come from the ``kafka`` section of the config (:func:`consumer_options`);
``kafka.options`` passes further ``KafkaConsumer`` options through, checked against
kafka-python's own list when the config loads. The measured settings (20,000 records a
poll, 64 MB / 16 MB fetch sizes: ~100-120 k records/s from Tansu, shared/DESIGN.md) are
the config's defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError
from watchkeeper.daemon.config import Config
from watchkeeper.daemon.eventtime.watermarks import PartitionKey
from watchkeeper.daemon.ingest.record_run import RecordRun
from watchkeeper.daemon.ingest.source import KafkaClientError, RebalanceListener, Record

NAME = "kafka-python"

# options that carry secrets: they must come from the environment (sasl_password_env)
SECRET_OPTIONS = frozenset({"sasl_plain_password", "ssl_password", "sasl_oauth_token_provider"})
# options watchkeeper sets itself; a user value would break its offset handling
OWNED_OPTIONS = frozenset(
    {
        "bootstrap_servers",
        "group_id",
        "enable_auto_commit",
        "key_deserializer",
        "value_deserializer",
        "auto_offset_reset",
        "client_id",
    }
)


def check_options(options: Mapping[str, Any]) -> None:
    """Check ``kafka.options`` against kafka-python's own list (``KafkaConsumer.DEFAULT_CONFIG``,
    the keyword arguments its constructor takes); raise ``ValueError`` naming the option."""
    known = set(KafkaConsumer.DEFAULT_CONFIG)
    for key in options:
        if key in SECRET_OPTIONS:
            raise ValueError(f"'{key}' is a secret: use sasl_password_env instead")
        if key in OWNED_OPTIONS:
            raise ValueError(f"'{key}' is set by watchkeeper itself (see the kafka section)")
        if key not in known:
            raise ValueError(
                f"unrecognized kafka-python consumer option '{key}' "
                "(see kafka-python's KafkaConsumer documentation for the list)"
            )


def consumer_options(config: Config, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """kafka-python ``KafkaConsumer`` keyword arguments from the config."""
    k = config.kafka
    options: dict[str, Any] = {
        "bootstrap_servers": list(k.bootstrap_servers),
        "group_id": k.group_id,
        "client_id": k.client_id,
        "enable_auto_commit": False,  # offsets are committed with the window state
        # a monitor must not create the topics it reads: after a broker restart (or with a
        # mistyped name) kafka-python's metadata requests would create them with the broker's
        # default partition count before their owner does (seen with Tansu in the
        # broker-restart e2e test). kafka-python's default is True; librdkafka's is false.
        "allow_auto_create_topics": False,
        "auto_offset_reset": k.auto_offset_reset,
        "session_timeout_ms": int(k.session_timeout * 1000),
        "heartbeat_interval_ms": int(k.heartbeat_interval * 1000),
        "max_poll_records": k.max_poll_records,
        "fetch_max_bytes": k.fetch_max_bytes,
        "max_partition_fetch_bytes": k.max_partition_fetch_bytes,
        "security_protocol": k.security_protocol,
    }
    if k.sasl_mechanism:
        options["sasl_mechanism"] = k.sasl_mechanism
        options["sasl_plain_username"] = k.sasl_username
    if k.sasl_password_env:
        options["sasl_plain_password"] = (env or os.environ)[k.sasl_password_env]
    if k.ssl_cafile:
        options["ssl_cafile"] = k.ssl_cafile
    options.update(k.options)
    return options


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, listener: RebalanceListener) -> None:
        self.listener = listener

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.listener.on_revoked([(tp.topic, tp.partition) for tp in revoked])

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.listener.on_assigned([(tp.topic, tp.partition) for tp in assigned])


def _tps(partitions: Sequence[PartitionKey]) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t, p in partitions]


class KafkaPythonSource:
    """A ``KafkaConsumer`` as a :class:`~watchkeeper.daemon.ingest.source.Source`."""

    def __init__(self, config: Config, env: Mapping[str, str] | None = None) -> None:
        self._consumer = KafkaConsumer(**consumer_options(config, env))
        # kafka-python's KafkaMetric of the connection count, found once (False: none)
        self._connection_count: Any = None

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener) -> None:
        self._consumer.subscribe(topics=list(topics), listener=_Listener(listener))

    def poll(self, timeout_s: float) -> Mapping[PartitionKey, Sequence[Record]]:
        try:
            polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000))
        except KafkaError as exc:
            # kafka-python raises once when the broker goes away, then reconnects itself
            raise KafkaClientError("poll", exc) from exc
        # each partition's records as a RecordRun: its fields read with map, its values once
        return {(tp.topic, tp.partition): RecordRun(records) for tp, records in polled.items()}

    def assignment(self) -> set[PartitionKey]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def pause(self, partitions: Sequence[PartitionKey]) -> None:
        self._consumer.pause(*_tps(partitions))

    def resume(self, partitions: Sequence[PartitionKey]) -> None:
        self._consumer.resume(*_tps(partitions))

    def paused(self) -> set[PartitionKey]:
        return {(tp.topic, tp.partition) for tp in self._consumer.paused()}

    def seek(self, partition: PartitionKey, offset: int) -> None:
        self._consumer.seek(TopicPartition(*partition), offset)

    def commit(self, offsets: Mapping[PartitionKey, int]) -> None:
        commit = {
            TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()
        }
        try:
            self._consumer.commit_async(commit)
        except KafkaError as exc:
            raise KafkaClientError("commit", exc) from exc

    def end_offset(self, partition: PartitionKey) -> int | None:
        end = self._consumer.highwater(TopicPartition(*partition))
        return None if end is None else int(end)

    def position(self, partition: PartitionKey) -> int | None:
        try:
            position = self._consumer.position(TopicPartition(*partition), timeout_ms=0)
        except KafkaError as exc:  # not known without a broker round trip
            raise KafkaClientError("position", exc) from exc
        return None if position is None else int(position)

    def connections(self) -> int | None:
        # kafka-python's own "connection-count" (consumer-metrics): the connections its
        # connection manager holds, as the Java client's metric of that name counts them
        if self._connection_count is None:
            metrics = self._consumer.metrics(raw=True) or {}  # None: metrics_enabled off
            found = [
                m
                for name, m in metrics.items()
                if name.name == "connection-count" and name.group == "consumer-metrics"
            ]
            self._connection_count = found[0] if found else False
        if self._connection_count is False:
            return None
        return int(self._connection_count.value())

    def close(self) -> None:
        self._consumer.close()
