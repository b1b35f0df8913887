"""An empty partition, and one a fresh group starts at the end of (``auto_offset_reset:
latest``), for every client: its position is its end, and the daemon counts it as caught
up (the event-time rule reads it: shared/DESIGN.md, idle partitions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from watchkeeper.daemon.config import Config
from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.ingest import sources
from watchkeeper.daemon.store.store import Store

from tests.integration.test_ingest import event, running, totals
from tests.integration.test_sources import Listener, poll_until, source_config
from tests.support import create_topic, produce, wait_until


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
    config = source_config(tmp_path, broker, topic_name, client)
    with running(config) as daemon:
        wait_until(lambda: totals(config)["events"] == 20, timeout=60)
        wait_until(lambda: caught_up(config) == {0: True, 1: True}, timeout=60)
        assert daemon.started.is_set()


@pytest.mark.parametrize("client", sorted(sources.CLIENTS))
def test_latest_on_a_quiet_partition_with_old_records_reads_as_at_its_end(
    client: str, broker: EmbeddedBroker, topic_name: str, tmp_path: Path
) -> None:
    """``auto_offset_reset: latest``, a group with no offset: the consumer starts at each
    partition's end. A quiet partition that holds old records (low watermark below high)
    gives it nothing to consume, so librdkafka never reports a position for it; it is at
    its end all the same (kafka-python reports that end: the reference)."""
    create_topic(broker.bootstrap, topic_name, partitions=2)
    for _ in range(3):  # a batch each: Tansu's end offset is exact after a one-record batch
        produce(broker.bootstrap, topic_name, [b"old"], partition=1)
    config = source_config(tmp_path, broker, topic_name, client)
    config = config.model_copy(
        update={"kafka": config.kafka.model_copy(update={"auto_offset_reset": "latest"})}
    )
    source = sources.open_source(config, client)
    listener = Listener()
    quiet = (topic_name, 1)
    try:
        source.subscribe([topic_name], listener)

        def at_end() -> bool:
            assert source.poll(0.5) == {}  # nothing old is read
            if quiet not in listener.assigned:
                return False
            return source.end_offset(quiet) == 3 and source.position(quiet) == 3

        wait_until(
            at_end, timeout=60, describe=lambda: (source.end_offset(quiet), source.position(quiet))
        )
    finally:
        source.close()


@pytest.mark.parametrize("client", sorted(sources.CLIENTS))
def test_latest_counts_a_quiet_partition_with_old_records_as_caught_up(
    client: str, broker: EmbeddedBroker, topic_name: str, tmp_path: Path
) -> None:
    """The daemon with ``auto_offset_reset: latest`` and a fresh group: a partition whose
    records are all older than the group (nothing new comes to it) is caught up once the
    consumer sits at its end, so it does not hold the role's watermark."""
    create_topic(broker.bootstrap, topic_name, partitions=2)
    for i in range(5):  # a batch each: Tansu's end offset is exact after a one-record batch
        produce(broker.bootstrap, topic_name, [event(i)], partition=1)
    config = source_config(
        tmp_path, broker, topic_name, client, kafka={"auto_offset_reset": "latest"}
    )
    with running(config) as daemon:
        wait_until(daemon.started.is_set, timeout=60)
        wait_until(
            lambda: caught_up(config) == {0: True, 1: True},
            timeout=60,
            describe=lambda: caught_up(config),
        )
        assert totals(config)["events"] == 0  # the old records are not read


def caught_up(config: Config) -> dict[int, bool]:
    """Whether the daemon's stored status has each partition caught up, by partition."""
    with Store.open(config.store_url(), migrate=False) as store:
        found = store.partition_statuses(config.kafka.group_id)
    return {key[1]: status.caught_up for key, (status, _o, _u) in found.items()}
