"""Alertmanager, through its v2 API (``POST /api/v2/alerts``).

An incident becomes one alert: labels ``alertname`` (``watchkeeper_<rule>``), ``model``,
``feature``, ``severity``, ``policy`` and the policy's own labels; annotations
``summary``, ``description`` and the report / status URLs; ``startsAt`` when it opened,
``generatorURL`` the daemon's status page.

Alertmanager forgets an alert whose ``endsAt`` passes and keeps nothing a restart could
not lose, so, as Prometheus does, firing alerts are re-sent every ``resend_interval`` with
``endsAt`` a few intervals ahead; a resolved one is sent with ``endsAt`` = now and re-sent
as resolved for ``resolved_resend`` (5 minutes). The set of alerts being re-sent is kept
in the channel's durable state, so a daemon restart resumes it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field
from watchkeeper.alerts.channel_type import ChannelContext, ChannelModel, ChannelType
from watchkeeper.alerts.errors import DeliveryError
from watchkeeper.alerts.notification import DECISIONS, ChannelState, Notification
from watchkeeper.alerts.text import terminal
from watchkeeper.alerts.webhook import retry_after
from watchkeeper.policies.durations import Duration
from watchkeeper.policies.secret_fields import PlainUrl

ACTIVE = "__active__"


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


# bounds on what one alert carries: Alertmanager keeps every label set in memory and
# shows annotations as they are; label names must match [a-zA-Z_][a-zA-Z0-9_]*
LABEL_CHARS = 256
ANNOTATION_CHARS = 4096
MAX_LABELS = 40
_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")


def _label_name(name: str) -> str:
    cleaned = _LABEL_NAME.sub("_", name)[:100]
    return cleaned if cleaned and not cleaned[0].isdigit() else f"_{cleaned}"


def _value(text: object, limit: int) -> str:
    value = terminal(text, newlines=limit > LABEL_CHARS)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def alert(n: Notification, now_s: float, ends_s: float) -> dict[str, Any]:
    labels = {
        "alertname": _label_name(f"watchkeeper_{n.rule or n.feature or 'check'}"),
        "model": n.model,
        "severity": n.severity,
        "policy": n.policy,
        "feature": n.feature or "",
        "source": "watchkeeper",
    }
    for key, value in n.labels.items():
        name = _label_name(key)
        if name not in labels and len(labels) < MAX_LABELS:
            labels[name] = value
    labels = {k: _value(v, LABEL_CHARS) for k, v in labels.items()}
    annotations = {
        "summary": _value(n.summary.removeprefix("resolved: "), ANNOTATION_CHARS),
        "description": _value(f"{n.metric or 'check'} on {n.model}: {n.summary}", ANNOTATION_CHARS),
    }
    if "report" in n.links:
        annotations["report_url"] = _value(n.links["report"], ANNOTATION_CHARS)
    return {
        "labels": {k: v for k, v in labels.items() if v != ""},
        "annotations": annotations,
        "startsAt": _iso(n.opened_ms / 1000),
        "endsAt": _iso(ends_s),
        "generatorURL": _value(n.links.get("status", ""), ANNOTATION_CHARS),
    }


class AlertmanagerChannel:
    # every notification, in order: the receiver decides what to do with it (Ungrouped)
    grouped: Literal[False] = False

    def __init__(
        self,
        name: str,
        url: str,
        *,
        state: ChannelState | None = None,
        resend_interval_s: float = 60.0,
        resolved_resend_s: float = 300.0,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.state = state
        self.resend_interval_s = resend_interval_s
        self.resolved_resend_s = resolved_resend_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._lock = threading.Lock()
        stored = state.get(ACTIVE) if state is not None else None
        # fingerprint -> {"note": notification dict, "resolved_s": time or None}
        self._active: dict[str, dict[str, Any]] = dict(stored or {})

    def _post(self, alerts: list[dict[str, Any]]) -> None:
        body = json.dumps(alerts).encode()
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            status, wait = exc.code, retry_after(exc.headers.get("Retry-After"))
            exc.close()
            raise DeliveryError(
                self.name,
                f"alertmanager: HTTP {status}",
                retriable=status >= 500 or status == 429,
                retry_after=wait,
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(
                self.name, f"alertmanager unreachable: {str(getattr(exc, 'reason', exc))[:200]}"
            ) from None

    def _render(self, entry: dict[str, Any], now: float) -> dict[str, Any]:
        n = Notification.from_dict(entry["note"])
        resolved = entry.get("resolved_s")
        ends = resolved if resolved is not None else now + 4 * self.resend_interval_s
        return alert(n, now, ends)

    def send(self, notification: Notification) -> None:
        now = self.clock()
        if notification.kind in DECISIONS:
            # a recommendation, not a condition: shown for a while, never re-sent
            self._post([alert(notification, now, now + 4 * self.resend_interval_s)])
            return
        entry = {
            "note": notification.to_dict(),
            "resolved_s": now if notification.kind == "resolved" else None,
        }
        self._post([self._render(entry, now)])
        with self._lock:
            self._active[notification.fingerprint] = entry
            self._save()

    def refresh(self) -> None:
        """Re-send what is firing (and what resolved recently) so Alertmanager keeps it."""
        now = self.clock()
        with self._lock:
            for fp, entry in list(self._active.items()):
                resolved = entry.get("resolved_s")
                if resolved is not None and now - resolved > self.resolved_resend_s:
                    del self._active[fp]
            alerts = [self._render(e, now) for e in self._active.values()]
            self._save()
        if alerts:
            self._post(alerts)

    def _save(self) -> None:
        if self.state is not None:
            self.state.set(ACTIVE, self._active)

    def close(self) -> None:
        return None


class AlertmanagerChannelConfig(ChannelModel):
    type: Literal["alertmanager"]
    url: Annotated[PlainUrl, Field(min_length=1)]
    resend_interval: Duration = 60.0
    """Firing alerts are re-sent this often (endsAt four intervals ahead)."""
    resolved_resend: Duration = 300.0
    """Resolved alerts are re-sent as resolved this long."""


def build(
    name: str, config: AlertmanagerChannelConfig, context: ChannelContext
) -> AlertmanagerChannel:
    return AlertmanagerChannel(
        name,
        config.url,
        state=context.state,
        resend_interval_s=config.resend_interval,
        resolved_resend_s=config.resolved_resend,
    )


CHANNEL = ChannelType(AlertmanagerChannelConfig, build)
