"""Rule evaluation and the incident lifecycle: findings in, evaluations and incident events out.

Per rule and feature (a *member*) the engine keeps a small state machine::

    ok ──breach──▶ pending ──breach × for──▶ firing ──clear × for──▶ ok
                     │                         │
                     └──────no breach──────────┘ (back to ok, streak reset)

A *breach* is a value past the warn (or critical) threshold; a *clear* is a value back
past the resolve threshold (hysteresis: between the two, a firing member holds). A rule
over many features raises one incident for all of them (a digest, "3 features drifted on
fraud"), its segments' members included ("amount drifted on fraud in 3 segments"),
unless it says ``group: segment`` (a digest per segment) or ``group: feature``
(policies/digest.py). A window with too little data, and a check that fails, raise
incidents of their own and leave the drift members as they were.

Incident events are emitted on transitions only (opened, escalated / de-escalated,
members changed, resolved): one incident is one notification stream, never one message
per evaluation. The engine is pure: time comes in as ``at_ms``, state goes out as a dict.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from watchkeeper.detectors.base import Finding
from watchkeeper.policies.digest import digest_groups, digest_summary
from watchkeeper.policies.incident_model import (
    ERROR,
    NO_DATA,
    CandidateIncident,
    Decision,
    Evaluation,
    EventKind,
    Incident,
    IncidentEvent,
    Member,
    SpecialIncident,
    candidate_incident,
    candidate_of,
    fingerprint,
)
from watchkeeper.policies.rule_thresholds import Thresholds, rule_thresholds
from watchkeeper.policies.schema import Policy, Rule, Severity
from watchkeeper.policies.segments import is_digest
from watchkeeper.policies.summaries import (
    duration_text,
    hhmm,
    incident_summary,
    resolved_summary,
)

_RANK = {None: 0, "warn": 1, "critical": 2}


class PolicyEngine:
    """State of one policy's rules and incidents; see the module docstring."""

    def __init__(self, policy: Policy, period_s: float | None = None) -> None:
        self.policy = policy
        self.period_s = period_s if period_s is not None else policy.schedule.period_s()
        self.members: dict[str, Member] = {}
        self.incidents: dict[str, Incident] = {}

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "members": {k: asdict(m) for k, m in self.members.items()},
            "incidents": {k: asdict(i) for k, i in self.incidents.items()},
        }

    def load_state(self, data: dict[str, Any]) -> None:
        self.members = {k: Member(**m) for k, m in data.get("members", {}).items()}
        self.incidents = {k: Incident(**i) for k, i in data.get("incidents", {}).items()}

    # -- evaluation ---------------------------------------------------------------------------
    def step(
        self,
        findings: dict[str, list[Finding]],
        at_ms: int,
        reference_metrics: dict[str, float] | None = None,
    ) -> tuple[list[Evaluation], list[IncidentEvent]]:
        """Apply every rule to its findings (``findings[rule.key]``) at time ``at_ms``."""
        evaluations: list[Evaluation] = []
        events: list[IncidentEvent] = []
        events += self._resolve_special(NO_DATA, None, at_ms, "data is back")
        for rule in self.policy.rules:
            rule_findings = findings.get(rule.key, [])
            errors = [f for f in rule_findings if f.status == "error"]
            if errors:
                reason = "; ".join(
                    f"{f.feature or rule.metric}: {f.details.get('reason', '')}" for f in errors[:3]
                )
                events += self._open_special(
                    ERROR, rule, at_ms, "critical", f"check {rule.metric} failed: {reason}"
                )
            else:
                events += self._resolve_special(ERROR, rule, at_ms, "the check runs again")
            for finding in rule_findings:
                evaluation = self._apply(
                    rule, finding, at_ms, reference_metrics or {}, len(rule_findings)
                )
                evaluations.append(evaluation)
            events += self._incident_events(rule, at_ms)
        return evaluations, events

    def candidate_failures(self, failures: dict[str, str], at_ms: int) -> list[IncidentEvent]:
        """Open an incident per disabled shadow candidate (``failures``: name → reason);
        resolve those of candidates that run again or left the policy."""
        shadow = self.policy.shadow
        names = [c.name for c in shadow.candidates] if shadow is not None else []
        events: list[IncidentEvent] = []
        for name in names:
            kind = candidate_incident(name)
            if name in failures:
                summary = (
                    f"shadow candidate {name} of {self.policy.model} disabled: {failures[name]}"
                )
                events += self._open_special(kind, None, at_ms, "warn", summary)
            else:
                events += self._resolve_special(kind, None, at_ms, "the candidate runs again")
        for incident in list(self.incidents.values()):
            gone = candidate_of(incident.feature)
            if gone is not None and gone not in names:
                events += self._resolve_special(
                    candidate_incident(gone), None, at_ms, "no longer a candidate"
                )
        return events

    def no_data(self, at_ms: int, since_ms: int | None, events_seen: int) -> list[IncidentEvent]:
        """The window held too little to judge: one incident of its own, drift left as is."""
        since = "" if since_ms is None else f" since {hhmm(since_ms)}"
        summary = (
            f"no data for {self.policy.model}{since}: {events_seen} events in the last "
            f"{duration_text(self.policy.window)} (< {self.policy.min_samples})"
        )
        return self._open_special(NO_DATA, None, at_ms, "warn", summary)

    def _apply(
        self,
        rule: Rule,
        finding: Finding,
        at_ms: int,
        reference: dict[str, float],
        features_checked: int,
    ) -> Evaluation:
        key = fingerprint(self.policy.key, rule.key, finding.feature)
        member = self.members.setdefault(key, Member(rule.key, finding.feature or ""))

        def record(decision: Decision, t: Thresholds | None, reason: str = "") -> Evaluation:
            return Evaluation(
                at_ms,
                self.policy.key,
                self.policy.model,
                rule.key,
                rule.metric,
                finding.feature,
                finding.value,
                t.warn if t else None,
                t.critical if t else None,
                t.resolve if t else None,
                decision,
                member.severity,
                member.state,
                finding.n_current,
                reason,
            )

        if finding.status != "ok" or finding.value is None:
            reason = str(finding.details.get("reason", finding.status))
            status: Decision = "error" if finding.status == "error" else "insufficient_data"
            return record(status, None, reason)
        t = rule_thresholds(rule, finding, reference, self.period_s, features_checked)
        if isinstance(t, str):
            return record("insufficient_data", None, t)
        value = finding.value
        severity = t.severity(value)
        member.value = value
        if severity is not None:
            member.breaches += 1
            member.clears = 0
            member.threshold = t.critical if severity == "critical" else t.warn
            if member.state == "firing":
                member.severity = severity
            elif member.breaches >= rule.for_:
                member.state, member.severity = "firing", severity
            else:
                member.state = "pending"
            return record("breach", t)
        member.breaches = 0
        if member.state == "firing":
            if t.cleared(value):
                member.clears += 1
                if member.clears >= rule.for_:
                    member.state, member.severity, member.clears = "ok", None, 0
                return record("clear", t)
            member.clears = 0
            return record("hold", t)  # between resolve and warn: hysteresis holds it
        member.state = "ok"
        return record("ok", t)

    # -- incidents ----------------------------------------------------------------------------
    def _incident_events(self, rule: Rule, at_ms: int) -> list[IncidentEvent]:
        firing = {m.feature: m for m in self.members.values() if m.rule == rule.key}
        firing = {feature: m for feature, m in firing.items() if m.state == "firing"}
        if rule.grouped():  # digests: one for the rule, or one per segment (digest.py)
            groups = digest_groups(firing, by_segment=rule.group == "segment")
        else:
            groups = {feature: {feature: m} for feature, m in firing.items()}
        # every open incident of the rule is synced too: one whose members stopped firing
        # resolves, and so do those of another grouping (the rule's group changed)
        events: list[IncidentEvent] = []
        for key in sorted(set(groups) | self._open_slots(rule)):
            events += self._sync(rule, key, groups.get(key, {}), at_ms)
        return events

    def _open_slots(self, rule: Rule) -> set[str]:
        return {
            i.feature or ""
            for i in self.incidents.values()
            if i.rule == rule.key and i.feature not in (ERROR, NO_DATA)
        }

    def _sync(
        self, rule: Rule, feature: str, firing: dict[str, Member], at_ms: int
    ) -> list[IncidentEvent]:
        key = fingerprint(self.policy.key, rule.key, feature)
        incident = self.incidents.get(key)
        if not firing:
            if incident is None:
                return []
            del self.incidents[key]
            # say where the values are now, not the last firing comparison ("47 >= 150")
            now: dict[str, float | None] = {}
            for f in incident.members:
                member = self.members.get(fingerprint(self.policy.key, rule.key, f))
                now[f] = member.value if member is not None else None
            incident.summary = resolved_summary(self.policy, rule, now)
            return [IncidentEvent("resolved", incident, at_ms)]
        severity: Severity = max(
            (m.severity or "warn" for m in firing.values()), key=lambda s: _RANK[s]
        )
        members = {f: m.value for f, m in firing.items()}
        summary = (
            digest_summary(self.policy, rule, members, severity)
            if is_digest(feature)
            else incident_summary(self.policy, rule, members, firing, severity)
        )
        if incident is None:
            incident = Incident(
                key,
                self.policy.key,
                self.policy.model,
                rule.key,
                None if feature == "" else feature,
                rule.metric,
                severity,
                at_ms,
                members,
                summary,
                peak=severity,
            )
            self.incidents[key] = incident
            return [IncidentEvent("opened", incident, at_ms)]
        kind: EventKind | None = None
        if severity != incident.severity:
            kind = "escalated" if _RANK[severity] > _RANK[incident.severity] else "de-escalated"
        elif set(members) != set(incident.members):
            kind = "updated"
        incident.peak = max(incident.peak or incident.severity, severity, key=lambda x: _RANK[x])
        incident.severity, incident.members, incident.summary = severity, members, summary
        return [IncidentEvent(kind, incident, at_ms)] if kind else []

    def _open_special(
        self,
        kind: SpecialIncident | CandidateIncident,
        rule: Rule | None,
        at_ms: int,
        severity: Severity,
        summary: str,
    ) -> list[IncidentEvent]:
        rule_key = rule.key if rule else ""
        key = fingerprint(self.policy.key, rule_key, kind)
        incident = self.incidents.get(key)
        if incident is not None:
            incident.summary = summary
            return []
        incident = Incident(
            key,
            self.policy.key,
            self.policy.model,
            rule_key,
            kind,
            rule.metric if rule else "",
            severity,
            at_ms,
            {},
            summary,
        )
        self.incidents[key] = incident
        return [IncidentEvent("opened", incident, at_ms)]

    def _resolve_special(
        self, kind: SpecialIncident | CandidateIncident, rule: Rule | None, at_ms: int, note: str
    ) -> list[IncidentEvent]:
        key = fingerprint(self.policy.key, rule.key if rule else "", kind)
        incident = self.incidents.pop(key, None)
        if incident is None:
            return []
        return [IncidentEvent("resolved", incident, at_ms, note)]

    def reconcile(self, policy: Policy, at_ms: int, note: str | None = None) -> list[IncidentEvent]:
        """Take a new version of the policy; incidents of removed rules resolve with a note."""
        keep = {r.key for r in policy.rules}
        events = []
        for key, incident in list(self.incidents.items()):
            if incident.rule and incident.rule not in keep:
                del self.incidents[key]
                events.append(
                    IncidentEvent(
                        "resolved",
                        incident,
                        at_ms,
                        note or f"rule '{incident.rule}' was removed from the policy",
                    )
                )
        self.members = {k: m for k, m in self.members.items() if m.rule in keep}
        self.policy = policy
        self.period_s = policy.schedule.period_s()
        return events
