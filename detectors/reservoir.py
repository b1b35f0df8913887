"""A bounded, mergeable uniform sample of rows: bottom-k sampling by hash key.

Every row carries a 64-bit key derived from where it came from (topic, partition,
offset), so the key of a record is the same every time it is read. The reservoir keeps
the ``capacity`` rows with the smallest keys. A random hash makes that a uniform sample
without replacement, and — unlike Vitter's algorithm R — it merges exactly: the bottom k
of a union is the bottom k of the partial bottom-k's (Cohen & Kaplan, "Summarizing data
using bottom-k sketches", PODC 2007). A replay after a crash therefore rebuilds the same
sample, and two replicas' partial samples merge into the one a single daemon would keep.

>>> r = Reservoir(capacity=2)
>>> r.update(np.array([5, 1, 9], dtype=np.uint64), lambda idx: [{"i": int(i)} for i in idx])
>>> r.rows
[{'i': 1}, {'i': 0}]
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np

KeyArray = np.ndarray[Any, np.dtype[np.uint64]]
Row = dict[str, Any]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def mix64(values: KeyArray) -> KeyArray:
    """SplitMix64's finaliser (Steele, Lea & Flood 2014), vectorised: a 64-bit hash."""
    z = values.astype(np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    out: KeyArray = z ^ (z >> np.uint64(31))
    return out


def record_keys(topic_hash: int, partition: int, offsets: np.ndarray[Any, Any]) -> KeyArray:
    """Sampling keys for records at ``offsets`` of one partition of one topic."""
    base = np.uint64((topic_hash * 1_000_003 + partition) & 0xFFFFFFFFFFFFFFFF)
    return mix64(offsets.astype(np.uint64) ^ mix64(np.array([base], dtype=np.uint64))[0])


class Reservoir:
    """Bottom-k sample of rows; see the module docstring."""

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self.seen = 0
        self._keys: KeyArray = np.empty(0, dtype=np.uint64)
        self.rows: list[Row] = []

    def update(
        self, keys: KeyArray, make_rows: Callable[[np.ndarray[Any, Any]], list[Row]]
    ) -> None:
        """Offer rows by key; ``make_rows(indices)`` builds only the rows that may be kept."""
        self.seen += int(keys.size)
        if self.capacity == 0 or keys.size == 0:
            return
        candidates = np.arange(keys.size)
        if len(self.rows) >= self.capacity:
            candidates = candidates[keys < self._keys[-1]]
        if candidates.size > self.capacity:
            part = np.argpartition(keys[candidates], self.capacity - 1)[: self.capacity]
            candidates = candidates[part]
        if candidates.size == 0:
            return
        self._absorb(keys[candidates], make_rows(candidates))

    def _absorb(self, keys: KeyArray, rows: list[Row]) -> None:
        all_keys = np.concatenate([self._keys, keys])
        all_rows = self.rows + rows
        # stable sort then dedupe: a key offered twice (a re-read record) is kept once
        order = np.argsort(all_keys, kind="stable")
        sorted_keys = all_keys[order]
        keep = np.ones(sorted_keys.size, dtype=bool)
        keep[1:] = sorted_keys[1:] != sorted_keys[:-1]
        order = order[keep][: self.capacity]
        self._keys = all_keys[order]
        self.rows = [all_rows[i] for i in order]

    def merge(self, other: Reservoir) -> None:
        """Fold ``other`` in: the result is the bottom-k of both inputs together."""
        self.seen += other.seen
        if other.rows:
            self._absorb(other._keys, list(other.rows))

    @property
    def keys(self) -> KeyArray:
        return self._keys.copy()

    def to_dict(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "seen": self.seen,
            "keys": base64.b64encode(self._keys.astype("<u8").tobytes()).decode(),
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reservoir:
        out = cls(int(data["capacity"]))
        out.seen = int(data["seen"])
        out._keys = np.frombuffer(base64.b64decode(data["keys"]), dtype="<u8").astype(np.uint64)
        out.rows = list(data["rows"])
        return out
