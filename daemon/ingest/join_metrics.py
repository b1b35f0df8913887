"""What a commit's label join did, into the ingest metrics and the log."""

from __future__ import annotations

import logging

from watchkeeper.daemon.ingest.metrics import IngestMetrics
from watchkeeper.daemon.store.label_join import JoinOutcome

log = logging.getLogger(__name__)


def count_joins(outcome: JoinOutcome, metrics: IngestMetrics) -> None:
    """Joins and expiries counted per model (and side); expiries logged with their reason."""
    for model, n in outcome.joined.items():
        metrics.joined.labels(model).inc(n)
    for model, n in outcome.late_joined.items():
        metrics.late_labels_joined.labels(model).inc(n)
    for model, n in outcome.late_unmatched.items():
        metrics.late_labels_unmatched.labels(model).inc(n)
        log.info("%s: %d late label(s) dropped: no prediction waits for them", model, n)
    for (model, side), n in outcome.expired.items():
        metrics.join_expired.labels(model, side).inc(n)
    for (model, side, reason), n in sorted(outcome.reasons.items()):
        if reason == "apart":
            log.info("%s: %d %s(s) not joined: more than label_ttl apart", model, n, side)
        else:
            log.info("%s: %d waiting %s(s) expired (%s)", model, n, side, reason)
