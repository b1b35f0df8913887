"""What a decoder takes (records) and gives (column batches and quarantine entries)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from watchkeeper.daemon.store.quarantine import Quarantined
from watchkeeper.detectors.column_batch import ColumnBatch


class RecordLike(Protocol):
    """What the decoder needs of a kafka-python ``ConsumerRecord``."""

    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...


@runtime_checkable
class RecordFields(Protocol):
    """A partition's records that also hand over their fields as lists, without a record
    object per record (:class:`~watchkeeper.daemon.ingest.confluent_messages.MessageRun`: building
    one Python object per librdkafka message was ~1.7 s of a 1,000,000-event run, reading
    the fields straight off the messages ~0.15 s). Optional: other record sequences
    (kafka-python's lists of records) are read record by record."""

    def record_values(self) -> list[bytes | None]: ...
    def record_offsets(self) -> list[int]: ...
    def record_timestamps(self) -> list[int]: ...


@runtime_checkable
class CountedBytes(Protocol):
    """Records that know their values' total size once read (a confluent
    :class:`~watchkeeper.daemon.ingest.confluent_messages.MessageRun`, whose values the parse read
    on the prefetch worker): the loop's byte count without reading them again."""

    def record_bytes(self) -> int: ...


def bytes_of(records: Sequence[RecordLike]) -> int:
    """The total size of the records' values (tombstones count 0)."""
    if isinstance(records, CountedBytes):
        return records.record_bytes()
    return sum(map(len, filter(None, values_of(records))))


def values_of(records: Sequence[RecordLike]) -> list[bytes | None]:
    """The records' values, in order."""
    if isinstance(records, RecordFields):
        return records.record_values()
    return [r.value for r in records]


def offsets_of(records: Sequence[RecordLike]) -> list[int]:
    """The records' offsets, in order."""
    if isinstance(records, RecordFields):
        return records.record_offsets()
    return [r.offset for r in records]


def timestamps_of(records: Sequence[RecordLike]) -> list[int]:
    """The records' broker timestamps (ms), in order."""
    if isinstance(records, RecordFields):
        return records.record_timestamps()
    return [r.timestamp for r in records]


@dataclass
class DecodeResult:
    batches: list[ColumnBatch] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    ignored_features: int = 0
    """Feature values dropped because their model already had ``max_features`` features."""


@dataclass(frozen=True)
class Prepared:
    """A batch's first decoding stage, Arrow's parse (run ahead on a worker thread):
    ``table`` None when it declined (``attempted``: Arrow tried and failed, a fallback
    to count), with the text-timestamp setting it was read under."""

    table: Any
    ts_text: bool
    attempted: bool = False
