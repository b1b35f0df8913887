"""Notifications, incident events and the policy that routes them, as the notify tests
build them (pure values: no broker, no store)."""

from __future__ import annotations

from watchkeeper.alerts.notification import Notification
from watchkeeper.policies.incident_model import Incident, IncidentEvent
from watchkeeper.policies.schema import Policy

POLICY = Policy.model_validate(
    {
        "model": "fraud",
        "labels": {"team": "payments"},
        "rules": [
            {
                "name": "drift",
                "metric": "psi",
                "critical": 0.25,
                "warn": 0.1,
                "actions": {"critical": ["oncall"], "warn": ["console"]},
            }
        ],
    }
)


def note(fingerprint: str, kind: str, at: int) -> Notification:
    return Notification(
        kind=kind,
        fingerprint=fingerprint,
        severity="critical",
        summary=f"{fingerprint} {kind} {at}",
        model="fraud",
        policy="fraud",
        rule="drift",
        metric="psi",
        feature="*",
        members={"amount": 0.3},
        at_ms=at,
        opened_ms=0,
    )


def event(severity: str = "critical", kind: str = "opened", at: int = 0) -> IncidentEvent:
    return IncidentEvent(
        kind,
        Incident(
            "fp",
            "fraud",
            "fraud",
            "drift",
            "amount",
            "psi",  # type: ignore[arg-type]
            severity,
            at,
            {"amount": 0.3},
            "psi 0.3 on fraud",
        ),
        at,
    )
