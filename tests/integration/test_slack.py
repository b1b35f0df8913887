"""slack-sdk's real client against a local server that answers like Slack's Web API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from watchkeeper.alerts.errors import DeliveryError
from watchkeeper.alerts.notification import Notification
from watchkeeper.alerts.retry import RetryPolicy
from watchkeeper.alerts.slack import SlackChannel
from watchkeeper.daemon.notify.delivery import DeliveryWorker, OutboxState
from watchkeeper.daemon.notify.outbox import Outbox
from watchkeeper.daemon.store.store import Store

from tests.support import TOKEN, FakeSlack


def note(
    kind: str, severity: str = "critical", members: dict[str, float | None] | None = None
) -> Notification:
    return Notification(
        kind=kind,
        fingerprint="fp-1",
        severity=severity,
        summary=("resolved: " if kind == "resolved" else "") + "3 features drifted on fraud",
        model="fraud",
        policy="fraud",
        rule="feature-drift",
        metric="psi",
        feature="*",
        members=members or {"amount": 0.41, "age": 0.3, "country": 0.27},
        at_ms=1_795_255_200_000,
        opened_ms=1_795_255_200_000,
        links={
            "report": "http://wk/reports/r.html",
            "status": "http://wk/incidents/0123456789abcdef",
        },
    )


def test_one_incident_is_one_message_updated_in_place_with_a_thread(
    slack: FakeSlack, store_url: str
) -> None:
    with Store.open(store_url) as store:
        outbox = Outbox(store.engine)
        channel = SlackChannel(
            "oncall",
            token=TOKEN,
            channel="#ml-critical",
            channel_by_severity={"warn": "#ml-warn"},
            state=OutboxState(outbox, "oncall"),
            base_url=slack.api,
        )
        slack.ratelimit_next = 1  # the first call meets a 429 with Retry-After
        channel.send(note("opened"))
        channel.send(note("updated", members={"amount": 0.5}))
        channel.send(note("resolved"))
        methods = [(m, b.get("channel"), "thread_ts" in b) for m, b in slack.calls]
        assert methods == [
            ("chat.postMessage", "#ml-critical", False),
            ("chat.update", "C123", False),
            ("chat.postMessage", "C123", True),
            ("chat.update", "C123", False),
            ("chat.postMessage", "C123", True),
        ]
        first = slack.calls[0][1]
        texts = json.dumps(first["blocks"])
        assert ":red_circle: CRITICAL: 3 features drifted on fraud" in texts
        assert "Top drifted features" in texts and "`amount` 0.41" in texts
        assert "http://wk/reports/r.html" in texts and "*Model*\\nfraud" in texts
        assert all(b.get("ts") == "1700000000.000001" for m, b in slack.calls if m == "chat.update")
        assert "RESOLVED" in json.dumps(slack.calls[3][1]["blocks"])
        # a restarted daemon still edits the same message: the ts is in the store
        again = SlackChannel(
            "oncall",
            token=TOKEN,
            channel="#ml-critical",
            state=OutboxState(Outbox(store.engine), "oncall"),
            base_url=slack.api,
        )
        again.send(note("escalated"))
        assert slack.calls[-2][0] == "chat.update" and slack.calls[-2][1]["ts"].endswith("000001")


def test_invalid_auth_is_final_and_rate_limits_are_retried(slack: FakeSlack, tmp_path: Any) -> None:
    bad = SlackChannel("oncall", token="xoxb-wrong", channel="#x", base_url=slack.api)
    with pytest.raises(DeliveryError) as info:
        bad.send(note("opened"))
    assert not info.value.retriable and "invalid_auth" in info.value.reason
    assert "xoxb-wrong" not in str(info.value)
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        outbox = Outbox(store.engine)
        slack.ratelimit_next = 10  # more 429s than slack-sdk retries: the outbox retries
        good = SlackChannel(
            "oncall",
            token=TOKEN,
            channel="#x",
            state=OutboxState(outbox, "oncall"),
            base_url=slack.api,
        )
        worker = DeliveryWorker(
            outbox,
            {"oncall": good},
            CollectorRegistry(),
            RetryPolicy(base=0.01, cap=0.05, jitter=False),
        )
        import time

        outbox.add([("oncall", note("opened"))], int(time.time() * 1000))
        deadline = time.monotonic() + 60
        while outbox.rows()[0]["state"] == "pending":
            assert time.monotonic() < deadline
            worker.deliver_due()
            time.sleep(0.05)
        (row,) = outbox.rows()
        assert row["state"] == "sent" and row["attempts"] > 1


def test_incoming_webhook_posts_only(slack: FakeSlack) -> None:
    hook = SlackChannel("hook", webhook_url=slack.api.replace("/api/", "/hook"))
    hook.send(note("opened"))
    hook.send(note("resolved"))
    assert len(slack.webhook_posts) == 2
    assert "RESOLVED" in slack.webhook_posts[1]["text"]
