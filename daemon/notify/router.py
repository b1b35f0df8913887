"""Routing incident events to the channels a rule names for their severity."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from watchkeeper.alerts.notification import Notification
from watchkeeper.daemon.config_alerts import RouteConfig
from watchkeeper.daemon.eventtime.windows import window_bounds
from watchkeeper.daemon.notify.silences import matches
from watchkeeper.detectors.registry import METRICS
from watchkeeper.policies.incident_model import IncidentEvent
from watchkeeper.policies.schema import Policy

ReportName = Callable[[str, int, int, str], str]
"""(model, start ms, end ms, reference) → the signed name of that window's report."""


def notification(
    event: IncidentEvent,
    policy: Policy,
    base_url: str | None,
    window_size_ms: int = 0,
    report_name: ReportName | None = None,
) -> Notification:
    i = event.incident
    links = {}
    if base_url:
        # the console's incident page (daemon/http/console.py): what fired, the plot of the
        # rule against its thresholds, the distributions, the silence form
        links["status"] = f"{base_url}/incidents/{i.fingerprint}"
        drift = i.metric in METRICS and METRICS[i.metric].scope == "column"
        if drift and window_size_ms and report_name is not None and event.kind != "resolved":
            # the report of the window that fired; the daemon makes it on the first visit
            start, end = window_bounds(event.at_ms, window_size_ms, int(policy.window * 1000))
            reference = policy.stored_reference()
            if reference is not None:
                name = report_name(i.model, start, end, reference)
                links["report"] = f"{base_url}/reports/{name}"
    return Notification(
        kind=event.kind,
        fingerprint=i.fingerprint,
        severity=i.severity,
        summary=i.summary,
        model=i.model,
        policy=i.policy,
        rule=i.rule,
        metric=i.metric,
        feature=i.feature,
        members=dict(i.members),
        at_ms=event.at_ms,
        opened_ms=i.opened_ms,
        note=event.note,
        labels=dict(policy.labels),
        links=links,
        bad_side=policy.bad_side_of(i.rule),
    )


class Router:
    """Sends each event to the channels of its rule's actions at the incident's severity.

    No-data and check-failure incidents (no rule actions of their own) go to every channel
    the policy's rules name, so a silent model or a broken check is never silent.
    """

    def __init__(
        self,
        base_url: str | None = None,
        routes: Sequence[RouteConfig] = (),
        window_size_ms: int = 0,
        report_name: ReportName | None = None,
    ) -> None:
        self.base_url = base_url
        self.window_size_ms = window_size_ms
        self.report_name = report_name
        self.routes = list(routes)

    def routed(self, note: Notification) -> list[str]:
        """Channels of the routes whose matchers all hold (first match, unless continue)."""
        out: list[str] = []
        for route in self.routes:
            if matches(route.match, note):
                out += route.channels
                if not route.continue_:
                    break
        return out

    def targets(self, rule_key: str, severity: str, policy: Policy) -> list[str]:
        rule = policy.rule(rule_key)
        if rule is not None:
            actions = rule.actions
            names = actions.critical if severity == "critical" else actions.warn
            return sorted(set(names))
        every = {n for r in policy.rules for n in (*r.actions.warn, *r.actions.critical)}
        return sorted(every)

    def channels(self, note: Notification, policy: Policy) -> list[str]:
        """The rule's actions at the notification's severity, plus the matching routes."""
        return sorted(set(self.targets(note.rule, note.severity, policy)) | set(self.routed(note)))

    def plan_decision(
        self, note: Notification, targets: Sequence[str]
    ) -> list[tuple[str, Notification]]:
        """(channel, notification) for a shadow promotion decision: the channels its
        policy's ``promotion.on_promote`` / ``on_reject`` name, plus the matching routes."""
        return [(name, note) for name in sorted(set(targets) | set(self.routed(note)))]

    def plan(self, event: IncidentEvent, policy: Policy) -> list[tuple[str, Notification]]:
        """(channel, notification) for each channel this event goes to."""
        note = notification(event, policy, self.base_url, self.window_size_ms, self.report_name)
        names = set(self.channels(note, policy))
        peak = event.incident.peak
        if event.kind in ("de-escalated", "resolved") and peak and peak != note.severity:
            # the channels told when it was at its worst must hear that it eased or ended
            names |= set(self.targets(note.rule, peak, policy))
        return [(name, note) for name in sorted(names)]
