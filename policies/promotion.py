"""Promotion decisions: is a shadow candidate good enough to replace production?

A decision is a recommendation, never a switch. Given a candidate's ``shadow_*`` values
over the promotion's ``over`` window:

* ``pending`` while fewer than ``min_rows`` rows were compared (or, when a condition is
  label-based, fewer than ``min_labelled_rows`` labelled ones), or a condition's metric
  cannot be computed yet;
* ``reject`` as soon as a condition that can be judged fails, with the failing
  conditions as the reasons;
* ``promote`` when every condition holds.

>>> from watchkeeper.policies.shadow import Promotion
>>> p = Promotion(when=["shadow_agreement >= 0.99"], min_rows=100)
>>> decide(p, {"shadow_agreement": 0.995}, rows=150, labelled=0).decision
'promote'
>>> v = decide(p, {"shadow_agreement": 0.95}, rows=150, labelled=0)
>>> v.decision, v.reasons
('reject', ('shadow_agreement = 0.95, needs >= 0.99',))
>>> decide(p, {"shadow_agreement": 0.95}, rows=50, labelled=0).decision
'pending'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from watchkeeper.detectors.shadow import label_based
from watchkeeper.policies.shadow import Promotion

DecisionKind = Literal["pending", "promote", "reject"]


@dataclass(frozen=True)
class Verdict:
    decision: DecisionKind
    reasons: tuple[str, ...]
    rows: int
    labelled: int
    checks: tuple[dict[str, Any], ...]
    """Per condition: its text, the value, and whether it holds (None: not judged)."""


def _labelled(metric: str) -> bool:
    return label_based(metric) or metric == "shadow_labelled_rows"


def decide(promotion: Promotion, values: Mapping[str, float], rows: int, labelled: int) -> Verdict:
    """The verdict for one candidate; see the module docstring."""
    checks: list[dict[str, Any]] = []
    failing: list[str] = []
    waiting: list[str] = []
    for cond in promotion.when:
        value = values.get(cond.metric)
        holds: bool | None = None
        if rows < promotion.min_rows:
            waiting.append(f"{rows} rows < min_rows {promotion.min_rows}")
        elif _labelled(cond.metric) and labelled < promotion.min_labelled_rows:
            waiting.append(
                f"{cond.metric}: {labelled} labelled rows < {promotion.min_labelled_rows}"
            )
        elif value is None:
            waiting.append(f"{cond.metric} is not available yet")
        else:
            holds = cond.holds(value)
            if not holds:
                failing.append(f"{cond.metric} = {value:.4g}, needs {cond.op} {cond.bound:g}")
        checks.append({"condition": str(cond), "value": value, "holds": holds})
    if failing:
        return Verdict("reject", tuple(failing), rows, labelled, tuple(checks))
    if waiting:
        return Verdict("pending", tuple(dict.fromkeys(waiting)), rows, labelled, tuple(checks))
    return Verdict("promote", (), rows, labelled, tuple(checks))
