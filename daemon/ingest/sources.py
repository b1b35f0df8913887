"""The Kafka clients the daemon can read with: one line per client module.

Adding a client is one module implementing
:class:`~watchkeeper.daemon.ingest.source.Source` and its ``check_options``, and one line in
:data:`CLIENTS`; ``tests/unit/test_sources.py`` checks every entry against the protocol and
checks that each refuses unknown, secret and watchkeeper-owned options when the config loads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from watchkeeper.daemon.config import Config
from watchkeeper.daemon.config_kafka import OptionsCheck
from watchkeeper.daemon.ingest import confluent, kafka_python
from watchkeeper.daemon.ingest.source import Source

SourceFactory = Callable[[Config], Source]
OptionsMapping = Callable[[Config, Mapping[str, str] | None], dict[str, Any]]


@dataclass(frozen=True)
class KafkaClient:
    """One registered client: how to open its source, how the ``kafka`` section maps onto
    the client's own options, and its check of ``kafka.options`` (run when the config
    loads, so a wrong option is reported with file and line)."""

    source: SourceFactory
    options: OptionsMapping
    check_options: OptionsCheck


CLIENTS: dict[str, KafkaClient] = {
    kafka_python.NAME: KafkaClient(
        kafka_python.KafkaPythonSource, kafka_python.consumer_options, kafka_python.check_options
    ),
    confluent.NAME: KafkaClient(
        confluent.ConfluentSource, confluent.consumer_options, confluent.check_options
    ),
}
DEFAULT = kafka_python.NAME


def option_checks() -> dict[str, OptionsCheck]:
    """Each client's ``kafka.options`` check by name: what ``load_config`` is handed."""
    return {name: client.check_options for name, client in CLIENTS.items()}


def open_source(config: Config, client: str | None = None) -> Source:
    """A new (not yet subscribed) source of the named client (default: the config's
    ``kafka.client``)."""
    if client is None:
        client = config.kafka.client
    try:
        entry = CLIENTS[client]
    except KeyError:
        raise ValueError(f"unknown Kafka client {client!r}; known: {sorted(CLIENTS)}") from None
    return entry.source(config)
