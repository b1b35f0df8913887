"""Summarising the queued updates of many numeric sketches in one vectorised pass.

A :class:`~watchkeeper.detectors.sketches.NumericSketch` queues its updates and
summarises them when read; a flush of thousands of small windows summarises all of
theirs at once here (:mod:`grouped_moments`: a few numpy calls for all of them, not a
dozen per sketch). The result is the one each sketch reaches alone.

>>> from watchkeeper.detectors.sketches import NumericSketch
>>> a, b = NumericSketch(), NumericSketch()
>>> a.update(np.array([1.0, 2.0])); b.update(np.array([5.0]))
>>> settle_sketches([a, b]); [len(a.queued), len(b.queued)], a.mean, b.max
([0, 0], 1.5, 5.0)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np
from watchkeeper.detectors.grouped_moments import FloatArray, IntArray, group_bins, group_moments


class Queued(Protocol):
    """What settling needs of a sketch: its queue, its pinned edges, and a way in."""

    @property
    def queued(self) -> list[FloatArray]: ...

    @property
    def pinned_edges(self) -> FloatArray | None: ...

    @property
    def queue_full(self) -> bool: ...

    def absorb(
        self,
        finite: FloatArray,
        nans: int,
        infs: int,
        moments: tuple[float, float, float, float],
        bins: IntArray | None,
    ) -> None: ...


def settle_full(sketches: Iterable[Queued]) -> None:
    """Summarise, in one pass, the sketches whose queue is full (after deferred updates)."""
    settle_sketches([s for s in sketches if s.queue_full])


def settle_sketches(sketches: Iterable[Queued]) -> None:
    """Summarise the queued values of many sketches in one vectorised pass
    (:mod:`grouped_moments`): what a flush of thousands of small windows calls once,
    instead of a dozen numpy reductions per sketch. The result is the one each sketch
    would reach alone."""
    todo = [s for s in sketches if s.queued]
    if not todo:
        return
    groups = [s.queued[0] if len(s.queued) == 1 else np.concatenate(s.queued) for s in todo]
    summary = group_moments(groups)
    bins: dict[int, IntArray] = {}
    by_edges: dict[bytes, list[int]] = {}
    pinned: dict[int, FloatArray] = {}
    for i, s in enumerate(todo):
        edges = s.pinned_edges
        if edges is not None:
            pinned[i] = edges
            by_edges.setdefault(edges.tobytes(), []).append(i)
    for members in by_edges.values():
        edges = pinned[members[0]]
        rows = group_bins([summary.values[i] for i in members], edges)
        bins.update(zip(members, rows, strict=True))
    nans, infs = summary.nans.tolist(), summary.infs.tolist()
    moments = zip(
        summary.mean.tolist(),
        summary.m2.tolist(),
        summary.lo.tolist(),
        summary.hi.tolist(),
        strict=True,
    )
    for i, (s, m) in enumerate(zip(todo, moments, strict=True)):
        s.absorb(summary.values[i], nans[i], infs[i], m, bins.get(i))
