"""The ingestion loop: a Kafka consumer group (a :class:`~watchkeeper.daemon.ingest.source.Source`)
→ decoder → window state → store.

Offsets live in watchkeeper's store, committed in the same transaction as the window
state they produced (the "storing offsets outside Kafka" pattern of the Kafka consumer
documentation). On partition assignment the consumer seeks to the stored offsets; the
offsets are also committed to Kafka afterwards, only so that Kafka's own tooling shows
the group's progress.

If the store cannot be reached, consumption pauses (so memory stays bounded), the commit
is retried every ``ingest.store_retry_interval``, and consumption resumes once it lands.
If a partition is revoked while its events cannot be committed, every uncommitted event
is dropped from memory and the remaining partitions are rewound to their last committed
offsets: they are read again, so nothing is lost and nothing is counted twice.

Event time is tracked per partition (:mod:`watermarks`): each batch is checked for late
events against the minimum over the partitions of its (model, role) — this replica's
live, the other replicas' as last committed — and each commit stores how far every
assigned partition got, with where its consumer stands, so a rebalance or a restart
resumes from the stored watermarks and the leader can tell when a tick is ready.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence

from watchkeeper.daemon.config import Config
from watchkeeper.daemon.errors import StoreUnavailableError, WatchkeeperError
from watchkeeper.daemon.eventtime.watermarks import PartitionKey
from watchkeeper.daemon.eventtime.windows import WindowState, on_time
from watchkeeper.daemon.ingest.admission import Admission
from watchkeeper.daemon.ingest.batch_tap import BatchTap
from watchkeeper.daemon.ingest.broker_progress import mirror_offsets, track_connections, update_lag
from watchkeeper.daemon.ingest.collector import collector_paused
from watchkeeper.daemon.ingest.decode import Decoder
from watchkeeper.daemon.ingest.decoded import Prepared, bytes_of
from watchkeeper.daemon.ingest.event_time import PartitionTime
from watchkeeper.daemon.ingest.join_metrics import count_joins
from watchkeeper.daemon.ingest.kinds import KindRegistry
from watchkeeper.daemon.ingest.metrics import IngestMetrics
from watchkeeper.daemon.ingest.prefetch import Prefetch
from watchkeeper.daemon.ingest.references_in_force import ReferencesInForce
from watchkeeper.daemon.ingest.source import KafkaClientError, Record, Source
from watchkeeper.daemon.ingest.sources import open_source
from watchkeeper.daemon.store.label_join import JoinBuffer, JoinSettings
from watchkeeper.daemon.store.quarantine import Quarantined
from watchkeeper.daemon.store.queries import TopicPartitionKey
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.window import SketchSettings

log = logging.getLogger(__name__)

# A flush is due at these bounds too, checked after each slice of a poll: a window of a
# few events costs ~30 KB in memory with 20 features (its sketches hold their values
# exactly until k, detectors/sketches.py; most of the rest is its sample's rows), a
# waiting label-join row ~1 KB, and a flush costs what changed (store/window_parts.py),
# so a backfill over thousands of windows or a burst of joins holds ~15-20 MB, not
# hundreds. Smaller bounds cost little: a flush's cost is per window and per row (the
# ingest benchmark: 500 windows, 20,000 rows peaked 20-70 MB lower than 1,000 / 50,000
# at the same rate).
FLUSH_MAX_WINDOWS = 500
FLUSH_MAX_JOIN_ROWS = 20_000
PROCESS_SLICE = 2_000  # records; a slice's offsets are pending once it is summarised
# A slice's fixed costs (Arrow's parse call, the event-time judgement, the summarise pass
# and its metrics) are per slice, not per byte, and a label record (model, request id,
# time, label: ~80 bytes) is a fifth of a 20-feature prediction (~450): the labels topic
# is sliced this many times longer, to about a prediction slice's bytes.
LABEL_SLICE_FACTOR = 5
Slice = tuple[PartitionKey, Sequence[Record]]


class Ingestor:
    """Consumes, decodes, summarises and commits; see the module docstring."""

    def __init__(
        self,
        config: Config,
        store: Store,
        metrics: IngestMetrics,
        clock: Callable[[], float] = time.time,
        shadow: BatchTap | None = None,
        source: Callable[[Config], Source] = open_source,
        references: ReferencesInForce | None = None,
    ) -> None:
        self.config = config
        # whose bins new window sketches count exactly (the app fills it on each reload)
        self.references = (
            references
            if references is not None
            else ReferencesInForce(config.ingest.decision_threshold)
        )
        self.shadow = shadow
        self._open_source = source
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.group_id = config.kafka.group_id
        self.kinds = KindRegistry(config.ingest.feature_kinds, config.ingest.max_features)
        self.kinds.load(store.kinds())
        w = config.windows
        self.windows = WindowState(
            w.size,
            w.allowed_lateness,
            SketchSettings(
                w.sketch_k,
                w.max_categories,
                w.reservoir_size,
                bins=self.references.edges,
                estimation=self.references.estimation,
                segments=self.references.segments,
            ),
        )
        i = config.ingest
        # shared by the topics' decoders: a model admitted on one topic is known on all
        self.admission = Admission(
            i.max_models, i.max_versions, i.max_name_chars, store.model_versions()
        )
        self.time = PartitionTime(config, metrics, clock=clock)
        self.clock_settings = self.time.settings
        self.clocks = self.time.clocks
        # names this replica in the partition status rows (status pages, operators)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.decoders = {
            topic.name: Decoder(topic.name, role, topic, i, self.kinds, self.admission)
            for role, topic in config.kafka.topics.by_role().items()
        }
        self._pending: dict[TopicPartitionKey, int] = {}
        self._durable: dict[TopicPartitionKey, int] = {}
        self._quarantined: list[Quarantined] = []
        self._joins = JoinBuffer()
        self._join_settings = JoinSettings(
            ttl_ms=int(config.ingest.label_ttl * 1000),
            max_pending=config.ingest.max_pending,
            threshold=config.ingest.decision_threshold,
            max_wait_ms=int(config.ingest.label_max_wait * 1000),
        )
        self._last_expiry = -1e18  # on the injected clock: the first commit expires
        # predictions wait for labels only when a labels topic is read: otherwise the join
        # would store every prediction for nothing
        self._joining = config.kafka.topics.labels is not None
        labels_topic = config.kafka.topics.labels
        self._labels_topic = labels_topic.name if labels_topic is not None else None
        self.joined_in_buffer = 0  # pairs met in a commit's buffer, neither stored
        self._consumer: Source | None = None
        self._prefetch: Prefetch[Slice, Prepared | None] | None = None
        self._paused = False
        self._fatal: WatchkeeperError | None = None  # a commit that retrying cannot help
        self._last_flush = time.monotonic()
        self._last_retry = 0.0
        # guards the state below against the rebalance callbacks (kafka-python: on its IO thread)
        self._lock = threading.RLock()
        self.ready = threading.Event()
        self.heartbeat = time.monotonic()
        self.store_ok = True

    # -- lifecycle ------------------------------------------------------------------------
    def open(self) -> None:
        # before joining the group: a group new to a store that another group's offsets
        # fill would read every event into the windows again (store/group_offsets.py)
        k = self.config.kafka
        adopted = self.store.claim_offsets(
            self.group_id, sorted(self.decoders), k.adopt_offsets_from
        )
        if adopted:
            log.warning(
                "adopted the stored offsets of %d partitions from group '%s' for group '%s'",
                adopted,
                k.adopt_offsets_from,
                self.group_id,
            )
        self._consumer = self._open_source(self.config)
        self._consumer.subscribe(sorted(self.decoders), self)
        self._prefetch = Prefetch()

    def close(self) -> None:
        """Commit what is pending and leave the group."""
        if self._consumer is None:
            return
        try:
            if self._fatal is not None:
                log.error("not committing on the way out: %s", self._fatal)
            elif not self.flush():
                log.error("final commit failed: uncommitted events will be read again on restart")
        finally:
            with self._lock:
                self.time.late_log.report(force=True)  # the log's count reaches the counter's
            self._consumer.close()
            self._consumer = None
            self.ready.clear()
            if self._prefetch is not None:
                self._prefetch.close()
                self._prefetch = None

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set (the caller then calls :meth:`close`)."""
        # Objects alive at start-up (modules, config) never become garbage: moving them out
        # of the collector's sight makes every later collection cheaper (gc.freeze docs).
        # Collect first: cyclic garbage frozen with them would never be freed (and
        # datasketches' nanobind reports such sketches as "leaked instances" at exit).
        gc.collect()
        gc.freeze()
        try:
            while not stop.is_set():
                self.step()
        finally:
            gc.unfreeze()  # what the loop held is the collector's again once it ends

    # -- the loop -------------------------------------------------------------------------
    def step(self) -> None:
        """One poll, its decoding, and a commit when one is due."""
        consumer = self._consumer
        assert consumer is not None, "open() first"
        self.heartbeat = time.monotonic()
        ingest = self.config.ingest
        with collector_paused():
            try:
                polled = consumer.poll(ingest.poll_timeout)
            except KafkaClientError as exc:
                if not exc.retriable:
                    raise
                # the clients reconnect by themselves (kafka-python raises once first)
                log.warning("poll failed (%s); retrying", exc)
                track_connections(consumer, self.config.kafka.client, self.metrics)
                time.sleep(min(1.0, ingest.poll_timeout))
                return
            track_connections(consumer, self.config.kafka.client, self.metrics)
            if consumer.assignment():
                self.ready.set()
            # in slices, so that a poll spanning thousands of windows (a backfill) commits
            # at the open-window bound instead of holding them all; each slice's parse runs
            # ahead on a worker while the one before is summarised (prefetch.py)
            slices = self._slices(polled)
            del polled
            ahead: Generator[tuple[Slice, Prepared | None], None, None] = (
                self._prefetch.run(slices, self._prepare)
                if self._prefetch is not None
                else ((piece, None) for piece in slices)
            )
            try:
                for (key, records), prepared in ahead:
                    self._process(key, records, prepared)
                    if self._crowded() and not self._paused:
                        self.flush()
            finally:
                ahead.close()
            del slices
        self._track_positions(consumer)
        now = time.monotonic()
        if self._paused:
            if now - self._last_retry >= ingest.store_retry_interval:
                self._last_retry = now
                self.flush()
        elif (
            now - self._last_flush >= ingest.flush_interval
            or self.windows.pending_events >= ingest.flush_max_events
            or self._crowded()
        ):
            self.flush()

    def _slices(self, polled: Mapping[PartitionKey, Sequence[Record]]) -> list[Slice]:
        """A poll's records cut into slices, each partition's in order."""
        return [
            (key, records[lo : lo + step])
            for key, records in polled.items()
            for step in (self._slice_length(key[0]),)
            for lo in range(0, len(records), step)
        ]

    def _slice_length(self, topic: str) -> int:
        if topic == self._labels_topic:
            return PROCESS_SLICE * LABEL_SLICE_FACTOR
        return PROCESS_SLICE

    def _crowded(self) -> bool:
        joins = len(self._joins.predictions) + len(self._joins.labels)
        return self.windows.open_windows >= FLUSH_MAX_WINDOWS or joins >= FLUSH_MAX_JOIN_ROWS

    def _track_positions(self, consumer: Source) -> None:
        """Each assigned partition's end and position, and whether it is caught up."""
        with self._lock:
            self.time.track(consumer, self._read_up_to)

    def _read_up_to(self, key: TopicPartitionKey) -> int | None:
        return self._pending.get(key, self._durable.get(key))

    def _prepare(self, piece: Slice) -> Prepared | None:
        """A slice's parse, on the prefetch worker (no shared state: decode.py)."""
        key, records = piece
        return self.decoders[key[0]].prepare(records)

    def _process(
        self, key: PartitionKey, records: Sequence[Record], prepared: Prepared | None = None
    ) -> None:
        with self._lock:
            self._process_locked(key, records, prepared)

    def _process_locked(
        self, key: PartitionKey, records: Sequence[Record], prepared: Prepared | None
    ) -> None:
        topic, partition = key
        self._durable.setdefault(key, records[0].offset)
        decoder = self.decoders[topic]
        now_ms = int(self.clock() * 1000)
        result = decoder.decode(partition, records, now_ms, prepared)
        self.metrics.records.labels(topic).inc(len(records))
        self.metrics.bytes.labels(topic).inc(bytes_of(records))
        for batch in result.batches:
            late = self.time.judge(key, batch, self.windows, now_ms)
            # a late event is not in its window: it must not be graded or sampled there
            kept = on_time(batch, late)
            if self._joining and batch.role == "labels" and late.any():
                # a late label still joins the prediction waiting for it (label_join.py)
                plan = self.references.segments(batch.model)
                self._joins.add(batch, self.windows.size_ms, plan, late=late)
            elif self._joining:
                self._joins.add(kept, self.windows.size_ms, self.references.segments(kept.model))
            if self.shadow is not None:
                self.shadow.offer(kept, topic, partition)
            self.metrics.events.labels(batch.model, batch.role).inc(len(kept))
        for entry in result.quarantined:
            self.metrics.quarantined.labels(entry.topic, entry.reason).inc()
        if result.quarantined:
            self._quarantined.extend(result.quarantined)
            log.debug("quarantined %d records of %s", len(result.quarantined), topic)
        if result.ignored_features:
            self.metrics.ignored_features.inc(result.ignored_features)
        self._pending[key] = records[-1].offset + 1
        self.metrics.windows_open.set(self.windows.open_windows)

    def flush(self) -> bool:
        """Commit the window deltas, offsets, kinds and quarantine in one transaction.

        Returns whether everything is committed. On failure the state is kept, consumption
        is paused, and the next :meth:`step` retries.
        """
        committed = self._commit()
        if committed is None:
            self._pause()
            return False
        self._resume()
        if self._consumer is not None:
            mirror_offsets(self._consumer, committed)
            update_lag(self._consumer, self._durable, self.metrics)
        return True

    def _commit(self) -> dict[TopicPartitionKey, int] | None:
        """The store part of a flush; returns the committed offsets, or None on failure."""
        with self._lock:
            self._last_flush = time.monotonic()
            self.time.late_log.report()  # late events carried past their minute (late_log.py)
            status_due = self.time.status_due()
            if not self._pending and not self._quarantined and not status_due:
                return {}
            joins, self._joins = self._joins, JoinBuffer()
            # expiring old pending joins scans their tables: once a minute is plenty
            expire = self.clock() - self._last_expiry >= 60.0
            delta = self.windows.drain()
            delta.now_ms = int(self.clock() * 1000)
            delta.marks = self.time.pending()
            kinds = self.kinds.pending()
            offsets = dict(self._pending)
            delta.partitions = self.time.statuses(lambda k: offsets.get(k, self._durable.get(k)))
            quarantined = list(self._quarantined)
            started = time.perf_counter()
            try:
                outcome = self.store.commit(
                    self.group_id,
                    delta,
                    offsets,
                    kinds,
                    quarantined,
                    joins if self._joining else None,
                    self._join_settings,
                    expire,
                    self.clock_settings,
                    self.owner,
                )
            except WatchkeeperError as exc:
                if not exc.retriable:  # retrying cannot help: let the daemon stop loudly
                    # and commit nothing more on the way out (close, the revocation)
                    self._fatal = exc
                    raise
                self.windows.restore(delta)
                joins.predictions += self._joins.predictions
                joins.labels += self._joins.labels
                joins.plans |= self._joins.plans
                self._joins = joins
                self.metrics.flush_failures.inc()
                self.metrics.store_up.set(0)
                self.store_ok = False
                log.error("%s; consumption pauses until the store is back", exc)
                return None
            self.metrics.flush_duration.observe(time.perf_counter() - started)
            self.metrics.last_flush.set(self.clock())
            self.metrics.store_up.set(1)
            self.metrics.windows_committed.inc(len(delta.windows))
            self.metrics.windows_open.set(self.windows.open_windows)
            self.store_ok = True
            if expire:
                self._last_expiry = self.clock()
            count_joins(outcome, self.metrics)
            self.joined_in_buffer += sum(outcome.in_buffer.values())
            self.kinds.committed(kinds)
            del self._quarantined[: len(quarantined)]
            self._durable.update(offsets)
            for key, offset in offsets.items():
                if self._pending.get(key) == offset:
                    del self._pending[key]
            self.time.committed(delta.marks, self.store, self.group_id, delta.now_ms, status_due)
            return offsets

    def _pause(self) -> None:
        if self._consumer is not None and not self._paused:
            self._consumer.pause(sorted(self._consumer.assignment()))
            self._paused = True

    def _resume(self) -> None:
        if self._consumer is not None and self._paused:
            self._consumer.resume(sorted(self._consumer.paused()))
            self._paused = False

    # -- rebalancing ----------------------------------------------------------------------
    # the RebalanceListener of the Source; kafka-python runs these on its IO thread, where
    # blocking consumer calls are refused:
    # they only touch the store and the consumer's local state (seek, pause, resume).
    def on_revoked(self, revoked: list[PartitionKey]) -> None:
        if self._fatal is not None:
            return
        if self._commit() is not None:
            with self._lock:
                self.time.revoke(set(revoked))
            return
        # The events of the revoked partitions cannot be committed, and their next owner
        # starts from the stored offsets: forget every uncommitted event and rewind.
        log.error("partitions revoked while the store is down: re-reading from committed offsets")
        with self._lock:
            self.windows.discard()
            self.clocks.discard()
            self.time.revoke(set(revoked))
            self._quarantined.clear()
            self._joins = JoinBuffer()
            self._pending.clear()
        self._resume()
        revoked_keys = set(revoked)
        consumer = self._consumer
        if consumer is not None:
            for key in sorted(consumer.assignment()):
                if key not in revoked_keys and key in self._durable:
                    consumer.seek(key, self._durable[key])

    def on_assigned(self, assigned: list[PartitionKey]) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            stored = self.store.offsets(self.group_id)
            marks = self.store.partition_marks(self.group_id)
        except StoreUnavailableError as exc:
            log.error("cannot read stored offsets (%s); using the last known ones", exc)
            stored = dict(self._durable)
            marks = {k: self.clocks.marks(k) for k in self.clocks.assigned()}
        with self._lock:
            # resume from the stored event time: the previous owner's, or ours
            self.time.assign(set(assigned), marks)
            for key in assigned:
                if key in stored:
                    consumer.seek(key, stored[key])
                    self._durable[key] = stored[key]
                else:
                    # no stored offset: Kafka's committed offset or auto_offset_reset decides,
                    # and the first record read marks the point to rewind to
                    self._durable.pop(key, None)
        if self.shadow is not None:
            self.shadow.forget_partitions()
        self.metrics.assigned.set(len(assigned))
        log.info("assigned %s", ", ".join(f"{t}[{p}]" for t, p in assigned))
