"""The demo's traffic against the real broker: what it reports sent is what the topics
hold, record for record, and it reports nothing until it has stopped (a summary that read
its counters while it still ran claimed one tick, 45 records, too few: CI of 16ed597)."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer, TopicPartition
from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.demo.setup import Traffic

from tests.support import create_topic, wait_until

pytestmark = pytest.mark.broker


def read_back(bootstrap: str, topic: str, expected: int) -> dict[int, list[tuple[int, bytes]]]:
    """The (offset, value) records each partition of ``topic`` holds, read from the start:
    until ``expected`` records have come, then one more poll that must bring none."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        held: dict[int, list[tuple[int, bytes]]] = {tp.partition: [] for tp in parts}

        def read() -> int:
            for tp, records in consumer.poll(timeout_ms=500).items():
                held[tp.partition] += [(r.offset, r.value) for r in records]
            return sum(map(len, held.values()))

        wait_until(lambda: read() >= expected, timeout=60, describe=lambda: held.keys())
        read()  # anything beyond what was acknowledged would come now
        return held
    finally:
        consumer.close()


def test_the_traffic_reports_exactly_what_the_topics_hold(
    broker: EmbeddedBroker, topic_name: str
) -> None:
    predictions = create_topic(broker.bootstrap, f"{topic_name}-predictions", partitions=3)
    labels = create_topic(broker.bootstrap, f"{topic_name}-labels", partitions=3)
    traffic = Traffic(broker.bootstrap, predictions, labels, rate=600.0, label_delay_s=0.2)
    with traffic:
        wait_until(lambda: traffic.labels_produced >= 300, timeout=60)
        with pytest.raises(RuntimeError, match="still running"):
            traffic.sent()  # while it runs, another tick may go out after any reading
    sent = traffic.sent()
    assert sent.failed == 0
    # what was handed to the producer is what the broker acknowledged, once it stopped
    assert (sent.predictions, sent.labels) == (traffic.produced, traffic.labels_produced)
    for topic, count in ((predictions, sent.predictions), (labels, sent.labels)):
        held = read_back(broker.bootstrap, topic, count)
        records = [r for of_partition in held.values() for r in of_partition]
        assert len(records) == count, topic  # a retried batch stored twice would be more
        # every event carries its own request id: none is stored twice (the 1 % malformed
        # predictions are three fixed byte strings, left out)
        events = [v for _, v in records if v.startswith(b'{"model":"')]
        assert len(set(events)) == len(events) > 0.9 * count
        # each partition's acknowledged end is where a reader of everything stands
        ends = {(topic, p): max(o for o, _ in rs) + 1 for p, rs in held.items() if rs}
        assert {k: v for k, v in sent.ends.items() if k[0] == topic} == ends
    assert sent.unread({}) == sent.predictions + sent.labels
    assert sent.unread(sent.ends) == 0
