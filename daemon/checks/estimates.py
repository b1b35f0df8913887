"""Realised beside estimated: what the daemon shows and says once labels catch up.

* (the rows ``GET /api/status`` shows, estimated beside realised per window, are in
  :mod:`.performance_rows`)
* :func:`labelled_windows` — what the trust check (``estimate_mismatch``) reads: only
  the stored windows whose labels have (nearly) all arrived, so the realised value and
  the estimate it is set against cover the same predictions; :class:`LabelledSpans`
  finds the newest span of the policy's length with them, searching back (bounded)
  when labels come later than the policy window; the per-segment trust check
  (:func:`~watchkeeper.daemon.checks.segment_findings.segment_trust_findings`) reads the
  same span, each segment's labelled windows judged on their own.
* :class:`EstimateFollowUp` — while an incident on an ``estimated_*`` metric is open, the
  labels of the predictions it was raised on keep arriving; when they are enough to
  compare (``min_samples`` pairs, then each doubling), it emits an ``updated`` event
  whose note reads "estimated accuracy 0.911, realised 0.915 (1,204 labels)", on the
  windows it was raised on (the policy window before it opened, and one after) whose
  labels have (nearly) all arrived — a bounded read, however long it stays open: the Slack
  thread, the console and the incident history get it like any update. What it last
  reported lives in memory, so a restart may repeat one note, never skip one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.base import Finding
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.estimate_trust import LABELLED_SHARE, TRUST_METRIC
from watchkeeper.detectors.estimated_performance import ESTIMATED_METRICS
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.window import WindowSummary
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.incident_model import IncidentEvent
from watchkeeper.policies.loader import LoadedPolicy


def labelled_windows(
    store: Store | list[WindowSummary],
    model: str,
    start: int,
    end: int,
    reference: ReferenceProfile | None,
    share: float = LABELLED_SHARE,
) -> WindowSummary | None:
    """The stored windows of ``[start, end)`` (read from ``store``, or given, already
    read) whose labels have (nearly) all arrived: ≥ ``share`` of the predictions
    estimated there are graded; rolled up, or None."""
    est = reference.estimation if reference is not None else None
    if est is None:
        return None
    windows = (
        [s.summary for s in store.windows(model, None, start, end)]
        if isinstance(store, Store)
        else store
    )
    parts = []
    for w in windows:
        state = w.estimates.of(est)
        if state is None or not state.n or w.performance is None:
            continue
        if w.performance.n >= share * state.n:
            parts.append(w)
    return WindowSummary.rollup(parts, start, end - start) if parts else None


DEFAULT_LOOKBACK_S = 7 * 86400.0
"""How far back the trust check looks for labelled predictions by default: the default
``ingest.label_ttl`` (a prediction waits that long for its label, so older windows gain
none); a rule's ``options: {lookback: …}`` or the checker's ``label_ttl_s`` overrides it."""
SEARCH_CHUNK = 12
MIN_RESEARCH_MS = 60_000
"""A search back over older spans runs at most once per policy window (and never more
often than once a minute): between searches the span found is re-read alone."""


@dataclass(frozen=True)
class Span:
    """The span the trust check reads: its bounds, its stored windows (every one, labelled
    or not: a segment judges its own labelled share) and their labelled roll-up."""

    start: int
    end: int
    windows: list[WindowSummary]
    labelled: WindowSummary


@dataclass
class _Found:
    start: int
    end: int
    searched_at: int
    lookback_ms: int


class LabelledSpans:
    """The span the trust check reads: the newest of the policy's length whose windows
    with their labels in (≥ ``share`` graded each) hold ≥ ``min_samples`` labelled pairs.

    First the policy's own range; when labels come later than the policy window (a fraud
    model labelled after days, a policy window of an hour) that range never qualifies,
    so the spans before it are searched, newest first, back to ``lookback``. Bounded:
    one search reads at most ``lookback`` of stored windows and runs at most once per
    policy window (``MIN_RESEARCH_MS`` at least) per policy; between searches only the
    span found is re-read. What a search found lives in memory (a restart searches once
    more)."""

    def __init__(self, default_lookback_s: float = DEFAULT_LOOKBACK_S) -> None:
        self.default_lookback_ms = int(default_lookback_s * 1000)
        self._found: dict[str, _Found | None] = {}
        self.searches = 0
        """Searches back run (a counter for tests and the curious)."""

    def covered(
        self,
        key: str,
        store: Store,
        parts: list[WindowSummary],
        model: str,
        start: int,
        end: int,
        reference: ReferenceProfile | None,
        at_ms: int,
        min_samples: int,
        share: float = LABELLED_SHARE,
        lookback_ms: int | None = None,
    ) -> WindowSummary | None:
        """The roll-up of the span's labelled windows, or None (see the class docstring)."""
        found = self.span(
            key, store, parts, model, start, end, reference, at_ms, min_samples, share, lookback_ms
        )
        return None if found is None else found.labelled

    def span(
        self,
        key: str,
        store: Store,
        parts: list[WindowSummary],
        model: str,
        start: int,
        end: int,
        reference: ReferenceProfile | None,
        at_ms: int,
        min_samples: int,
        share: float = LABELLED_SHARE,
        lookback_ms: int | None = None,
    ) -> Span | None:
        """:meth:`covered` with the span's bounds and windows (the per-segment check reads
        the same span), or None."""

        def enough(w: WindowSummary | None) -> bool:
            return w is not None and w.performance is not None and w.performance.n >= min_samples

        current = labelled_windows(parts, model, start, end, reference, share)
        if enough(current):
            assert current is not None
            return Span(start, end, parts, current)
        lookback = self.default_lookback_ms if lookback_ms is None else lookback_ms
        span = end - start
        found = self._found.get(key)
        fresh = (
            found is not None
            and found.lookback_ms == lookback
            and at_ms - found.searched_at < max(span, MIN_RESEARCH_MS)
            and at_ms - found.searched_at >= 0
        )
        if fresh:
            assert found is not None
            if found.end <= found.start:
                return None  # searched lately, nothing labelled: no new search yet
            windows = [w.summary for w in store.windows(model, None, found.start, found.end)]
            again = labelled_windows(windows, model, found.start, found.end, reference, share)
            if not enough(again):
                return None
            assert again is not None
            return Span(found.start, found.end, windows, again)
        self.searches += 1
        hi = start
        floor = end - lookback
        while hi - span >= floor and span > 0:
            # one read per SEARCH_CHUNK spans, newest first, so a long search is a few
            # queries and holds at most SEARCH_CHUNK spans of windows at once
            spans = min(SEARCH_CHUNK, (hi - floor) // span)
            by_span: dict[int, list[WindowSummary]] = defaultdict(list)
            for stored in store.windows(model, None, hi - spans * span, hi):
                by_span[(hi - stored.summary.start_ms - 1) // span].append(stored.summary)
            for i in range(spans):
                lo = hi - (i + 1) * span
                windows = by_span.get(i, [])
                window = labelled_windows(windows, model, lo, lo + span, reference, share)
                if enough(window):
                    assert window is not None
                    self._found[key] = _Found(lo, lo + span, at_ms, lookback)
                    return Span(lo, lo + span, windows, window)
            hi -= spans * span
        self._found[key] = _Found(0, 0, at_ms, lookback)
        return None


def no_labelled_windows(model: str, window: WindowSummary) -> Finding:
    """The trust check's finding when no span back to its lookback has its labels yet."""
    return Finding(
        model,
        TRUST_METRIC,
        None,
        None,
        "insufficient_data",
        window.start_ms,
        window.end_ms,
        0,
        0,
        {
            "reason": "no span of the policy window's length, back to the lookback "
            "(options.lookback, default ingest.label_ttl), has the labels of its predictions"
        },
    )


def _spoken(metric: str) -> str:
    """``estimated_roc_auc`` → "estimated ROC AUC" (the note is read by people)."""
    name = ESTIMATED_METRICS[metric].realised
    return "estimated " + {"roc_auc": "ROC AUC", "mae": "MAE", "rmse": "RMSE", "f1": "F1"}.get(
        name, name
    )


class EstimateFollowUp:
    """``updated`` events for open estimate incidents as their labels arrive."""

    def __init__(self, store: Store, size_ms: int) -> None:
        self.store = store
        self.size_ms = size_ms
        self._reported: dict[str, dict[str, int]] = defaultdict(dict)
        """Per policy, per incident: the labelled pairs its last note reported."""

    @staticmethod
    def watching(engine: PolicyEngine) -> bool:
        """Whether ``engine`` has an open estimate incident (else nothing to read)."""
        return any(
            i.metric in ESTIMATED_METRICS and i.metric != TRUST_METRIC
            for i in engine.incidents.values()
        )

    def events(
        self,
        loaded: LoadedPolicy,
        engine: PolicyEngine,
        reference: ReferenceProfile | None,
        at_ms: int,
    ) -> list[IncidentEvent]:
        policy = loaded.policy
        est = reference.estimation if reference is not None else None
        reported = self._reported[policy.key]
        if est is None:
            reported.clear()
            return []
        out = []
        open_keys = set()
        for incident in list(engine.incidents.values()):
            spec = ESTIMATED_METRICS.get(incident.metric)
            if spec is None or incident.metric == TRUST_METRIC:
                continue
            open_keys.add(incident.fingerprint)
            # the predictions the incident was raised on (its policy window before it
            # opened) and one policy window after, whose labels have (nearly) all
            # arrived: realised and estimated on the same predictions. Bounded: 2 policy
            # windows of stored windows per tick, however long the incident stays open
            window_ms = int(policy.window * 1000)
            raised = incident.opened_ms - window_ms
            start = raised - raised % self.size_ms
            stop = min(at_ms, incident.opened_ms + window_ms) + self.size_ms
            window = labelled_windows(self.store, policy.model, start, stop, reference)
            if window is None or window.performance is None:
                continue
            pairs = window.performance.n
            rule = policy.rule(incident.rule)
            needed = (rule.min_samples if rule else None) or policy.min_samples
            last = reported.get(incident.fingerprint)
            if pairs < needed or (last is not None and pairs < 2 * last):
                continue
            realised = window.performance.metrics().get(spec.realised)
            state = window.estimates.of(est)
            if realised is None or state is None or not state.n:
                continue
            try:
                estimate = est.estimate(incident.metric, state)
            except InsufficientDataError:
                continue
            reported[incident.fingerprint] = pairs
            note = (
                f"{_spoken(incident.metric)} {estimate.value:.3f}, realised {realised:.3f} "
                f"({pairs:,} labels of {state.n:,} predictions)"
            )
            out.append(IncidentEvent("updated", incident, at_ms, note))
        for gone in set(reported) - open_keys:
            del reported[gone]
        return out
