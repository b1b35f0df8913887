"""One partition's records of a kafka-python poll, handing over their fields as lists.

kafka-python gives a poll as lists of ``ConsumerRecord`` tuples. The columnar decoder
needs each slice's values (on the parse worker), offsets and timestamps, and the loop its
byte count: read from a plain list, each is a Python comprehension, and the values are
read twice (the parse, then the loop's byte count on the loop's thread: 0.24-0.34 µs an
event of the loop's 3.6-3.9 in the stage harness of README "Performance", 2026-12-07).
A :class:`RecordRun` reads each field with ``map`` over one ``attrgetter`` (a C loop)
and notes the byte count while the parse reads the values, as confluent's
:class:`~watchkeeper.daemon.ingest.confluent.MessageRun` does. Its items are the
client's own records, unchanged.

>>> from collections import namedtuple
>>> R = namedtuple("R", "offset timestamp value")
>>> run = RecordRun([R(5, 1000, b"ab"), R(6, 1001, None), R(7, 1002, b"cde")])
>>> run[1:].record_values(), run[1:].record_bytes(), run.record_offsets()
([None, b'cde'], 3, [5, 6, 7])
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from typing import Any, overload

_VALUE = operator.attrgetter("value")
_OFFSET = operator.attrgetter("offset")
_TIMESTAMP = operator.attrgetter("timestamp")


class RecordRun(Sequence[Any]):
    """A partition's records (any objects with ``offset``, ``timestamp`` and ``value``),
    as a sequence that also implements
    :class:`~watchkeeper.daemon.ingest.decoded.RecordFields` and
    :class:`~watchkeeper.daemon.ingest.decoded.CountedBytes`."""

    __slots__ = ("_bytes", "_records")

    def __init__(self, records: list[Any]) -> None:
        self._records = records
        self._bytes: int | None = None

    def __len__(self) -> int:
        return len(self._records)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> RecordRun: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return RecordRun(self._records[index])
        return self._records[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._records)

    def __repr__(self) -> str:
        return f"RecordRun({self._records!r})"

    def record_values(self) -> list[bytes | None]:
        values: list[bytes | None] = list(map(_VALUE, self._records))
        # the loop's byte count, noted on the way (the parse on the prefetch worker reads
        # the values first); the values list itself is not kept
        self._bytes = sum(map(len, filter(None, values)))
        return values

    def record_bytes(self) -> int:
        if self._bytes is None:
            self.record_values()
        assert self._bytes is not None
        return self._bytes

    def record_offsets(self) -> list[int]:
        return list(map(_OFFSET, self._records))

    def record_timestamps(self) -> list[int]:
        return list(map(_TIMESTAMP, self._records))
