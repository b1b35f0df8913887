"""The delivery worker: takes due notifications from the outbox and hands them to channels.

One thread; per channel and incident strictly in order (the outbox gives only the first
pending notification of each). A failure is retried by the shared :class:`RetryPolicy`;
past its give-up time the notification is marked failed, and that failure is itself
alerted on the ``alerts.on_delivery_failure`` channels (console by default).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from watchkeeper.alerts.errors import DeliveryError
from watchkeeper.alerts.notification import Channel, Notification, Refreshing, Ungrouped
from watchkeeper.alerts.retry import RetryPolicy
from watchkeeper.daemon.notify.outbox import Outbox, OutboxRow
from watchkeeper.errors import WatchkeeperError

log = logging.getLogger(__name__)


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "watchkeeper_notifications_sent",
            "Notifications delivered.",
            ["channel"],
            registry=registry,
        )
        self.retried = Counter(
            "watchkeeper_notification_retries",
            "Delivery attempts that failed and will be retried.",
            ["channel"],
            registry=registry,
        )
        self.failed = Counter(
            "watchkeeper_notifications_failed",
            "Notifications given up on.",
            ["channel"],
            registry=registry,
        )
        self.depth = Gauge(
            "watchkeeper_notification_queue_depth",
            "Notifications waiting in the outbox.",
            ["channel"],
            registry=registry,
        )
        self.latency = Histogram(
            "watchkeeper_notification_delivery_seconds",
            "From enqueue to delivery.",
            ["channel"],
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 1800, 7200),
            registry=registry,
        )


class OutboxState:
    """A channel's durable per-incident state, kept in the store beside the outbox."""

    def __init__(self, outbox: Outbox, channel: str) -> None:
        self.outbox = outbox
        self.channel = channel

    def get(self, fingerprint: str) -> dict[str, Any] | None:
        return self.outbox.channel_state(self.channel, fingerprint)

    def set(self, fingerprint: str, state: dict[str, Any]) -> None:
        self.outbox.set_channel_state(self.channel, fingerprint, state)


class DeliveryWorker:
    def __init__(
        self,
        outbox: Outbox,
        channels: dict[str, Channel],
        registry: CollectorRegistry,
        retry: RetryPolicy | None = None,
        failure_channels: tuple[str, ...] = (),
        group_wait_s: float = 0.0,
        group_interval_s: float = 0.0,
        interval_s: float = 0.5,
        clock: Callable[[], float] = time.time,
        leading: Callable[[], bool] = lambda: True,
        redact: Callable[[str], str] = lambda text: text,
    ) -> None:
        self.outbox = outbox
        self.leading = leading
        self.redact = redact
        self.channels = channels
        self.retry = retry or RetryPolicy()
        self.failure_channels = failure_channels
        self.interval_s = interval_s
        self.clock = clock
        self.group_wait_ms = int(group_wait_s * 1000)
        self.group_interval_ms = int(group_interval_s * 1000)
        self.metrics = DeliveryMetrics(registry)
        self._refreshed: dict[str, float] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="wk-delivery", daemon=False)

    def start(self) -> DeliveryWorker:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def wake(self) -> None:
        """Deliver now (new notifications were enqueued)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.leading():  # standby replicas leave the outbox to the leader
                    self.deliver_due()
            except Exception:  # the store may be away: try again next round
                log.exception("delivery round failed")
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def deliver_due(self) -> int:
        """One round: every due notification once. Returns how many were delivered."""
        delivered = 0
        now = self.clock()
        exact = frozenset(
            n for n, c in self.channels.items() if isinstance(c, Ungrouped) and not c.grouped
        )
        for row in self.outbox.due(
            int(now * 1000),
            group_wait_ms=self.group_wait_ms,
            group_interval_ms=self.group_interval_ms,
            exact=exact,
        ):
            if self._stop.is_set():
                break
            delivered += self._deliver(row)
        for channel, depth in self.outbox.depth().items():
            self.metrics.depth.labels(channel).set(depth)
        self._refresh(now)
        return delivered

    def _refresh(self, now: float) -> None:
        """Channels that must repeat themselves (Alertmanager forgets what is not re-sent)."""
        for name, channel in self.channels.items():
            if not isinstance(channel, Refreshing):
                continue
            if now - self._refreshed.get(name, 0.0) < channel.resend_interval_s:
                continue
            self._refreshed[name] = now
            try:
                channel.refresh()
            except DeliveryError as exc:
                log.warning(
                    "re-sending active alerts to %s failed: %s", name, self.redact(exc.reason)
                )

    def _deliver(self, row: OutboxRow) -> int:
        channel = self.channels.get(row.channel)
        attempts = row.attempts + 1
        now = self.clock()
        if channel is None:
            self.outbox.mark_failed(row.id, attempts, "the channel cannot deliver")
            self.metrics.failed.labels(row.channel).inc()
            return 0
        try:
            channel.send(row.notification)
        except Exception as exc:
            # another of our errors says itself whether to retry; anything else (an
            # OSError, a library's exception) is retried until give_up_after
            error = (
                exc
                if isinstance(exc, DeliveryError)
                else DeliveryError(
                    row.channel,
                    f"{type(exc).__name__}: {exc}",
                    retriable=exc.retriable if isinstance(exc, WatchkeeperError) else True,
                )
            )
            # the reason goes to the log, the outbox row and maybe another channel: no
            # secret (an echoed webhook path, a token) may ride along
            error.reason = self.redact(error.reason)[:500]
            if error.retriable and not self.retry.exhausted(row.created_ms / 1000, now):
                wait = self.retry.delay(attempts, error.retry_after)
                self.outbox.mark_retry(row.id, attempts, int((now + wait) * 1000), error.reason)
                self.metrics.retried.labels(row.channel).inc()
                log.warning(
                    "delivery to %s failed (%s); retry in %.1fs", row.channel, error.reason, wait
                )
                return 0
            self.outbox.mark_failed(row.id, attempts, error.reason)
            self.metrics.failed.labels(row.channel).inc()
            self._alert_failure(row, error.reason)
            return 0
        self.outbox.mark_sent(row.id, int(now * 1000), attempts)
        self.metrics.sent.labels(row.channel).inc()
        self.metrics.latency.labels(row.channel).observe(max(0.0, now - row.created_ms / 1000))
        return 1

    def _alert_failure(self, row: OutboxRow, reason: str) -> None:
        log.error(
            "gave up delivering %s to %s: %s", row.notification.fingerprint, row.channel, reason
        )
        n = row.notification
        note = Notification(
            kind="delivery_failed",
            fingerprint=f"delivery-{row.channel}-{n.fingerprint}",
            severity="critical",
            summary=f"could not deliver to {row.channel}: {n.summary}",
            model=n.model,
            policy=n.policy,
            rule="delivery_failed",
            metric=n.metric,
            feature=n.feature,
            members={},
            at_ms=int(self.clock() * 1000),
            opened_ms=n.opened_ms,
            note=reason[:300],
        )
        targets = [c for c in self.failure_channels if c != row.channel]
        if targets:
            self.outbox.add([(c, note) for c in targets], int(self.clock() * 1000))
