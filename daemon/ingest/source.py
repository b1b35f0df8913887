"""What the ingestion loop needs from a Kafka client: the :class:`Source` protocol.

Shaped after what kafka-python's ``KafkaConsumer`` and confluent-kafka's ``Consumer``
both offer, reduced to what the loop uses: batches of records per partition, the group's
assignment / revocation callbacks, pause / resume, seek, a best-effort commit to the
broker, and where each partition ends and the consumer stands. Partitions are plain
``(topic, partition)`` tuples, so no client's types leak into the loop.

A client is one module implementing :class:`Source` (see
:mod:`~watchkeeper.daemon.ingest.kafka_python`) plus one line in
:mod:`~watchkeeper.daemon.ingest.sources`; ``tests/unit/test_sources.py`` runs every
registered client through the same contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from watchkeeper.daemon.errors import WatchkeeperError
from watchkeeper.daemon.eventtime.watermarks import PartitionKey


class Record(Protocol):
    """One consumed record, as the client gives it (never copied: the hot path is columnar,
    the decoder reads the fields of the client's own record objects)."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class RebalanceListener(Protocol):
    """Called by the source while the group rebalances (on the client's own thread in
    kafka-python: only local consumer calls — seek, pause, resume — are allowed there)."""

    def on_revoked(self, partitions: list[PartitionKey]) -> None: ...
    def on_assigned(self, partitions: list[PartitionKey]) -> None: ...


class KafkaClientError(WatchkeeperError):
    """The client failed a call (the broker went away, a request timed out).

    Retriable: both clients reconnect by themselves; the loop logs it and polls again.
    """

    retriable = True

    def __init__(self, operation: str, cause: BaseException) -> None:
        self.operation = operation
        self.cause = cause
        super().__init__(f"Kafka {operation} failed: {type(cause).__name__}: {cause}")


class Source(Protocol):
    """A consumer-group member reading the daemon's topics."""

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener) -> None:
        """Join the group for ``topics``; ``listener`` hears of every rebalance."""

    def poll(self, timeout_s: float) -> Mapping[PartitionKey, Sequence[Record]]:
        """The records fetched within ``timeout_s``, per partition, in offset order.

        Raises :class:`KafkaClientError` when the client fails the fetch."""

    def assignment(self) -> set[PartitionKey]:
        """The partitions this member owns now."""

    def pause(self, partitions: Sequence[PartitionKey]) -> None:
        """Stop fetching ``partitions`` (the group membership stays)."""

    def resume(self, partitions: Sequence[PartitionKey]) -> None:
        """Fetch ``partitions`` again."""

    def paused(self) -> set[PartitionKey]:
        """The partitions paused now."""

    def seek(self, partition: PartitionKey, offset: int) -> None:
        """Read ``partition`` from ``offset`` on the next poll."""

    def commit(self, offsets: Mapping[PartitionKey, int]) -> None:
        """Mirror ``offsets`` (the next offset to read) to the broker, asynchronously and
        best effort: watchkeeper's store holds the truth. Raises :class:`KafkaClientError`."""

    def end_offset(self, partition: PartitionKey) -> int | None:
        """The partition's end as of the last fetch (None: not known yet). Never blocks."""

    def position(self, partition: PartitionKey) -> int | None:
        """The offset the next poll reads from, without a broker round trip (None: not known
        yet). Raises :class:`KafkaClientError` when the client cannot tell without one."""

    def connections(self) -> int | None:
        """The client's connections to brokers now, as the client itself counts them (0: no
        broker reachable; the client keeps reconnecting by itself), or None while it cannot
        tell. Never blocks; exported as ``watchkeeper_kafka_broker_connections``."""

    def close(self) -> None:
        """Leave the group and release the connections."""
