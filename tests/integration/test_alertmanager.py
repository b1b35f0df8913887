"""Incidents pushed to a real Alertmanager (Debian's prometheus-alertmanager)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from watchkeeper.alerts.alertmanager import AlertmanagerChannel
from watchkeeper.alerts.notification import Notification
from watchkeeper.daemon.notify.delivery import OutboxState
from watchkeeper.daemon.notify.outbox import Outbox
from watchkeeper.daemon.store.store import Store

from tests.support import wait_until


def alerts(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(url + "/api/v2/alerts", timeout=5) as resp:
        return list(json.loads(resp.read()))


def note(kind: str) -> Notification:
    return Notification(
        kind=kind,
        fingerprint="fp-am",
        severity="critical",
        summary="psi 0.41 >= 0.25 on fraud.amount (critical)",
        model="fraud",
        policy="fraud",
        rule="feature-drift",
        metric="psi",
        feature="amount",
        members={"amount": 0.41},
        at_ms=int(time.time() * 1000),
        opened_ms=int(time.time() * 1000) - 60_000,
        labels={"team": "payments"},
        links={
            "status": "http://127.0.0.1:8450/incidents/0123456789abcdef",
            "report": "http://127.0.0.1:8450/reports/r.html",
        },
    )


def test_firing_then_resolved_in_a_real_alertmanager(alertmanager: str, tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        state = OutboxState(Outbox(store.engine), "am")
        # the channel's clock, moved by the test (Alertmanager itself runs on the wall clock:
        # the clock starts at the wall clock's now and only moves ahead)
        now = [time.time()]
        channel = AlertmanagerChannel(
            "am",
            alertmanager,
            state=state,
            resend_interval_s=1.0,
            resolved_resend_s=2.0,
            clock=lambda: now[0],
        )
        channel.send(note("opened"))
        (active,) = alerts(alertmanager)
        assert active["status"]["state"] == "active"
        assert active["labels"] == {
            "alertname": "watchkeeper_feature_drift",
            "model": "fraud",
            "feature": "amount",
            "severity": "critical",
            "policy": "fraud",
            "source": "watchkeeper",
            "team": "payments",
        }
        assert active["annotations"]["summary"].startswith("psi 0.41 >= 0.25 on fraud.amount")
        assert active["annotations"]["report_url"].endswith("/reports/r.html")
        assert active["generatorURL"] == "http://127.0.0.1:8450/incidents/0123456789abcdef"
        first_end = active["endsAt"]
        now[0] += 1.1
        # a restarted daemon re-sends from the durable state, pushing endsAt ahead
        again = AlertmanagerChannel(
            "am",
            alertmanager,
            state=state,
            resend_interval_s=1.0,
            resolved_resend_s=2.0,
            clock=lambda: now[0],
        )
        again.refresh()
        (active,) = alerts(alertmanager)
        assert active["endsAt"] > first_end
        again.send(note("resolved"))
        # ended at the channel's now: Alertmanager stops showing it once its own clock is there
        wait_until(lambda: alerts(alertmanager) == [], timeout=10)
        now[0] += 2.1
        again.refresh()  # past resolved_resend: forgotten by the channel too
        assert state.get("__active__") == {}
