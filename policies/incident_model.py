"""What the policy engine produces and keeps: evaluations (why a rule did or did not
fire), incidents and their members, incident events, and the names of incidents that are
not one metric's on one feature (no data, a failed check, a disabled shadow candidate).

Plain values: the notify layer stores and routes them, the console shows them, and
:mod:`watchkeeper.policies.engine` makes them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Final, Literal, NewType

from watchkeeper.policies.schema import Severity

Decision = Literal["breach", "clear", "hold", "ok", "insufficient_data", "error"]
EventKind = Literal["opened", "escalated", "de-escalated", "updated", "resolved"]
# Incidents that are not one metric's on one feature: their "feature" slot (part of the
# fingerprint, stored as is) names what they are about.
SpecialIncident = Literal["__no_data__", "__error__"]
NO_DATA: Final[SpecialIncident] = "__no_data__"
"""The window held too little to judge (one per policy)."""
ERROR: Final[SpecialIncident] = "__error__"
"""A rule's check failed (one per rule)."""
DIGEST: Final = "*"
"""A digest rule's one incident over all its features."""
CandidateIncident = NewType("CandidateIncident", str)
"""A disabled shadow candidate (one per candidate): :func:`candidate_incident`."""
_CANDIDATE_PREFIX: Final = "__candidate__:"


def candidate_incident(candidate: str) -> CandidateIncident:
    """The feature slot of the incident of a disabled shadow candidate."""
    return CandidateIncident(f"{_CANDIDATE_PREFIX}{candidate}")


def candidate_of(feature: str | None) -> str | None:
    """The candidate a disabled-candidate incident is about; None for any other incident.

    >>> candidate_of(candidate_incident("int8")), candidate_of("amount")
    ('int8', None)
    """
    if feature is None or not feature.startswith(_CANDIDATE_PREFIX):
        return None
    return feature.removeprefix(_CANDIDATE_PREFIX)


def fingerprint(policy: str, rule: str, feature: str | None) -> str:
    """Stable across restarts and reloads: the same (policy, rule, feature) is one incident."""
    return hashlib.sha256(f"{policy}\x00{rule}\x00{feature or ''}".encode()).hexdigest()[:16]


@dataclass
class Member:
    rule: str
    feature: str
    state: Literal["ok", "pending", "firing"] = "ok"
    severity: Severity | None = None
    breaches: int = 0
    clears: int = 0
    value: float | None = None
    threshold: float | None = None


@dataclass
class Incident:
    fingerprint: str
    policy: str
    model: str
    rule: str
    feature: str | None
    metric: str
    severity: Severity
    opened_ms: int
    members: dict[str, float | None] = field(default_factory=dict)
    summary: str = ""
    peak: Severity | None = None
    """The highest severity it reached: its de-escalation and resolution go to the
    channels that heard of it then (None: its severity)."""


@dataclass(frozen=True)
class Evaluation:
    """One rule applied to one finding: the answer to "why did (not) this fire"."""

    at_ms: int
    policy: str
    model: str
    rule: str
    metric: str
    feature: str | None
    value: float | None
    warn: float | None
    critical: float | None
    resolve: float | None
    decision: Decision
    severity: Severity | None
    state: str
    n_current: int
    reason: str = ""


@dataclass(frozen=True)
class IncidentEvent:
    """A change of an incident, with a snapshot of the incident as it is after the change
    (the engine keeps mutating its own copy as later evaluations arrive)."""

    kind: EventKind
    incident: Incident
    at_ms: int
    note: str = ""

    def __post_init__(self) -> None:
        snapshot = replace(self.incident, members=dict(self.incident.members))
        object.__setattr__(self, "incident", snapshot)  # frozen: set once, at creation
