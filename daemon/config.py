"""The daemon's configuration: one YAML file (``watchkeeper.yaml``) loaded into frozen objects.

Unknown keys are errors, every error names the file, line, column and key, and secrets are
never written in the file: it names the environment variables that hold them
(``token_env: SLACK_BOT_TOKEN``), and loading fails when such a variable is not set.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import ConfigDict, Field
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from watchkeeper.daemon.config_alerts import AlertsConfig
from watchkeeper.daemon.config_shadow import ShadowConfig
from watchkeeper.policies.durations import Duration
from watchkeeper.policies.secret_fields import EnvName, PlainUrl, secret_env_names
from watchkeeper.policies.secrets import (
    CREDENTIAL_QUERY_KEYS,
    has_url_credentials,
    secret_parts,
)
from watchkeeper.policies.yamlsource import read_yaml, validate_document

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def _query_secret(query: Mapping[str, Any]) -> bool:
    """A database URL's query holding a credential (``?password=…``, ``sslpassword``)."""
    return any(str(key).lower() in CREDENTIAL_QUERY_KEYS for key in query)


NonEmpty = Annotated[str, Field(min_length=1)]
PositiveInt = Annotated[int, Field(gt=0)]

OptionsCheck = Callable[[Mapping[str, Any]], None]
"""A Kafka client's check of ``kafka.options``: raises ``ValueError`` naming the option and
where the allowed ones are listed. Each client module defines its own; the config layer may
not import the clients, so the loader's callers hand them in (``load_config(clients=...)``,
built from ``daemon/ingest/sources.py``)."""
KAFKA_CLIENTS = "kafka_clients"
"""The validation-context key holding the ``{client name: OptionsCheck}`` mapping."""


def validation_context(
    clients: Mapping[str, OptionsCheck], env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The context :class:`Config` validates with: the environment secrets are read from
    and the registered Kafka clients' option checks."""
    return {"env": env if env is not None else os.environ, KAFKA_CLIENTS: clients}


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


class _Strict(pydantic.BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldPaths(_Strict):
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


class TopicConfig(_Strict):
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


class TopicsConfig(_Strict):
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


class KafkaConfig(_Strict):
    client: NonEmpty = Field("kafka-python", validate_default=True)
    """The Kafka client the daemon reads with: kafka-python (pure Python, the default) or
    confluent (confluent-kafka on librdkafka, several times faster)."""
    bootstrap_servers: list[NonEmpty] = Field(min_length=1)
    group_id: NonEmpty = "watchkeeper"
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
    options: dict[str, Any] = {}
    """Further client options, checked against the client's own list: kafka-python
    ``KafkaConsumer`` keyword arguments, or librdkafka properties for ``confluent``."""

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


FeatureKind = Literal["numeric", "categorical"]


class IngestConfig(_Strict):
    max_record_bytes: PositiveInt = 1024 * 1024
    """Records larger than this are quarantined as ``oversized``."""
    flush_interval: Duration = 5.0
    """How often window state and offsets are committed to the store (one transaction)."""
    flush_max_events: PositiveInt = 500_000
    """Commit sooner when this many events wait in memory."""
    poll_timeout: Duration = 1.0
    max_future_skew: Duration = 3600.0
    """Events stamped further ahead of the daemon's clock are quarantined (``ts_in_future``)."""
    max_features: PositiveInt = 500
    """Per model; features beyond it are ignored and counted, so memory stays bounded."""
    max_models: PositiveInt = 200
    """Distinct models; records of further models are quarantined (``too_many_models``)."""
    max_versions: PositiveInt = 50
    """Per model; records of further versions are quarantined (``too_many_versions``)."""
    max_name_chars: Annotated[int, Field(ge=1, le=200)] = 200
    """Longest model, version, request id and feature name, and category value
    (``name_too_long`` / ``value_too_long``); the store's columns hold 200."""
    quarantine_prefix_bytes: PositiveInt = 1024
    feature_kinds: dict[str, dict[str, FeatureKind]] = {}
    """Declared kinds per model and feature; undeclared ones are inferred from the first value."""
    store_retry_interval: Duration = 2.0
    """While the store is unreachable, consumption pauses and the commit is retried this often."""
    label_ttl: Duration = 7 * 86400.0
    """How long (event time) a prediction waits for its label, and a label for its
    prediction: a waiting prediction expires once the model's labels stream has passed it
    by this much (and a waiting label once the predictions stream has)."""
    label_max_wait: Duration = 30 * 86400.0
    """Wall-clock cap on that wait, whatever the streams do (a labels stream stopped for
    good), so the store stays bounded."""
    idle_timeout: Duration = 60.0
    """A partition that is caught up and has brought none of a model's events for this
    long stops holding that model's windows open (and its policies' ticks back)."""
    max_pending: PositiveInt = 1_000_000
    """Per model: predictions (and early labels) waiting to be joined; the oldest go first."""
    decision_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    """Turns a binary score into a predicted class when the prediction carries no class."""


class WindowConfig(_Strict):
    size: Duration = Field(default=300.0, gt=0)
    allowed_lateness: Duration = 600.0
    reservoir_size: Annotated[int, Field(ge=0, le=100_000)] = 512
    sketch_k: Annotated[int, Field(ge=8, le=65535)] = 200
    """KLL accuracy parameter: normalised rank error ≈ 1.33 % at k = 200 (DataSketches docs)."""
    max_categories: Annotated[int, Field(ge=1, le=100_000)] = 256


class StoreConfig(_Strict):
    url: str | None = None
    url_env: EnvName | None = None
    retention: Duration = 30 * 86400.0
    """Hourly, windows (and shadow windows, and label joins still waiting for them) more
    than this behind their model's newest event time are deleted — never one a policy of
    the model has still to evaluate — and quarantined records and sent notifications
    older than this by the wall clock; evaluations are kept this long behind their
    policy's last tick; 0 keeps everything."""

    @pydantic.model_validator(mode="after")
    def _check(self) -> StoreConfig:
        if self.url is not None and self.url_env is not None:
            raise ValueError("give either url or url_env, not both")
        if self.url is not None:
            try:
                parsed = make_url(self.url)
            except ArgumentError as exc:
                raise ValueError(f"not a database URL: {exc}") from None
            if parsed.password or has_url_credentials(self.url) or _query_secret(parsed.query):
                raise ValueError(
                    "the URL holds a password or another credential (the value is not "
                    "shown): put the whole URL in an environment variable and name it "
                    "with url_env"
                )
            if parsed.get_backend_name() not in ("sqlite", "postgresql"):
                raise ValueError("the store is SQLite (sqlite:///file.db) or PostgreSQL")
        return self


class HttpConfig(_Strict):
    listen: str = "127.0.0.1:8450"
    token_env: EnvName | None = None
    """Bearer token for requests that change something (required beyond loopback)."""
    public_url: PlainUrl | None = None
    """How others reach this server, for links in alerts (default: http://<listen>)."""

    @pydantic.field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(
                "write host:port, e.g. 127.0.0.1:8450 or [::1]:8450 (port 0 picks a free one)"
            )
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            address = ipaddress.ip_address(bare)
        except ValueError:
            if not _HOSTNAME.match(bare):
                raise ValueError(f"'{host[:60]}' is not an IP address or host name") from None
        else:
            if address.version == 6 and bare == host:
                raise ValueError("write an IPv6 address in brackets: [::1]:8450")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class ReportsConfig(_Strict):
    dir: NonEmpty = "reports"
    """Where drift reports are written (relative to the config file) and served from."""
    max_bytes: Annotated[int, Field(ge=1024 * 1024)] = 256 * 1024 * 1024
    """The folder's size bound: the oldest reports are deleted beyond it (and logged)."""
    max_age: Duration = Field(default=7 * 86400.0, gt=0)
    """Reports older than this are deleted; a link still works (made again on a visit)."""
    queue: Annotated[int, Field(ge=1, le=100)] = 4
    """Reports waiting to be made (one is made at a time); beyond, 503 with Retry-After."""
    wait: Duration = Field(default=20.0, gt=0)
    """How long a visit waits for its report to be made before 503 with Retry-After."""


class PoliciesConfig(_Strict):
    paths: list[NonEmpty] = []
    poll_interval: Duration = Field(default=1.0, gt=0)
    """How often each policy looks for a tick of its schedule that is due."""
    max_catchup_ticks: PositiveInt = 200
    """At most this many ticks per policy run while catching up in event time (backfill,
    replay, after downtime); the next run, a poll later, goes on, and other policies get
    their turns in between."""


class Config(_Strict):
    """The whole daemon configuration."""

    kafka: KafkaConfig
    store: StoreConfig = StoreConfig()
    http: HttpConfig = HttpConfig()
    ingest: IngestConfig = IngestConfig()
    windows: WindowConfig = WindowConfig()
    reports: ReportsConfig = ReportsConfig()
    policies: PoliciesConfig = PoliciesConfig()
    alerts: AlertsConfig = AlertsConfig()
    shadow: ShadowConfig = ShadowConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def store_url(self, env: Mapping[str, str] | None = None) -> str:
        """The store URL, read from the environment when the file names a variable."""
        if self.store.url_env is not None:
            return (env if env is not None else os.environ)[self.store.url_env]
        return self.store.url or "sqlite:///watchkeeper.db"


def _resolve_relative(config: Config, base: Path) -> Config:
    """Relative file paths in the config are relative to the config file, not the CWD."""
    update: dict[str, Any] = {}
    url = config.store.url
    if url is not None:
        parsed = make_url(url)
        db = parsed.database
        relative = db and db != ":memory:" and not Path(db).is_absolute()
        if parsed.get_backend_name() == "sqlite" and relative:
            url = parsed.set(database=str(base / str(db))).render_as_string(hide_password=False)
            update["store"] = config.store.model_copy(update={"url": url})
    if url is None and config.store.url_env is None:
        update["store"] = StoreConfig(url=f"sqlite:///{base / 'watchkeeper.db'}")
    if not Path(config.reports.dir).is_absolute():
        update["reports"] = config.reports.model_copy(
            update={"dir": str(base / config.reports.dir)}
        )
    paths = [p if Path(p).is_absolute() else str(base / p) for p in config.policies.paths]
    update["policies"] = PoliciesConfig(paths=paths)
    dirs = [d if Path(d).is_absolute() else str(base / d) for d in config.shadow.model_dirs]
    update["shadow"] = config.shadow.model_copy(update={"model_dirs": tuple(dirs)})
    return config.model_copy(update=update)


def load_config(
    path: str | Path,
    env: Mapping[str, str] | None = None,
    *,
    clients: Mapping[str, OptionsCheck],
) -> Config:
    """Load and validate a config file; raise ``InvalidDocumentError`` naming every error.

    ``clients`` maps each registered Kafka client's name to its check of ``kafka.options``
    (``daemon.ingest.sources.option_checks()``)."""
    doc = read_yaml(path)
    config = validate_document(Config, doc, context=validation_context(clients, env))
    return _resolve_relative(config, Path(path).resolve().parent)


def secret_values(config: Config, env: Mapping[str, str] | None = None) -> list[str]:
    """Every secret the config makes the daemon hold, so logs can redact them."""
    source = env if env is not None else os.environ
    names = secret_env_names(config)
    values = [source[n] for n in names if source.get(n)]
    if config.store.url_env and source.get(config.store.url_env):
        try:
            url = make_url(source[config.store.url_env])
        except ArgumentError:
            url = None
        if url is not None:
            if url.password:
                values.append(str(url.password))
            values += [str(v) for k, v in url.query.items() if k.lower() in CREDENTIAL_QUERY_KEYS]
    # a URL secret is secret in pieces too: its path (a Slack webhook's /services/T…/B…/…),
    # its query and user info, which an endpoint or a proxy may echo without the rest
    out: list[str] = []
    for value in values:
        for part in secret_parts(value):
            if part not in out:
                out.append(part)
    return out
