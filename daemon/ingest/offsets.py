"""Where each partition's reading stands: read up to (pending) and committed (durable).

The ingestion loop reads a partition ahead of what it has committed; the store holds the
committed offsets with the window state they produced. These two maps are the loop's
bookkeeping of both, kept in one place so a commit, a rebalance and a rewind agree on
them. Offsets are the next offset to read, as Kafka's are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from watchkeeper.daemon.store.queries import TopicPartitionKey


class PartitionOffsets:
    """Per partition: what is read (not yet committed) and what is committed.

    >>> o = PartitionOffsets()
    >>> o.read(("t", 0), first=5, last=9)
    >>> o.read_up_to(("t", 0)), o.committed_offset(("t", 0))
    (10, 5)
    >>> o.committed({("t", 0): 10}); o.has_pending(), o.committed_offset(("t", 0))
    (False, 10)
    """

    def __init__(self) -> None:
        self._pending: dict[TopicPartitionKey, int] = {}
        self._durable: dict[TopicPartitionKey, int] = {}

    def read(self, key: TopicPartitionKey, first: int, last: int) -> None:
        """Records ``first``..``last`` of ``key`` were read. The first read of a partition
        without a stored offset marks the point to rewind to."""
        self._durable.setdefault(key, first)
        self._pending[key] = last + 1

    def read_up_to(self, key: TopicPartitionKey) -> int | None:
        """The next offset to read of ``key``: pending if any, else committed."""
        return self._pending.get(key, self._durable.get(key))

    def has_pending(self) -> bool:
        return bool(self._pending)

    def pending(self) -> dict[TopicPartitionKey, int]:
        """A copy of the offsets read and not yet committed."""
        return dict(self._pending)

    def committed(self, offsets: Mapping[TopicPartitionKey, int]) -> None:
        """``offsets`` are in the store: durable now, and no longer pending unless more
        was read meanwhile."""
        self._durable.update(offsets)
        for key, offset in offsets.items():
            if self._pending.get(key) == offset:
                del self._pending[key]

    def committed_offset(self, key: TopicPartitionKey) -> int | None:
        return self._durable.get(key)

    def committed_offsets(self) -> dict[TopicPartitionKey, int]:
        """A copy of every committed offset known."""
        return dict(self._durable)

    def forget_pending(self) -> None:
        """Everything read since the last commit is dropped (it will be read again)."""
        self._pending.clear()

    def rewinds(
        self, assigned: Iterable[TopicPartitionKey], revoked: set[TopicPartitionKey]
    ) -> list[tuple[TopicPartitionKey, int]]:
        """Where to seek the partitions still ``assigned`` (not ``revoked``) to read again
        from their committed offsets."""
        return [
            (key, self._durable[key])
            for key in sorted(assigned)
            if key not in revoked and key in self._durable
        ]

    def assigned(self, key: TopicPartitionKey, stored: int | None) -> None:
        """``key`` is assigned with the offset the store holds for it (None: none; Kafka's
        committed offset or ``auto_offset_reset`` decides, and the first read marks it)."""
        if stored is None:
            self._durable.pop(key, None)
        else:
            self._durable[key] = stored
