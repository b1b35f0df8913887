"""The checker's A/B part: a policy's ``compare`` section evaluated at each check.

At each check of a policy with ``compare`` (:mod:`watchkeeper.policies.compare`):

1. The pair in force: the named versions, or for ``compare: latest`` the two versions
   first seen most recently (event time, recorded durably in ``ab_versions``; each with
   ``min_rows`` events, never the empty version; ties in natural order), the newest the
   candidate, kept until a strictly newer version qualifies. The pair in force is
   recorded with its comparison (``in_force``), so a restart or a failover continues
   it; a change of pair is logged; each pair is its own experiment with its own start.
2. The experiment's start: ``since`` (rounded up to the window grid), else the start of
   the first window in which both versions had been seen when the pair first came into
   force; recorded (``ab_comparisons``), so a restart continues the experiment.
3. Each version's windows since the start, rolled up: the settled ones (and never past
   what the labels stream has delivered) are folded into a running roll-up kept with the
   comparison (:mod:`ab_state`), the rest read afresh, in one read per version. A
   look therefore reads at most the label TTL plus a window of stored windows, however
   long the experiment has run, and its roll-up equals that of every window at once.
4. :class:`~watchkeeper.detectors.ab.ABComparison` of the two roll-ups; every interval is
   narrowed with the previous looks' (kept), and a decision reached stays reached.
5. Findings for the rules on ``ab_*`` metrics (the pair, ``"4 vs 3"``, is the finding's
   feature, so each pair is its own incident), with the interval, decision and sample
   sizes in the details; incidents about them say what the numbers mean
   (:func:`~watchkeeper.daemon.checks.ab_report.sentence`).
6. The policy window's windows per version, side by side, and the merged ones since the
   start, stored as the comparison's latest look for ``/api/shadow`` and ``watchkeeper
   status`` (which read it and compute nothing).
7. With ``compare.promotion``: the verdict, recorded and announced once through the
   outbox, in the transaction that records it; ``promote`` / ``reject`` are final for the
   experiment, and a verdict of a tick older than ``alerts.max_age`` is recorded unsent.

A look that raises is logged, counted (:attr:`ABChecks.failed_looks`) and gives
``insufficient_data``: the policy's other rules still run.

The intervals are valid under repeated looks only over this growing set of rows: never
over a single window (docs/comparison.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from watchkeeper.alerts.notification import Notification
from watchkeeper.daemon.checks.ab_incidents import describe
from watchkeeper.daemon.checks.ab_pair import pair_in_force
from watchkeeper.daemon.checks.ab_promotion import FINAL, notification, pair_label, verdict
from watchkeeper.daemon.checks.ab_report import columns, population, sentence
from watchkeeper.daemon.checks.ab_state import ABState, rolled
from watchkeeper.daemon.checks.ab_store import ABStore
from watchkeeper.daemon.checks.ab_values import Look, interval_decision, plain, statistic
from watchkeeper.daemon.notify.outbox import Outbox
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.ab import AB_METRICS, ABComparison, ABValue, population_shift
from watchkeeper.detectors.base import Finding
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.window import WindowSummary
from watchkeeper.errors import WatchkeeperError
from watchkeeper.policies.compare import Compare
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.incident_model import IncidentEvent
from watchkeeper.policies.schema import Policy

log = logging.getLogger(__name__)
POPULATION = "ab_population_js_distance"
DEFAULT_LABEL_WAIT_S = 86_400.0
"""Labels joining a window more than a day after it ended are not counted in an A/B
comparison unless ``compare.label_wait`` says to wait longer (up to ``ingest.label_ttl``):
a look re-reads the windows of that span, so the default bounds it to a day of windows."""
DecisionPlan = Callable[[Notification, Sequence[str]], list[tuple[str, Notification]]]


class ABChecks:
    """See the module docstring. ``settle_s``: how long after its end a window's labels
    are still counted (at most ``ingest.label_ttl``; a policy's ``compare.label_wait``
    shortens it, default :data:`DEFAULT_LABEL_WAIT_S`); ``lateness_s``: how long its
    events may still arrive (``windows.allowed_lateness``). A window is folded one window
    after both."""

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
        self.store = store
        self.db = db if db is not None else ABStore(store.engine)
        """Where comparisons are kept (a :class:`ReplayABStore` for ``policy backtest``)."""
        self.outbox = Outbox(store.engine)
        self.size_ms = size_ms
        self.settle_s = settle_s
        self.lateness_ms = int(lateness_s * 1000)
        self.plan = plan
        self.base_url = base_url
        self.silenced = silenced
        self.enqueued = enqueued
        self.max_age_ms = int(max_age_s * 1000)
        self.clock = clock
        self.labels_until = labels_until
        """(model, wall ms) → event time up to which its labels have been read (None: no
        cap), so the fold never passes labels still to come (catch-up, outage)."""
        self.found: dict[str, tuple[str, str]] = {}
        """Policy → the pair this tick's look found (popped by :meth:`describe`): only a
        look that ran and found another pair ends a pair's incidents."""
        self.texts: dict[tuple[str, str, str], str] = {}
        """(policy, rule, pair) → the sentence of its latest finding (incident summaries)."""
        self.failed_looks = 0
        """Looks that raised (logged; the policy's other rules ran)."""

    # -- the pair and its state ----------------------------------------------------------
    def pair(self, policy: Policy, compare: Compare) -> tuple[str, str] | str:
        """(baseline, candidate) in force, or why there is none yet
        (:func:`~watchkeeper.daemon.checks.ab_pair.pair_in_force`)."""
        return pair_in_force(self.db, policy, compare)

    def _state(self, policy: Policy, compare: Compare, b: str, c: str) -> ABState:
        state = self.db.load(policy.key, b, c)
        wanted = compare.since_ms()
        if wanted is not None:
            wanted = -(-wanted // self.size_ms) * self.size_ms  # the first whole window
        if state is not None and (wanted is None or wanted == state.since_ms):
            if state.settings != compare.settings():
                log.info("policy %s: A/B interval settings changed: narrowing restarts", policy.key)
                state.reset_intervals(compare.settings())
            return state
        if wanted is None:
            seen = self.db.first_seen(policy.model)
            wanted = max(seen.get(b, (0, 0))[0], seen.get(c, (0, 0))[0])
        log.info(
            "policy %s: A/B experiment %s starts at %s",
            policy.key,
            pair_label(b, c),
            wanted,
        )
        return ABState(policy.key, b, c, wanted, wanted, compare.settings())

    def _settle_ms(self, compare: Compare) -> int:
        """How long after its end a window is folded: its labels' wait, its lateness and
        one window."""
        wait = DEFAULT_LABEL_WAIT_S if compare.label_wait is None else compare.label_wait
        return int(min(wait, self.settle_s) * 1000) + self.lateness_ms + self.size_ms

    def _labelled_until(self, model: str, compare: Compare) -> int | None:
        """The latest fold point the labels read so far allow: their watermark less the
        labels' wait, the lateness and a window (the predictions-driven tick may run far
        ahead of the labels in a catch-up, a backfill or a labels outage)."""
        if self.labels_until is None:
            return None
        mark = self.labels_until(model, int(self.clock() * 1000))
        if mark is None:
            return None
        point = mark - self._settle_ms(compare)
        return point // self.size_ms * self.size_ms

    def _parts(self, model: str, version: str, lo: int, hi: int) -> list[WindowSummary]:
        return [w.summary for w in self.store.windows(model, version, lo, hi)]

    # -- a look ----------------------------------------------------------------------------
    def look(
        self,
        policy: Policy,
        start: int,
        end: int,
        reference: Callable[[], ReferenceProfile | None] | None = None,
    ) -> Look:
        """Evaluate the policy's comparison over the windows before ``end``; keep it.
        ``reference``: the policy's reference, for the versions' label-free estimates."""
        compare = policy.compare
        assert compare is not None
        found = self.pair(policy, compare)
        if isinstance(found, str):
            return Look(None, None, reason=found)
        b, c = found
        self.found[policy.key] = (b, c)
        state = self._state(policy, compare, b, c)
        model, since = policy.model, state.since_ms
        if end <= since:
            return Look(b, c, since, end, reason="the experiment starts after this window")
        horizon = min(end, (end - self._settle_ms(compare)) // self.size_ms * self.size_ms)
        labelled = self._labelled_until(policy.model, compare)
        if labelled is not None:
            horizon = min(horizon, labelled)
        # one read per version serves the fold, the unsettled tail and the policy window
        lo = min(state.folded_until_ms, start)
        read = {
            role: [p for p in self._parts(model, version, lo, end) if p.end_ms <= end]
            for role, version in (("baseline", b), ("candidate", c))
        }
        if horizon > state.folded_until_ms:
            for role in ("baseline", "candidate"):
                parts = [
                    p
                    for p in read[role]
                    if p.start_ms >= max(since, state.folded_until_ms) and p.end_ms <= horizon
                ]
                state.fold(role, model, parts, horizon)
            state.advance(horizon)
        merged = {}
        for role, version in (("baseline", b), ("candidate", c)):
            tail = [p for p in read[role] if p.start_ms >= max(since, state.folded_until_ms)]
            # a look at an earlier tick than the fold (a re-run) still covers the fold
            until = max(end, state.folded_until_ms)
            merged[role] = rolled(model, version, since, until, state.folded.get(role), tail)
        # a re-run at a tick before the fold covers the fold: its findings say so
        covered = max(end, state.folded_until_ms)
        look = self._compare(state, compare, merged["baseline"], merged["candidate"], covered)
        ref = reference() if reference is not None else None
        window, inputs = self._window(policy, compare, b, c, start, end, ref, read)
        if isinstance(inputs, str):
            look.unavailable[POPULATION] = inputs
        else:
            look.values[POPULATION] = self._details(state, POPULATION, inputs, 0.0) | {
                "start_ms": start,
                "end_ms": end,
            }
        state.last = {
            "at_ms": end,
            "since_ms": since,
            "baseline": b,
            "candidate": c,
            "merged": {
                "baseline": columns(merged["baseline"], ref),
                "candidate": columns(merged["candidate"], ref),
            },
            "window": window,
            "values": look.values,
            "unavailable": look.unavailable,
            "texts": {m: sentence(m, b, c, d) for m, d in look.values.items()},
        }
        self._record(policy, compare, state, end)
        return look

    def _compare(
        self,
        state: ABState,
        compare: Compare,
        baseline: WindowSummary,
        candidate: WindowSummary,
        end: int,
    ) -> Look:
        margins = compare.margins()
        comparison = ABComparison(  # the fold keeps no feature sketches: see _window
            compare.alpha, compare.tuned_rows, compare.min_rows, margin=margins, population=False
        )
        result = comparison.compare(baseline, candidate)
        values: dict[str, dict[str, Any]] = {}
        for name, v in result.values.items():
            values[name] = self._details(state, name, v, margins.get(name, 0.0))
        return Look(
            state.baseline,
            state.candidate,
            state.since_ms,
            end,
            values,
            dict(result.unavailable),
        )

    def _details(self, state: ABState, name: str, v: ABValue, margin: float) -> dict[str, Any]:
        details: dict[str, Any] = {k: plain(x) for k, x in v.details.items()}
        details |= {"value": v.value, "baseline_version": state.baseline}
        details["candidate_version"] = state.candidate
        details["since_ms"] = state.since_ms
        if v.interval is None:
            return details
        iv = state.narrow(name, v.interval)
        decision = interval_decision(name, iv, margin)
        before = state.last.get("values", {}).get(name, {}).get("decision")
        if before in FINAL and decision != before:
            decision = before  # reached once: kept, even if a margin changed since
        disjoint = state.disjoint.get(name, 0)
        if disjoint:
            details["disjoint_looks"] = disjoint
            details["warning"] = (
                f"{disjoint} look(s) gave an interval disjoint from the earlier ones: the "
                "difference moved during the experiment; start a new one (compare.since)"
            )
        details |= {
            "low": iv.low,
            "high": iv.high,
            "p_value": iv.p_value,
            "look_low": v.interval.low,
            "look_high": v.interval.high,
            "decision": decision,
            "margin": margin,
        }
        return details

    def _window(
        self,
        policy: Policy,
        compare: Compare,
        b: str,
        c: str,
        start: int,
        end: int,
        reference: ReferenceProfile | None,
        read: dict[str, list[WindowSummary]],
    ) -> tuple[dict[str, Any], ABValue | str]:
        """The policy window's windows of each version (from the look's ``read``), side by
        side, with the point values of the comparison on them alone (no interval: see the
        module docstring); and the versions' inputs compared over it
        (``ab_population_js_distance``, or why not: the fold keeps no feature sketches,
        so the inputs are compared over the policy window, never since the start)."""
        sides = {}
        for role, version in (("baseline", b), ("candidate", c)):
            parts = [p for p in read[role] if p.start_ms >= start]
            sides[role] = rolled(policy.model, version, start, end, None, parts)
        shift = population_shift(sides["baseline"], sides["candidate"], compare.min_rows)
        result = ABComparison(compare.alpha, compare.tuned_rows, compare.min_rows).compare(
            sides["baseline"], sides["candidate"], shift
        )
        inputs = result.values.get(POPULATION) or result.unavailable.get(POPULATION, "no value")
        return {
            "start_ms": start,
            "end_ms": end,
            "baseline": columns(sides["baseline"], reference),
            "candidate": columns(sides["candidate"], reference),
            "values": {name: v.value for name, v in result.values.items()},
            "population": population(shift),
        }, inputs

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
