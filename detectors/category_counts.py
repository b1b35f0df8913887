"""Counts per category: the categorical column's mergeable summary.

Exact counts per category up to ``max_categories`` distinct values; beyond that the
rarest are folded into an ``overflow`` count, so memory stays bounded when a feature
turns out to be an identifier. Like :class:`~watchkeeper.detectors.sketches.NumericSketch`
it counts nulls and *missing* values (the key absent from the record) apart, and two
counts of disjoint parts of a window merge into the counts of the whole.

>>> c = CategoryCounts(max_categories=2)
>>> c.update(["DE", "FR", "DE", "US"])
>>> (c.counts, c.overflow)
({'DE': 2, 'FR': 1}, 1)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any


class CategoryCounts:
    """Counts per category, bounded at ``max_categories``; see the module docstring."""

    kind = "categorical"

    def __init__(self, max_categories: int = 256) -> None:
        self.max_categories = max_categories
        self.counts: dict[str, int] = {}
        self.nulls = 0
        self.missing = 0
        self.overflow = 0

    def update(self, values: Iterable[str], nulls: int = 0, missing: int = 0) -> None:
        """Count ``values`` (strings; ``Counter`` does the loop in C)."""
        self.nulls += nulls
        self.missing += missing
        self._add(Counter(values))

    def _add(self, counts: dict[str, int]) -> None:
        merged = Counter(self.counts)
        merged.update(counts)
        if len(merged) > self.max_categories:
            # keep the most frequent; ties broken by name so the result is deterministic
            ranked = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
            kept = dict(ranked[: self.max_categories])
            self.overflow += sum(c for _, c in ranked[self.max_categories :])
            self.counts = kept
        else:
            self.counts = dict(merged)

    def merge(self, other: CategoryCounts) -> None:
        """Fold ``other`` in; exact while the union has at most ``max_categories`` values."""
        self.nulls += other.nulls
        self.missing += other.missing
        self.overflow += other.overflow
        self._add(other.counts)

    @property
    def count(self) -> int:
        """Non-null values seen (overflowed ones included)."""
        return sum(self.counts.values()) + self.overflow

    @property
    def total(self) -> int:
        return self.count + self.nulls

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "max_categories": self.max_categories,
            "counts": self.counts,
            "nulls": self.nulls,
            "missing": self.missing,
            "overflow": self.overflow,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CategoryCounts:
        out = cls(int(data["max_categories"]))
        out.counts = {str(k): int(v) for k, v in data["counts"].items()}
        out.nulls, out.missing = int(data["nulls"]), int(data["missing"])
        out.overflow = int(data["overflow"])
        return out
