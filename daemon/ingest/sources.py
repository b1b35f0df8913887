"""The Kafka clients the daemon can read with: one line per client module.

Adding a client is one module implementing
:class:`~watchkeeper.daemon.ingest.source.Source` and one line in :data:`SOURCES`;
``tests/unit/test_sources.py`` checks every entry against the protocol.
"""

from __future__ import annotations

from collections.abc import Callable

from watchkeeper.daemon.config import Config
from watchkeeper.daemon.ingest import confluent, kafka_python
from watchkeeper.daemon.ingest.source import Source

SourceFactory = Callable[[Config], Source]

SOURCES: dict[str, SourceFactory] = {
    kafka_python.NAME: kafka_python.KafkaPythonSource,
    confluent.NAME: confluent.ConfluentSource,
}
DEFAULT = kafka_python.NAME


def open_source(config: Config, client: str | None = None) -> Source:
    """A new (not yet subscribed) source of the named client (default: the config's
    ``kafka.client``)."""
    if client is None:
        client = config.kafka.client
    try:
        factory = SOURCES[client]
    except KeyError:
        raise ValueError(f"unknown Kafka client {client!r}; known: {sorted(SOURCES)}") from None
    return factory(config)
