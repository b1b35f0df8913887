"""An empty partition's position, for every client (the caught-up rule reads it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.ingest import sources
from tests.integration.test_sources import Listener, poll_until, source_config
from tests.support import create_topic, produce


@pytest.mark.parametrize("client", sorted(sources.CLIENTS))
def test_an_empty_partition_reads_as_at_its_end(
    client: str, broker: EmbeddedBroker, topic_name: str, tmp_path: Path
) -> None:
    create_topic(broker.bootstrap, topic_name, partitions=2)
    produce(broker.bootstrap, topic_name, [b"v"], partition=0)
    source = sources.open_source(source_config(tmp_path, broker, topic_name), client)
    try:
        source.subscribe([topic_name], Listener())
        poll_until(source, 1)
        for _ in range(6):
            source.poll(0.5)
        empty = (topic_name, 1)
        print(client, source.end_offset(empty), source.position(empty))
        assert source.end_offset(empty) == 0
        assert source.position(empty) == 0
    finally:
        source.close()
