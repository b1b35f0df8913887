"""Retention in event time: what the hourly prune may delete, per model.

A model's windows are kept for ``store.retention`` behind the model's **newest event
time** (its largest mark over every partition and role), never behind the wall clock: a
backfill of last year's traffic is history to keep, not garbage. Two more bounds hold a
window back: a policy of the model that has not evaluated it yet (its last tick, minus
the policy's window and the traffic baseline it reads) — so an evaluation that lags its
ingestion, as in a backfill, never finds its windows gone — and a policy that has not
started at all keeps the model's whole history. Shadow windows follow their model's
cut, and so do label joins still waiting for a pruned window (counted as expired).

Quarantined records and sent notifications are operational records of the daemon
itself: they are kept ``retention`` by the wall clock. Every prune logs what it removed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping

from watchkeeper.daemon.checks.assessment import BASELINE_WINDOWS
from watchkeeper.daemon.eventtime.watermarks import Mark
from watchkeeper.daemon.shadow.store import ShadowStore
from watchkeeper.daemon.store.store import Store
from watchkeeper.policies.schema import Policy

log = logging.getLogger(__name__)


def cutoffs(
    newest: Mapping[str, int],
    retention_ms: int,
    size_ms: int,
    policies: Mapping[str, Policy],
    ticks: Mapping[str, int],
) -> dict[str, int]:
    """Per model, the window start before which its windows may go.

    >>> day = 86_400_000
    >>> cutoffs({"m": 40 * day}, 30 * day, 300_000, {}, {})
    {'m': 864000000}
    """
    out: dict[str, int] = {}
    for model, mark in newest.items():
        cut = mark - retention_ms
        for key, policy in policies.items():
            if policy.model != model:
                continue
            tick = ticks.get(key)
            if tick is None:  # not started: it will evaluate the stored history
                cut = min(cut, -1)
                continue
            window_ms = int(policy.window * 1000)
            cut = min(cut, tick - (BASELINE_WINDOWS + 1) * window_ms)
        if cut > 0:
            out[model] = cut - cut % size_ms
    return out


class Retention:
    """The prune the housekeeper runs hourly (leader only); see the module docstring."""

    def __init__(
        self,
        store: Store,
        group_id: str,
        retention_s: float,
        size_ms: int,
        policies: Callable[[], dict[str, Policy]],
    ) -> None:
        self.store = store
        self.shadow = ShadowStore(store.engine)
        self.group_id = group_id
        self.retention_ms = int(retention_s * 1000)
        self.size_ms = size_ms
        self.policies = policies

    def __call__(self, now: float) -> dict[str, int]:
        totals = self.store.prune(int(now * 1000) - self.retention_ms)
        totals |= dict.fromkeys(
            ("windows", "shadow_windows", "pending_predictions", "pending_labels"), 0
        )
        if totals["quarantine"] or totals["outbox"]:
            log.info(
                "retention: deleted %d quarantined record(s) and %d sent notification(s) "
                "older than %s (wall clock)",
                totals["quarantine"],
                totals["outbox"],
                _iso(int(now * 1000) - self.retention_ms),
            )
        newest = {
            model: max(mark.event_ms for mark in models)
            for model, models in self._marks_by_model().items()
        }
        cuts = cutoffs(
            newest, self.retention_ms, self.size_ms, self.policies(), self.store.policy_ticks()
        )
        for model, cut in sorted(cuts.items()):
            removed = self.store.prune_model(model, cut)
            removed["shadow_windows"] = self.shadow.prune(cut, model)
            for name, n in removed.items():
                totals[name] = totals.get(name, 0) + n
            if any(removed.values()):
                log.info(
                    "retention: %s: deleted %d window(s), %d shadow window(s), %d waiting "
                    "label join(s) and %d A/B comparison(s) no longer looked at, before %s "
                    "(newest event %s, retention %gd)",
                    model,
                    removed["windows"],
                    removed["shadow_windows"],
                    removed["pending_predictions"] + removed["pending_labels"],
                    removed.get("ab_comparisons", 0),
                    _iso(cut),
                    _iso(newest[model]),
                    self.retention_ms / 86_400_000,
                )
        return totals

    def _marks_by_model(self) -> dict[str, list[Mark]]:
        out: dict[str, list[Mark]] = {}
        for marks in self.store.partition_marks(self.group_id).values():
            for model, mark in marks.items():
                out.setdefault(model, []).append(mark)
        return out


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
