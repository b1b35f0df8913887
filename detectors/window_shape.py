"""What the modules split from :mod:`window` read and set on a window summary, as
protocols: they work on a :class:`~watchkeeper.detectors.window.WindowSummary` without
importing it (``window`` imports them; the sibling modules stay acyclic).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from watchkeeper.detectors.column_sketch import ColumnSketch
    from watchkeeper.detectors.estimation_reference import Estimation
    from watchkeeper.detectors.performance import PerformanceSketch
    from watchkeeper.detectors.reservoir import Reservoir
    from watchkeeper.detectors.segments import SegmentSpec, SegmentSplit
    from watchkeeper.detectors.sketches import NumericSketch
    from watchkeeper.detectors.window_estimates import WindowEstimates

BinEdges = Callable[[str, str], "tuple[float, ...] | None"]
"""``(model, column) ->`` the bin edges a new window sketch of that column counts exactly
(those of the reference in force for the model), or None: KLL alone. Columns are named
as in a reference profile (``__prediction__`` for the prediction)."""

EstimationOf = Callable[[str], "Estimation | Sequence[Estimation] | None"]
"""``model ->`` the estimations of the references in force for the model (calibrator or
loss model; one per distinct reference of its policies), whose state a window's
prediction batches update; None: no estimates."""


class Sizes(Protocol):
    """A window's :class:`~watchkeeper.detectors.window.SketchSettings`, as read."""

    @property
    def k(self) -> int: ...
    @property
    def max_categories(self) -> int: ...
    @property
    def reservoir_size(self) -> int: ...
    @property
    def grid(self) -> bool: ...
    @property
    def bins(self) -> BinEdges | None: ...
    @property
    def estimation(self) -> EstimationOf | None: ...


class Summary(Protocol):
    """A window summary, as the split modules read and set it."""

    events: dict[str, int]
    first_ts_ms: int | None
    last_ts_ms: int | None
    features: dict[str, ColumnSketch]
    prediction: ColumnSketch | None
    prediction_class: ColumnSketch | None
    label: ColumnSketch | None
    latency: NumericSketch
    sample: Reservoir
    performance: PerformanceSketch | None
    estimates: WindowEstimates

    @property
    def model(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def start_ms(self) -> int: ...
    @property
    def size_ms(self) -> int: ...
    @property
    def end_ms(self) -> int: ...
    @property
    def settings(self) -> Sizes: ...
    @property
    def segments(self) -> Mapping[str, SegmentSplit[Any]]: ...
    def segment_split(self, spec: SegmentSpec) -> SegmentSplit[Any]: ...
    def column(self, name: str) -> ColumnSketch | None: ...
    def set_column(self, name: str, sketch: ColumnSketch) -> None: ...
    def numeric_sketches(self) -> list[NumericSketch]: ...
