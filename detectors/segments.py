"""Segments: a window split by the values of a few features, with bounded cardinality.

A *segment feature* (``country``, ``channel``) splits every window of its model into one
child summary per value of a bounded value set, plus one ``(other)`` child for every
other value (and for rows where the feature is null or absent). A child is itself a
:class:`~watchkeeper.detectors.window.WindowSummary` of the rows of its segment (same
exact bins, category counts, latency, counters, the label-free estimate state of the
references in force, and the performance of its predictions' joined labels; no row
sample), so every drift, sanity and performance metric scores a segment as it scores the
whole window, against the same segment of the reference. Its numeric columns with the
reference's bins are :class:`~watchkeeper.detectors.grid_sketch.GridSketch` es (exact
counts on a fine grid cut from those bins: exact PSI / KL / JS / χ², KS and quantiles
within the largest grid bin's mass) instead of KLL sketches; without a reference in force,
KLL sketches of ``k =`` :data:`SEGMENT_SKETCH_K`.

Which values get a child of their own (:class:`SegmentSpec`):

* ``values`` fixed — the K most frequent values of that feature in the reference in
  force (ties by value), so a window and its reference split the same way and "the same
  segment of the reference" is well defined. The set is fixed for a window's life, so
  merges across flushes and replicas are exact.
* ``values=None`` (no reference in force carries the feature's segments) — the K values
  with the smallest 64-bit hash (BLAKE2b of the value) among those seen, the rest folded
  into ``(other)``. "The K smallest hashes of a set" does not depend on the order rows
  arrive or parts merge, so this fallback is deterministic and merges exactly too: the
  merge of two parts keeps the K smallest of the union and folds the others, which is what
  a single pass over all rows keeps. It picks K values at random, not the most frequent:
  it exists so that windows before the first reference still have segments (and a
  reference captured from them has the same split).

Values are labelled once per distinct value, never per row (:func:`segment_labels`):
text bounded to ``MAX_VALUE_CHARS``, control characters dropped, ``[``/``]`` shown as
``(``/``)``; numbers as ``3`` or ``2.5``. Rows are grouped with numpy (``np.unique`` codes,
one stable ``argsort``, ``bincount`` boundaries), then each child is updated once per
batch, so the cost is one sketch update per segment and column, not per row.

Memory per window: ``Σ_features (K + 1)`` children, each the size of a window summary
without its sample (one sketch per column, bounded by the sketch sizes); see
docs/segments.md for the figures.

>>> spec = SegmentSpec("country", 2, ("DE", "FR"))
>>> spec.code_of(["FR", "US", "DE"]).tolist()
[1, -1, 0]
>>> segment_labels(np.array(["DE", "a[b]\\x00"], dtype=object), "categorical")[0]
['DE', 'a(b)']
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from watchkeeper.detectors.column_batch import Column, ColumnBatch, IndexArray, Kind
from watchkeeper.detectors.factorize import factorize

OTHER = "(other)"
"""The child of every value outside the value set, and of null / absent values."""
MAX_VALUE_CHARS = 64
"""Segment values come from events: longer ones are cut (and share a segment)."""
DEFAULT_TOP_K = 20
MAX_TOP_K = 100
SEGMENT_SKETCH_K = 100
"""Values a segment's numeric summary holds exactly (grid sketch or KLL alike), and the KLL
size of its numeric sketches without reference bins (no reference in force; the latency):
rank error ≈ 2.6 % for a single CDF query at 99 % confidence, vs 1.3 % at the windows'
200. Exact bins (PSI, KL, JS, χ²) do not depend on it."""
"""Bound on K: memory grows with K × segment features × columns."""
_TRANSLATE = dict.fromkeys(range(32)) | {127: None, ord("["): "(", ord("]"): ")"}


def label_of(value: Any, kind: Kind) -> str:
    """The segment label of one distinct value (bounded, without control characters).

    >>> label_of(3.0, "numeric"), label_of(2.5, "numeric"), label_of("(other)", "categorical")
    ('3', '2.5', '(other)_')
    """
    if kind == "numeric":
        number = float(value)
        text = str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)
    else:
        text = str(value).translate(_TRANSLATE)[:MAX_VALUE_CHARS]
    return text + "_" if text == OTHER else text


def segment_labels(values: np.ndarray[Any, Any], kind: Kind) -> tuple[list[str], IndexArray]:
    """Labels of the distinct present ``values`` and each value's index into them
    (``values`` holds no nulls: the caller masks them first)."""
    if values.size == 0:
        return [], np.zeros(0, dtype=np.intp)
    if kind == "numeric":
        finite = values.astype(np.float64, copy=False)
        uniq, inverse = np.unique(finite, return_inverse=True)
        distinct: list[Any] = uniq.tolist()
    else:  # a hash table (Arrow), not a sort of the strings: ≈ 8× faster than np.unique
        inverse, distinct = factorize(values)
    labels = [label_of(u, kind) for u in distinct]  # per distinct value, not per row
    return labels, inverse.astype(np.intp, copy=False)


def value_hash(label: str) -> int:
    """The fallback's deterministic 64-bit hash of a label (BLAKE2b, not Python's salted
    ``hash``), so every replica and restart picks the same values."""
    return int.from_bytes(hashlib.blake2b(label.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class SegmentSpec:
    """One segment feature: K, and the fixed value set (None: the hash fallback)."""

    feature: str
    k: int = DEFAULT_TOP_K
    values: tuple[str, ...] | None = None

    def code_of(self, labels: Sequence[str]) -> np.ndarray[Any, np.dtype[np.intp]]:
        """Each label's position in the fixed value set, -1 for ``(other)``."""
        assert self.values is not None
        where = {v: i for i, v in enumerate(self.values)}
        return np.array([where.get(label, -1) for label in labels], dtype=np.intp)

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "k": self.k,
            "values": None if self.values is None else list(self.values),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegmentSpec:
        values = d.get("values")
        return cls(str(d["feature"]), int(d["k"]), None if values is None else tuple(values))


SegmentPlan = tuple[SegmentSpec, ...]
"""The segment features a model's windows split by, in policy order."""
PlanOf = Callable[[str], "SegmentPlan | None"]
"""``model ->`` its segment plan at ingest (None or empty: no segments)."""


class Child(Protocol):
    """What a segment's summary does (a WindowSummary without sample or segments)."""

    @property
    def count(self) -> int: ...
    def update(self, batch: ColumnBatch, idx: IndexArray) -> None: ...
    def absorb(self, other: Any) -> None: ...
    def to_dict(self) -> dict[str, Any]: ...


C = TypeVar("C", bound=Child)


Feed = Callable[[list[C], ColumnBatch, IndexArray, np.ndarray[Any, np.dtype[np.intp]], Any], None]
"""``(children, batch, rows, sizes, shared)``: each child's group of ``rows`` (grouped, the
``sizes[i]`` next rows for ``children[i]``) into it, as ``child.update`` would; ``shared``
is what :meth:`SegmentSplit.update` was given (work on the batch shared by the splits)."""


class SegmentSplit(Generic[C]):
    """One segment feature's children in one window; see the module docstring.

    ``new`` makes an empty child; ``copy`` copies one (merges never alias another
    window's child); ``feed`` updates many children in one pass (else one at a time).
    """

    def __init__(
        self,
        spec: SegmentSpec,
        new: Callable[[], C],
        copy: Callable[[C], C],
        feed: Feed[C] | None = None,
    ) -> None:
        self.spec = spec
        self.children: dict[str, C] = {}
        """Label → child; ``(other)`` among them once a row fell outside the set."""
        self.mixed = False
        """Parts split by different value sets were merged (a reference changed mid-window):
        ``(other)`` then holds values another part kept apart; findings say so."""
        self._new = new
        self._copy = copy
        self._feed = feed

    def _child(self, label: str) -> C:
        child = self.children.get(label)
        if child is None:
            child = self.children[label] = self._new()
        return child

    def update(self, batch: ColumnBatch, idx: IndexArray, shared: Any = None) -> None:
        """Route the rows ``idx`` of ``batch`` to their segments' children (``shared``:
        passed on to the feed)."""
        column = batch.features.get(self.spec.feature)
        labels, codes = self._codes(column, idx)
        # one stable sort groups the rows by code; bincount gives each group's bounds
        order = np.argsort(codes, kind="stable")
        counts = np.bincount(codes, minlength=len(labels) + 1)
        present = np.flatnonzero(counts)
        children = [self._child(OTHER if c == 0 else labels[c - 1]) for c in present.tolist()]
        if self._feed is not None:
            self._feed(children, batch, idx[order], counts[present], shared)
            return
        bounds = np.concatenate(([0], np.cumsum(counts)))
        for code, child in zip(present.tolist(), children, strict=True):
            child.update(batch, idx[order[bounds[code] : bounds[code + 1]]])

    def group(
        self, labels: Sequence[str] | np.ndarray[Any, Any]
    ) -> tuple[list[C], np.ndarray[Any, np.dtype[np.intp]], np.ndarray[Any, np.dtype[np.intp]]]:
        """Group rows already labelled (``label_of``, ``(other)`` for a null: what the label
        join keeps per prediction) as :meth:`update` groups a batch's rows: ``(children,
        order, sizes)`` — row ``order[j]`` of the ``sizes[i]`` rows of group ``i`` belongs
        to ``children[i]`` (made if new). The same value set (fixed, or the hash fallback's
        K smallest) decides, so a label joined later lands in its prediction's segment."""
        text = np.asarray(labels, dtype=object).astype(str)
        uniq, inverse = np.unique(text, return_inverse=True)
        return self.group_coded(uniq.tolist(), inverse.reshape(-1))

    def group_coded(
        self, distinct: Sequence[str], inverse: np.ndarray[Any, Any]
    ) -> tuple[list[C], np.ndarray[Any, np.dtype[np.intp]], np.ndarray[Any, np.dtype[np.intp]]]:
        """:meth:`group` of rows given as ``inverse`` indices into ``distinct`` labels."""
        named = [u for u in distinct if u != OTHER]
        kept = list(self.spec.values) if self.spec.values is not None else self._admit(named)
        where = {v: i for i, v in enumerate(kept)}
        lut = np.array([where.get(u, -1) for u in distinct] + [-1], dtype=np.intp)
        codes = lut[inverse.astype(np.intp, copy=False)] + 1
        order = np.argsort(codes, kind="stable")
        counts = np.bincount(codes, minlength=len(kept) + 1)
        present = np.flatnonzero(counts)
        children = [self._child(OTHER if c == 0 else kept[c - 1]) for c in present.tolist()]
        return children, order.astype(np.intp, copy=False), counts[present].astype(np.intp)

    def _codes(
        self, column: Column | None, idx: IndexArray
    ) -> tuple[list[str], np.ndarray[Any, np.dtype[np.intp]]]:
        """The labels with a child and, per row, 1 + its label's position (0: other)."""
        codes = np.full(idx.size, -1, dtype=np.intp)
        if column is None:
            return [], codes + 1
        present = ~(column.null[idx] | column.missing[idx])
        labels, inverse = segment_labels(column.values[idx[present]], column.kind)
        if self.spec.values is not None:
            kept = list(self.spec.values)
            lut = self.spec.code_of(labels)
        else:
            kept = self._admit(labels)
            where = {v: i for i, v in enumerate(kept)}
            lut = np.array([where.get(label, -1) for label in labels], dtype=np.intp)
        if labels:
            codes[present] = lut[inverse]
        return kept, codes + 1

    def _admit(self, labels: Iterable[str]) -> list[str]:
        """Hash fallback: the K smallest hashes among the children and ``labels``; children
        that drop out fold into ``(other)``. Returns the kept labels."""
        mine = [v for v in self.children if v != OTHER]
        union = sorted(set(mine) | set(labels), key=lambda v: (value_hash(v), v))
        kept = union[: self.spec.k]
        self._fold(set(mine) - set(kept))
        return kept

    def _fold(self, labels: Iterable[str]) -> None:
        for label in sorted(labels, key=lambda v: (value_hash(v), v)):
            child = self.children.pop(label)
            other = self.children.get(OTHER)
            if other is None:
                self.children[OTHER] = child
            else:
                other.absorb(child)

    def absorb(self, other: SegmentSplit[C]) -> None:
        """Fold another part of the same window (or of a window inside a roll-up) in."""
        if other.spec != self.spec:
            self.mixed = True
            if self.spec.values is None and other.spec.values is not None:
                self.spec = other.spec  # a fixed set wins over the fallback
        self.mixed = self.mixed or other.mixed
        for label, child in other.children.items():
            mine = self.children.get(label)
            if mine is None:
                self.children[label] = self._copy(child)
            else:
                mine.absorb(child)
        if self.spec.values is None:
            self._admit(())
        else:
            allowed = set(self.spec.values) | {OTHER}
            self._fold(set(self.children) - allowed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "mixed": self.mixed,
            "children": {label: c.to_dict() for label, c in sorted(self.children.items())},
        }

    @classmethod
    def from_dict(
        cls,
        d: dict[str, Any],
        new: Callable[[], C],
        copy: Callable[[C], C],
        load: Callable[[dict[str, Any]], C],
        feed: Feed[C] | None = None,
    ) -> SegmentSplit[C]:
        out = cls(SegmentSpec.from_dict(d["spec"]), new, copy, feed)
        out.mixed = bool(d.get("mixed", False))
        out.children = {str(label): load(c) for label, c in d["children"].items()}
        return out


def top_values(counts: dict[str, int], k: int) -> tuple[str, ...]:
    """The K most frequent labels, ties by label: the value set a reference fixes.

    >>> top_values({"DE": 5, "FR": 5, "US": 9, "IT": 1}, 3)
    ('US', 'DE', 'FR')
    """
    ranked = sorted(((-n, v) for v, n in counts.items() if v != OTHER))
    return tuple(v for _, v in ranked[:k])
