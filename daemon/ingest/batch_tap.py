"""Who else sees the ingestion loop's decoded batches."""

from __future__ import annotations

from typing import Protocol

from watchkeeper.detectors.column_batch import ColumnBatch


class BatchTap(Protocol):
    """Who else sees the decoded batches: shadow evaluation
    (:class:`~watchkeeper.daemon.shadow.evaluator.ShadowEvaluator`) implements it.

    Declared in ingestion so it depends on this protocol, not on what sits above it.
    """

    def offer(self, batch: ColumnBatch, topic: str, partition: int) -> None:
        """Take (a sample of) ``batch``; must never block nor raise for data."""

    def forget_partitions(self) -> None:
        """After a rebalance: partition progress is to be read again."""
