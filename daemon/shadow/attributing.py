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
from watchkeeper.daemon.shadow.explain import AttributionBudget
from watchkeeper.daemon.shadow.rows import Rows, ShadowMetrics
from watchkeeper.daemon.shadow.runtime import feature_matrix
from watchkeeper.daemon.shadow.setup import ModelSetup
from watchkeeper.detectors.shadow import ShadowStats, sample_mask

log = logging.getLogger(__name__)
Array = np.ndarray[Any, Any]
KEEP_WINDOWS = 64
"""Windows whose attributed-row counts are kept (for the per-window bound)."""


@dataclass
class Outcome:
    """Per (candidate, window start): both models' attributions of the same rows, and the
    rows skipped for the budget."""

    attributions: dict[tuple[str, int], tuple[Array, Array]] = field(default_factory=dict)
    skipped: dict[tuple[str, int], int] = field(default_factory=dict)


class Attributor:
    """See the module docstring."""

    def __init__(
        self,
        settings: ShadowConfig,
        size_ms: int,
        metrics: ShadowMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size_ms = size_ms
        self.metrics = metrics
        self.budget = AttributionBudget(
            settings.max_cpu_share * settings.attribution_cpu_share, clock=clock
        )
        self._counts: dict[tuple[str, str, int], int] = {}

    def _chosen(self, setup: ModelSetup, rows: Rows, name: str, starts: Array) -> Array:
        """Positions of the rows to attribute for ``name``, within the per-window bound."""
        assert setup.explainers is not None
        a = setup.spec.attributions
        rate = setup.rates.get(name, 0.0) * a.sample_rate
        picked = np.flatnonzero(sample_mask(rows.keys, rate))
        kept = []
        for start in np.unique(starts[picked]).tolist():
            at = picked[starts[picked] == start]
            key = (rows.model, name, int(start))
            room = a.max_rows_per_window - self._counts.get(key, 0)
            if room > 0:
                kept.append(at[:room])
        return np.concatenate(kept) if kept else np.empty(0, dtype=np.int64)

    def run(self, setup: ModelSetup, rows: Rows, backed_up: bool) -> Outcome:
        out = Outcome()
        ex = setup.explainers
        if ex is None or not setup.candidates:
            return out
        if not ex.ready():
            if ex.waiting:
                ex.collect(feature_matrix(ex.spec.inputs, rows.features, len(rows.keys)))
            return out
        assert ex.production is not None
        starts = rows.ts_ms - rows.ts_ms % self.size_ms
        chosen = {
            name: self._chosen(setup, rows, name, starts)
            for name in list(setup.candidates)
            if name in ex.per_candidate
        }
        chosen = {n: idx for n, idx in chosen.items() if idx.size}
        if not chosen:
            return out
        if backed_up or not self.budget.allows():
            for name, idx in chosen.items():
                for start in np.unique(starts[idx]).tolist():
                    n = int((starts[idx] == start).sum())
                    out.skipped[(name, int(start))] = n
                self.metrics.attribution_skipped.labels(rows.model, name).inc(idx.size)
            return out
        union = np.unique(np.concatenate(list(chosen.values())))
        x = feature_matrix(ex.spec.inputs, rows.features, len(rows.keys))[union].astype(np.float64)
        keys = rows.keys[union]
        started = time.perf_counter()
        try:
            production = ex.production.explain(x, keys)
        except (CandidateError, ValueError) as exc:
            log.error("model %s: attributions of production failed: %s", rows.model, exc)
            return out
        finally:
            spent = time.perf_counter() - started
            self.budget.spend(spent)
            self.metrics.attribution_seconds.labels(rows.model, "production").inc(spent)
        for name, idx in chosen.items():
            pos = np.searchsorted(union, idx)
            started = time.perf_counter()
            try:
                candidate = ex.per_candidate[name].explain(x[pos], keys[pos])
            except (CandidateError, ValueError) as exc:
                log.error(
                    "model %s: attributions of candidate %s failed: %s", rows.model, name, exc
                )
                continue
            finally:
                spent = time.perf_counter() - started
                self.budget.spend(spent)
                self.metrics.attribution_seconds.labels(rows.model, name).inc(spent)
            for start in np.unique(starts[idx]).tolist():
                sel = starts[idx] == start
                out.attributions[(name, int(start))] = (production[pos[sel]], candidate[sel])
                key = (rows.model, name, int(start))
                self._counts[key] = self._counts.get(key, 0) + int(sel.sum())
            self.metrics.attributed.labels(rows.model, name).inc(idx.size)
        self._forget_old()
        return out

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


def describe_explainers(models: Mapping[str, ModelSetup]) -> dict[str, dict[str, Any]]:
    """Per model, its attribution set-up (``/api/shadow``)."""
    return {m: s.explainers.describe() for m, s in models.items() if s.explainers is not None}
