"""Building the alert channels named in the config."""

from __future__ import annotations

import logging
import os

from watchkeeper.alerts.console import ConsoleChannel
from watchkeeper.alerts.notification import Channel
from watchkeeper.alerts.slack import SlackChannel
from watchkeeper.alerts.webhook import WebhookChannel
from watchkeeper.daemon.config import (
    Config,
    ConsoleChannelConfig,
    SlackChannelConfig,
    WebhookChannelConfig,
)
from watchkeeper.daemon.delivery import OutboxState
from watchkeeper.daemon.outbox import Outbox

log = logging.getLogger(__name__)


def build_channels(config: Config, outbox: Outbox | None = None) -> dict[str, Channel]:
    """The channels that can deliver; the others are validated but not built yet.

    Slack, Alertmanager and webhook delivery are not implemented in this version: their
    configuration is checked, and a notification routed to one is logged and not sent.
    """
    channels: dict[str, Channel] = {}
    for name, spec in config.alerts.channels.items():
        if isinstance(spec, ConsoleChannelConfig):
            channels[name] = ConsoleChannel(name, spec.format)
        elif isinstance(spec, SlackChannelConfig):
            channels[name] = SlackChannel(
                name,
                token=os.environ[spec.token_env] if spec.token_env else None,
                webhook_url=os.environ[spec.webhook_url_env] if spec.webhook_url_env else None,
                channel=spec.channel,
                channel_by_severity=spec.channel_by_severity,
                channel_by_model=spec.channel_by_model,
                state=OutboxState(outbox, name) if outbox is not None else None,
                base_url=spec.api_url,
            )
        elif isinstance(spec, WebhookChannelConfig):
            secret = os.environ[spec.secret_env] if spec.secret_env else None
            channels[name] = WebhookChannel(name, spec.url, secret)
        else:
            log.warning("alert channel %s (%s) is not delivered by this version", name, spec.type)
    return channels
