"""Shadow evaluation: sampled live rows run through candidate models beside ingestion.

The ingestion thread only *offers* decoded batches (:meth:`ShadowEvaluator.offer`): rows
are sampled by record key, copied, and put on a bounded queue — a few array operations,
never inference. One worker thread runs the candidates with ONNX Runtime, compares them
with production's logged predictions (or, for rows that carry none, with production's own
model file), and folds the results into per-window :class:`ShadowStats`, committed to the
store every ``shadow.flush_interval``. When the worker cannot keep up the queue fills and
rows are dropped and counted (``shadow_drop_rate``): ingestion never waits for it. The
worker holds itself to ``shadow.max_cpu_share`` of a core by sleeping in proportion to
its work, so the rest of the machine stays with ingestion.

A candidate that fails to load, raises, or returns the wrong shape or NaN is disabled,
its state and reason recorded in the store (the checker turns that into an incident),
and the other candidates go on. A policy reload loads every candidate afresh.

Attributions (:mod:`attributing`) and labels (:mod:`labels`) are folded into the same
windows' summaries: a sampled subset of each batch's rows is explained for production and
each candidate within a share of the same CPU budget; rows with a request id wait
(bounded, in memory) for their label, so both models are graded on the same rows.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry
from watchkeeper.daemon.config_shadow import ShadowConfig
from watchkeeper.daemon.errors import CandidateError
from watchkeeper.daemon.shadow.attributing import (
    Attributor,
    describe_explainers,
    fold,
    save_reference,
)
from watchkeeper.daemon.shadow.labels import PendingLabels
from watchkeeper.daemon.shadow.rows import (
    Labels,
    Rows,
    ShadowMetrics,
    by_window,
    fold_latency,
    take,
)
from watchkeeper.daemon.shadow.runtime import Prediction
from watchkeeper.daemon.shadow.sampling import labels_of, sampled_rows
from watchkeeper.daemon.shadow.setup import ModelSetup, load_setups, reference_sample
from watchkeeper.daemon.shadow.store import PRODUCTION, ShadowKey, ShadowStore
from watchkeeper.daemon.store.queries import TopicPartitionKey
from watchkeeper.detectors.column_batch import ColumnBatch
from watchkeeper.detectors.shadow import ShadowStats, sample_mask
from watchkeeper.errors import WatchkeeperError
from watchkeeper.policies.loader import LoadedPolicy

log = logging.getLogger(__name__)


class ShadowEvaluator:
    """See the module docstring."""

    def __init__(
        self,
        settings: ShadowConfig,
        store: ShadowStore,
        group_id: str,
        window_size_ms: int,
        registry: CollectorRegistry,
        *,
        label_ttl_ms: int = 7 * 86_400_000,
        decision_threshold: float = 0.5,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.group_id = group_id
        self.size_ms = window_size_ms
        self.metrics = ShadowMetrics(registry)
        self.label_ttl_ms = label_ttl_ms
        self.threshold = decision_threshold
        self.clock = clock
        self._models: dict[str, ModelSetup] = {}  # replaced whole on reload: readers need no lock
        self._queue: queue.Queue[Rows | Labels] = queue.Queue(settings.queue_batches)
        self._lock = threading.Lock()  # guards the stats, offsets, drop counts and rates
        self._stats: dict[ShadowKey, ShadowStats] = {}
        self._offsets: dict[TopicPartitionKey, int] = {}
        self._done: dict[TopicPartitionKey, int] = {}
        self._labels = PendingLabels(settings.max_pending_labels, label_ttl_ms)
        self._label_clock: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_flush = time.monotonic()
        self._paid = 0.0  # wall seconds of the current batch spent in attribution's slices
        self.attributor = Attributor(settings, window_size_ms, self.metrics, monotonic, cpu_clock)

    # -- configuration (policy load and reload) -------------------------------------------
    def configure(self, policies: Mapping[str, LoadedPolicy]) -> None:
        """Load the candidates of every policy with a shadow section, afresh."""
        self._models = load_setups(
            policies,
            self.settings,
            self._record,
            self._disable,
            int(self.clock() * 1000),
            functools.partial(reference_sample, self.store),
        )
        self.attributor.restore(self._models, self.store, int(self.clock() * 1000))

    def explainers(self) -> dict[str, dict[str, Any]]:
        """Per model, its attribution set-up (``/api/shadow``)."""
        return describe_explainers(self._models)

    def _record(self, model: str, name: str, state: str, reason: str, info: Any, at: int) -> None:
        self.metrics.up.labels(model, name).set(1 if state == "active" else 0)
        try:
            self.store.set_candidate(model, name, state, reason, info, at)
        except WatchkeeperError as exc:
            if not exc.retriable:
                raise
            log.error("cannot record the state of candidate %s: %s", name, exc)

    def _disable(self, model: str, name: str, reason: str, at_ms: int) -> None:
        log.error("shadow candidate %s of model %s disabled: %s", name, model, reason)
        self._record(model, name, "disabled", reason, {}, at_ms)

    # -- the ingestion side ----------------------------------------------------------------
    def offer(self, batch: ColumnBatch, topic: str, partition: int) -> None:
        """Sample ``batch`` and queue the rows; never blocks, never raises for data."""
        setup = self._models.get(batch.model)
        if setup is None or len(batch) == 0:
            return
        if not setup.candidates and not setup.production_only():
            return
        if batch.role == "labels":
            labels = labels_of(batch) if self._labels.waiting(batch.model) else None
            if labels is not None:
                self._put(labels, batch.model, 0)
            return
        if not batch.features or batch.offsets is None:
            return
        key = (topic, partition)
        if key not in self._done:
            self._done[key] = self._evaluated(key)
        rows = sampled_rows(batch, setup, topic, partition, self._done[key], self.threshold)
        if rows is not None:
            self._put(rows, batch.model, len(rows.keys))

    def _evaluated(self, key: TopicPartitionKey) -> int:
        try:
            return self.store.offsets(self.group_id).get(key, 0)
        except WatchkeeperError as exc:
            if not exc.retriable:
                raise
            return 0

    def _put(self, item: Rows | Labels, model: str, n: int) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            if isinstance(item, Rows):
                self._count_dropped(item)
                self.metrics.dropped.labels(model).inc(n)
        self.metrics.queue.set(self._queue.qsize())

    def _count_dropped(self, rows: Rows) -> None:
        setup = self._models.get(rows.model)
        if setup is None:
            return
        starts = rows.ts_ms - rows.ts_ms % self.size_ms
        with self._lock:  # _fail pops from setup.rates under it
            rates = dict(setup.rates)
            if setup.production_only():  # production's own sampled rows, under its name
                rates[PRODUCTION] = setup.max_rate
            for name, rate in rates.items():
                for start, idx in by_window(starts[sample_mask(rows.keys, rate)]):
                    self._stats_for(setup, rows.model, name, start).dropped += idx.size

    def forget_partitions(self) -> None:
        """After a rebalance: progress is read from the store again for each partition."""
        self._done = {}

    # -- the worker -------------------------------------------------------------------------
    def start(self) -> ShadowEvaluator:
        self.attributor.pause = self._pause
        self._thread = threading.Thread(target=self._run, name="wk-shadow", daemon=False)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        share = self.settings.max_cpu_share
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                item = None
            if item is not None:
                started = time.perf_counter()
                self._paid = 0.0
                try:
                    self.process(item)
                except Exception:  # a bug here must not end shadow evaluation
                    log.exception("shadow evaluation of a batch failed")
                # attribution slices paid their share of the duty cycle as they went
                busy = max(0.0, time.perf_counter() - started - self._paid)
                self.metrics.queue.set(self._queue.qsize())
                if share < 1.0:
                    self._stop.wait(busy * (1.0 / share - 1.0))  # duty cycle
            if time.monotonic() - self._last_flush >= self.settings.flush_interval:
                self.flush()

    def _pause(self, busy_s: float) -> None:
        """The duty cycle within a batch (after each attribution slice, on the worker
        thread): wait in proportion to the slice's wall time, so attribution's work is
        spread out instead of taking a core in one burst."""
        share = self.settings.max_cpu_share
        started = time.perf_counter()
        if share < 1.0:
            self._stop.wait(busy_s * (1.0 / share - 1.0))
        self._paid += busy_s + (time.perf_counter() - started)

    def drain(self, timeout: float = 30.0) -> None:
        """Process everything queued now (tests, shutdown); the worker need not run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            self.process(item)

    def process(self, item: Rows | Labels) -> None:
        if isinstance(item, Labels):
            self._grade(item)
            return
        setup = self._models.get(item.model)
        if setup is not None:
            for name in list(setup.candidates):
                self._evaluate(setup, item, name)
            self._attribute(setup, item)
        with self._lock:
            key = (item.topic, item.partition)
            self._offsets[key] = max(self._offsets.get(key, 0), item.next_offset)

    def _evaluate(self, setup: ModelSetup, rows: Rows, name: str) -> None:
        candidate = setup.candidates[name]
        idx = np.flatnonzero(sample_mask(rows.keys, setup.rates[name]))
        if idx.size == 0:
            return
        step = setup.spec.batch_of(next(c for c in setup.spec.candidates if c.name == name))
        for lo in range(0, idx.size, step):
            part = idx[lo : lo + step]
            x = candidate.matrix({n: take(c, part) for n, c in rows.features.items()}, part.size)
            try:
                prediction, batch_ms, row_ms = candidate.timed(x)
            except CandidateError as exc:
                self._fail(setup, rows, name, part, exc.reason)
                return
            self.metrics.seconds.labels(rows.model, name, "candidate").inc(batch_ms / 1000)
            baseline = setup.run_baseline(x)
            if baseline is not None:
                self.metrics.seconds.labels(rows.model, name, "baseline").inc(baseline[1] / 1000)
            self._fold(setup, rows, name, part, prediction, batch_ms, row_ms, baseline)
            self.metrics.rows.labels(rows.model, name).inc(part.size)

    def _attribute(self, setup: ModelSetup, rows: Rows) -> None:
        # a backed-up queue means the candidates themselves cannot keep up: they go first
        def backed_up() -> bool:
            return self._queue.qsize() > self.settings.queue_batches // 2

        outcome = self.attributor.run(setup, rows, backed_up)
        with self._lock:
            fold(outcome, setup, rows.model, functools.partial(self._stats_for, setup, rows.model))
        if outcome.reference is not None:
            save_reference(self.store, rows.model, outcome.reference, int(self.clock() * 1000))

    def _fail(
        self, setup: ModelSetup, rows: Rows, name: str, part: np.ndarray[Any, Any], reason: str
    ) -> None:
        starts = rows.ts_ms[part] - rows.ts_ms[part] % self.size_ms
        # under the lock: the ingestion thread iterates ``setup.rates`` in _count_dropped
        with self._lock:
            setup.candidates.pop(name, None)
            setup.rates.pop(name, None)
            for start, idx in by_window(starts):
                self._stats_for(setup, rows.model, name, start).errors += idx.size
        self._disable(rows.model, name, reason, int(self.clock() * 1000))

    def _fold(
        self,
        setup: ModelSetup,
        rows: Rows,
        name: str,
        part: np.ndarray[Any, Any],
        prediction: Prediction,
        batch_ms: float,
        row_ms: float,
        baseline: tuple[Prediction, float, float] | None,
    ) -> None:
        prod_scores = rows.scores[part]
        prod_classes = None if rows.classes is None else [rows.classes[i] for i in part.tolist()]
        if baseline is not None and rows.classes is None and not np.isfinite(prod_scores).any():
            # rows without a logged prediction (a features topic): production's own model
            # file stands in for it
            prod_scores, prod_classes = baseline[0].scores, baseline[0].classes
        starts = rows.ts_ms[part] - rows.ts_ms[part] % self.size_ms
        candidate = setup.candidates.get(name)
        with self._lock:
            for start, sel in by_window(starts):
                stats = self._stats_for(setup, rows.model, name, start)
                stats.update(
                    prediction.scores[sel],
                    prod_scores[sel],
                    None if prediction.classes is None else [prediction.classes[i] for i in sel],
                    None if prod_classes is None else [prod_classes[i] for i in sel],
                )
                if candidate is not None:
                    stats.size_bytes = candidate.size_bytes
                    stats.parameters = candidate.parameters
            # latency belongs to the batch: it is counted in the window of its first row
            stats = self._stats_for(setup, rows.model, name, int(starts[0]))
            fold_latency(
                stats,
                (row_ms, batch_ms),
                None if baseline is None else (baseline[2], baseline[1]),
                setup.baseline.size_bytes if setup.baseline else 0,
                None if rows.latency_ms is None else rows.latency_ms[part],
            )
        if rows.request_ids is not None:
            self._labels.add(
                rows.model,
                name,
                rows.request_ids[part].tolist(),
                starts.tolist(),
                (prediction.scores.tolist(), prediction.classes),
                (prod_scores.tolist(), prod_classes),
            )

    def _stats_for(self, setup: ModelSetup, model: str, name: str, start: int) -> ShadowStats:
        key = (model, name, start)
        if key not in self._stats:
            self._stats[key] = ShadowStats(setup.spec.task)
        return self._stats[key]

    # -- labels -------------------------------------------------------------------------------
    def _grade(self, item: Labels) -> None:
        setup = self._models.get(item.model)
        if setup is None:
            return
        # waiting rows expire on the labels stream's event time, not the wall clock: a
        # backfill's rows wait for their labels however old they are
        clock = self._label_clock[item.model] = max(
            self._label_clock.get(item.model, 0), item.ts_ms
        )
        graded = self._labels.grade(
            item.model, item.request_ids, item.labels, setup.spec.task, clock
        )
        with self._lock:
            for (start, name), g in graded.items():
                g.fold_into(self._stats_for(setup, item.model, name, start), setup.spec.task)

    # -- persistence ----------------------------------------------------------------------
    def flush(self) -> bool:
        """Commit the summaries and progress since the last flush; keep them on failure."""
        self._last_flush = time.monotonic()
        with self._lock:
            stats, self._stats = self._stats, {}
            offsets, self._offsets = self._offsets, {}
        if not stats and not offsets:
            return True
        try:
            self.store.commit(self.group_id, self.size_ms, stats, offsets)
        except WatchkeeperError as exc:
            if not exc.retriable:
                raise
            log.error("shadow summaries not committed (%s); retrying later", exc)
            with self._lock:
                for key, s in stats.items():
                    if key in self._stats:
                        s.merge(self._stats[key])
                    self._stats[key] = s
                for tp, off in offsets.items():
                    self._offsets[tp] = max(off, self._offsets.get(tp, 0))
            return False
        return True
