"""What the HTTP layer's handlers take, return and are registered by: :class:`Request`,
:class:`Response`, :class:`Route` — plain values, so the server (which binds and serves)
and the application (which routes and guards) both name them without importing each other.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Check = Callable[[], tuple[bool, str]]
"""A liveness / readiness probe: (healthy, reason)."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, status: int, data: Any) -> Response:
        return cls(status, json.dumps(data).encode())


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    prefix: bool = False
    """Match every path under ``path`` (which then ends with ``/``)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 in brackets or not) is this machine."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
