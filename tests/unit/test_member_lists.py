"""How Slack and the console list a digest's members: worst first on the rule's bad side
(as the digest's summary orders them), under a heading that fits the metric."""

from __future__ import annotations

import json

from watchkeeper.alerts.console import render
from watchkeeper.alerts.notification import Notification, worst_members
from watchkeeper.alerts.slack import blocks
from watchkeeper.daemon.notify.router import notification
from watchkeeper.policies.engine import PolicyEngine

from tests.unit.test_digest import policy, step

# an accuracy digest over 14 segments (bad side: below), C00 worst at 0.50
ACCURACY = {f"[country=C{i:02d}]": 0.50 + i / 100 for i in range(14)}


def _members_section(n: Notification) -> str:
    (text,) = [
        b["text"]["text"]
        for b in blocks(n)
        if b["type"] == "section" and "text" in b and "•" in b["text"]["text"]
    ]
    return str(text)


def test_a_below_metric_lists_its_lowest_members_first_in_slack_and_the_console() -> None:
    engine = PolicyEngine(policy(metric="accuracy", critical=0.8, group="rule"))
    (event,) = step(engine, ACCURACY, 0)
    assert event.incident.summary.startswith(
        "accuracy critical on fraud in 14 segments: country=C00 0.5"
    )
    note = notification(event, engine.policy, None)
    assert note.bad_side == "below"
    slack = _members_section(note)
    listed = [line.split("`")[1] for line in slack.splitlines() if line.startswith("•")]
    assert listed == [f"[country=C{i:02d}]" for i in range(10)]  # the ten worst, worst first
    assert slack.startswith("*Worst segments (accuracy, lowest first)*")
    assert slack.endswith("…and 4 more")
    console = render(note)
    assert "Worst segments (accuracy, lowest first): [country=C00]=0.5, [country=C01]=0.51" in (
        console
    )
    assert "C13" not in console and "and 4 more" in console
    # the order survives the outbox (a JSON round trip, as redelivery reads it)
    again = Notification.from_dict(json.loads(json.dumps(note.to_dict())))
    assert worst_members(again) == worst_members(note)


def test_an_above_metric_lists_its_highest_first_and_reads_as_drift() -> None:
    engine = PolicyEngine(policy(critical=0.25))
    fired = {f"f{i:02d}": 0.30 + i / 100 for i in range(12)}
    (event,) = step(engine, fired, 0)
    note = notification(event, engine.policy, None)
    assert note.bad_side == "above"
    slack = _members_section(note)
    assert slack.startswith("*Top drifted features*\n• `f11` 0.41\n• `f10` 0.4")
    assert "f00" not in slack and "f01" not in slack and slack.endswith("…and 2 more")
    assert "Top drifted features: f11=0.41, f10=0.4" in render(note)


def test_members_without_a_value_come_last_and_the_whole_window_is_named() -> None:
    note = Notification(
        "opened",
        "fp",
        "warn",
        "s",
        "fraud",
        "p",
        "r",
        "traffic_ratio",
        "*",
        {"": 0.9, "[country=DE]": None, "[country=FR]": 0.2},
        0,
        0,
        bad_side="below",
    )
    slack = _members_section(note)
    assert slack.splitlines()[1:] == ["• `[country=FR]` 0.2", "• `overall` 0.9", "• `[country=DE]`"]
    assert "[country=FR]=0.2, overall=0.9, [country=DE]" in render(note)
