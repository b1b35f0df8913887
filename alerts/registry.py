"""Every alert channel type the config can name, one line each.

Adding a channel (PagerDuty, …) is one module in ``alerts/`` that declares its
``CHANNEL = ChannelType(config model, factory)`` and one line here;
``tests/unit/test_channels.py`` runs every entry through the same checks.
"""

from __future__ import annotations

from typing import Any

from watchkeeper.alerts import alertmanager, console, slack, webhook
from watchkeeper.alerts.channel_type import ChannelType


def _by_type(*types: ChannelType[Any]) -> dict[str, ChannelType[Any]]:
    return {t.type: t for t in types}


CHANNEL_TYPES = _by_type(
    console.CHANNEL,
    slack.CHANNEL,
    alertmanager.CHANNEL,
    webhook.CHANNEL,
)
"""Channel types by the ``type:`` key of their config section, in the union's order."""


def channel_type(name: str) -> ChannelType[Any]:
    try:
        return CHANNEL_TYPES[name]
    except KeyError:
        known = ", ".join(CHANNEL_TYPES)
        raise KeyError(f"channel type {name!r} is not known (types: {known})") from None
