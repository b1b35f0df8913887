"""The checker's A/B part: what is done with a policy's A/B look at each check.

The look itself — the pair in force, the experiment's start, the fold, the comparison and
the side-by-side columns — is :mod:`ab_look`'s. Here:

1. Findings for the rules on ``ab_*`` metrics (the pair, ``"4 vs 3"``, is the finding's
   feature, so each pair is its own incident), with the interval, decision and sample
   sizes in the details; incidents about them say what the numbers mean
   (:func:`~watchkeeper.daemon.checks.ab_report.sentence`).
2. With ``compare.promotion``: the verdict, recorded and announced once through the
   outbox, in the transaction that records it; ``promote`` / ``reject`` are final for the
   experiment, and a verdict of a tick older than ``alerts.max_age`` is recorded unsent.
   Without anything to announce the comparison's state is saved alone (where
   ``policy backtest``'s :class:`~watchkeeper.daemon.checks.ab_store.ReplayABStore`
   keeps it in memory).

A look that raises is logged, counted (:attr:`ABChecks.failed_looks`) and gives
``insufficient_data``: the policy's other rules still run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

from watchkeeper.alerts.notification import Notification
from watchkeeper.daemon.checks.ab_incidents import describe
from watchkeeper.daemon.checks.ab_look import POPULATION, ABLooks
from watchkeeper.daemon.checks.ab_promotion import notification, pair_label, verdict
from watchkeeper.daemon.checks.ab_report import sentence
from watchkeeper.daemon.checks.ab_state import ABState
from watchkeeper.daemon.checks.ab_store import ABStore
from watchkeeper.daemon.checks.ab_values import Look, statistic
from watchkeeper.daemon.notify.outbox import Outbox
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.ab_metrics import AB_METRICS
from watchkeeper.detectors.base import Finding
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.errors import WatchkeeperError
from watchkeeper.policies.compare import Compare
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.incident_model import IncidentEvent
from watchkeeper.policies.schema import Policy

log = logging.getLogger(__name__)
DecisionPlan = Callable[[Notification, Sequence[str]], list[tuple[str, Notification]]]


class ABChecks:
    """See the module docstring; ``settle_s``, ``lateness_s``, ``clock`` and
    ``labels_until`` configure the looks (:class:`~watchkeeper.daemon.checks.ab_look.
    ABLooks`), ``db`` where comparisons are kept (default: the store's ``ab_comparisons``;
    a :class:`~watchkeeper.daemon.checks.ab_store.ReplayABStore` for ``policy backtest``)."""

    def __init__(
        self,
        store: Store,
        size_ms: int,
        settle_s: float,
        plan: DecisionPlan | None = None,
        base_url: str | None = None,
        silenced: Callable[[Notification], bool] | None = None,
        enqueued: Callable[[], None] | None = None,
        lateness_s: float = 0.0,
        max_age_s: float = 0.0,
        clock: Callable[[], float] = time.time,
        labels_until: Callable[[str, int], int | None] | None = None,
        db: ABStore | None = None,
    ) -> None:
        self.db = db if db is not None else ABStore(store.engine)
        self.looks = ABLooks(store, self.db, size_ms, settle_s, lateness_s, clock, labels_until)
        self.outbox = Outbox(store.engine)
        self.plan = plan
        self.base_url = base_url
        self.silenced = silenced
        self.enqueued = enqueued
        self.max_age_ms = int(max_age_s * 1000)
        self.clock = clock
        self.found: dict[str, tuple[str, str]] = {}
        """Policy → the pair this tick's look found (popped by :meth:`describe`): only a
        look that ran and found another pair ends a pair's incidents."""
        self.texts: dict[tuple[str, str, str], str] = {}
        """(policy, rule, pair) → the sentence of its latest finding (incident summaries)."""
        self.failed_looks = 0
        """Looks that raised (logged; the policy's other rules ran)."""

    def look(
        self,
        policy: Policy,
        start: int,
        end: int,
        reference: Callable[[], ReferenceProfile | None] | None = None,
    ) -> Look:
        """The policy's look over the windows before ``end`` (:meth:`ABLooks.look`),
        recorded with its verdict."""
        compare = policy.compare
        assert compare is not None
        look, state = self.looks.look(policy, start, end, reference)
        if look.baseline is not None and look.candidate is not None:
            self.found[policy.key] = (look.baseline, look.candidate)
        if state is not None:
            self._record(policy, compare, state, end)
        return look

    # -- findings, incidents, decisions --------------------------------------------------
    def findings(
        self,
        policy: Policy,
        start: int,
        end: int,
        reference: Callable[[], ReferenceProfile | None] | None = None,
    ) -> dict[str, list[Finding]]:
        """Findings of the policy's ``ab_*`` rules over the experiment up to ``end``."""
        self.found.pop(policy.key, None)
        if policy.compare is None:
            return {}
        try:
            look = self.look(policy, start, end, reference)
        except Exception as exc:
            if isinstance(exc, WatchkeeperError) and exc.retriable:
                raise  # the store is away: the tick is retried as a whole
            self.failed_looks += 1
            self.found.pop(policy.key, None)
            log.exception("policy %s: the A/B look failed (its other rules ran)", policy.key)
            look = Look(None, None, reason=f"the A/B look failed: {type(exc).__name__}")
        out: dict[str, list[Finding]] = {}
        for rule in policy.rules:
            if rule.metric not in AB_METRICS:
                continue
            b, c = look.baseline, look.candidate
            feature = pair_label(b, c) if b is not None and c is not None else None
            window = (look.since_ms or start, max(end, look.end_ms))
            details = look.values.get(rule.metric)
            if rule.metric == POPULATION:  # compared over the policy window (see _window)
                window = (start, end)
            if details is None or b is None or c is None:
                reason = look.reason or look.unavailable.get(rule.metric, "no value")
                out[rule.key] = [
                    Finding(
                        policy.model,
                        rule.metric,
                        feature,
                        None,
                        "insufficient_data",
                        *window,
                        0,
                        0,
                        {"reason": reason},
                    )
                ]
                continue
            stat = str(rule.options.get("value", "bound"))
            value = statistic(rule.metric, details, stat)
            text = sentence(rule.metric, b, c, details)
            self.texts[(policy.key, rule.key, feature or "")] = text
            out[rule.key] = [
                Finding(
                    policy.model,
                    rule.metric,
                    feature,
                    value,
                    "ok" if value is not None and math.isfinite(value) else "insufficient_data",
                    *window,
                    int(details.get("n_candidate", 0)),
                    int(details.get("n_baseline", 0)),
                    details | {"judged": stat, "text": text},
                )
            ]
        return out

    def describe(
        self, policy: Policy, engine: PolicyEngine, events: list[IncidentEvent], at_ms: int
    ) -> None:
        """A/B incidents say what their interval means; those of a pair no longer in force
        resolve (:func:`~watchkeeper.daemon.checks.ab_incidents.describe`) — only when
        this tick's look ran and found another pair (or the compare section went away):
        a tick whose look did not run (a restart, a window below min_samples, versions
        not seen yet) leaves them as they are."""
        if policy.compare is None:
            describe(policy, engine, events, at_ms, None, self.texts, resolve=True)
            return
        pair = self.found.pop(policy.key, None)
        describe(policy, engine, events, at_ms, pair, self.texts, resolve=pair is not None)

    def _record(self, policy: Policy, compare: Compare, state: ABState, at_ms: int) -> None:
        promotion = compare.promotion
        decided = None if promotion is None else verdict(promotion, state.last)
        before = (state.decision or {}).get("decision")
        if (
            decided is None
            or decided["decision"] == before
            or before in ("promote", "reject")  # final until a new experiment starts
            or (before is None and decided["decision"] == "pending")
        ):
            self.db.save(state, policy.model, at_ms)
            return
        assert promotion is not None
        state.decision = decided | {"at_ms": at_ms}
        notes: list[tuple[str, Notification]] = []
        wall_ms = int(self.clock() * 1000)
        historical = self.max_age_ms > 0 and wall_ms - at_ms > self.max_age_ms
        if historical:  # alerts.max_age: recorded, never sent (as Checker.run does)
            state.decision["historical"] = True
        elif decided["decision"] != "pending" and self.plan is not None:
            targets = (
                promotion.on_promote if decided["decision"] == "promote" else promotion.on_reject
            )
            notes = self.plan(notification(policy, state, decided, at_ms, self.base_url), targets)
        if not notes:  # nothing to announce: the state alone (a replay writes nothing)
            self.db.save(state, policy.model, at_ms)
        else:
            self.outbox.announce(
                notes,
                at_ms,
                lambda conn: self.db.write(conn, state, policy.model, at_ms),
                silenced=self.silenced,
                operation="record an A/B decision",
            )
        (log.info if historical else log.warning)(
            "A/B %s of %s: %s%s%s",
            pair_label(state.baseline, state.candidate),
            policy.model,
            decided["decision"],
            f" ({'; '.join(decided['reasons'])})" if decided["reasons"] else "",
            " (historical: not sent)" if historical else "",
        )
        if notes and self.enqueued is not None:
            self.enqueued()
