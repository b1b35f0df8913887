"""Slack, with slack-sdk, both ways a workspace connects.

* Bot token (Web API): an incident is one message. ``opened`` posts it
  (``chat.postMessage``); every later change edits it in place (``chat.update``, so the
  channel always shows the current state) and adds a threaded reply saying what changed;
  ``resolved`` edits it to resolved and replies in the thread. The message's channel and
  ``ts`` are kept in the channel's durable state, so this survives restarts.
* Incoming webhook URL: post only (a webhook cannot edit), one message per change.

429 answers are retried by slack-sdk's ``RateLimitErrorRetryHandler`` honouring
``Retry-After`` and connection errors by its ``ConnectionErrorRetryHandler``; anything
still failing goes back to the outbox's retry policy, except errors that no retry fixes
(``invalid_auth``, ``channel_not_found`` …), which are final.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)
from slack_sdk.webhook import WebhookClient
from watchkeeper.alerts.errors import DeliveryError
from watchkeeper.alerts.notification import (
    DECISIONS,
    ChannelState,
    Notification,
    comparison_lines,
)

_COLOUR = {"critical": ":red_circle:", "warn": ":large_yellow_circle:"}
FINAL_ERRORS = {
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "channel_not_found",
    "is_archived",
    "not_in_channel",
    "missing_scope",
    "invalid_blocks",
    "msg_too_long",
    "no_permission",
}


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def headline(n: Notification) -> str:
    if n.kind == "promote":
        return f":rocket: PROMOTE: {n.summary}"
    if n.kind == "reject":
        return f":no_entry: REJECTED: {n.summary}"
    if n.kind == "resolved":
        return f":white_check_mark: RESOLVED: {n.summary.removeprefix('resolved: ')}"
    return f"{_COLOUR.get(n.severity, ':warning:')} {n.severity.upper()}: {n.summary}"


def _state(n: Notification) -> str:
    if n.kind in DECISIONS:
        return "recommend promotion" if n.kind == "promote" else "rejected"
    return "resolved" if n.kind == "resolved" else "firing"


def blocks(n: Notification) -> list[dict[str, Any]]:
    """Block Kit layout of an incident in its current state."""
    fields = [
        f"*Model*\n{n.model}",
        f"*Severity*\n{n.severity}",
        f"*Rule*\n{n.policy} / {n.rule or '—'}",
        f"*Metric*\n{n.metric or '—'}",
        f"*Since*\n{_when(n.opened_ms)}",
        f"*State*\n{_state(n)}",
    ]
    out: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": headline(n)[:2900]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    table = comparison_lines(n)
    if table:
        text = "*Shadow comparison*\n```" + "\n".join(table) + "```"
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}})
    elif len(n.members) > 1:
        top = sorted(n.members.items(), key=lambda kv: -(kv[1] or 0.0))[:10]
        lines = "\n".join(f"• `{k}` {v:.4g}" if v is not None else f"• `{k}`" for k, v in top)
        more = f"\n…and {len(n.members) - 10} more" if len(n.members) > 10 else ""
        out.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*Top drifted features*\n{lines}{more}"},
            }
        )
    if n.links:
        out.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": label.title()},
                        "url": url,
                    }
                    for label, url in list(n.links.items())[:5]
                ],
            }
        )
    context = f"fingerprint `{n.fingerprint}` · {_when(n.at_ms)}"
    if n.note:
        context += f" · {n.note}"
    out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context[:2000]}]})
    return out


def _raise(name: str, exc: Exception) -> DeliveryError:
    if isinstance(exc, SlackApiError):
        error = str(exc.response.get("error", "unknown_error"))
        wait = exc.response.headers.get("Retry-After") if exc.response.headers else None
        return DeliveryError(
            name,
            f"slack: {error}",
            retriable=error not in FINAL_ERRORS,
            retry_after=float(wait) if wait else None,
        )
    return DeliveryError(name, f"slack: {type(exc).__name__}: {exc}")


class SlackChannel:
    def __init__(
        self,
        name: str,
        *,
        token: str | None = None,
        webhook_url: str | None = None,
        channel: str | None = None,
        channel_by_severity: dict[str, str] | None = None,
        channel_by_model: dict[str, str] | None = None,
        state: ChannelState | None = None,
        base_url: str | None = None,
    ) -> None:
        if (token is None) == (webhook_url is None):
            raise ValueError("a Slack channel needs a bot token or an incoming webhook URL")
        self.name = name
        self.channel = channel
        self.by_severity = dict(channel_by_severity or {})
        self.by_model = dict(channel_by_model or {})
        self.state = state
        handlers = [
            RateLimitErrorRetryHandler(max_retry_count=2),
            ConnectionErrorRetryHandler(max_retry_count=2),
        ]
        self._web = (
            WebClient(
                token=token,
                base_url=base_url or "https://slack.com/api/",
                timeout=15,
                retry_handlers=handlers,
            )
            if token
            else None
        )
        self._hook = (
            WebhookClient(webhook_url, timeout=15, retry_handlers=handlers) if webhook_url else None
        )

    def target(self, n: Notification) -> str | None:
        return self.by_model.get(n.model) or self.by_severity.get(n.severity) or self.channel

    def send(self, notification: Notification) -> None:
        try:
            if self._web is not None:
                self._send_web(self._web, notification)
            else:
                assert self._hook is not None
                response = self._hook.send(text=headline(notification), blocks=blocks(notification))
                if response.status_code != 200:
                    retriable = response.status_code == 429 or response.status_code >= 500
                    raise DeliveryError(
                        self.name,
                        f"slack webhook: HTTP {response.status_code} {response.body}",
                        retriable=retriable,
                    )
        except DeliveryError:
            raise
        except (SlackApiError, SlackClientError, OSError) as exc:
            raise _raise(self.name, exc) from None

    def _send_web(self, client: WebClient, n: Notification) -> None:
        known = self.state.get(n.fingerprint) if self.state is not None else None
        text, layout = headline(n), blocks(n)
        if known is None or n.kind == "opened" or n.kind in DECISIONS:
            channel = self.target(n)
            if channel is None:
                raise DeliveryError(
                    self.name, "no Slack channel for this notification", retriable=False
                )
            response = client.chat_postMessage(channel=channel, text=text, blocks=layout)
            if self.state is not None and n.kind not in DECISIONS:
                self.state.set(
                    n.fingerprint, {"channel": response["channel"], "ts": response["ts"]}
                )
            return
        client.chat_update(channel=known["channel"], ts=known["ts"], text=text, blocks=layout)
        reply = f"{n.kind}: {n.summary}" + (f" ({n.note})" if n.note else "")
        client.chat_postMessage(channel=known["channel"], thread_ts=known["ts"], text=reply)

    def close(self) -> None:
        return None
