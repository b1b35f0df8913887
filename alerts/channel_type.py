"""What a channel module declares besides its channel class: the model of its section of
the config file, and the factory that builds the channel from it.

A channel module (``alerts/slack.py``, …) defines a :class:`ChannelModel` subclass whose
``type`` field is a one-value ``Literal`` (the ``type:`` key of its YAML section), a
factory ``(name, config, context) -> Channel``, and ``CHANNEL = ChannelType(model,
factory)``; :mod:`watchkeeper.alerts.registry` lists it in one line. The daemon builds the
config's channel union from the registry, so the schema, the factory and the redaction of
its secrets (its :data:`~watchkeeper.policies.secret_fields.EnvName` fields) come with the
module.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import pydantic
from pydantic import ConfigDict
from watchkeeper.alerts.notification import Channel, ChannelState


class ChannelModel(pydantic.BaseModel):
    """Base of a channel's config model: unknown keys are errors, loaded objects frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    """A subclass narrows it to ``Literal["<its type>"]``: the union's discriminator."""


@dataclass(frozen=True)
class ChannelContext:
    """What a factory gets besides its config: where secrets are read, and the channel's
    durable state (None when the daemon runs without an outbox, e.g. ``watchkeeper test``)."""

    env: Mapping[str, str]
    state: ChannelState | None = None

    def secret(self, env_name: str | None) -> str | None:
        """The secret held by the variable an :data:`EnvName` field names (loading the
        config checked it is set)."""
        return self.env[env_name] if env_name else None


C = TypeVar("C", bound=ChannelModel)


@dataclass(frozen=True)
class ChannelType(Generic[C]):
    """One channel module's declaration: its config model and its factory."""

    config: type[C]
    build: Callable[[str, C, ChannelContext], Channel]

    @property
    def type(self) -> str:
        """The ``type:`` its config sections carry (the ``Literal`` of its model)."""
        (literal,) = typing.get_args(self.config.model_fields["type"].annotation)
        return str(literal)
