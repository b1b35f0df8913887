"""A/B promotion verdicts: is the candidate version good enough to replace the baseline?

A verdict is a recommendation, never a switch (as for shadow candidates,
:mod:`watchkeeper.policies.promotion`), over the experiment's rows since its start:

* ``reject`` as soon as a condition on an interval end or a decision can no longer hold:
  the narrowed interval only shrinks, so ``ab_accuracy_delta.low > -0.005`` is lost once
  its upper end is at or below −0.005;
* ``pending`` while a condition cannot be judged yet or an interval condition does not
  hold yet;
* once every interval condition holds: ``reject`` if a point condition (a latency ratio,
  a distance) fails, else ``promote``.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from watchkeeper.alerts.notification import Notification
from watchkeeper.daemon.checks.ab_report import shown
from watchkeeper.daemon.checks.ab_state import ABState
from watchkeeper.detectors.ab_metrics import AB_METRICS
from watchkeeper.policies.compare import ABPromotion
from watchkeeper.policies.incident_model import fingerprint
from watchkeeper.policies.schema import Policy

FINAL = ("worse", "better", "changed")
"""Decisions that, once reached, stay (the narrowed interval keeps them)."""


def pair_label(baseline: str, candidate: str) -> str:
    """The finding's feature: which pair an ``ab_*`` incident is about."""
    return f"{shown(candidate)} vs {shown(baseline)}"


def _fmt(value: float | str | None) -> str:
    return str(value) if not isinstance(value, float) else f"{value:.4g}"


def verdict(promotion: ABPromotion, last: dict[str, Any]) -> dict[str, Any]:
    """``promote`` when every condition holds; ``reject`` when an interval condition
    can no longer hold (the narrowed interval lies wholly on its wrong side, and it only
    narrows) or, once every interval condition holds, a point condition fails;
    ``pending`` otherwise."""
    values = last.get("values", {})
    checks: list[dict[str, Any]] = []
    failing: list[str] = []
    final_fail: list[str] = []
    waiting: list[str] = []
    for cond in promotion.when:
        d = values.get(cond.metric)
        holds: bool | None = None
        shown_value: float | str | None = None
        field = "value" if cond.stat == "value" else cond.stat
        if d is None:
            why = last.get("unavailable", {}).get(cond.metric)
            waiting.append(f"{cond.metric} is not available yet" + (f" ({why})" if why else ""))
        elif d.get(field) is None:  # the loader rejects such conditions; stored looks may lack it
            waiting.append(f"{cond.metric} has no {field} yet")
        else:
            if cond.stat == "decision":
                shown_value = str(d["decision"])
            else:
                number = float(d[field])
                two_sided = AB_METRICS[cond.metric].direction == "two_sided"
                # a two-sided metric's value or estimate is read as a rule's
                # options.value: estimate reads it, the size of the change (|estimate|);
                # .low / .high stay the interval's signed ends
                shown_value = (
                    abs(number)
                    if two_sided and cond.stat != "low" and cond.stat != "high"
                    else number
                )
            holds = cond.holds(shown_value)
            if not holds:
                text = f"{cond} is false ({_fmt(shown_value)})"
                if _never(cond.stat, cond.op, cond.bound, d):
                    final_fail.append(text)
                elif not AB_METRICS[cond.metric].interval:
                    failing.append(text)
                else:
                    waiting.append(text)
        checks.append({"condition": str(cond), "value": shown_value, "holds": holds})
    if final_fail:
        return {"decision": "reject", "reasons": final_fail, "checks": checks}
    if waiting:
        return {"decision": "pending", "reasons": waiting, "checks": checks}
    if failing:
        return {"decision": "reject", "reasons": failing, "checks": checks}
    return {"decision": "promote", "reasons": [], "checks": checks}


def notification(
    policy: Policy, state: ABState, verdict: dict[str, Any], at_ms: int, base_url: str | None
) -> Notification:
    """The decision's message: the verdict, its conditions, and each value's sentence."""
    label = pair_label(state.baseline, state.candidate)
    b, c = shown(state.baseline), shown(state.candidate)
    if verdict["decision"] == "promote":
        summary = f"{policy.model}: version {c} meets the promotion bar against {b}"
    else:
        summary = (
            f"{policy.model}: version {c} rejected against {b}: {'; '.join(verdict['reasons'])}"
        )
    last = state.last
    table = {m: float(d["value"]) for m, d in last.get("values", {}).items()}
    page = f"{base_url}/models/{urllib.parse.quote(policy.model, safe='')}"
    return Notification(
        kind=verdict["decision"],
        fingerprint=fingerprint(policy.key, "ab-promotion", label),
        severity="info",
        summary=summary,
        model=policy.model,
        policy=policy.key,
        rule="ab-promotion",
        metric="",
        feature=label,
        members=dict(table),
        at_ms=at_ms,
        opened_ms=at_ms,
        note="; ".join(verdict["reasons"]),
        labels=dict(policy.labels),
        links={"comparison": page} if base_url else {},
        details={
            "comparison": "ab",
            "baseline": state.baseline,
            "candidate": state.candidate,
            "since_ms": state.since_ms,
            "decision": verdict["decision"],
            "reasons": list(verdict["reasons"]),
            "checks": list(verdict["checks"]),
            "table": table,
            "texts": dict(last.get("texts", {})),
            "side_by_side": last.get("merged", {}),
        },
    )


def _never(stat: str, op: str, bound: float | str, d: dict[str, Any]) -> bool:
    """Whether a failing interval condition can no longer hold: the narrowed interval
    only shrinks, so ``low > x`` is lost once ``high <= x`` (and alike); a final
    decision other than the one asked for stays."""
    if stat == "decision":
        return d.get("decision") in FINAL
    if stat not in ("low", "high") or isinstance(bound, str):
        return False
    low, high = float(d["low"]), float(d["high"])
    if op in (">", ">="):
        return high < bound if op == ">=" else high <= bound
    return low > bound if op == "<=" else low >= bound
