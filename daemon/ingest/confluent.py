"""confluent-kafka (librdkafka) behind the :class:`~watchkeeper.daemon.ingest.source.Source`
protocol: ``kafka.client: confluent``.

The ``kafka`` section maps onto librdkafka's properties (:func:`consumer_options`);
``kafka.options`` passes further properties through, checked by librdkafka itself when the
config loads. What differs from kafka-python, and how this module keeps the loop's
semantics:

- librdkafka runs the rebalance callbacks inside ``consume()`` on the caller's thread. A
  seek asked for during ``on_assigned`` cannot be applied to a partition not yet assigned,
  so it becomes the start offset of the ``assign()`` the callback makes itself.
- ``pause()`` stops fetching, but records already in librdkafka's local queue could still
  come out of the next ``consume()``. Those are held back and the partition is rewound to
  the first of them on ``resume()``, so a paused partition yields nothing and loses nothing.
- Broker errors arrive on ``error_cb`` and as error messages; librdkafka reconnects by
  itself, so they are logged and a fatal one is raised from the next poll.
- librdkafka logs through :mod:`logging` (``logger``), never straight to stderr.
- librdkafka counts no connections the caller can read directly: its statistics
  (``stats_cb``, every ``statistics.interval.ms``, 5 s unless ``kafka.options`` sets it)
  give each broker's state, and :meth:`ConfluentSource.connections` counts those ``UP``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from watchkeeper.daemon.config import Config
from watchkeeper.daemon.eventtime.watermarks import PartitionKey
from watchkeeper.daemon.ingest.confluent_messages import MessageRun, group_messages
from watchkeeper.daemon.ingest.source import KafkaClientError, RebalanceListener, Record

NAME = "confluent"
log = logging.getLogger(__name__)

# options that carry secrets, in librdkafka's property names (its CONFIGURATION.md): they
# must come from the environment (sasl_password_env)
SECRET_OPTIONS = frozenset(
    {
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.key.pem",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
    }
)
# options watchkeeper sets itself; a user value would break its offset handling or logging
OWNED_OPTIONS = frozenset(
    {
        "bootstrap.servers",
        "metadata.broker.list",
        "group.id",
        "client.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "auto.offset.reset",
        "enable.partition.eof",
        "on_commit",
        "error_cb",
        "stats_cb",
        "logger",
    }
)
# librdkafka refuses a receive.message.max.bytes below fetch.max.bytes + 512
# (librdkafka CONFIGURATION.md, receive.message.max.bytes); 100 MB is its default.
_RECEIVE_DEFAULT = 100_000_000
# consume() returns at most this many messages (confluent-kafka's own bound)
_CONSUME_MAX = 1_000_000
# how often librdkafka reports its statistics (each broker's state) when kafka.options
# does not say: a JSON document per interval, parsed on the polling thread
STATISTICS_INTERVAL_MS = 5000
# librdkafka's prefetch queue (the high-level consumer's one queue, whatever the number of
# partitions; CONFIGURATION.md, queued.max.messages.kbytes, default 65536): 8 MB instead
# of 64 MB, refilled 10 ms after it drains below the bound instead of librdkafka's
# default 1,000 ms (fetch.queue.backoff.ms), which is what made a smaller queue cost rate.
# Measured on the 1,000,000-event ingest benchmark (README, Performance): peak RSS
# 298 -> 247 MB at the same rate. kafka.options overrides both.
PREFETCH_QUEUE_KBYTES = 8192
FETCH_QUEUE_BACKOFF_MS = 10
# broker entries of librdkafka's statistics that hold no connection of their own
# (STATISTICS.md, brokers.source: the group coordinator is a "logical" alias)
_NOT_CONNECTIONS = frozenset({"logical", "internal"})


def idle_fetch_positions(document: Mapping[str, Any]) -> dict[PartitionKey, int]:
    """From a librdkafka statistics document (STATISTICS.md, topics.partitions): where
    the fetcher of each active partition will read next, for those with nothing fetched
    and not yet handed over (``fetchq_cnt`` 0: for the high-level consumer, the one queue
    all partitions forward to, so 0 only when nothing of any partition waits).

    That is the partition's position as kafka-python reports it before it has read
    anything (the offset a reset or the committed offset chose); librdkafka's
    ``position()`` only knows the offset after the last message handed over.

    >>> doc = {"topics": {"t": {"partitions": {
    ...     "0": {"fetch_state": "active", "next_offset": 5, "fetchq_cnt": 0},
    ...     "1": {"fetch_state": "offset-query", "next_offset": -1001, "fetchq_cnt": 0},
    ...     "-1": {"fetch_state": "none", "next_offset": 0, "fetchq_cnt": 0}}}}}
    >>> idle_fetch_positions(doc)
    {('t', 0): 5}
    """
    found: dict[PartitionKey, int] = {}
    for topic, entry in document.get("topics", {}).items():
        for partition, stats in entry.get("partitions", {}).items():
            offset = stats.get("next_offset")
            if (
                partition.lstrip("-").isdigit()
                and int(partition) >= 0
                and stats.get("fetch_state") == "active"
                and stats.get("fetchq_cnt") == 0
                and isinstance(offset, int)
                and offset >= 0
            ):
                found[(str(topic), int(partition))] = offset
    return found


def check_options(options: Mapping[str, Any]) -> None:
    """Check ``kafka.options`` as librdkafka properties; raise ``ValueError`` naming the
    option. librdkafka knows its own properties and their values, so it judges them."""
    for key, option in options.items():
        if key in SECRET_OPTIONS:
            raise ValueError(f"'{key}' is a secret: use sasl_password_env instead")
        if key in OWNED_OPTIONS:
            raise ValueError(f"'{key}' is set by watchkeeper itself (see the kafka section)")
        if not isinstance(option, str | int | float | bool):
            raise ValueError(f"librdkafka option '{key}' takes a string, number or boolean")
    # a consumer without brokers is built (it connects to nothing; ~5 ms) and dropped, so a
    # typo fails when the file loads
    try:
        probe = Consumer({"group.id": "watchkeeper-config-check", **options})
    except KafkaException as exc:
        message = exc.args[0].str()
        raise ValueError(f"{message} (see librdkafka's CONFIGURATION.md for the list)") from None
    probe.close()


def consumer_options(config: Config, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """librdkafka properties from the config (``kafka.options`` last, already checked)."""
    k = config.kafka
    options: dict[str, Any] = {
        "bootstrap.servers": ",".join(k.bootstrap_servers),
        "group.id": k.group_id,
        "client.id": k.client_id,
        # offsets are committed with the window state; the broker gets a best-effort mirror
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "allow.auto.create.topics": False,  # librdkafka's default; said, as kafka-python's
        "auto.offset.reset": k.auto_offset_reset,
        "session.timeout.ms": int(k.session_timeout * 1000),
        "heartbeat.interval.ms": int(k.heartbeat_interval * 1000),
        "fetch.max.bytes": k.fetch_max_bytes,
        "max.partition.fetch.bytes": k.max_partition_fetch_bytes,
        "receive.message.max.bytes": max(_RECEIVE_DEFAULT, k.fetch_max_bytes + 512),
        "security.protocol": k.security_protocol.lower(),
        "queued.max.messages.kbytes": PREFETCH_QUEUE_KBYTES,
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
    }
    if k.sasl_mechanism:
        options["sasl.mechanism"] = k.sasl_mechanism
        options["sasl.username"] = k.sasl_username or ""
    if k.sasl_password_env:
        options["sasl.password"] = (env or os.environ)[k.sasl_password_env]
    if k.ssl_cafile:
        options["ssl.ca.location"] = k.ssl_cafile
    options.update(k.options)
    return options


def _tps(partitions: Sequence[PartitionKey]) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t, p in partitions]


class ConfluentSource:
    """A confluent-kafka ``Consumer`` as a :class:`~watchkeeper.daemon.ingest.source.Source`."""

    def __init__(self, config: Config, env: Mapping[str, str] | None = None) -> None:
        options = consumer_options(config, env)
        options["error_cb"] = self._on_error
        options["stats_cb"] = self._on_stats
        options.setdefault("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        options["logger"] = log
        try:
            self._consumer = Consumer(options)
        except KafkaException as exc:
            raise KafkaClientError("consumer creation", exc) from exc
        self._batch = min(config.kafka.max_poll_records, _CONSUME_MAX)
        self._listener: RebalanceListener | None = None
        self._paused: set[PartitionKey] = set()
        self._rewind: dict[PartitionKey, int] = {}  # paused: first offset held back
        self._assigning: dict[PartitionKey, int] | None = None  # seeks during on_assigned
        self._fatal: KafkaError | None = None
        self._connections: int | None = None  # brokers UP in the last statistics
        # per partition, from the last statistics: where its fetcher reads next while
        # nothing of it waits to be handed over (idle_fetch_positions)
        self._fetching: dict[PartitionKey, int] = {}
        self._closing = False
        # the assignment as librdkafka last gave it (None: read it again). librdkafka's
        # assignment() is a round trip to its main thread (0.02-0.06 s per 1,000,000 events
        # on the ingest benchmark, README Performance), and the loop asks for it at every
        # poll and flush; with a rebalance callback set, only that
        # callback changes the assignment (it or confluent-kafka's fallback after it assigns
        # and unassigns, inside consume() or close()), so each callback forgets the copy
        self._assigned: set[PartitionKey] | None = None
        self._rebalancing = False  # inside a callback: the assignment is changing
        strategy = str(options.get("partition.assignment.strategy", ""))
        self._cooperative = "cooperative" in strategy  # incremental (un)assignment

    # -- librdkafka callbacks (run inside consume() / close() on the caller's thread) -----
    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error
        log.warning("Kafka client: %s", error.str())

    def _on_stats(self, document: str) -> None:
        try:
            parsed = json.loads(document)
            brokers = parsed.get("brokers", {})
            self._connections = sum(
                1
                for b in brokers.values()
                if b.get("state") == "UP" and b.get("source") not in _NOT_CONNECTIONS
            )
            self._fetching = idle_fetch_positions(parsed)
        except (ValueError, AttributeError) as exc:  # a document we cannot read: not known
            log.debug("unreadable librdkafka statistics: %s", exc)
            self._connections = None
            self._fetching = {}

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned, self._rebalancing = None, True
        try:
            self._assign(consumer, partitions)
        finally:
            self._assigned, self._rebalancing = None, False

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        for key in keys:  # statistics of an earlier assignment say nothing of this one
            self._fetching.pop(key, None)
        self._assigning = {}
        try:
            if self._listener is not None and not self._closing:
                self._listener.on_assigned(keys)
            start = self._assigning
        finally:
            self._assigning = None
        # no seek asked for: the committed offset, else auto.offset.reset, decides
        chosen = [TopicPartition(t, p, start.get((t, p), OFFSET_INVALID)) for t, p in keys]
        if self._cooperative:
            consumer.incremental_assign(chosen)
        else:
            consumer.assign(chosen)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned, self._rebalancing = None, True
        try:
            self._revoke(partitions)
        finally:
            self._assigned, self._rebalancing = None, False

    def _revoke(self, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        # on close the loop has committed already: leaving the group is no rebalance to it
        if self._listener is not None and not self._closing:
            self._listener.on_revoked(keys)
        for key in keys:
            self._paused.discard(key)
            self._rewind.pop(key, None)
            self._fetching.pop(key, None)
        # librdkafka unassigns by itself once this returns

    # -- Source ---------------------------------------------------------------------------
    def subscribe(self, topics: Sequence[str], listener: RebalanceListener) -> None:
        self._listener = listener
        self._consumer.subscribe(
            list(topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )

    def poll(self, timeout_s: float) -> Mapping[PartitionKey, Sequence[Record]]:
        if self._fatal is not None:
            fatal, self._fatal = self._fatal, None
            raise KafkaClientError("poll", KafkaException(fatal))
        try:
            messages = self._consumer.consume(num_messages=self._batch, timeout=timeout_s)
        except KafkaException as exc:
            raise KafkaClientError("poll", exc) from exc
        runs, failed = group_messages(messages, self._paused, self._rewind)
        polled: dict[PartitionKey, Sequence[Record]] = {k: MessageRun(r) for k, r in runs.items()}
        if failed is not None:
            if not polled:
                raise KafkaClientError("poll", KafkaException(failed))
            log.warning("Kafka client: %s", failed.str())  # records came too: keep them
        return polled

    def assignment(self) -> set[PartitionKey]:
        held = self._assigned
        if held is None:
            held = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
            if not self._rebalancing:  # changing under a callback: read it each time
                self._assigned = held
        return set(held)

    def pause(self, partitions: Sequence[PartitionKey]) -> None:
        if not partitions:
            return
        try:
            self._consumer.pause(_tps(partitions))
        except KafkaException as exc:
            raise KafkaClientError("pause", exc) from exc
        self._paused.update(partitions)

    def resume(self, partitions: Sequence[PartitionKey]) -> None:
        if not partitions:
            return
        try:
            self._consumer.resume(_tps(partitions))
        except KafkaException as exc:
            raise KafkaClientError("resume", exc) from exc
        for key in partitions:
            self._paused.discard(key)
            offset = self._rewind.pop(key, None)
            if offset is not None:
                self.seek(key, offset)

    def paused(self) -> set[PartitionKey]:
        return set(self._paused)

    def seek(self, partition: PartitionKey, offset: int) -> None:
        self._rewind.pop(partition, None)
        self._fetching.pop(partition, None)  # the fetcher moves: the statistics are old
        if self._assigning is not None:  # inside on_assigned: the start of the assignment
            self._assigning[partition] = offset
            return
        try:
            self._consumer.seek(TopicPartition(partition[0], partition[1], offset))
        except KafkaException as exc:
            raise KafkaClientError("seek", exc) from exc

    def commit(self, offsets: Mapping[PartitionKey, int]) -> None:
        if not offsets:
            return
        commit = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            self._consumer.commit(offsets=commit, asynchronous=True)
        except KafkaException as exc:
            raise KafkaClientError("commit", exc) from exc

    def end_offset(self, partition: PartitionKey) -> int | None:
        try:  # cached: the high watermark of the last fetch response, no round trip
            _, high = self._consumer.get_watermark_offsets(TopicPartition(*partition), cached=True)
        except KafkaException:
            return None
        return None if high is None or high < 0 else int(high)

    def position(self, partition: PartitionKey) -> int | None:
        try:
            (tp,) = self._consumer.position([TopicPartition(*partition)])
        except KafkaException as exc:
            raise KafkaClientError("position", exc) from exc
        if tp.offset >= 0:
            return int(tp.offset)
        # librdkafka has no position for a partition it has consumed nothing from, and a
        # quiet one gives it nothing to consume: without this, such a partition would
        # never read as caught up, so it would hold its role's watermark (and every tick of
        # a policy reading it) forever. kafka-python reports where it will read (the end,
        # for a partition a fresh group starts on with auto_offset_reset: latest).
        # First, the fetcher's next offset from the last statistics, while nothing it
        # fetched waits to be handed over (idle_fetch_positions): a partition that holds
        # old records and gets no new ones (low watermark below high) sits at its end.
        fetching = self._fetching.get(partition)
        if fetching is not None:
            return fetching
        # Without statistics yet (or with statistics.interval.ms 0 in kafka.options):
        # low and high watermarks of the last fetch (cached, no round trip) being equal
        # say there is nothing to read: wherever the consumer starts, it is at the end.
        try:
            low, high = self._consumer.get_watermark_offsets(tp, cached=True)
        except KafkaException:
            return None
        if low is None or high is None or low < 0 or low != high:
            return None
        return int(high)

    def connections(self) -> int | None:
        return self._connections

    def close(self) -> None:
        self._closing = True
        self._assigned = None
        try:
            self._consumer.close()
        finally:
            self._assigned = None
