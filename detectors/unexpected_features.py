"""Schema drift, other side: features in the window that the reference does not know."""

from __future__ import annotations

from typing import ClassVar

from watchkeeper.detectors.base import Score, WindowView
from watchkeeper.detectors.errors import InsufficientDataError


class UnexpectedFeatures:
    name: ClassVar[str] = "unexpected_features"

    def score(self, view: WindowView) -> Score:
        if view.reference is None:
            raise InsufficientDataError("unexpected_features needs a reference")
        present = {n for n, s in view.summary.features.items() if s.total > 0}
        extra = sorted(present - set(view.reference.features))
        return Score(float(len(extra)), {"features": extra})
