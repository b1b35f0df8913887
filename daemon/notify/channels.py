"""Building the alert channels named in the config."""

from __future__ import annotations

import logging
import os

from watchkeeper.alerts.alertmanager import AlertmanagerChannel
from watchkeeper.alerts.console import ConsoleChannel
from watchkeeper.alerts.notification import Channel
from watchkeeper.alerts.slack import SlackChannel
from watchkeeper.alerts.webhook import WebhookChannel
from watchkeeper.daemon.config import (
    AlertmanagerChannelConfig,
    Config,
    ConsoleChannelConfig,
    SlackChannelConfig,
)
from watchkeeper.daemon.notify.delivery import OutboxState
from watchkeeper.daemon.notify.outbox import Outbox

log = logging.getLogger(__name__)


def build_channels(config: Config, outbox: Outbox | None = None) -> dict[str, Channel]:
    """Every configured channel, ready to deliver (secrets read from the environment)."""
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
        elif isinstance(spec, AlertmanagerChannelConfig):
            channels[name] = AlertmanagerChannel(
                name,
                spec.url,
                state=OutboxState(outbox, name) if outbox is not None else None,
                resend_interval_s=spec.resend_interval,
                resolved_resend_s=spec.resolved_resend,
            )
        else:  # a webhook: the config's union is exhaustive
            secret = os.environ[spec.secret_env] if spec.secret_env else None
            channels[name] = WebhookChannel(name, spec.url, secret)
    return channels
