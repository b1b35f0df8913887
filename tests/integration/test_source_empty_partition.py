"""An empty partition, for every client: its position is its end, and the daemon counts
it as caught up (the event-time rule reads it: shared/DESIGN.md, idle partitions)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.ingest import sources
from watchkeeper.daemon.store.store import Store

from tests.integration.test_ingest import event, running, totals
from tests.integration.test_sources import Listener, poll_until, source_config
from tests.support import create_topic, make_config, produce, wait_until


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


@pytest.mark.parametrize("client", sorted(sources.CLIENTS))
def test_the_daemon_counts_an_empty_partition_as_caught_up(
    client: str, broker: EmbeddedBroker, topic_name: str, tmp_path: Path
) -> None:
    """A topic with a partition nothing was ever written to (a key space that does not
    reach it): once the rest is read, every partition is caught up, so the empty one does
    not hold the role's watermark."""
    create_topic(broker.bootstrap, topic_name, partitions=2)
    produce(broker.bootstrap, topic_name, [event(i) for i in range(20)], partition=0)
    config = make_config(
        tmp_path,
        broker.bootstrap,
        f"sqlite:///{tmp_path / 's.db'}",
        {"predictions": {"name": topic_name}},
        group=f"g-{uuid.uuid4().hex[:8]}",
        client=client,
    )
    with running(config) as daemon:
        wait_until(lambda: totals(config)["events"] == 20, timeout=60)

        def statuses() -> dict[int, bool]:
            with Store.open(config.store_url(), migrate=False) as store:
                found = store.partition_statuses(config.kafka.group_id)
            return {key[1]: status.caught_up for key, (status, _o, _u) in found.items()}

        wait_until(lambda: statuses() == {0: True, 1: True}, timeout=60)
        assert daemon.started.is_set()
