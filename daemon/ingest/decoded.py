"""What a decoder takes (records) and gives (column batches and quarantine entries)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

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
