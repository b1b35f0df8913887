"""A column's summary of either kind, and reading one back from its stored form.

>>> from watchkeeper.detectors.category_counts import CategoryCounts
>>> type(sketch_from_dict(CategoryCounts().to_dict())).__name__
'CategoryCounts'
"""

from __future__ import annotations

from typing import Any

from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.sketches import NumericSketch

ColumnSketch = NumericSketch | CategoryCounts


def sketch_from_dict(data: dict[str, Any]) -> ColumnSketch:
    """Rebuild a stored column sketch of either kind."""
    if data["kind"] == NumericSketch.kind:
        return NumericSketch.from_dict(data)
    if data["kind"] == CategoryCounts.kind:
        return CategoryCounts.from_dict(data)
    raise ValueError(f"unknown sketch kind {data['kind']!r}")
