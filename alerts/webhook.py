"""Signed webhooks for pipelines (retraining, promotion, anything that listens).

The payload is JSON with a versioned schema (``"schema": "watchkeeper.notification/v1"``)::

    {"schema": "watchkeeper.notification/v1", "id": "wk-42", "type": "incident.opened",
     "timestamp": "2026-11-21T10:05:00Z", "model": "fraud",
     "incident": {"fingerprint": "…", "state": "firing", "severity": "critical",
                  "summary": "…", "policy": "fraud", "rule": "feature-drift",
                  "metric": "psi", "feature": "*", "members": {"amount": 0.31},
                  "bad_side": "above", "opened_at": "…"},
     "labels": {"team": "payments"}, "links": {"status": "…"}, "note": ""}

``bad_side`` is the rule's bad side: ``"above"`` when a high value is bad (psi, latency),
``"below"`` when a low one is (accuracy, traffic_ratio), so a receiver knows which end of
``members`` is worst (the summary and the other channels list them worst first).

A shadow candidate's recommendation has ``"type": "shadow.promote"`` (or
``shadow.reject``) and, instead of ``incident``, a ``decision`` object: candidate, file,
decision, reasons, checks (condition, value, holds), rows, labelled_rows and the
comparison table. An A/B verdict between two versions (a policy's ``compare.promotion``)
is ``ab.promote`` / ``ab.reject``: baseline, candidate, since_ms, decision, reasons,
checks, the ``ab_*`` values (``table``), what each says (``texts``) and both versions'
columns (``side_by_side``).

It is signed per the Standard Webhooks specification (``webhook-id``,
``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>``)
with the ``standardwebhooks`` package; ``webhook-id`` (also sent as ``Idempotency-Key``)
stays the same on every redelivery, so a receiver drops duplicates. 2xx is success;
408, 429 and 5xx are retried (``Retry-After`` honoured); other statuses are final.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from typing import Annotated, Any, Literal

from pydantic import Field
from standardwebhooks import Webhook
from watchkeeper.alerts.channel_type import ChannelContext, ChannelModel, ChannelType
from watchkeeper.alerts.errors import DeliveryError
from watchkeeper.alerts.notification import DECISIONS, Notification
from watchkeeper.policies.secret_fields import EnvName, PlainUrl

SCHEMA = "watchkeeper.notification/v1"
RETRIABLE = {408, 425, 429}


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")


def payload(n: Notification) -> dict[str, Any]:
    if n.kind in DECISIONS:
        # a shadow candidate's recommendation: {"type": "shadow.promote", "decision": {…}}
        return {
            "schema": SCHEMA,
            "id": n.delivery_id,
            "type": f"{'ab' if n.details.get('comparison') == 'ab' else 'shadow'}.{n.kind}",
            "timestamp": _iso(n.at_ms),
            "model": n.model,
            "decision": {"policy": n.policy, "summary": n.summary, **n.details},
            "labels": n.labels,
            "links": n.links,
            "note": n.note,
        }
    return {
        "schema": SCHEMA,
        "id": n.delivery_id,
        "type": f"incident.{n.kind}",
        "timestamp": _iso(n.at_ms),
        "model": n.model,
        "incident": {
            "fingerprint": n.fingerprint,
            "state": "resolved" if n.kind == "resolved" else "firing",
            "severity": n.severity,
            "summary": n.summary,
            "policy": n.policy,
            "rule": n.rule,
            "metric": n.metric,
            "feature": n.feature,
            "members": n.members,
            "bad_side": n.bad_side,
            "opened_at": _iso(n.opened_ms),
        },
        "labels": n.labels,
        "links": n.links,
        "note": n.note,
    }


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


class WebhookChannel:
    # every notification, in order: the receiver decides what to do with it (Ungrouped)
    grouped: Literal[False] = False

    def __init__(
        self, name: str, url: str, secret: str | None = None, timeout_s: float = 10.0
    ) -> None:
        self.name = name
        self.url = url
        self.timeout_s = timeout_s
        self._signer = Webhook(secret) if secret else None

    def send(self, notification: Notification) -> None:
        body = json.dumps(payload(notification), separators=(",", ":"))
        now = dt.datetime.now(dt.UTC)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "watchkeeper",
            "webhook-id": notification.delivery_id,
            "Idempotency-Key": notification.delivery_id,
            "webhook-timestamp": str(int(now.timestamp())),
        }
        if self._signer is not None:
            headers["webhook-signature"] = self._signer.sign(notification.delivery_id, now, body)
        request = urllib.request.Request(
            self.url, data=body.encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            wait = retry_after(exc.headers.get("Retry-After"))
            exc.close()  # it holds the connection
            retriable = status in RETRIABLE or status >= 500
            raise DeliveryError(
                self.name, f"HTTP {status}", retriable=retriable, retry_after=wait
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(self.name, f"unreachable: {str(reason)[:200]}") from None

    def close(self) -> None:
        return None


class WebhookChannelConfig(ChannelModel):
    type: Literal["webhook"]
    url: Annotated[PlainUrl, Field(min_length=1)]
    secret_env: EnvName | None = None


def build(name: str, config: WebhookChannelConfig, context: ChannelContext) -> WebhookChannel:
    return WebhookChannel(name, config.url, context.secret(config.secret_env))


CHANNEL = ChannelType(WebhookChannelConfig, build)
