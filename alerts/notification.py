"""What every alert channel receives: one incident change, channel-neutral."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Notification:
    kind: str
    """opened, escalated, de-escalated, updated or resolved."""
    fingerprint: str
    severity: str
    summary: str
    model: str
    policy: str
    rule: str
    metric: str
    feature: str | None
    members: dict[str, float | None]
    at_ms: int
    opened_ms: int
    note: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    delivery_id: str = ""
    """Stable across redeliveries of this notification: receivers dedupe on it."""

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Notification:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class Channel(Protocol):
    """One alert destination: ``send`` one notification, ``close`` at shutdown."""

    name: str

    def send(self, notification: Notification) -> None: ...

    def close(self) -> None: ...


class ChannelState(Protocol):
    """Durable per-incident memory of a channel (e.g. which Slack message to update)."""

    def get(self, fingerprint: str) -> dict[str, Any] | None: ...

    def set(self, fingerprint: str, state: dict[str, Any]) -> None: ...
