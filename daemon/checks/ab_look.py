"""An A/B look: a policy's ``compare`` section evaluated over the stored windows.

At each look of a policy with ``compare`` (:mod:`watchkeeper.policies.compare`):

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
   comparison (:mod:`ab_state`), the rest read afresh — those before the policy window
   without their feature sketches (:func:`~watchkeeper.daemon.checks.ab_state.
   comparison_view`) — in two reads per version. A look therefore reads at most the
   label wait plus a window of stored windows, however long the experiment has run, and
   its roll-up equals that of every window at once.
4. :class:`~watchkeeper.detectors.ab.ABComparison` of the two roll-ups; every interval is
   narrowed with the previous looks' (kept), and a decision reached stays reached.
5. The policy window's windows per version, side by side, and the merged ones since the
   start, kept as the comparison's latest look for ``/api/shadow`` and ``watchkeeper
   status`` (which read it and compute nothing); over the policy window, too, the
   versions' inputs (``ab_population_js_distance``: the fold keeps no feature sketches).

What is done with a look (findings, incidents, verdicts) is :mod:`ab_checks`'.

The intervals are valid under repeated looks only over this growing set of rows: never
over a single window (docs/comparison.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from watchkeeper.daemon.checks.ab_pair import pair_in_force
from watchkeeper.daemon.checks.ab_promotion import FINAL, pair_label
from watchkeeper.daemon.checks.ab_report import columns, population, sentence
from watchkeeper.daemon.checks.ab_state import ABState, comparison_view, rolled
from watchkeeper.daemon.checks.ab_store import ABStore
from watchkeeper.daemon.checks.ab_values import Look, interval_decision, plain
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.ab import ABComparison, ABValue, population_shift
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.window import WindowSummary
from watchkeeper.policies.compare import Compare
from watchkeeper.policies.schema import Policy

log = logging.getLogger(__name__)
POPULATION = "ab_population_js_distance"
DEFAULT_LABEL_WAIT_S = 86_400.0
"""Labels joining a window more than a day after it ended are not counted in an A/B
comparison unless ``compare.label_wait`` says to wait longer (up to ``ingest.label_ttl``):
a look re-reads the windows of that span, so the default bounds it to a day of windows."""


class ABLooks:
    """See the module docstring. ``settle_s``: how long after its end a window's labels
    are still counted (at most ``ingest.label_ttl``; a policy's ``compare.label_wait``
    shortens it, default :data:`DEFAULT_LABEL_WAIT_S`); ``lateness_s``: how long its
    events may still arrive (``windows.allowed_lateness``). A window is folded one window
    after both. ``labels_until``: (model, wall ms) → event time up to which its labels
    have been read (None: no cap — no labels stream, or an idle one that never carried a
    label), so the fold never passes labels still to come (catch-up, outage); a labels
    stream with no watermark yet must answer with a point before every window (the
    daemon's :func:`~watchkeeper.daemon.checks.stepping.labels_watermark` gives
    ``HELD_MS``), so nothing is folded before its labels: "not yet", never "no limit"."""

    def __init__(
        self,
        store: Store,
        db: ABStore,
        size_ms: int,
        settle_s: float,
        lateness_s: float = 0.0,
        clock: Callable[[], float] = time.time,
        labels_until: Callable[[str, int], int | None] | None = None,
    ) -> None:
        self.store = store
        self.db = db
        self.size_ms = size_ms
        self.settle_s = settle_s
        self.lateness_ms = int(lateness_s * 1000)
        self.clock = clock
        self.labels_until = labels_until

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

    def _comparison_parts(self, model: str, version: str, lo: int, hi: int) -> list[WindowSummary]:
        """Windows read without their feature sketches, row sample and segments
        (:func:`~watchkeeper.daemon.checks.ab_state.comparison_view`)."""
        if hi <= lo:
            return []
        return [w.summary for w in self.store.windows(model, version, lo, hi, view=comparison_view)]

    # -- a look ----------------------------------------------------------------------------
    def look(
        self,
        policy: Policy,
        start: int,
        end: int,
        reference: Callable[[], ReferenceProfile | None] | None = None,
    ) -> tuple[Look, ABState | None]:
        """Evaluate the policy's comparison over the windows before ``end``: the look and
        the comparison's state to record with it (None: nothing to record).
        ``reference``: the policy's reference, for the versions' label-free estimates."""
        compare = policy.compare
        assert compare is not None
        found = self.pair(policy, compare)
        if isinstance(found, str):
            return Look(None, None, reason=found), None
        b, c = found
        state = self._state(policy, compare, b, c)
        model, since = policy.model, state.since_ms
        if end <= since:
            return Look(b, c, since, end, reason="the experiment starts after this window"), None
        horizon = min(end, (end - self._settle_ms(compare)) // self.size_ms * self.size_ms)
        labelled = self._labelled_until(policy.model, compare)
        if labelled is not None:
            horizon = min(horizon, labelled)
        # per version: the windows before the policy window without their feature
        # sketches (the fold and the unsettled tail read none), the policy window's whole
        lo = min(state.folded_until_ms, start)
        read = {
            role: [
                p
                for p in self._comparison_parts(model, version, lo, start)
                + self._parts(model, version, start, end)
                if p.end_ms <= end
            ]
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
        return look, state

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
