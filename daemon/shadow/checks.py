"""The checker's shadow part: candidates' findings, failures, and promotion decisions.

Run with each check of a policy that has a ``shadow`` section:

* rules on ``shadow_*`` metrics get one finding per selected candidate over the policy's
  window (the candidate is the finding's feature, so each candidate is its own incident);
* a rule on ``attribution_shift`` gets one finding of the model: production's
  attributions of the window's rows against those of its reference's rows;
* a disabled candidate (failed to load, raised, wrong shape, NaN) opens an incident;
* with ``promotion`` configured, each candidate's verdict over ``promotion.over`` is
  compared with the stored one; a change to ``promote`` or ``reject`` is recorded and
  announced to ``on_promote`` / ``on_reject`` in one transaction (durable outbox), so
  each decision is sent once, and again only if it changes.
"""

from __future__ import annotations

import functools
import logging
import urllib.parse
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from typing import Any

from watchkeeper.alerts.notification import Notification
from watchkeeper.daemon.eventtime.windows import window_bounds
from watchkeeper.daemon.notify.outbox import Outbox
from watchkeeper.daemon.shadow.store import PRODUCTION, ShadowStore
from watchkeeper.detectors.attribution import AttributionSummary
from watchkeeper.detectors.base import Finding
from watchkeeper.detectors.registry import METRICS
from watchkeeper.detectors.shadow import ShadowStats
from watchkeeper.detectors.shadow_findings import (
    attribution_shift,
    attribution_shift_finding,
    shadow_finding,
)
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.incident_model import IncidentEvent, candidate_of, fingerprint
from watchkeeper.policies.promotion import Verdict, decide
from watchkeeper.policies.schema import Policy
from watchkeeper.policies.shadow import Shadow

log = logging.getLogger(__name__)
DecisionPlan = Callable[[Notification, Sequence[str]], list[tuple[str, Notification]]]
"""(channel, notification) for a decision and the channels its promotion section names:
:meth:`~watchkeeper.daemon.notify.router.Router.plan_decision`, so decisions are routed
where every other notification is."""
TABLE_METRICS = (
    "shadow_rows",
    "shadow_agreement",
    "shadow_mean_abs_diff",
    "shadow_p99_abs_diff",
    "shadow_psi",
    "shadow_js_distance",
    "shadow_labelled_rows",
    "shadow_accuracy_delta",
    "shadow_f1_delta",
    "shadow_auc_delta",
    "shadow_mae_delta",
    "shadow_ece_delta",
    "shadow_latency_p50_ms",
    "shadow_latency_p99_ms",
    "shadow_latency_p99_ratio",
    "shadow_batch_latency_p99_ratio",
    "shadow_size_ratio",
    "shadow_drop_rate",
    "shadow_error_rate",
    "shadow_attributed_rows",
    "shadow_attribution_rank_corr",
    "shadow_attribution_topk_overlap",
    "shadow_protected_attribution_delta",
)


def comparison(stats: ShadowStats | None, spec: Shadow | None = None) -> dict[str, float]:
    """The comparison table's values for one candidate (what the summary allows);
    ``spec``: the policy's shadow section, for how attributions are compared."""
    if stats is None:
        return {}
    values = stats.metrics(None if spec is None else spec.attribution_comparison())
    return {m: values[m] for m in TABLE_METRICS if m in values}


def attribution(stats: ShadowStats | None, spec: Shadow) -> dict[str, Any]:
    """What ``/api/shadow`` and decisions show of a candidate's attributions: rows,
    skipped rows, each model's top features and shares, the protected feature that moved
    most, and why a metric has no value."""
    if not spec.attributions.enabled:
        return {"enabled": False}
    out: dict[str, Any] = {"enabled": True}
    if spec.baseline is None:
        out["reason"] = "attributions need production's model file (shadow.baseline)"
    if stats is None:
        return out | {"rows": 0, "skipped": 0}
    return out | stats.attribution_result(spec.attribution_comparison())[1]


def production_attributions(stats: dict[str, ShadowStats]) -> AttributionSummary | None:
    """Production's attributions of the windows' rows (the union of the candidates')."""
    own = stats.get(PRODUCTION)
    return None if own is None or own.attribution is None else own.attribution["production"]


def reference_attributions(store: ShadowStore, model: str) -> tuple[AttributionSummary | None, str]:
    """Production's attributions of its reference's rows, as the shadow worker stored
    them, or None and why."""
    row = store.reference_attribution(model)
    if row is None:
        return None, "production's reference attributions not computed yet"
    if row.get("summary") is None:
        return None, row.get("reason") or "production's reference attributions are pending"
    try:
        return AttributionSummary.from_dict(row["summary"]), ""
    except (KeyError, TypeError, ValueError) as exc:
        log.error("model %s: stored reference attributions unusable: %s", model, exc)
        return None, f"stored reference attributions unusable: {exc}"


def shift_status(
    store: ShadowStore, model: str, stats: dict[str, ShadowStats], spec: Shadow
) -> dict[str, Any]:
    """What ``/api/shadow`` shows of ``attribution_shift``: value (or the reason there is
    none), rows on each side and each side's top features."""
    if not spec.explained():
        return {"value": None, "reason": "attributions need production's model file (baseline)"}
    reference, why = reference_attributions(store, model)
    value, details = attribution_shift(
        production_attributions(stats), reference, spec.attribution_comparison(), why
    )
    return {"value": value} | details


class ShadowChecks:
    """See the module docstring."""

    def __init__(
        self,
        store: ShadowStore,
        size_ms: int,
        plan: DecisionPlan,
        base_url: str | None = None,
        silenced: Callable[[Notification], bool] | None = None,
        enqueued: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        # decisions are written where every notification is: through the outbox, in the
        # transaction that records them (the same database as the shadow store's)
        self.outbox = Outbox(store.engine)
        self.size_ms = size_ms
        self.plan = plan
        self.base_url = base_url
        self.silenced = silenced
        self.enqueued = enqueued

    def findings(self, policy: Policy, start: int, end: int) -> dict[str, list[Finding]]:
        """Findings of the policy's shadow rules over [start, end)."""
        rules = [r for r in policy.rules if METRICS[r.metric].scope == "shadow"]
        if not rules or policy.shadow is None:
            return {}
        stats = self.store.stats(policy.model, start, end)
        names = [c.name for c in policy.shadow.candidates]
        out: dict[str, list[Finding]] = {}
        for rule in rules:
            if rule.metric == "attribution_shift":
                reference, why = reference_attributions(self.store, policy.model)
                out[rule.key] = [
                    attribution_shift_finding(
                        policy.model,
                        production_attributions(stats),
                        reference,
                        (start, end),
                        policy.shadow.attribution_comparison(),
                        why,
                    )
                ]
                continue
            patterns = ["*"] if rule.candidates == "all" else list(rule.candidates)
            min_samples = rule.min_samples or policy.min_samples
            out[rule.key] = [
                shadow_finding(
                    policy.model,
                    name,
                    stats.get(name),
                    rule.metric,
                    (start, end),
                    min_samples,
                    policy.shadow.attribution_comparison(),
                )
                for name in names
                if any(fnmatchcase(name, p) for p in patterns)
            ]
        return out

    def failures(self, policy: Policy, engine: PolicyEngine, at_ms: int) -> list[IncidentEvent]:
        if policy.shadow is None and not any(
            candidate_of(i.feature) is not None for i in engine.incidents.values()
        ):
            return []
        disabled = {
            row["candidate"]: row["reason"]
            for row in self.store.candidates(policy.model)
            if row["state"] == "disabled"
        }
        return engine.candidate_failures(disabled, at_ms)

    def decisions(self, policy: Policy, at_ms: int) -> list[Verdict]:
        """Decide every candidate; record and announce the ones that changed."""
        shadow = policy.shadow
        if shadow is None or shadow.promotion is None:
            return []
        promotion = shadow.promotion
        start, end = window_bounds(at_ms, self.size_ms, int(promotion.over * 1000))
        stats = self.store.stats(policy.model, start, end)
        stored = self.store.decisions(policy.key)
        states = {r["candidate"]: r for r in self.store.candidates(policy.model)}
        verdicts = []
        for c in shadow.candidates:
            s = stats.get(c.name)
            values = s.metrics(shadow.attribution_comparison()) if s is not None else {}
            rows = s.rows if s is not None else 0
            labelled = int(values.get("shadow_labelled_rows", 0))
            verdict = decide(promotion, values, rows, labelled)
            state = states.get(c.name)
            if state is not None and state["state"] == "disabled":
                verdict = Verdict(
                    "reject",
                    (f"disabled: {state['reason']}",),
                    rows,
                    labelled,
                    verdict.checks,
                )
            verdicts.append(verdict)
            before = stored.get((policy.key, c.name))
            if before is not None and before["decision"] == verdict.decision:
                continue
            if before is None and verdict.decision == "pending":
                continue
            table = comparison(s, shadow)
            explained = attribution(s, shadow)
            # production's own attribution drift, beside the candidate's columns
            shift = shift_status(self.store, policy.model, stats, shadow)
            notes: list[tuple[str, Notification]] = []
            if verdict.decision != "pending":
                note = self._notification(
                    policy, c.name, c.onnx, verdict, table, at_ms, explained, shift
                )
                targets = (
                    promotion.on_promote if verdict.decision == "promote" else (promotion.on_reject)
                )
                notes = self.plan(note, targets)  # the router's channels for it

            write = functools.partial(
                self.store.write_decision,
                policy=policy.key,
                candidate=c.name,
                decision=verdict.decision,
                reasons=verdict.reasons,
                table={
                    "values": table,
                    "checks": list(verdict.checks),
                    "attribution": explained,
                    "attribution_shift": shift,
                },
                at_ms=at_ms,
            )
            self.outbox.announce(
                notes, at_ms, write, silenced=self.silenced, operation="record a shadow decision"
            )
            log.warning(
                "shadow candidate %s of %s: %s%s",
                c.name,
                policy.model,
                verdict.decision,
                f" ({'; '.join(verdict.reasons)})" if verdict.reasons else "",
            )
            if notes and self.enqueued is not None:
                self.enqueued()
        return verdicts

    def _notification(
        self,
        policy: Policy,
        candidate: str,
        file: str,
        verdict: Verdict,
        table: dict[str, float],
        at_ms: int,
        explained: dict[str, Any] | None = None,
        shift: dict[str, Any] | None = None,
    ) -> Notification:
        if verdict.decision == "promote":
            summary = (
                f"{policy.model}: candidate {candidate} meets the promotion bar "
                f"over {verdict.rows:,} shadow rows"
            )
        else:
            summary = (
                f"{policy.model}: candidate {candidate} rejected: {'; '.join(verdict.reasons)}"
            )
        details: dict[str, Any] = {
            "candidate": candidate,
            "file": file,
            "decision": verdict.decision,
            "reasons": list(verdict.reasons),
            "checks": list(verdict.checks),
            "rows": verdict.rows,
            "labelled_rows": verdict.labelled,
            "table": table,
        }
        if explained and explained.get("rows"):
            details["attribution"] = explained
        if shift and shift.get("value") is not None:
            details["attribution_shift"] = shift
        # the model's console page holds the shadow comparison table
        page = f"{self.base_url}/models/{urllib.parse.quote(policy.model, safe='')}"
        links = {"shadow": page} if self.base_url else {}
        return Notification(
            kind=verdict.decision,
            fingerprint=fingerprint(policy.key, "promotion", candidate),
            severity="info",
            summary=summary,
            model=policy.model,
            policy=policy.key,
            rule="promotion",
            metric="",
            feature=candidate,
            members={k: v for k, v in table.items() if k != "shadow_rows"},
            at_ms=at_ms,
            opened_ms=at_ms,
            note="; ".join(verdict.reasons),
            labels=dict(policy.labels),
            links=links,
            details=details,
        )


def shadow_table(
    store: ShadowStore, policies: dict[str, Any], now_ms: int, size_ms: int
) -> dict[str, Any]:
    """``/api/shadow``: per model, each candidate's state, comparison and decision."""
    models: dict[str, Any] = {}
    decisions = store.decisions()
    states = {(r["model"], r["candidate"]): r for r in store.candidates()}
    for key, policy in sorted(policies.items()):
        spec = policy.shadow
        if spec is None:
            continue
        over = spec.promotion.over if spec.promotion is not None else policy.window
        start, end = window_bounds(now_ms, size_ms, int(over * 1000))
        stats = store.stats(policy.model, start, end)
        rows = []
        for c in spec.candidates:
            state = states.get((policy.model, c.name), {})
            decision = decisions.get((key, c.name))
            rows.append(
                {
                    "candidate": c.name,
                    "file": c.onnx,
                    "state": state.get("state", "unknown"),
                    "reason": state.get("reason", ""),
                    "info": state.get("info", {}),
                    "sample_rate": spec.rate_of(c),
                    "comparison": comparison(stats.get(c.name), spec),
                    "attribution": attribution(stats.get(c.name), spec),
                    "decision": None
                    if decision is None
                    else {k: decision[k] for k in ("decision", "reasons", "at_ms")},
                }
            )
        models[policy.model] = {
            "policy": key,
            "task": spec.task,
            "over_s": over,
            "baseline": spec.baseline,
            "protected": list(spec.protected),
            "attribution_shift": shift_status(store, policy.model, stats, spec),
            "candidates": rows,
        }
    return {"models": models}
