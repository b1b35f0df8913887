"""Every alert channel the config can name, through the same checks.

For each channel type of the registry (:mod:`watchkeeper.alerts.registry`, from which the
``alerts.channels`` union is built): its module owns its config model and its factory, a
minimal config of that type builds a channel through :func:`build_channels` (no network:
building connects to nothing), the channel has the :class:`Channel` members, its
optional capabilities are the declared protocols (never attributes probed by name), and
every secret field of its config model is redacted — found by :func:`secret_values` from
the model itself.
"""

from __future__ import annotations

import typing
from typing import Any

import pydantic
import pytest
from watchkeeper.alerts.channel_type import ChannelModel
from watchkeeper.alerts.notification import Channel, Refreshing, Ungrouped
from watchkeeper.alerts.registry import CHANNEL_TYPES
from watchkeeper.daemon.config import Config, secret_values
from watchkeeper.daemon.config_alerts import ChannelConfig
from watchkeeper.daemon.config_kafka import KAFKA_CLIENTS
from watchkeeper.daemon.ingest.sources import option_checks
from watchkeeper.daemon.notify.channels import build_channels
from watchkeeper.policies.secret_fields import is_secret_field

# no environment in the context: the secrets' variables are not looked up here
CLIENTS = {KAFKA_CLIENTS: option_checks()}
KAFKA = {"bootstrap_servers": "127.0.0.1:9092", "topics": {"predictions": {"name": "p"}}}

# the smallest valid config of each channel type, and the capabilities it declares
MINIMAL: dict[str, tuple[dict[str, Any], set[type]]] = {
    "console": ({"type": "console"}, set()),
    "slack": ({"type": "slack", "token_env": "WK_SLACK", "channel": "#ml"}, set()),
    "alertmanager": (
        {"type": "alertmanager", "url": "http://127.0.0.1:9/"},
        {Ungrouped, Refreshing},
    ),
    "webhook": (
        {"type": "webhook", "url": "http://127.0.0.1:9/", "secret_env": "WK_HOOK"},
        {Ungrouped},
    ),
}


def channel_models() -> list[type[pydantic.BaseModel]]:
    union = typing.get_args(ChannelConfig)[0]
    return list(typing.get_args(union))


def type_of(model: type[pydantic.BaseModel]) -> str:
    (literal,) = typing.get_args(model.model_fields["type"].annotation)
    return str(literal)


def test_every_channel_type_of_the_config_is_checked_here() -> None:
    assert sorted(type_of(m) for m in channel_models()) == sorted(MINIMAL)


def test_the_config_union_is_the_registry() -> None:
    assert channel_models() == [t.config for t in CHANNEL_TYPES.values()]


@pytest.mark.parametrize("name", sorted(CHANNEL_TYPES))
def test_a_channel_module_owns_its_config_model_and_factory(name: str) -> None:
    kind = CHANNEL_TYPES[name]
    assert kind.type == name == type_of(kind.config)
    assert issubclass(kind.config, ChannelModel)
    module = kind.config.__module__
    assert module.startswith("watchkeeper.alerts.") and kind.build.__module__ == module
    # unknown keys are errors and loaded sections are frozen, as everywhere in the config
    assert kind.config.model_config.get("extra") == "forbid"
    assert kind.config.model_config.get("frozen") is True


@pytest.mark.parametrize("model", channel_models(), ids=type_of)
def test_a_channel_builds_declares_its_capabilities_and_redacts_its_secrets(
    model: type[pydantic.BaseModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, capabilities = MINIMAL[type_of(model)]
    # every secret field set (where the model allows it alongside the minimal one)
    env = {value: f"secret-{value.lower()}" for value in spec.values() if str(value)[:3] == "WK_"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = Config.model_validate(
        {"kafka": KAFKA, "alerts": {"channels": {"c": spec}}}, context=CLIENTS
    )
    (channel,) = build_channels(config).values()
    try:
        assert isinstance(channel.name, str) and channel.name == "c"
        assert callable(channel.send) and callable(channel.close)
        _: Channel = channel
        declared = {p for p in (Ungrouped, Refreshing) if isinstance(channel, p)}
        assert declared == capabilities
        if isinstance(channel, Ungrouped):
            assert channel.grouped is False
        if isinstance(channel, Refreshing):
            assert channel.resend_interval_s > 0
    finally:
        channel.close()
    secret_fields = {n for n, info in model.model_fields.items() if is_secret_field(info)}
    assert {k for k in spec if k in secret_fields} == {k for k, v in spec.items() if v in env}
    assert sorted(secret_values(config, env)) == sorted(env.values())


def test_every_secret_field_of_every_channel_is_found_without_a_list() -> None:
    """A field typed EnvName is a secret wherever it sits; set them all, find them all."""
    for model in channel_models():
        for name, info in model.model_fields.items():
            if not is_secret_field(info):
                continue
            spec = dict(MINIMAL[type_of(model)][0])
            for other in [n for n, i in model.model_fields.items() if is_secret_field(i)]:
                spec.pop(other, None)
            spec[name] = "WK_FIELD"
            if type_of(model) == "slack" and name == "webhook_url_env":
                spec.pop("channel", None)
            config = Config.model_validate(
                {"kafka": KAFKA, "alerts": {"channels": {"c": spec}}}, context=CLIENTS
            )
            assert secret_values(config, {"WK_FIELD": "s3cr3t-value"}) == ["s3cr3t-value"], (
                f"{type_of(model)}.{name}"
            )
