"""What A/B incidents say, and when they end: the summary of every open ``ab_*``
incident is the sentence of its latest finding; the incidents of a pair no longer in
force resolve with a note."""

from __future__ import annotations

from watchkeeper.daemon.checks.ab_promotion import pair_label
from watchkeeper.detectors.ab_metrics import AB_METRICS
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.incident_model import IncidentEvent, fingerprint
from watchkeeper.policies.schema import Policy


def describe(
    policy: Policy,
    engine: PolicyEngine,
    events: list[IncidentEvent],
    at_ms: int,
    in_force: tuple[str, str] | None,
    texts: dict[tuple[str, str, str], str],
    resolve: bool = True,
) -> None:
    """Say in every open ``ab_*`` incident's summary what its numbers mean (every
    channel shows the summary): "fraud: version 4 is 1.2 points less accurate than 3,
    95 % CI [−1.9, −0.5], over …", as of this look; resolve (appending the events)
    the incidents of a pair no longer in force (``compare: latest`` moved on, or the
    section named other versions or went away) when ``resolve``: the caller passes it
    only when this tick's look found ``in_force`` (or there is no compare section)."""
    current = pair_label(*in_force) if in_force is not None else None
    for key, incident in list(engine.incidents.items()):
        if not resolve or incident.metric not in AB_METRICS or incident.feature in (None, current):
            continue
        del engine.incidents[key]
        engine.members.pop(fingerprint(policy.key, incident.rule, incident.feature), None)
        now = f"now {current}" if current else "no comparison in force"
        events.append(
            IncidentEvent(
                "resolved", incident, at_ms, f"the A/B pair is no longer in force ({now})"
            )
        )
    if resolve:  # the sentences of pairs no longer in force are not needed any more
        for k in [k for k in texts if k[0] == policy.key and k[2] != (current or "")]:
            del texts[k]
    incidents = {id(e.incident): e.incident for e in events if e.kind != "resolved"}
    incidents |= {id(i): i for i in engine.incidents.values()}
    for incident in incidents.values():
        if incident.metric not in AB_METRICS:
            continue
        text = texts.get((incident.policy, incident.rule, incident.feature or ""))
        if text:
            incident.summary = f"{policy.model}: {text} ({incident.metric} {incident.severity})"
