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

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Channel(Protocol):
    """One alert destination: ``send`` one notification, ``close`` at shutdown."""

    name: str

    def send(self, notification: Notification) -> None: ...

    def close(self) -> None: ...
