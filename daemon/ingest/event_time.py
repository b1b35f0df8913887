"""The ingestion loop's event time: each partition's clock, where its consumer stands, and
which events of a batch are late (see :mod:`watermarks` for the rules).

:class:`PartitionTime` keeps this replica's partitions live (their marks, whether each is
caught up, its end and position) and the other replicas' as last committed; it judges
every batch's events against them, logs late ones at most once a minute per model, and
hands each commit the marks changed since the last one and the status of every assigned
partition, so they are stored with the offsets.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from watchkeeper.daemon.config import Config
from watchkeeper.daemon.errors import StoreUnavailableError
from watchkeeper.daemon.eventtime.watermarks import (
    ClockSettings,
    LocalClocks,
    Mark,
    MarkKey,
    PartitionKey,
    PartitionStatus,
)
from watchkeeper.daemon.eventtime.windows import WindowState
from watchkeeper.daemon.ingest.late_log import LateLog
from watchkeeper.daemon.ingest.metrics import IngestMetrics
from watchkeeper.daemon.ingest.source import KafkaClientError, Source
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.column_batch import ColumnBatch

log = logging.getLogger("watchkeeper.daemon.ingest.loop")
STATUS_INTERVAL_S = 5.0
"""With nothing to commit, the partition status is still refreshed this often (at most;
sooner with a short flush interval): the leader reads a partition whose status is older
than ``clock_settings().stale_ms`` as behind."""


def clock_settings(config: Config) -> ClockSettings:
    """How the stored partition clocks are read, for this config."""
    roles = {t.name: role for role, t in config.kafka.topics.by_role().items()}
    stale = max(60.0, 3 * config.kafka.session_timeout, 10 * config.ingest.flush_interval)
    return ClockSettings(roles, int(config.ingest.idle_timeout * 1000), int(stale * 1000))


class PartitionTime:
    """See the module docstring. Not thread-safe: the ingestor calls it under its lock."""

    def __init__(
        self, config: Config, metrics: IngestMetrics, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = clock_settings(config)
        self.clocks = LocalClocks(self.settings.roles, self.settings.idle_ms)
        self.metrics = metrics
        self.lateness_s = config.windows.allowed_lateness
        self.status_every_s = min(STATUS_INTERVAL_S, max(1.0, 5 * config.ingest.flush_interval))
        self._last_status = 0.0
        # per partition, from the main thread (the rebalance callbacks may not ask the
        # consumer): its end at the last fetch, and its position when nothing was read
        self._ends: dict[PartitionKey, int] = {}
        self._positions: dict[PartitionKey, int] = {}
        self.late_log = LateLog(clock, lateness_s=self.lateness_s)

    # -- assignment -----------------------------------------------------------------------
    def assign(
        self, keys: set[PartitionKey], stored: Mapping[PartitionKey, dict[str, Mark]]
    ) -> None:
        """These partitions are ours now: each resumes from its stored marks."""
        for key in self.clocks.assigned():
            if key not in keys:
                self.clocks.revoke(key)
        for key in keys:
            self.clocks.assign(key, stored.get(key, {}))
            self._ends.pop(key, None)
            self._positions.pop(key, None)

    def revoke(self, keys: set[PartitionKey]) -> None:
        for key in keys:
            self.clocks.revoke(key)

    # -- reading --------------------------------------------------------------------------
    def track(self, consumer: Source, read_up_to: Callable[[PartitionKey], int | None]) -> None:
        """Each assigned partition's end and position, and whether it is caught up;
        ``read_up_to`` says where this replica has read a partition (None: nothing yet)."""
        for key in sorted(consumer.assignment()):
            try:
                end = consumer.end_offset(key)
                position = None
                if read_up_to(key) is None:
                    position = consumer.position(key)
            except KafkaClientError:
                continue
            if end is not None:
                self._ends[key] = end
            if position is not None:
                self._positions[key] = position
            read = read_up_to(key)
            if read is None:
                read = self._positions.get(key)
            self.clocks.set_caught_up(
                key, end is not None and read is not None and read >= int(end)
            )

    def judge(
        self, key: PartitionKey, batch: ColumnBatch, windows: WindowState, now_ms: int
    ) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Summarise ``batch`` (read from ``key``) into ``windows``; return its late events."""
        marks = self.clocks.event_watermarks(key, batch.model, batch.role, batch.ts_ms, now_ms)
        late = windows.summarise(batch, marks)
        self.clocks.observe(key, batch.model, int(batch.ts_ms.max()), now_ms)
        if late.any():
            count = int(late.sum())
            self.metrics.late.labels(batch.model).inc(count)
            watermark = self.clocks.watermark(batch.model, batch.role, now_ms)
            oldest = int(batch.ts_ms[late].min())
            self.late_log.add(
                batch.model, batch.role, count, oldest_ms=oldest, watermark_ms=watermark
            )
        return late

    # -- commits --------------------------------------------------------------------------
    def status_due(self) -> bool:
        return time.monotonic() - self._last_status >= self.status_every_s

    def pending(self) -> dict[MarkKey, Mark]:
        return self.clocks.pending()

    def statuses(
        self, committed: Callable[[PartitionKey], int | None]
    ) -> dict[PartitionKey, PartitionStatus]:
        """Where each assigned partition's consumer stands once the commit lands."""
        out = {}
        for key in self.clocks.assigned():
            position = committed(key)
            if position is None:
                position = self._positions.get(key)
            out[key] = PartitionStatus(
                self.settings.roles.get(key[0], ""), position, self._ends.get(key)
            )
        return out

    def committed(
        self, marks: Mapping[MarkKey, Mark], store: Store, group_id: str, now_ms: int, status: bool
    ) -> None:
        """A commit landed: its marks are durable; with ``status`` the other replicas'
        partitions are read again; the watermark gauges follow."""
        self.clocks.committed(marks)
        self._last_status = time.monotonic()
        if status:
            with contextlib.suppress(StoreUnavailableError):  # the last known ones stay
                self.clocks.set_remote(store.partition_clocks(group_id, self.settings, now_ms))
        models = {m for clock in self.clocks.clocks() for m in clock.marks}
        for model in models:
            for role in set(self.settings.roles.values()):
                mark = self.clocks.watermark(model, role, now_ms)
                if mark is not None:
                    self.metrics.watermark.labels(model, role).set(mark / 1000)
