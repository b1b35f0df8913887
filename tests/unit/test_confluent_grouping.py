"""The confluent source's grouping of a poll's messages by partition: the vectorised cut
at run boundaries gives what the message-by-message loop gives (same runs, same order,
same error, same rewind offsets of paused partitions)."""

from __future__ import annotations

from confluent_kafka import KafkaError, Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from watchkeeper.daemon.eventtime.watermarks import PartitionKey
from watchkeeper.daemon.ingest.confluent_messages import MessageRun, _group_each, group_messages

KEYS = [("a", 0), ("a", 1), ("b", 0), ("b", 2)]


@st.composite
def polls(draw: st.DrawFn) -> tuple[list[Message], set[PartitionKey]]:
    """Runs of messages of a few partitions (a partition may come back later), with now
    and then an end-of-partition event or an error, and maybe paused partitions."""
    messages: list[Message] = []
    offsets = dict.fromkeys(KEYS, 0)
    for _ in range(draw(st.integers(0, 8))):
        topic, partition = draw(st.sampled_from(KEYS))
        for _ in range(draw(st.integers(1, 6))):
            kind = draw(st.sampled_from(["ok"] * 8 + ["eof", "error"]))
            error = None
            if kind == "eof":
                error = KafkaError(KafkaError._PARTITION_EOF)
            elif kind == "error":
                error = KafkaError(KafkaError._TRANSPORT)
            offset = offsets[(topic, partition)]
            offsets[(topic, partition)] += 1
            messages.append(
                Message(
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    value=f"{topic}{partition}:{offset}".encode(),
                    timestamp=(1, 1_000 + offset),
                    error=error,
                )
            )
    paused = set(draw(st.lists(st.sampled_from(KEYS), max_size=2)))
    return messages, paused


def _seen(runs: dict[PartitionKey, list[Message]]) -> dict[PartitionKey, list[int]]:
    return {key: [m.offset() for m in run] for key, run in runs.items()}  # type: ignore[misc]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(polls())
def test_grouped_runs_equal_the_message_by_message_loop(
    case: tuple[list[Message], set[PartitionKey]],
) -> None:
    messages, paused = case
    fast_rewind: dict[PartitionKey, int] = {}
    slow_rewind: dict[PartitionKey, int] = {}
    fast, fast_error = group_messages(messages, paused, fast_rewind)
    slow, slow_error = _group_each(messages, paused, slow_rewind)
    assert _seen(fast) == _seen(slow)
    assert list(fast) == list(slow)  # partitions in the order first seen
    assert all([m.value() for m in fast[k]] == [m.value() for m in slow[k]] for k in slow)
    assert (fast_error is None) == (slow_error is None)
    if slow_error is not None:
        assert fast_error is not None and fast_error.code() == slow_error.code()
    assert fast_rewind == slow_rewind


def test_a_poll_without_errors_is_cut_at_partition_changes() -> None:
    def message(topic: str, partition: int, offset: int) -> Message:
        return Message(
            topic=topic, partition=partition, offset=offset, value=b"v", timestamp=(1, offset)
        )

    messages = [message("a", 0, 0), message("a", 0, 1), message("a", 1, 0), message("a", 0, 2)]
    runs, failed = group_messages(messages, set(), {})
    assert failed is None
    assert _seen(runs) == {("a", 0): [0, 1, 2], ("a", 1): [0]}


def test_a_message_runs_fields_are_its_messages_fields() -> None:
    messages = [
        Message(
            topic="t",
            partition=1,
            offset=o,
            value=None if o == 2 else b"x%d" % o,
            timestamp=(1, 10 * o),
        )
        for o in range(5)
    ]
    run = MessageRun(messages)
    assert run.record_values() == [m.value() for m in messages]
    assert run.record_bytes() == sum(len(m.value() or b"") for m in messages)
    assert MessageRun(messages).record_bytes() == run.record_bytes()  # counted when asked first
    assert run.record_offsets() == list(range(5))
    assert run.record_timestamps() == [0, 10, 20, 30, 40]
    assert run[1:3].record_offsets() == [1, 2]
