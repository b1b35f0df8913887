"""Every registered Kafka client against the real broker (Tansu): the :class:`Source`
contract the ingestion loop relies on — assignment callbacks, batches per partition in
offset order, seek, pause / resume, the mirrored commit, ends and positions, and the
connection count that shows a broker outage."""

from __future__ import annotations

import gc
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from watchkeeper.daemon.config import Config
from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.eventtime.watermarks import PartitionKey
from watchkeeper.daemon.ingest import sources
from watchkeeper.daemon.ingest.source import Record, Source

from tests.support import create_topic, make_config, produce

pytestmark = pytest.mark.broker


class Listener:
    def __init__(self) -> None:
        self.assigned: list[PartitionKey] = []
        self.revoked: list[PartitionKey] = []

    def on_assigned(self, partitions: list[PartitionKey]) -> None:
        self.assigned.extend(partitions)

    def on_revoked(self, partitions: list[PartitionKey]) -> None:
        self.revoked.extend(partitions)


def source_config(
    tmp_path: Path,
    broker: EmbeddedBroker,
    topic: str,
    client: str | None = None,
    options: dict[str, Any] | None = None,
    kafka: dict[str, Any] | None = None,
) -> Config:
    """A config reading ``topic`` from ``broker`` in a group of its own; ``options``: its
    ``kafka.options``, ``kafka``: other fields of its ``kafka`` section."""
    section = {**(kafka or {}), **({"options": options} if options else {})}
    return make_config(
        tmp_path,
        broker.bootstrap,
        f"sqlite:///{tmp_path / 's.db'}",
        {"predictions": {"name": topic}},
        group=f"g-{uuid.uuid4().hex[:8]}",
        client=client,
        **({"kafka": section} if section else {}),
    )


def poll_until(source: Source, want: int, timeout: float = 60.0) -> list[Record]:
    """Poll until ``want`` records came (counted, never trusting lag: Tansu's end offsets
    can be short by a batch, shared/DESIGN.md)."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(got) < want:
        assert time.monotonic() < deadline, f"{len(got)} of {want} records within {timeout}s"
        for key, records in source.poll(0.5).items():
            assert all(r.partition == key[1] for r in records)
            offsets = [r.offset for r in records]
            assert offsets == sorted(offsets)
            got.extend(records)
    return got


@pytest.mark.parametrize("client", sorted(sources.CLIENTS))
def test_a_source_keeps_the_contract(
    client: str, broker: EmbeddedBroker, topic_name: str, tmp_path: Path
) -> None:
    create_topic(broker.bootstrap, topic_name, partitions=1)
    produce(broker.bootstrap, topic_name, [f"v{i}".encode() for i in range(10)], partition=0)
    source = sources.open_source(source_config(tmp_path, broker, topic_name), client)
    listener = Listener()
    try:
        source.subscribe([topic_name], listener)
        records = poll_until(source, 10)
        key = (topic_name, 0)
        assert listener.assigned == [key]
        assert source.assignment() == {key}
        assert [r.value for r in records] == [f"v{i}".encode() for i in range(10)]
        assert [r.offset for r in records] == list(range(10))
        assert all(isinstance(r.timestamp, int) for r in records)
        end: Any = source.end_offset(key)
        assert end is None or end >= 10 - 1  # Tansu's end may lag one batch
        assert source.position(key) == 10

        source.seek(key, 7)
        again = poll_until(source, 3)
        assert [r.offset for r in again] == [7, 8, 9]

        source.pause([key])
        assert source.paused() == {key}
        produce(broker.bootstrap, topic_name, [b"late"], partition=0)
        source.resume([key])
        assert source.paused() == set()
        assert [r.value for r in poll_until(source, 1)] == [b"late"]

        source.commit({key: 11})  # best effort, asynchronous: it must not raise
    finally:
        source.close()


# kafka-python 3.0.12 leaves the socket of each refused connection attempt to the garbage
# collector (kafka/net/inet.py: sock_connect raises without closing it): ignored here,
# where they are known to come from, and collected before the test ends, so no later
# test meets them as an unraisable ResourceWarning. Its "Connection failed" log records
# would keep those sockets alive past the test (through the exception's frames): the
# kafka loggers are quiet while it runs.
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
@pytest.mark.parametrize("client", sorted(sources.CLIENTS))
def test_a_source_counts_its_broker_connections_through_an_outage(
    client: str, topic_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Connected while it consumes, 0 once its broker is gone, connected again once it is
    back (a broker of its own: the session's is shared). Waited on the count, never on a
    sleep."""
    caplog.set_level(logging.CRITICAL, logger="kafka")
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log").start()
    try:
        create_topic(broker.bootstrap, topic_name, partitions=1)
        produce(broker.bootstrap, topic_name, [b"v"], partition=0)
        # librdkafka reports its brokers' states with its statistics (5 s by default)
        options = {"statistics.interval.ms": 200} if client == "confluent" else {}
        config = source_config(tmp_path, broker, topic_name, client=client, options=options)
        source = sources.open_source(config, client)
        try:
            source.subscribe([topic_name], Listener())
            poll_until(source, 1)
            assert wait_for_connections(source, lambda n: n >= 1) >= 1
            broker.stop()
            assert wait_for_connections(source, lambda n: n == 0) == 0
            # and back: the client reconnects by itself (closing it while it still tries
            # would leave kafka-python's connecting socket to the garbage collector)
            broker = EmbeddedBroker(port=broker.port, log_path=tmp_path / "b2.log").start()
            assert wait_for_connections(source, lambda n: n >= 1) >= 1
        finally:
            source.close()
            gc.collect()  # what kafka-python left to the collector, under this test's filter
    finally:
        broker.stop()


def wait_for_connections(source: Source, wanted: Any, timeout: float = 30.0) -> int | None:
    """Poll (the clients report from inside their polls) until the count is as wanted."""
    deadline = time.monotonic() + timeout
    while True:
        count = source.connections()
        if count is not None and wanted(count):
            return count
        assert time.monotonic() < deadline, f"connections {count} within {timeout}s"
        source.poll(0.1)


@pytest.mark.parametrize("client", sorted(sources.CLIENTS))
def test_a_partition_paused_while_others_flow_is_read_again_once_resumed(
    client: str, broker: EmbeddedBroker, topic_name: str, tmp_path: Path
) -> None:
    """What a paused partition had fetched is read once it is resumed, while the other
    partitions kept flowing meanwhile (kafka-python 3.0.12 parks a paused partition's
    fetched records, ``Fetcher._paused_partition_records``, and hands them back on
    resume: none lost, none twice)."""
    create_topic(broker.bootstrap, topic_name, partitions=2)
    held, flowing = (topic_name, 0), (topic_name, 1)
    produce(broker.bootstrap, topic_name, [b"a"] * 5, partition=0)
    produce(broker.bootstrap, topic_name, [b"b"] * 5, partition=1)
    source = sources.open_source(source_config(tmp_path, broker, topic_name), client)
    try:
        source.subscribe([topic_name], Listener())
        poll_until(source, 10)
        source.pause([held])
        for round_ in range(3):  # the paused partition's new records are fetched, parked
            produce(broker.bootstrap, topic_name, [b"p%d" % round_] * 50, partition=0)
            produce(broker.bootstrap, topic_name, [b"f%d" % round_] * 50, partition=1)
            got = poll_until(source, 50)
            assert {r.partition for r in got} == {1}
        source.resume([held])
        produce(broker.bootstrap, topic_name, [b"f"] * 5, partition=1)
        got = poll_until(source, 150 + 5)
        by_partition = {p: sum(r.partition == p for r in got) for p in (0, 1)}
        assert by_partition == {0: 150, 1: 5}, by_partition
        assert source.position(held) == 155 and source.position(flowing) == 160
    finally:
        source.close()


class Holding(Listener):
    """A listener that also keeps what its callbacks say the source holds."""

    def __init__(self) -> None:
        super().__init__()
        self.held: set[PartitionKey] = set()

    def on_assigned(self, partitions: list[PartitionKey]) -> None:
        super().on_assigned(partitions)
        self.held |= set(partitions)

    def on_revoked(self, partitions: list[PartitionKey]) -> None:
        super().on_revoked(partitions)
        self.held -= set(partitions)


@pytest.mark.parametrize("client", sorted(sources.CLIENTS))
def test_the_assignment_follows_each_rebalance(
    client: str, broker: EmbeddedBroker, topic_name: str, tmp_path: Path
) -> None:
    """``assignment()`` answers what the rebalance callbacks last gave, through a second
    member joining and leaving (the confluent source keeps librdkafka's answer between
    callbacks: asking librdkafka costs ~3 ms a call)."""
    create_topic(broker.bootstrap, topic_name, partitions=2)
    both = {(topic_name, 0), (topic_name, 1)}
    config = source_config(tmp_path, broker, topic_name)
    first, one = sources.open_source(config, client), Holding()
    second: Source | None = None
    try:
        first.subscribe([topic_name], one)
        wait_for_assignments([(first, one)], lambda: first.assignment() == both)
        second, two = sources.open_source(config, client), Holding()
        second.subscribe([topic_name], two)
        members = [(first, one), (second, two)]
        wait_for_assignments(
            members, lambda: len(first.assignment()) == len(second.assignment()) == 1
        )
        assert first.assignment() | second.assignment() == both
        assert first.assignment() == one.held and second.assignment() == two.held
        second.close()
        second = None
        wait_for_assignments([(first, one)], lambda: first.assignment() == both)
        assert one.held == both
    finally:
        first.close()
        if second is not None:
            second.close()


def wait_for_assignments(
    members: list[tuple[Source, Holding]], done: Any, timeout: float = 60.0
) -> None:
    """Poll every member (the clients rebalance from inside their polls) until ``done()``
    and each member's assignment is what its callbacks said.

    The members poll at the same time and all the time, each from a thread of its own (as
    each daemon polls from its own loop); the condition is read again once every poll
    stopped. Polling them in turn from one thread made kafka-python 3.0.12 livelock under
    load:
    ``join_group_async`` (kafka/coordinator/base.py) keeps the in-flight JoinGroup/SyncGroup
    task across polls, but when that task finishes while its consumer is not inside a poll
    (here: while the other member was polled), the next poll finds it done, with
    ``rejoin_needed`` still set, and sends a fresh JoinGroup, dropping the assignment it got;
    each such round costs Tansu's ~3 s join delay and forces the other member to rejoin too,
    so at load ~3 the group kept rejoining at generation 1 past the 60 s deadline.
    The daemon's loop has the same gap between its polls: a rebalance can cost it a few
    more ~3 s join rounds, never a session timeout (``close()`` sends LeaveGroup).
    """
    deadline = time.monotonic() + timeout

    def settled() -> bool:
        return bool(done()) and all(s.assignment() == h.held for s, h in members)

    while True:
        with Polling([source for source, _ in members]) as polling:
            polling.wait_until(settled, deadline, lambda: [s.assignment() for s, _ in members])
        if settled():  # read again with every poll stopped: what the asserts will see
            return


class Polling:
    """Each source polled in a loop from a thread of its own until the block exits (a poll
    that raised is raised again there)."""

    def __init__(self, members_: list[Source]) -> None:
        self._stop = threading.Event()
        self._polled = threading.Condition()
        self._errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._run, args=(s,)) for s in members_]

    def _run(self, source: Source) -> None:
        try:
            while not self._stop.is_set():
                # long polls: the gap between two is where kafka-python drops a join that
                # completes (see wait_for_assignments); at 0.1 s a member still lost ~1 join
                # in 6 runs to it, SyncGroup answered 1-2 ms after a poll timed out
                source.poll(1.0)
                with self._polled:
                    self._polled.notify_all()
        except BaseException as exc:  # re-raised by the test's thread
            self._errors.append(exc)
            self._stop.set()

    def wait_until(self, condition: Any, deadline: float, state: Any) -> None:
        """Wait (woken after each poll) until ``condition()``; fail at ``deadline``."""
        with self._polled:
            while not condition():
                if self._errors:
                    raise self._errors[0]
                left = deadline - time.monotonic()
                assert left > 0, state()
                self._polled.wait(min(left, 1.0))

    def __enter__(self) -> Polling:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        if self._errors:
            raise self._errors[0]
