"""What a decoder takes (records) and gives (column batches and quarantine entries)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

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
