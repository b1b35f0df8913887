"""The daemon's configuration: one YAML file (``watchkeeper.yaml``) loaded into frozen objects.

Unknown keys are errors, every error names the file, line, column and key, and secrets are
never written in the file: it names the environment variables that hold them
(``token_env: SLACK_BOT_TOKEN``), and loading fails when such a variable is not set.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from watchkeeper.daemon.config_alerts import AlertsConfig
from watchkeeper.daemon.config_fields import NonEmpty, PositiveInt, StrictSection
from watchkeeper.daemon.config_kafka import KAFKA_CLIENTS, KafkaConfig, OptionsCheck
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


def validation_context(
    clients: Mapping[str, OptionsCheck], env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The context :class:`Config` validates with: the environment secrets are read from
    and the registered Kafka clients' option checks."""
    return {"env": env if env is not None else os.environ, KAFKA_CLIENTS: clients}


FeatureKind = Literal["numeric", "categorical"]


class IngestConfig(StrictSection):
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
    feature_kinds: dict[str, dict[str, FeatureKind]] = Field(default_factory=dict)
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


class WindowConfig(StrictSection):
    size: Duration = Field(default=300.0, gt=0)
    allowed_lateness: Duration = 600.0
    reservoir_size: Annotated[int, Field(ge=0, le=100_000)] = 512
    sketch_k: Annotated[int, Field(ge=8, le=65535)] = 200
    """KLL accuracy parameter: normalised rank error ≈ 1.33 % at k = 200 (DataSketches docs)."""
    max_categories: Annotated[int, Field(ge=1, le=100_000)] = 256


class StoreConfig(StrictSection):
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


class HttpConfig(StrictSection):
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


class ReportsConfig(StrictSection):
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


class PoliciesConfig(StrictSection):
    paths: list[NonEmpty] = Field(default_factory=list)
    poll_interval: Duration = Field(default=1.0, gt=0)
    """How often each policy looks for a tick of its schedule that is due."""
    max_catchup_ticks: PositiveInt = 200
    """At most this many ticks per policy run while catching up in event time (backfill,
    replay, after downtime); the next run, a poll later, goes on, and other policies get
    their turns in between."""


class Config(StrictSection):
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
