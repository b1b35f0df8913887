"""How window summaries combine: the checks of a roll-up (:func:`rollup_of`) and the fold
of one summary into another (:func:`absorb_into`), sketch by sketch.

Two summaries of disjoint parts of the same window merge into the summary of the whole;
a sketch never aliases another summary's (a copy is taken where one side has none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.grid_sketch import load_sketch, merged_numeric
from watchkeeper.detectors.performance import PerformanceSketch
from watchkeeper.detectors.sketches import NumericSketch

if TYPE_CHECKING:
    from collections.abc import Sequence

    from watchkeeper.detectors.column_sketch import ColumnSketch
    from watchkeeper.detectors.window_shape import Summary


def rollup_of(
    parts: Sequence[Summary], start_ms: int, size_ms: int, version: str | None
) -> tuple[str, str]:
    """The model and version of the roll-up of ``parts`` into ``[start_ms, start_ms +
    size_ms)``; ValueError unless they are windows of one model inside it (and of
    ``version`` when given; None: theirs if single, else ``"*"``)."""
    if not parts:
        raise ValueError("nothing to roll up")
    models = {p.model for p in parts}
    if len(models) != 1:
        raise ValueError(f"windows of several models: {sorted(models)}")
    end_ms = start_ms + size_ms
    for p in parts:
        if p.start_ms < start_ms or p.end_ms > end_ms:
            raise ValueError(
                f"window [{p.start_ms}, {p.end_ms}) is not inside [{start_ms}, {end_ms})"
            )
    versions = {p.version for p in parts}
    if version is None:
        version = versions.pop() if len(versions) == 1 else "*"
    elif versions != {version}:
        raise ValueError(f"windows of versions {sorted(versions)}, not only {version!r}")
    return models.pop(), version


def absorb_into(out: Summary, other: Summary) -> None:
    """Fold ``other`` into ``out`` (both with their sketches built), without checking they
    are the same window."""
    for role, n in other.events.items():
        out.events[role] = out.events.get(role, 0) + n
    for bound in ("first_ts_ms", "last_ts_ms"):
        mine, theirs = getattr(out, bound), getattr(other, bound)
        pick = min if bound == "first_ts_ms" else max
        setattr(
            out,
            bound,
            theirs if mine is None else mine if theirs is None else pick(mine, theirs),
        )
    for name, sketch in other.features.items():
        out.features[name] = _merged(out.features.get(name), sketch)
    out.prediction = _merged_opt(out.prediction, other.prediction)
    out.prediction_class = _merged_opt(out.prediction_class, other.prediction_class)
    out.label = _merged_opt(out.label, other.label)
    out.latency.merge(other.latency)
    out.sample.merge(other.sample)
    if other.performance is not None:
        if out.performance is None:
            out.performance = PerformanceSketch.from_dict(other.performance.to_dict())
        else:
            out.performance.merge(other.performance)
    out.estimates.merge(other.estimates)
    for split in other.segments.values():
        out.segment_split(split.spec).absorb(split)


def _merged(mine: ColumnSketch | None, theirs: ColumnSketch) -> ColumnSketch:
    if mine is None or mine.kind != theirs.kind:
        return load_sketch(theirs.to_dict())  # a copy: never alias another summary
    if isinstance(mine, NumericSketch) and isinstance(theirs, NumericSketch):
        return merged_numeric(mine, theirs)  # a grid and a KLL sketch merge as KLL
    if isinstance(mine, CategoryCounts) and isinstance(theirs, CategoryCounts):
        mine.merge(theirs)
    return mine


def _merged_opt(mine: ColumnSketch | None, theirs: ColumnSketch | None) -> ColumnSketch | None:
    return mine if theirs is None else _merged(mine, theirs)
