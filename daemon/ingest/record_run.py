"""One partition's records of a kafka-python poll, handing over their fields as lists.

kafka-python gives a poll as lists of ``ConsumerRecord`` tuples. The columnar decoder
needs each slice's values (on the parse worker), offsets and timestamps, and the loop its
byte count: read from a plain list, each is a Python comprehension, and the values are
read twice (the parse, then the loop's byte count on the loop's thread: 0.24-0.34 µs an
event of the loop's 3.6-3.9 in the stage harness of README "Performance", 2026-12-07).
A :class:`RecordRun` reads each field with ``map`` over one ``attrgetter`` (a C loop)
and notes the byte count while the parse reads the values, as confluent's
:class:`~watchkeeper.daemon.ingest.confluent_messages.MessageRun` does. Its items are the
client's own records, unchanged.

>>> from collections import namedtuple
>>> R = namedtuple("R", "offset timestamp value")
>>> run = RecordRun([R(5, 1000, b"ab"), R(6, 1001, None), R(7, 1002, b"cde")])
>>> run[1:].record_values(), run[1:].record_bytes(), run.record_offsets()
([None, b'cde'], 3, [5, 6, 7])
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar, overload

Raw = TypeVar("Raw")
Item = TypeVar("Item")

_VALUE = operator.attrgetter("value")
_OFFSET = operator.attrgetter("offset")
_TIMESTAMP = operator.attrgetter("timestamp")


def _identity(record: Any) -> Any:
    return record


class FieldRun(Sequence[Item], Generic[Raw, Item]):
    """A partition's records of a poll as a sequence that also hands over their values,
    offsets and timestamps as lists (:class:`~watchkeeper.daemon.ingest.decoded.RecordFields`)
    and its byte count (:class:`~watchkeeper.daemon.ingest.decoded.CountedBytes`), noted
    while the parse reads the values. A client's run says how to read its raw records:
    each field with ``map`` over one C-level getter, never a Python frame per record, and
    how one raw record is shown as an item (``_item``)."""

    __slots__ = ("_bytes", "_raw")

    _item: Callable[[Raw], Item]
    _value: Callable[[Raw], bytes | None]
    _offset: Callable[[Raw], int]
    _timestamp: Callable[[Raw], int]

    def __init__(self, raw: list[Raw]) -> None:
        self._raw = raw
        self._bytes: int | None = None

    def __len__(self) -> int:
        return len(self._raw)

    @overload
    def __getitem__(self, index: int) -> Item: ...
    @overload
    def __getitem__(self, index: slice) -> FieldRun[Raw, Item]: ...
    def __getitem__(self, index: int | slice) -> Item | FieldRun[Raw, Item]:
        if isinstance(index, slice):
            return type(self)(self._raw[index])
        return type(self)._item(self._raw[index])

    def __iter__(self) -> Iterator[Item]:
        return map(type(self)._item, self._raw)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._raw!r})"

    def record_values(self) -> list[bytes | None]:
        values = list(map(type(self)._value, self._raw))
        # the loop's byte count, noted on the way (the parse on the prefetch worker reads
        # the values first): the values themselves are not kept, a poll's worth of them
        # would stay alive until its last slice is summarised
        self._bytes = sum(map(len, filter(None, values)))
        return values

    def record_bytes(self) -> int:
        if self._bytes is None:
            self.record_values()
        assert self._bytes is not None
        return self._bytes

    def record_offsets(self) -> list[int]:
        return list(map(type(self)._offset, self._raw))

    def record_timestamps(self) -> list[int]:
        return list(map(type(self)._timestamp, self._raw))


class RecordRun(FieldRun[Any, Any]):
    """A kafka-python partition's records (any objects with ``offset``, ``timestamp`` and
    ``value``: its ``ConsumerRecord`` tuples), its items the records unchanged."""

    __slots__ = ()

    _item = staticmethod(_identity)
    _value = staticmethod(_VALUE)
    _offset = staticmethod(_OFFSET)
    _timestamp = staticmethod(_TIMESTAMP)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._raw)
