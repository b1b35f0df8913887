"""Routing by labels and severities, report links, noise control (group_wait,
group_interval), heartbeat and reminders: the notify layer's decisions, without a server
(the store is a file-backed SQLite; moved from tests/integration, unchanged)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from watchkeeper.daemon.checks.housekeeping import Housekeeper
from watchkeeper.daemon.config_alerts import AlertsConfig, RouteConfig
from watchkeeper.daemon.http.reports import ReportSigner
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.notify.outbox import Outbox
from watchkeeper.daemon.notify.router import Router
from watchkeeper.daemon.store.store import Store

from tests.notifications import POLICY, event, note


def test_routes_add_channels_by_labels() -> None:
    routes = [
        RouteConfig.model_validate(
            {
                "match": {"team": "payments", "severity": "~crit.*"},
                "channels": ["pager"],
                "continue": True,
            }
        ),
        RouteConfig.model_validate({"match": {"model": "fraud"}, "channels": ["audit"]}),
        RouteConfig.model_validate({"match": {"model": "fraud"}, "channels": ["never"]}),
    ]
    router = Router("http://wk:8450", routes)
    critical = router.plan(event("critical"), POLICY)
    assert sorted(c for c, _ in critical) == ["audit", "oncall", "pager"]
    note = critical[0][1]
    assert note.links == {"status": f"http://wk:8450/incidents/{note.fingerprint}"}
    assert sorted(c for c, _ in router.plan(event("warn"), POLICY)) == ["audit", "console"]


def test_an_incident_that_eases_or_ends_reaches_the_channels_of_its_worst_severity() -> None:
    """A critical incident that de-escalates to warn, or resolves from warn, must still
    reach the critical channels (else Alertmanager or the pager never hears it ended)."""
    router = Router()
    calmer = event("warn", kind="de-escalated")
    calmer.incident.peak = "critical"
    assert [c for c, _ in router.plan(calmer, POLICY)] == ["console", "oncall"]
    ended = event("warn", kind="resolved")
    ended.incident.peak = "critical"
    assert [c for c, _ in router.plan(ended, POLICY)] == ["console", "oncall"]
    only_warn = event("warn", kind="resolved")
    only_warn.incident.peak = "warn"
    assert [c for c, _ in router.plan(only_warn, POLICY)] == ["console"]


def test_drift_notifications_link_their_window_report() -> None:
    signer = ReportSigner(b"k" * 32)
    router = Router("http://wk:8450", window_size_ms=300_000, report_name=signer.name)
    ((_, note),) = router.plan(event("critical", at=1_795_255_380_000), POLICY)
    name = signer.name("fraud", 1795251600000, 1795255500000, "default")
    assert note.links["report"] == f"http://wk:8450/reports/{name}"
    assert name.startswith("fraud~default~1795251600000~1795255500000~")
    assert signer.key(name) is not None  # minted: the daemon will make it on a visit
    assert note.links["status"] == f"http://wk:8450/incidents/{note.fingerprint}"
    ((_, resolved),) = router.plan(event("critical", kind="resolved"), POLICY)
    assert "report" not in resolved.links


def test_heartbeat_and_reminders(tmp_path: Path) -> None:
    now = [1_000_000.0]
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        outbox, incidents = Outbox(store.engine), IncidentStore(store.engine)
        config = AlertsConfig.model_validate(
            {
                "channels": {
                    "am": {"type": "alertmanager", "url": "http://x"},
                    "oncall": {"type": "console"},
                },
                "heartbeat": {"channels": ["am"], "every": "5m"},
                "repeat_interval": "4h",
            }
        )
        woke = []
        keeper = Housekeeper(
            config,
            outbox,
            incidents,
            Router(),
            lambda: {"fraud": POLICY},
            lambda: woke.append(1),
            clock=lambda: now[0],
        )
        assert keeper.run_once() == 1
        (beat,) = outbox.rows()
        assert (beat["channel"], beat["kind"]) == ("am", "heartbeat")
        now[0] += 60
        assert keeper.run_once() == 0  # not due yet
        e = event(at=int(now[0] * 1000))
        incidents.record("fraud", e.at_ms, [], [e], {}, Router().plan(e, POLICY))
        now[0] += 4 * 3600 - 30
        assert [r["kind"] for r in outbox.rows()][-1] == "opened"
        keeper.run_once()
        assert [r["kind"] for r in outbox.rows() if r["channel"] == "oncall"] == ["opened"]
        now[0] += 60  # four hours without news: remind
        keeper.run_once()
        kinds = [(r["channel"], r["kind"]) for r in outbox.rows()]
        assert ("oncall", "reminder") in kinds and woke


def test_group_wait_suppresses_flaps_and_group_interval_coalesces(tmp_path: Any) -> None:
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        outbox = Outbox(store.engine)
        t0 = 1_000_000
        outbox.add([("c", note("flap", "opened", 0))], t0)
        outbox.add([("c", note("flap", "resolved", 1))], t0 + 5_000)
        outbox.add([("c", note("real", "opened", 0))], t0)
        # inside group_wait nothing goes; the flap is dropped altogether
        assert outbox.due(t0 + 10_000, group_wait_ms=30_000) == []
        assert {
            r["fingerprint"]: r["state"] for r in outbox.rows() if r["fingerprint"] == "flap"
        } == {"flap": "superseded"}
        (first,) = outbox.due(t0 + 30_000, group_wait_ms=30_000)
        assert first.notification.kind == "opened"
        outbox.mark_sent(first.id, t0 + 30_000, 1)
        for i in range(3):
            outbox.add([("c", note("real", "updated", i))], t0 + 31_000 + i)
        assert outbox.due(t0 + 60_000, group_interval_ms=300_000) == []  # too soon
        (latest,) = outbox.due(t0 + 330_000, group_interval_ms=300_000)
        assert latest.notification.summary == "real updated 2"  # only the newest change
        states = [r["state"] for r in outbox.rows() if r["fingerprint"] == "real"]
        assert states == ["sent", "superseded", "superseded", "pending"]


def heartbeat_keeper(store: Store, outbox: Outbox, **hooks: Any) -> Housekeeper:
    """A housekeeper due to beat (every 5 minutes, to an Alertmanager channel) at its
    first round, with ``hooks`` (``prune``, ``set_aside``)."""
    config = AlertsConfig.model_validate(
        {
            "channels": {"am": {"type": "alertmanager", "url": "http://x"}},
            "heartbeat": {"channels": ["am"], "every": "5m"},
        }
    )
    return Housekeeper(
        config,
        outbox,
        IncidentStore(store.engine),
        Router(),
        dict,
        lambda: None,
        clock=lambda: 1_000_000.0,
        **hooks,
    )


def test_housekeeping_sets_corrupt_windows_aside_after_its_notifications(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        outbox = Outbox(store.engine)
        calls: list[int] = []

        def failing() -> int:
            calls.append(len(outbox.rows()))  # the heartbeat is already in the outbox
            raise RuntimeError("store away")

        keeper = heartbeat_keeper(store, outbox, set_aside=failing)
        with caplog.at_level(logging.ERROR, logger="watchkeeper.daemon.checks.housekeeping"):
            assert keeper.run_once() == 1  # logged, not raised: the round completes
        assert calls == [1]
        (record,) = caplog.records
        assert "setting corrupt windows aside failed" in record.getMessage()


def test_a_failed_prune_holds_up_neither_the_heartbeat_nor_the_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        outbox = Outbox(store.engine)
        moved: list[int] = []

        def prune(_now: float) -> dict[str, int]:
            raise RuntimeError("store away")

        keeper = heartbeat_keeper(
            store, outbox, prune=prune, set_aside=lambda: moved.append(1) or 0
        )
        with caplog.at_level(logging.ERROR, logger="watchkeeper.daemon.checks.housekeeping"):
            assert keeper.run_once() == 1  # the heartbeat
        assert moved == [1] and len(outbox.rows()) == 1
        (record,) = caplog.records
        assert "pruning old rows failed" in record.getMessage()
