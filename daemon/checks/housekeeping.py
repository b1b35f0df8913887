"""Periodic notifications: the heartbeat, and reminders for incidents left firing.

* Heartbeat (``alerts.heartbeat``): "watchkeeper is alive" every ``every`` to the named
  channels. On Alertmanager it is an always-firing ``watchkeeper_heartbeat`` alert (like
  Prometheus' Watchdog): when the daemon stops, the alert ends, and a dead-man's-switch
  receiver alarms — the alerting path itself is watched.
* Retention (``store.retention``): hourly, windows far enough behind their model's
  newest event time, and old quarantined records and delivered notifications, are
  deleted, so the store does not grow without bound (:mod:`retention`).
* Corrupt windows: each round, the stored windows reads found corrupt are moved aside
  (kept, counted and shown, never deleted), so reads stop meeting them (:mod:`set_aside`).
* Reminders (``alerts.repeat_interval``, Alertmanager's default of 4 h): an incident still
  open with no notification for that long is notified again — unless its policy's last
  evaluated tick is older than ``alerts.max_age`` (a backfill's incidents are history).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import func, select
from watchkeeper.alerts.notification import Notification
from watchkeeper.daemon.config_alerts import AlertsConfig
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.notify.outbox import Outbox
from watchkeeper.daemon.notify.router import Router
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store.connection import reading
from watchkeeper.policies.schema import Policy

log = logging.getLogger(__name__)
HEARTBEAT = "heartbeat"


class Housekeeper:
    def __init__(
        self,
        config: AlertsConfig,
        outbox: Outbox,
        incidents: IncidentStore,
        router: Router,
        policies: Callable[[], dict[str, Policy]],
        wake: Callable[[], None],
        interval_s: float = 15.0,
        clock: Callable[[], float] = time.time,
        prune: Callable[[float], dict[str, int]] | None = None,
        leading: Callable[[], bool] = lambda: True,
        set_aside: Callable[[], int] | None = None,
    ) -> None:
        self.leading = leading
        self.config = config
        self.outbox = outbox
        self.incidents = incidents
        self.router = router
        self.policies = policies
        self.wake = wake
        self.interval_s = interval_s
        self.clock = clock
        self._last_heartbeat = 0.0
        self._last_prune = 0.0
        self.prune = prune
        self.set_aside = set_aside
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="wk-housekeeping", daemon=False)

    def start(self) -> Housekeeper:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            try:
                if self.leading():  # one replica reminds, beats and prunes
                    self.run_once()
            except Exception:  # the store may be away; next round
                log.exception("housekeeping failed")
            if self._stop.wait(self.interval_s):
                return

    def run_once(self) -> int:
        now = self.clock()
        if self.prune is not None and now - self._last_prune >= 3600.0:
            self._last_prune = now
            try:  # logs what it removed; a failure waits for the next hour, as a success
                self.prune(now)
            except Exception:  # never holds up the heartbeat, reminders or set-aside
                log.exception("pruning old rows failed")
        notes: list[tuple[str, Notification]] = []
        beat = self.config.heartbeat
        if beat is not None and now - self._last_heartbeat >= beat.every:
            self._last_heartbeat = now
            ms = int(now * 1000)
            note = Notification(
                kind=HEARTBEAT,
                fingerprint=HEARTBEAT,
                severity="none",
                summary="watchkeeper is alive",
                model="",
                policy="",
                rule=HEARTBEAT,
                metric="",
                feature=None,
                members={},
                at_ms=ms,
                opened_ms=ms,
            )
            notes += [(channel, note) for channel in beat.channels]
        if self.config.repeat_interval > 0:
            notes += self._reminders(now)
        if notes:
            self.outbox.add(notes, int(now * 1000))
            self.wake()
        if self.set_aside is not None:
            try:  # after the notifications: a failure here never holds the heartbeat up
                self.set_aside()  # corrupt windows the reads met: moved aside, logged
            except Exception:  # the store may be away: they stay pending, next round
                log.exception("setting corrupt windows aside failed")
        return len(notes)

    def _reminders(self, now: float) -> list[tuple[str, Notification]]:
        cutoff = int((now - self.config.repeat_interval) * 1000)
        o = t.outbox.c
        with reading(self.outbox.engine, "read reminders") as conn:
            last = dict(
                conn.execute(
                    select(o.fingerprint, func.max(o.created_ms)).group_by(o.fingerprint)
                ).all()
            )
            ps = t.policy_states.c
            ticks = dict(conn.execute(select(ps.policy, ps.tick_ms)).all())
        policies = self.policies()
        max_age_ms = int(self.config.max_age * 1000)
        out: list[tuple[str, Notification]] = []
        for row in self.incidents.incidents("open"):
            if last.get(row["fingerprint"], row["opened_ms"]) > cutoff:
                continue
            tick = ticks.get(row["policy"])
            if max_age_ms and tick is not None and now * 1000 - tick > max_age_ms:
                continue  # the policy is still evaluating the past: nothing to remind of
            policy = policies.get(row["policy"])
            if policy is None:
                continue
            note = Notification(
                kind="reminder",
                fingerprint=row["fingerprint"],
                severity=row["severity"],
                summary=row["summary"],
                model=row["model"],
                policy=row["policy"],
                rule=row["rule"],
                metric=row["metric"],
                feature=row["feature"],
                members=dict(row["members"])
                if isinstance(row["members"], dict)
                else json.loads(row["members"]),
                at_ms=int(now * 1000),
                opened_ms=row["opened_ms"],
                note="still firing",
                labels=dict(policy.labels),
            )
            out += [(channel, note) for channel in self.router.channels(note, policy)]
        return out
