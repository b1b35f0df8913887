"""The shadow worker's attribution step: which rows, within which budget, and the result.

:class:`Attributor` runs on the worker thread after a batch's candidates were evaluated
(never on the ingestion thread); what it computes, the evaluator folds into the
windows' :class:`~watchkeeper.detectors.shadow.ShadowStats` under its lock. The sampling,
the per-window bound and the budget are described in :mod:`explain`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from watchkeeper.daemon.config_shadow import ShadowConfig
from watchkeeper.daemon.errors import CandidateError
from watchkeeper.daemon.shadow.explain import AttributionBudget, Explainers
from watchkeeper.daemon.shadow.rows import Rows, ShadowMetrics, by_window
from watchkeeper.daemon.shadow.runtime import feature_matrix
from watchkeeper.daemon.shadow.setup import ModelSetup
from watchkeeper.daemon.shadow.store import PRODUCTION, ShadowStore
from watchkeeper.detectors.attribution import AttributionSummary
from watchkeeper.detectors.shadow import ShadowStats, sample_mask
from watchkeeper.detectors.shapley import ShapleyExplainer
from watchkeeper.errors import WatchkeeperError

log = logging.getLogger(__name__)
Array = np.ndarray[Any, Any]
KEEP_WINDOWS = 64
"""Windows whose attributed-row counts are kept (for the per-window bound)."""
REFERENCE_CHUNK = 16
"""Reference rows explained per call at most (fewer when :func:`slice_rows` says so):
after each, the budget is asked again, so the reference summary is built a little at a
time when attribution's CPU share is spent."""
SLICE_MODEL_ROWS = 16_384
"""Model rows (masked inputs) per slice of explained rows: the budget is asked before
each slice, so attribution overdraws it by at most one slice (one explained row of
bench_shadow's 20→128→64 MLP: 5 ms of CPU for both models on an idle core, 9–12 ms
beside ingestion)."""


def slice_rows(explainer: ShapleyExplainer) -> int:
    """Rows explained between two looks at the budget: as many as fit in
    :data:`SLICE_MODEL_ROWS` model rows, at least one."""
    return max(1, SLICE_MODEL_ROWS // explainer.model_rows_per_row())


@dataclass
class ReferenceProgress:
    """Production's attributions of a reference's rows, built :data:`REFERENCE_CHUNK`
    rows at a time; ``done`` once every row is in ``summary``."""

    identity: str
    summary: AttributionSummary
    next_row: int = 0
    done: bool = False


@dataclass
class Explained:
    """A batch's attributions, as far as the budget went: its first ``reached`` rows (of
    the union of the rows chosen) for production, each candidate's chosen rows among
    them (in its own order; those not reached NaN)."""

    reached: int
    production: Array
    candidates: dict[str, Array]
    failed: bool = False


@dataclass
class Outcome:
    """Per (candidate, window start): both models' attributions of the same rows, and the
    rows skipped for the budget."""

    attributions: dict[tuple[str, int], tuple[Array, Array]] = field(default_factory=dict)
    skipped: dict[tuple[str, int], int] = field(default_factory=dict)
    production: dict[int, Array] = field(default_factory=dict)
    """Per window start: production's attributions of every row explained (the union of
    the candidates' rows), the window side of ``attribution_shift``."""
    reference: ReferenceProgress | None = None
    """Set when the reference's summary was completed by this run (to be stored)."""


class Attributor:
    """See the module docstring."""

    def __init__(
        self,
        settings: ShadowConfig,
        size_ms: int,
        metrics: ShadowMetrics,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self.size_ms = size_ms
        self.metrics = metrics
        self.budget = AttributionBudget(
            settings.max_cpu_share * settings.attribution_cpu_share, clock=clock
        )
        self.cpu_clock = cpu_clock
        """CPU seconds of the calling thread (the shadow worker's): what a slice costs."""
        self.pause: Callable[[float], None] = lambda wall_s: None
        """Called after each slice with its wall time; the running worker waits there in
        proportion (its duty cycle), so a batch's attributions are spread out, not one
        burst on a core ingestion needs. A no-op until the evaluator's worker thread starts, so
tests that call ``process`` themselves never wait."""
        self._counts: dict[tuple[str, str, int], int] = {}
        self.references: dict[str, ReferenceProgress] = {}
        """Per model: production's reference summary, kept across policy reloads while
        the reference's identity is the same (:func:`~explain.sample_identity`)."""

    def restore(self, models: Mapping[str, ModelSetup], store: ShadowStore, at_ms: int) -> None:
        """After a (re)load: a reference summary the store holds for the same reference
        identity is used as it is; one of another reference is marked pending in the store
        (the checker then reports no value rather than compare windows with a reference
        no longer in force) and computed again."""
        for model, setup in models.items():
            ex = setup.explainers
            if ex is None:
                continue
            known = self.references.get(model)
            if known is not None and known.identity == ex.identity and ex.reference is not None:
                continue
            try:
                row = store.reference_attribution(model)
                if row is None or row.get("identity") == ex.identity:
                    if row is not None and row.get("summary") is not None:
                        self._use_stored(model, ex.identity, ex.features, row["summary"])
                    continue
                why = (
                    "the reference changed: its attributions are being computed"
                    if ex.reference is not None
                    else "the reference's sample has no rows apart from the background"
                )
                store.set_reference_attribution(model, ex.identity, None, at_ms, why)
            except WatchkeeperError as exc:
                if not exc.retriable:
                    raise
                log.error("model %s: stored reference attributions not read: %s", model, exc)

    def _use_stored(
        self, model: str, identity: str, features: tuple[str, ...], blob: dict[str, Any]
    ) -> None:
        try:
            summary = AttributionSummary.from_dict(blob)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("model %s: stored reference attributions unusable: %s", model, exc)
            return
        if summary.features == features:
            self.references[model] = ReferenceProgress(identity, summary, 0, True)

    def _reference_step(
        self, setup: ModelSetup, model: str, out: Outcome, backed_up: Callable[[], bool]
    ) -> None:
        """Explain the next few reference rows, if any are left and the budget allows."""
        ex = setup.explainers
        if ex is None or ex.production is None or ex.reference is None:
            return
        progress = self.references.get(model)
        if progress is None or progress.identity != ex.identity:
            progress = ReferenceProgress(ex.identity, AttributionSummary(ex.features))
            self.references[model] = progress
        # chunk by chunk while the budget lasts (candidates went first: this runs after
        # them, and not at all while the queue is backed up)
        production, reference = ex.production, ex.reference
        step = min(REFERENCE_CHUNK, slice_rows(production))
        while not progress.done and self.budget.allows() and not backed_up():
            lo = progress.next_row
            hi = min(lo + step, len(reference))
            # orderings seeded by the row's position in the reference's rows
            keys = np.arange(lo, hi, dtype=np.uint64)
            try:
                phi = self._timed(model, "reference", production, reference[lo:hi], keys)
            except (CandidateError, ValueError) as exc:
                log.error("model %s: attributions of the reference failed: %s", model, exc)
                return
            progress.summary.update(phi)
            progress.next_row = hi
            if hi >= len(ex.reference):
                progress.done = True
                out.reference = progress
                log.info(
                    "model %s: production's attributions of %d reference rows done",
                    model,
                    progress.summary.rows,
                )

    def _chosen(self, setup: ModelSetup, rows: Rows, name: str, starts: Array) -> Array:
        """Positions of the rows to attribute for ``name``, within the per-window bound."""
        assert setup.explainers is not None
        a = setup.spec.attributions
        # production alone (no candidates): its rows at the attribution rate itself
        share = 1.0 if name == PRODUCTION else setup.rates.get(name, 0.0)
        rate = share * a.sample_rate
        picked = np.flatnonzero(sample_mask(rows.keys, rate))
        kept = []
        for start in np.unique(starts[picked]).tolist():
            at = picked[starts[picked] == start]
            key = (rows.model, name, int(start))
            room = a.max_rows_per_window - self._counts.get(key, 0)
            if room > 0:
                kept.append(at[:room])
        return np.concatenate(kept) if kept else np.empty(0, dtype=np.int64)

    def run(self, setup: ModelSetup, rows: Rows, backed_up: Callable[[], bool]) -> Outcome:
        """Attribute ``rows``' chosen rows as far as the budget goes. ``backed_up()`` is
        asked before each slice too: once the evaluation queue backs up, the candidates
        go first and the rows left are skipped."""
        out = Outcome()
        ex = setup.explainers
        if ex is None or not (setup.candidates or setup.production_only()):
            return out
        if not ex.ready():
            if ex.waiting:
                ex.collect(feature_matrix(ex.spec.inputs, rows.features, len(rows.keys)))
            return out
        assert ex.production is not None
        starts = rows.ts_ms - rows.ts_ms % self.size_ms
        names = [n for n in list(setup.candidates) if n in ex.per_candidate]
        if setup.production_only():
            names = [PRODUCTION]
        chosen = {name: self._chosen(setup, rows, name, starts) for name in names}
        chosen = {n: idx for n, idx in chosen.items() if idx.size}
        if not chosen:
            self._reference_step(setup, rows.model, out, backed_up)
            return out
        union = np.unique(np.concatenate(list(chosen.values())))
        done = None if backed_up() else self._explain(ex, rows, union, chosen, backed_up)
        if done is not None:
            self._collect(out, rows, starts, union, chosen, done)
            if done.failed:
                return out  # logged; the rows left are neither attributed nor skipped
        reached = 0 if done is None else done.reached
        for name, idx in chosen.items():
            if done is not None and name != PRODUCTION and name not in done.candidates:
                continue  # the candidate failed: logged
            # rows not reached (the budget ran out, or the queue is backed up): skipped
            late = idx[np.searchsorted(union, idx) >= reached]
            for start, at in by_window(starts[late]):
                out.skipped[(name, start)] = at.size
            if late.size:
                self.metrics.attribution_skipped.labels(rows.model, name).inc(late.size)
        self._forget_old()
        self._reference_step(setup, rows.model, out, backed_up)
        return out

    def _timed(
        self, model: str, side: str, explainer: ShapleyExplainer, x: Array, keys: Array
    ) -> Array:
        """``explainer``'s attributions of ``x``; the worker thread's CPU time for them is
        spent from the budget and counted, then ``pause`` gets their wall time."""
        cpu, wall = self.cpu_clock(), time.perf_counter()
        try:
            return explainer.explain(x, keys)
        finally:
            spent = max(0.0, self.cpu_clock() - cpu)
            self.budget.spend(spent)
            self.metrics.attribution_seconds.labels(model, side).inc(spent)
            self.pause(time.perf_counter() - wall)

    def _explain(
        self,
        ex: Explainers,
        rows: Rows,
        union: Array,
        chosen: dict[str, Array],
        backed_up: Callable[[], bool],
    ) -> Explained:
        """Both sides' attributions of ``union``'s rows, a slice at a time (see
        :func:`slice_rows`) while the budget allows. Production failing ends the batch's
        attributions (the rows so far are kept); a candidate failing drops it for the
        batch (logged, its rows neither attributed nor skipped)."""
        assert ex.production is not None
        x = feature_matrix(ex.spec.inputs, rows.features, len(rows.keys))[union].astype(np.float64)
        keys = rows.keys[union]
        d = x.shape[1]
        production = np.full((union.size, d), np.nan)
        positions = {n: np.searchsorted(union, idx) for n, idx in chosen.items()}
        candidates = {
            n: np.full((idx.size, d), np.nan) for n, idx in chosen.items() if n != PRODUCTION
        }
        step = slice_rows(ex.production)
        reached = 0
        while reached < union.size and self.budget.allows() and not backed_up():
            lo, hi = reached, min(union.size, reached + step)
            try:
                production[lo:hi] = self._timed(
                    rows.model, "production", ex.production, x[lo:hi], keys[lo:hi]
                )
            except (CandidateError, ValueError) as exc:
                log.error("model %s: attributions of production failed: %s", rows.model, exc)
                return Explained(reached, production, candidates, failed=True)
            for name in list(candidates):
                sel = np.flatnonzero((positions[name] >= lo) & (positions[name] < hi))
                if not sel.size:
                    continue
                pos = positions[name][sel]
                try:
                    candidates[name][sel] = self._timed(
                        rows.model, name, ex.per_candidate[name], x[pos], keys[pos]
                    )
                except (CandidateError, ValueError) as exc:
                    log.error(
                        "model %s: attributions of candidate %s failed: %s", rows.model, name, exc
                    )
                    del candidates[name]
            reached = hi
        return Explained(reached, production, candidates)

    def _collect(
        self,
        out: Outcome,
        rows: Rows,
        starts: Array,
        union: Array,
        chosen: dict[str, Array],
        explained: Explained,
    ) -> None:
        """What :meth:`_explain` computed, per window, into ``out`` (and the counts)."""
        reached, production = explained.reached, explained.production
        candidates = explained.candidates
        for start, at in by_window(starts[union[:reached]]):
            out.production[start] = production[at]
        for name, idx in chosen.items():
            pos = np.searchsorted(union, idx)
            done = np.flatnonzero(pos < reached)
            if name != PRODUCTION and name not in candidates:
                continue  # failed: logged, neither attributed nor skipped
            for start, at in by_window(starts[idx[done]]):
                if name != PRODUCTION:
                    rows_at = done[at]
                    out.attributions[(name, start)] = (
                        production[pos[rows_at]],
                        candidates[name][rows_at],
                    )
                key = (rows.model, name, start)
                self._counts[key] = self._counts.get(key, 0) + at.size
            if done.size:
                self.metrics.attributed.labels(rows.model, name).inc(done.size)

    def _forget_old(self) -> None:
        if len(self._counts) <= KEEP_WINDOWS * 8:
            return
        starts = sorted({k[2] for k in self._counts})
        cut = starts[-KEEP_WINDOWS] if len(starts) > KEEP_WINDOWS else starts[0]
        self._counts = {k: v for k, v in self._counts.items() if k[2] >= cut}


def fold(
    outcome: Outcome, setup: ModelSetup, model: str, stats_for: Callable[[str, int], ShadowStats]
) -> None:
    """Add an :class:`Outcome` to the windows' summaries (``stats_for(candidate, window
    start)``); the caller holds the evaluator's lock."""
    features = setup.spec.inputs.features
    for (name, start), (production, candidate) in outcome.attributions.items():
        stats_for(name, start).update_attribution(features, production, candidate)
    for (name, start), n in outcome.skipped.items():
        stats_for(name, start).attribution_skipped += n
    # production's own window summary, under the name no candidate can have: both sides
    # are production's attributions, so its AttributionSummary merges like any other
    for start, production in outcome.production.items():
        stats_for(PRODUCTION, start).update_attribution(features, production, production)


def describe_explainers(models: Mapping[str, ModelSetup]) -> dict[str, dict[str, Any]]:
    """Per model, its attribution set-up (``/api/shadow``)."""
    return {m: s.explainers.describe() for m, s in models.items() if s.explainers is not None}


def save_reference(store: ShadowStore, model: str, done: ReferenceProgress, at_ms: int) -> None:
    """Store a completed reference summary (on failure it stays in memory only: a
    restart computes it again)."""
    try:
        store.set_reference_attribution(model, done.identity, done.summary.to_dict(), at_ms)
    except WatchkeeperError as exc:
        if not exc.retriable:
            raise
        log.error("model %s: reference attributions not stored: %s", model, exc)
