"""Who else sees the decoded batches (:class:`BatchTap`), and the garbage-collector pause
around decoding a batch."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from watchkeeper.detectors.window import ColumnBatch


class BatchTap(Protocol):
    """Who else sees the decoded batches: shadow evaluation
    (:class:`~watchkeeper.daemon.shadow.evaluator.ShadowEvaluator`) implements it.

    Declared in the ingestion layer so ingestion depends on this protocol, not on what
    sits above it.
    """

    def offer(self, batch: ColumnBatch, topic: str, partition: int) -> None:
        """Take (a sample of) ``batch``; must never block nor raise for data."""

    def forget_partitions(self) -> None:
        """After a rebalance: partition progress is to be read again."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """Hold Python's cyclic GC while a batch is decoded.

    A batch creates hundreds of thousands of short-lived, acyclic objects (records, JSON
    dicts); each allocation burst would trigger collections that scan them all again,
    which measured at ~40 % of decode time. Reference counting frees them regardless; the
    collector runs as usual between batches.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
