"""The ``kafka`` section of the daemon config: brokers, the group, the client, its options
(checked by the chosen client's own ``check_options``, handed in through the validation
context), and the topics with the paths of each field in their records."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import pydantic
from pydantic import Field
from watchkeeper.daemon.config_fields import NonEmpty, PositiveInt, StrictSection
from watchkeeper.policies.durations import Duration
from watchkeeper.policies.secret_fields import EnvName

OptionsCheck = Callable[[Mapping[str, Any]], None]
"""A Kafka client's check of ``kafka.options``: raises ``ValueError`` naming the option and
where the allowed ones are listed. Each client module defines its own; the config layer may
not import the clients, so the loader's callers hand them in (``load_config(clients=...)``,
built from ``daemon/ingest/sources.py``)."""
KAFKA_CLIENTS = "kafka_clients"
"""The validation-context key holding the ``{client name: OptionsCheck}`` mapping."""


def _client_checks(info: pydantic.ValidationInfo) -> Mapping[str, OptionsCheck]:
    checks: Mapping[str, OptionsCheck] | None = (info.context or {}).get(KAFKA_CLIENTS)
    if checks is None:
        # a programming error, not a config one: raised past pydantic, never shown as the
        # user's mistake (pydantic only collects ValueError and AssertionError)
        raise TypeError(
            "the Kafka clients' option checks were not handed to the config "
            "(load_config(..., clients=sources.option_checks()) or validation_context)"
        )
    return checks


class FieldPaths(StrictSection):
    """Dotted paths of each field inside a topic's JSON records; ``null`` when absent."""

    model: str | None = "model"
    model_version: str | None = "model_version"
    request_id: str | None = "request_id"
    ts: str | None = "ts"
    features: str | None = "features"
    prediction: str | None = "prediction"
    """The model's output: a score, probabilities, a class or a regression value."""
    prediction_class: str | None = None
    """The model's own decision, when it logs one beside its score (``y_pred`` beside
    ``y_pred_proba``): accuracy-type metrics grade it; ranking metrics use the score."""
    latency_ms: str | None = "latency_ms"
    label: str | None = "label"


class TopicConfig(StrictSection):
    """One Kafka topic and how to read its records."""

    name: NonEmpty
    model: str | None = None
    """The model every record of this topic belongs to, for topics that carry no model field."""
    fields: FieldPaths = FieldPaths()
    ts_unit: Literal["auto", "ms", "s"] = "auto"
    """Unit of numeric timestamps; ``auto`` reads values ≥ 10¹¹ as milliseconds, others as s."""


Role = Literal["predictions", "features", "labels"]
ROLES: tuple[Role, ...] = ("predictions", "features", "labels")

# What a record of each role must carry; other fields are optional.
REQUIRED_FIELDS: dict[Role, tuple[str, ...]] = {
    "predictions": ("model", "ts", "prediction"),
    "features": ("model", "ts", "features"),
    "labels": ("model", "ts", "request_id", "label"),
}


class TopicsConfig(StrictSection):
    predictions: TopicConfig | None = None
    features: TopicConfig | None = None
    labels: TopicConfig | None = None

    @pydantic.model_validator(mode="after")
    def _check(self) -> TopicsConfig:
        named = [(role, t.name) for role in ROLES if (t := getattr(self, role)) is not None]
        if not named:
            raise ValueError("name at least one topic: predictions, features or labels")
        names = [n for _, n in named]
        if len(set(names)) != len(names):
            raise ValueError("each role needs its own topic; the same name appears twice")
        for role in ROLES:
            topic: TopicConfig | None = getattr(self, role)
            if topic is None:
                continue
            for field in REQUIRED_FIELDS[role]:
                if field == "model" and topic.model is not None:
                    continue
                if field == "ts":
                    continue  # a null ts path means "use the Kafka record timestamp"
                if getattr(topic.fields, field) is None:
                    raise ValueError(f"topic '{role}' needs a path for '{field}'")
        return self

    def by_role(self) -> dict[Role, TopicConfig]:
        return {role: t for role in ROLES if (t := getattr(self, role)) is not None}


class KafkaConfig(StrictSection):
    client: NonEmpty = Field("kafka-python", validate_default=True)
    """The Kafka client the daemon reads with: kafka-python (pure Python, the default) or
    confluent (confluent-kafka on librdkafka, several times faster)."""
    bootstrap_servers: list[NonEmpty] = Field(min_length=1)
    group_id: NonEmpty = "watchkeeper"
    adopt_offsets_from: NonEmpty | None = None
    """A consumer group whose offsets in the store ``group_id`` takes over (moved, once, at
    start) when it holds none: changing ``group_id`` over a store refuses to start
    otherwise, since reading the topics again would count every event twice."""
    client_id: NonEmpty = "watchkeeper"
    topics: TopicsConfig
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    """Where to start on a partition watchkeeper has stored no offset for."""
    session_timeout: Duration = 10.0
    heartbeat_interval: Duration = 3.0
    max_poll_records: PositiveInt = 20_000
    fetch_max_bytes: PositiveInt = 64 * 1024 * 1024
    max_partition_fetch_bytes: PositiveInt = 16 * 1024 * 1024
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password_env: EnvName | None = None
    ssl_cafile: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    """Further client options, checked against the client's own list: kafka-python
    ``KafkaConsumer`` keyword arguments, or librdkafka properties for ``confluent``."""

    @pydantic.model_validator(mode="after")
    def _adopt_another(self) -> KafkaConfig:
        if self.adopt_offsets_from == self.group_id:
            raise ValueError(
                f"adopt_offsets_from is group_id itself ('{self.group_id}'): it names the "
                "old group whose stored offsets this one takes over"
            )
        return self

    @pydantic.field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @pydantic.field_validator("client")
    @classmethod
    def _registered_client(cls, value: str, info: pydantic.ValidationInfo) -> str:
        known = _client_checks(info)
        if value not in known:
            allowed = ", ".join(repr(name) for name in sorted(known))
            raise ValueError(f"unknown Kafka client '{value}'; allowed: {allowed}")
        return value

    @pydantic.field_validator("options")
    @classmethod
    def _client_options(
        cls, value: dict[str, Any], info: pydantic.ValidationInfo
    ) -> dict[str, Any]:
        client = info.data.get("client")
        if client is not None:  # None: the client itself was refused, and that is reported
            _client_checks(info)[client](value)
        return value
