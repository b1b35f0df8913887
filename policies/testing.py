"""Policy unit tests, in the manner of ``promtool test rules``.

A test file sits next to a policy and scripts metric values per evaluation, then lists
the incident events it expects — every one, so a threshold change that adds or removes an
alert fails its review::

    policy: fraud.yaml                # relative to this file
    reference_metrics: {accuracy: 0.94}
    tests:
      - name: a PSI spike pages after two evaluations and clears
        evaluations:                  # one entry per scheduled evaluation
          - {feature-drift: {amount: 0.05}}
          - {feature-drift: {amount: 0.31}}
          - {feature-drift: {amount: 0.30}}
          - no_data                   # too few events in this evaluation's window
          - {feature-drift: {amount: 0.02}, latency: 120}
        expect:
          - {at: 2, kind: opened, rule: feature-drift, severity: critical}
          - {at: 3, kind: opened, feature: __no_data__}
          - {at: 4, kind: resolved, feature: __no_data__}
          - {at: 4, kind: resolved, rule: feature-drift}

Values are ``{rule: {feature: value}}`` for column metrics and ``{rule: value}`` for
window metrics; ``null`` means the window held too little for that metric. ``at`` counts
evaluations from 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import ConfigDict
from watchkeeper.detectors.base import Finding
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.incident_model import NO_DATA, IncidentEvent
from watchkeeper.policies.loader import load_policy
from watchkeeper.policies.yamlsource import read_yaml, validate_document


class _Strict(pydantic.BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Expected(_Strict):
    at: int
    kind: Literal["opened", "escalated", "de-escalated", "updated", "resolved"]
    rule: str | None = None
    feature: str | None = None
    severity: Literal["warn", "critical"] | None = None
    members: list[str] | None = None


class Case(_Strict):
    name: str
    evaluations: list[dict[str, Any] | Literal["no_data"]]
    expect: list[Expected] = []


class TestFile(_Strict):
    policy: str
    reference_metrics: dict[str, float] = {}
    tests: list[Case]


@dataclass
class CaseResult:
    name: str
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _finding(model: str, metric: str, feature: str | None, value: Any) -> Finding:
    if value is None:
        return Finding(
            model,
            metric,
            feature,
            None,
            "insufficient_data",
            0,
            1,
            0,
            0,
            {"reason": "scripted: no data"},
        )
    return Finding(model, metric, feature, float(value), "ok", 0, 1, 10_000, 100_000, {})


def _matches(expected: Expected, at: int, event: IncidentEvent) -> bool:
    incident = event.incident
    checks = [
        expected.at == at,
        expected.kind == event.kind,
        expected.rule is None or expected.rule == incident.rule,
        expected.feature is None or expected.feature == incident.feature,
        expected.severity is None or expected.severity == incident.severity,
        expected.members is None or sorted(expected.members) == sorted(incident.members),
    ]
    return all(checks)


def _describe(at: int, event: IncidentEvent) -> str:
    i = event.incident
    feature = f" feature={i.feature}" if i.feature else ""
    return f"at={at} kind={event.kind} rule={i.rule}{feature} severity={i.severity}"


def run_case(engine: PolicyEngine, case: Case, reference: dict[str, float]) -> CaseResult:
    policy = engine.policy
    rules = {r.key: r for r in policy.rules}
    produced: list[tuple[int, IncidentEvent]] = []
    result = CaseResult(case.name)
    period_ms = int(engine.period_s * 1000)
    for at, step in enumerate(case.evaluations):
        now = at * period_ms
        if step == "no_data":
            produced += [(at, e) for e in engine.no_data(now, None, 0)]
            continue
        findings: dict[str, list[Finding]] = {}
        for rule_key, values in step.items():
            rule = rules.get(rule_key)
            if rule is None:
                result.failures.append(
                    f"evaluation {at}: the policy has no rule '{rule_key}' "
                    f"(rules: {', '.join(rules)})"
                )
                continue
            if isinstance(values, dict):
                findings[rule_key] = [
                    _finding(policy.model, rule.metric, f, v) for f, v in values.items()
                ]
            else:
                findings[rule_key] = [_finding(policy.model, rule.metric, None, values)]
        _, events = engine.step(findings, now, reference)
        produced += [(at, e) for e in events]
    unmatched = list(produced)
    for expected in case.expect:
        hit = next((p for p in unmatched if _matches(expected, *p)), None)
        if hit is None:
            result.failures.append(
                f"expected but not produced: {expected.model_dump(exclude_none=True)}"
            )
        else:
            unmatched.remove(hit)
    for at, event in unmatched:
        result.failures.append(f"produced but not expected: {_describe(at, event)}")
    return result


def run_file(path: str | Path) -> list[CaseResult]:
    """Every case of a policy test file (raises ``InvalidDocumentError`` for a bad file)."""
    spec = validate_document(TestFile, read_yaml(path))
    policy_path = Path(spec.policy)
    if not policy_path.is_absolute():
        policy_path = Path(path).parent / policy_path
    loaded = load_policy(policy_path)
    return [
        run_case(PolicyEngine(loaded.policy), case, spec.reference_metrics) for case in spec.tests
    ]


__all__ = ["NO_DATA", "CaseResult", "TestFile", "run_file"]
