"""The ``kafka.options`` section's checks, per client: which options carry secrets (they
must come from the environment), which watchkeeper sets itself, and which the client
knows — kafka-python's ``KafkaConsumer`` keyword arguments, librdkafka's properties.
"""

from __future__ import annotations

from typing import Any, Literal

from confluent_kafka import Consumer, KafkaException
from kafka import KafkaConsumer

# kafka-python options that carry secrets: they must come from the environment.
_SECRET_OPTIONS = {"sasl_plain_password", "ssl_password", "sasl_oauth_token_provider"}
# options watchkeeper sets itself; a user value would break its offset handling.
_OWNED_OPTIONS = {
    "bootstrap_servers",
    "group_id",
    "enable_auto_commit",
    "key_deserializer",
    "value_deserializer",
    "auto_offset_reset",
    "client_id",
}
# The same for confluent-kafka, in librdkafka's property names (its CONFIGURATION.md).
_CONFLUENT_SECRET_OPTIONS = {
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.key.pem",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.config",
}
_CONFLUENT_OWNED_OPTIONS = {
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "client.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.partition.eof",
    "on_commit",
    "error_cb",
    "stats_cb",
    "logger",
}

KafkaClient = Literal["kafka-python", "confluent"]


def check_kafka_python_options(value: dict[str, Any]) -> None:
    known = set(KafkaConsumer.DEFAULT_CONFIG)
    for key in value:
        if key in _SECRET_OPTIONS:
            raise ValueError(f"'{key}' is a secret: use sasl_password_env instead")
        if key in _OWNED_OPTIONS:
            raise ValueError(f"'{key}' is set by watchkeeper itself (see the kafka section)")
        if key not in known:
            raise ValueError(
                f"unrecognized kafka-python consumer option '{key}' "
                "(see kafka-python's KafkaConsumer documentation for the list)"
            )


def check_confluent_options(value: dict[str, Any]) -> None:
    for key, option in value.items():
        if key in _CONFLUENT_SECRET_OPTIONS:
            raise ValueError(f"'{key}' is a secret: use sasl_password_env instead")
        if key in _CONFLUENT_OWNED_OPTIONS:
            raise ValueError(f"'{key}' is set by watchkeeper itself (see the kafka section)")
        if not isinstance(option, str | int | float | bool):
            raise ValueError(f"librdkafka option '{key}' takes a string, number or boolean")
    # librdkafka knows its own properties and their values: a consumer without brokers is
    # built (it connects to nothing; ~5 ms) and dropped, so a typo fails when the file loads
    try:
        probe = Consumer({"group.id": "watchkeeper-config-check", **value})
    except KafkaException as exc:
        message = exc.args[0].str()
        raise ValueError(f"{message} (see librdkafka's CONFIGURATION.md for the list)") from None
    probe.close()
