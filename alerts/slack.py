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
import re
from typing import Any, Literal

import pydantic
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)
from slack_sdk.webhook import WebhookClient
from watchkeeper.alerts.channel_type import ChannelContext, ChannelModel, ChannelType
from watchkeeper.alerts.errors import DeliveryError
from watchkeeper.alerts.notification import (
    DECISIONS,
    LISTED_MEMBERS,
    ChannelState,
    Notification,
    comparison_lines,
    comparison_title,
    member_name,
    members_title,
    side_by_side_lines,
    worst_members,
)
from watchkeeper.alerts.text import clip, mrkdwn
from watchkeeper.policies.secret_fields import EnvName, PlainUrl

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


# Block Kit limits (api.slack.com/reference/block-kit): a section's text 3000 characters,
# a field 2000, at most 10 fields, a context element 2000, a button's text 75 and its
# URL 3000, 50 blocks a message; the fallback text is cut at 3000 (Slack's own is 40,000)
SECTION_CHARS = 3000
FIELD_CHARS = 2000
BUTTON_CHARS = 75
URL_CHARS = 3000
MAX_BLOCKS = 50


def headline(n: Notification) -> str:
    """The message's first line, escaped for mrkdwn (every name in it came from events)."""
    summary = mrkdwn(n.summary)
    if n.kind == "promote":
        text = f":rocket: PROMOTE: {summary}"
    elif n.kind == "reject":
        text = f":no_entry: REJECTED: {summary}"
    elif n.kind == "resolved":
        text = f":white_check_mark: RESOLVED: {mrkdwn(n.summary.removeprefix('resolved: '))}"
    else:
        severity = mrkdwn(n.severity.upper())
        text = f"{_COLOUR.get(n.severity, ':warning:')} {severity}: {summary}"
    return clip(text, SECTION_CHARS - 100)


def _code_text(text: object, limit: int | None = None) -> str:
    """``text`` for inside a code span or block: mrkdwn-escaped, and its backticks
    replaced by a look-alike (U+02CB), since Slack ends the block at the first ```` ``` ````
    whatever precedes it (a version from an event could close it and format the rest)."""
    return mrkdwn(str(text).replace("`", "\u02cb"), limit)


def _state(n: Notification) -> str:
    if n.kind in DECISIONS:
        return "recommend promotion" if n.kind == "promote" else "rejected"
    return "resolved" if n.kind == "resolved" else "firing"


def blocks(n: Notification) -> list[dict[str, Any]]:
    """Block Kit layout of an incident in its current state."""
    fields = [
        f"*Model*\n{mrkdwn(n.model, 500)}",
        f"*Severity*\n{mrkdwn(n.severity, 100)}",
        f"*Rule*\n{mrkdwn(n.policy, 500)} / {mrkdwn(n.rule or '—', 500)}",
        f"*Metric*\n{mrkdwn(n.metric or '—', 500)}",
        f"*Since*\n{_when(n.opened_ms)}",
        f"*State*\n{_state(n)}",
    ]
    out: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": headline(n)}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": clip(f, FIELD_CHARS)} for f in fields],
        },
    ]
    table, side = comparison_lines(n), side_by_side_lines(n)
    if table or side:
        if table:
            text = f"*{comparison_title(n)}*\n```" + _code_text("\n".join(table)) + "```"
            text = clip(text, SECTION_CHARS - 3) + ("```" if len(text) > SECTION_CHARS - 3 else "")
            out.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
        if side:  # an A/B decision: both versions' columns, merged since the start
            text = "*Side by side (merged since the start)*\n```" + _code_text("\n".join(side))
            text = clip(text, SECTION_CHARS - 3) + "```"
            out.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    elif len(n.members) > 1:
        lines = "\n".join(
            f"• `{_code_text(member_name(k), 200)}`" + ("" if v is None else f" {v:.4g}")
            for k, v in worst_members(n)
        )
        extra = len(n.members) - LISTED_MEMBERS
        more = f"\n…and {extra} more" if extra > 0 else ""
        title = mrkdwn(members_title(n), 200)
        out.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": clip(f"*{title}*\n{lines}{more}", SECTION_CHARS),
                },
            }
        )
    if n.links:
        out.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": clip(label.title(), BUTTON_CHARS)},
                        "url": url,
                    }
                    for label, url in list(n.links.items())[:5]
                    if len(url) <= URL_CHARS and url.startswith(("https://", "http://"))
                ],
            }
        )
    context = f"fingerprint `{mrkdwn(n.fingerprint, 100)}` · {_when(n.at_ms)}"
    if n.note:
        context += f" · {mrkdwn(n.note)}"
    out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(context, 2000)}]})
    return out[:MAX_BLOCKS]


def _code(value: object) -> str:
    """Slack's error code (``channel_not_found``), never free text from the far end."""
    text = str(value)
    return text if re.fullmatch(r"[a-z0-9_]{1,60}", text) else "unknown_error"


def _raise(name: str, exc: Exception) -> DeliveryError:
    if isinstance(exc, SlackApiError):
        error = _code(exc.response.get("error", "unknown_error"))
        wait = exc.response.headers.get("Retry-After") if exc.response.headers else None
        return DeliveryError(
            name,
            f"slack: {error}",
            retriable=error not in FINAL_ERRORS,
            retry_after=float(wait) if wait else None,
        )
    # the type only: the text of a client error can hold the webhook URL or a body
    return DeliveryError(name, f"slack: {type(exc).__name__}")


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
                    # never the body: an endpoint (or a proxy) may echo the secret URL in it
                    raise DeliveryError(
                        self.name,
                        f"slack webhook: HTTP {response.status_code}",
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
        reply = f"{mrkdwn(n.kind)}: {mrkdwn(n.summary)}" + (
            f" ({mrkdwn(n.note)})" if n.note else ""
        )
        reply = clip(reply, SECTION_CHARS)
        client.chat_postMessage(channel=known["channel"], thread_ts=known["ts"], text=reply)

    def close(self) -> None:
        return None


class SlackChannelConfig(ChannelModel):
    type: Literal["slack"]
    token_env: EnvName | None = None
    webhook_url_env: EnvName | None = None
    channel: str | None = None
    channel_by_severity: dict[str, str] = pydantic.Field(default_factory=dict)
    channel_by_model: dict[str, str] = pydantic.Field(default_factory=dict)
    api_url: PlainUrl | None = None
    """The Web API base URL (default https://slack.com/api/)."""

    @pydantic.model_validator(mode="after")
    def _one_way(self) -> SlackChannelConfig:
        if (self.token_env is None) == (self.webhook_url_env is None):
            raise ValueError("give exactly one of token_env (bot token) or webhook_url_env")
        if self.token_env is not None and self.channel is None and not self.channel_by_severity:
            raise ValueError("a bot token needs a channel to post to")
        return self


def build(name: str, config: SlackChannelConfig, context: ChannelContext) -> SlackChannel:
    return SlackChannel(
        name,
        token=context.secret(config.token_env),
        webhook_url=context.secret(config.webhook_url_env),
        channel=config.channel,
        channel_by_severity=config.channel_by_severity,
        channel_by_model=config.channel_by_model,
        state=context.state,
        base_url=config.api_url,
    )


CHANNEL = ChannelType(SlackChannelConfig, build)
