"""The ``alerts`` section of the config: channels (each channel type's model comes from
its module in ``alerts/``, through :mod:`watchkeeper.alerts.registry`), routes, heartbeat,
grouping and retry settings.
"""

from __future__ import annotations

import functools
import operator
import re
from typing import TYPE_CHECKING, Annotated

import pydantic
from pydantic import ConfigDict, Field
from watchkeeper.alerts.channel_type import ChannelModel
from watchkeeper.alerts.registry import CHANNEL_TYPES
from watchkeeper.policies.durations import Duration

NonEmpty = Annotated[str, Field(min_length=1)]


class _Strict(pydantic.BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Built from the registry: each channel module declares its own config model, and the
# section's ``type:`` picks the member (the union's order is the registry's).
if TYPE_CHECKING:
    ChannelConfig = ChannelModel
else:
    ChannelConfig = Annotated[
        functools.reduce(operator.or_, (t.config for t in CHANNEL_TYPES.values())),
        Field(discriminator="type"),
    ]


class RouteConfig(_Strict):
    """Send notifications whose labels match to more channels (Alertmanager-style)."""

    match: dict[NonEmpty, str] = {}
    """Label → value; a value starting with ``~`` is a regular expression (full match)."""
    channels: list[NonEmpty]
    continue_: bool = Field(default=False, alias="continue")
    """Also try the routes after this one when it matched."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @pydantic.field_validator("match")
    @classmethod
    def _patterns(cls, value: dict[str, str]) -> dict[str, str]:
        for label, pattern in value.items():
            if pattern.startswith("~"):
                try:
                    re.compile(pattern[1:])
                except re.error as exc:
                    raise ValueError(f"match.{label}: not a regular expression: {exc}") from None
        return value


class HeartbeatConfig(_Strict):
    channels: list[NonEmpty]
    every: Duration = 300.0


class AlertsConfig(_Strict):
    channels: dict[NonEmpty, ChannelConfig] = {}
    routes: list[RouteConfig] = []
    group_wait: Duration = 30.0
    """A new incident's first notification waits this long (a flap in between is not sent)."""
    group_interval: Duration = 300.0
    """Changes of an incident go out at most this often; only the newest waiting one."""
    repeat_interval: Duration = 4 * 3600.0
    """A firing incident is notified again after this long without news (0: never)."""
    heartbeat: HeartbeatConfig | None = None
    """"watchkeeper is alive" notifications, so a receiver can alarm when they stop."""
    max_age: Duration = 86400.0
    """Notifications about windows older than this (by the wall clock) are recorded —
    incidents and evaluations stored, outbox rows marked ``historical`` — but not sent, so
    a backfill or a long catch-up pages no one (0: send everything)."""
    on_delivery_failure: list[NonEmpty] = ["console"]

    @pydantic.model_validator(mode="after")
    def _known_channels(self) -> AlertsConfig:
        named = [c for r in self.routes for c in r.channels]
        named += self.heartbeat.channels if self.heartbeat else []
        unknown = sorted({c for c in named if c not in self.channels})
        if unknown:
            known = ", ".join(sorted(self.channels)) or "none are defined"
            raise ValueError(
                f"routes / heartbeat name unknown channels {', '.join(unknown)} (channels: {known})"
            )
        return self

    """Where a notification given up on is reported (channels that exist are used)."""
    retry_base: Duration = 1.0
    retry_cap: Duration = 300.0
    """Failed deliveries wait a random time in [0, min(retry_cap, retry_base·2ⁿ)]."""
    give_up_after: Duration = 24 * 3600.0
    """Retry a failing delivery this long (exponential backoff with jitter) before giving up."""
