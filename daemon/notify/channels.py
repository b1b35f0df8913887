"""Building the alert channels named in the config, each by its module's factory
(:mod:`watchkeeper.alerts.registry`)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from watchkeeper.alerts.channel_type import ChannelContext
from watchkeeper.alerts.notification import Channel
from watchkeeper.alerts.registry import channel_type
from watchkeeper.daemon.config import Config
from watchkeeper.daemon.notify.delivery import OutboxState
from watchkeeper.daemon.notify.outbox import Outbox


def build_channels(
    config: Config, outbox: Outbox | None = None, env: Mapping[str, str] | None = None
) -> dict[str, Channel]:
    """Every configured channel, ready to deliver (secrets read from the environment)."""
    source = env if env is not None else os.environ
    channels: dict[str, Channel] = {}
    for name, spec in config.alerts.channels.items():
        state = OutboxState(outbox, name) if outbox is not None else None
        channels[name] = channel_type(spec.type).build(name, spec, ChannelContext(source, state))
    return channels
