"""Signed webhooks through the durable outbox: verified signatures, outages, restarts,
give-up, and every notification delivered once and in order per incident."""

from __future__ import annotations

import base64
import io
import logging
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from watchkeeper.alerts.console import ConsoleChannel
from watchkeeper.alerts.notification import Notification
from watchkeeper.alerts.retry import RetryPolicy
from watchkeeper.alerts.webhook import SCHEMA, WebhookChannel
from watchkeeper.daemon.notify.delivery import DeliveryWorker
from watchkeeper.daemon.notify.outbox import Outbox
from watchkeeper.daemon.store.store import Store

from tests.notifications import note
from tests.support import SECRET, Receiver


def deliver_all(worker: DeliveryWorker, outbox: Outbox, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while any(r["state"] == "pending" for r in outbox.rows()):
        assert time.monotonic() < deadline, outbox.rows()
        worker.deliver_due()
        time.sleep(0.02)


FAST = RetryPolicy(base=0.01, cap=0.05, give_up_after=60.0, jitter=False)


def test_signed_payload_and_a_tampered_one_is_rejected(receiver: Receiver) -> None:
    channel = WebhookChannel("retrain", receiver.url, SECRET)
    n = Notification.from_dict({**note("fp1", "opened", 1000).to_dict(), "delivery_id": "wk-7"})
    channel.send(n)
    (body,) = receiver.received
    assert body["schema"] == SCHEMA and body["id"] == "wk-7" and body["type"] == "incident.opened"
    assert body["incident"]["fingerprint"] == "fp1" and body["incident"]["state"] == "firing"
    forged = WebhookChannel(
        "retrain", receiver.url, "whsec_" + base64.b64encode(b"x" * 24).decode()
    )
    with pytest.raises(Exception, match="HTTP 401"):
        forged.send(n)
    assert receiver.rejected == 1 and len(receiver.received) == 1


@pytest.mark.parametrize("bad_side", ["above", "below"])
def test_the_payload_says_which_end_of_members_is_worst(receiver: Receiver, bad_side: str) -> None:
    """``members`` is a JSON object, unordered: ``bad_side`` tells a receiver whether the
    highest value is the worst (psi) or the lowest (accuracy)."""
    channel = WebhookChannel("retrain", receiver.url, SECRET)
    data = note("fp1", "opened", 1000).to_dict()
    members = {"[country=DE]": 0.6, "[country=FR]": 0.9}
    n = {**data, "members": members, "bad_side": bad_side, "delivery_id": "wk-8"}
    channel.send(Notification.from_dict(n))
    (body,) = receiver.received
    assert body["incident"]["bad_side"] == bad_side
    assert body["incident"]["members"] == members


def test_outage_then_recovery_delivers_each_once_and_in_order(
    receiver: Receiver, store_url: str
) -> None:
    with Store.open(store_url) as store:
        outbox = Outbox(store.engine)
        now = int(time.time() * 1000)
        for i in range(4):
            outbox.add(
                [
                    ("retrain", note("a", "opened" if i == 0 else "updated", i)),
                    ("retrain", note("b", "opened" if i == 0 else "updated", i)),
                ],
                now,
            )
        receiver.fail_next = 5  # the far end is down for a while
        worker = DeliveryWorker(
            outbox,
            {"retrain": WebhookChannel("retrain", receiver.url, SECRET)},
            CollectorRegistry(),
            FAST,
        )
        deliver_all(worker, outbox)
        ids = [b["id"] for b in receiver.received]
        assert len(ids) == len(set(ids)) == 8  # exactly once by idempotency key
        for incident in ("a", "b"):
            ats = [
                b["incident"]["summary"]
                for b in receiver.received
                if b["incident"]["fingerprint"] == incident
            ]
            assert ats == [
                f"{incident} {'opened' if i == 0 else 'updated'} {i}" for i in range(4)
            ]  # in order per incident
        assert all(r["state"] == "sent" for r in outbox.rows())
        assert sum(r["attempts"] for r in outbox.rows()) == 8 + 5


def test_a_restart_resumes_what_was_not_sent(receiver: Receiver, store_url: str) -> None:
    with Store.open(store_url) as store:
        outbox = Outbox(store.engine)
        outbox.add(
            [("retrain", note("a", "updated", i)) for i in range(6)], int(time.time() * 1000)
        )
        first = DeliveryWorker(
            outbox,
            {"retrain": WebhookChannel("retrain", receiver.url, SECRET)},
            CollectorRegistry(),
            FAST,
        )
        first.deliver_due()  # one round: only the head of the incident's queue goes out
        assert len(receiver.received) == 1
    with Store.open(store_url) as store:  # "the daemon restarted"
        outbox = Outbox(store.engine)
        second = DeliveryWorker(
            outbox,
            {"retrain": WebhookChannel("retrain", receiver.url, SECRET)},
            CollectorRegistry(),
            FAST,
        )
        deliver_all(second, outbox)
    ids = [b["id"] for b in receiver.received]
    assert len(ids) == len(set(ids)) == 6


def test_give_up_is_itself_alerted_and_4xx_is_final(
    receiver: Receiver, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        outbox = Outbox(store.engine)
        receiver.fail_next = 10_000
        stream = io.StringIO()
        channels = {
            "retrain": WebhookChannel("retrain", receiver.url, SECRET),
            "console": ConsoleChannel("console", stream=stream),
        }
        worker = DeliveryWorker(
            outbox,
            channels,
            CollectorRegistry(),
            RetryPolicy(base=0.01, cap=0.02, give_up_after=0.3, jitter=False),
            failure_channels=("console",),
        )
        outbox.add([("retrain", note("a", "opened", 0))], int(time.time() * 1000))
        with caplog.at_level(logging.ERROR):
            deliver_all(worker, outbox)
        rows = outbox.rows()
        assert [(r["channel"], r["state"]) for r in rows] == [
            ("retrain", "failed"),
            ("console", "sent"),
        ]
        assert "could not deliver to retrain" in stream.getvalue()
        assert "gave up delivering a to retrain" in caplog.text
        receiver.fail_next, receiver.fail_status = 1, 400
        outbox.add([("retrain", note("b", "opened", 0))], int(time.time() * 1000))
        deliver_all(worker, outbox)
        (last,) = [
            r for r in outbox.rows() if r["fingerprint"] == "b" and r["channel"] == "retrain"
        ]
        assert (last["state"], last["attempts"], last["last_error"]) == ("failed", 1, "HTTP 400")
