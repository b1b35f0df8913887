"""The console channel: notifications printed as the on-call would read them, for the
demo and for people without Slack."""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
from typing import Literal, TextIO

from watchkeeper.alerts.channel_type import ChannelContext, ChannelModel, ChannelType
from watchkeeper.alerts.notification import (
    LISTED_MEMBERS,
    Notification,
    comparison_lines,
    member_name,
    members_title,
    side_by_side_lines,
    worst_members,
)
from watchkeeper.alerts.text import terminal

_ICON = {
    "opened": "🔥",
    "escalated": "⬆",
    "de-escalated": "⬇",
    "updated": "✎",
    "resolved": "✅",
    "promote": "🚀",
    "reject": "⛔",
}


def render(n: Notification) -> str:
    """The text of a notification, laid out like the Slack message; every string from an
    event has its control characters and ANSI escapes removed first."""
    return terminal(_render(n), newlines=True)


def _render(n: Notification) -> str:
    n = _plain(n)
    when = dt.datetime.fromtimestamp(n.at_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    summary = n.summary.removeprefix(f"{n.kind}: ")  # the engine's "resolved: …"
    head = f"{_ICON.get(n.kind, '•')} [{n.severity.upper()}] {n.kind}: {summary}"
    rule = n.rule or "—"
    lines = [head, f"    model {n.model} · policy {n.policy} · rule {rule} · {when}"]
    table, side = comparison_lines(n), side_by_side_lines(n)
    if table or side:
        lines += ["    " + line for line in table]
        lines += ["    " + line for line in side]
    elif n.members and len(n.members) > 1:
        listed = ", ".join(
            member_name(k) + ("" if v is None else f"={v:.4g}") for k, v in worst_members(n)
        )
        extra = len(n.members) - LISTED_MEMBERS
        more = f" and {extra} more" if extra > 0 else ""
        lines.append(f"    {members_title(n)}: {listed}{more}")
    if n.note:
        lines.append(f"    note: {n.note}")
    for label, url in n.links.items():
        lines.append(f"    {label}: {url}")
    return "\n".join(lines)


def _plain(n: Notification) -> Notification:
    """The notification with its one-line strings free of line breaks and escapes."""
    import dataclasses

    return dataclasses.replace(
        n,
        summary=terminal(n.summary),
        model=terminal(n.model),
        policy=terminal(n.policy),
        rule=terminal(n.rule),
        metric=terminal(n.metric),
        feature=terminal(n.feature) if n.feature is not None else None,
        note=terminal(n.note),
        members={terminal(k): v for k, v in n.members.items()},
        links={terminal(k): terminal(v) for k, v in n.links.items()},
    )


def render_line(n: Notification, channel: str) -> str:
    """One line per notification, naming the channel: for channels that stand in for
    another (the demo's Slack, Alertmanager and webhook stand-ins) and for compact logs."""
    n = _plain(n)
    channel = terminal(channel)
    rule = n.rule or n.kind
    target = f" {n.model}" + (f".{n.feature}" if n.feature else "")
    return f"  {_ICON.get(n.kind, '•')} {channel}: {n.kind} {rule}{target} [{n.severity}]"


class ConsoleChannel:
    def __init__(
        self, name: str = "console", fmt: str = "text", stream: TextIO | None = None
    ) -> None:
        self.name = name
        self.fmt = fmt
        self.stream = stream
        self._lock = threading.Lock()

    def send(self, notification: Notification) -> None:
        if self.fmt == "json":
            text = json.dumps(notification.to_dict())
        elif self.fmt == "line":
            text = render_line(notification, self.name)
        else:
            text = render(notification)
        with self._lock:
            out = self.stream or sys.stdout
            out.write(text + "\n")
            out.flush()

    def close(self) -> None:
        return None


class ConsoleChannelConfig(ChannelModel):
    type: Literal["console"]
    format: Literal["text", "json", "line"] = "text"
    """text: laid out as the Slack message; json: one object per line; line: one short
    line naming the channel."""


def build(name: str, config: ConsoleChannelConfig, context: ChannelContext) -> ConsoleChannel:
    return ConsoleChannel(name, config.format)


CHANNEL = ChannelType(ConsoleChannelConfig, build)
