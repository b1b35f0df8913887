"""Errors of the measurement layer. None is retriable: the same inputs fail the same way."""

from __future__ import annotations

from watchkeeper.errors import WatchkeeperError


class DetectorError(WatchkeeperError, ValueError):
    """Base of the detectors' errors."""

    retriable = False


class InsufficientDataError(DetectorError):
    """The inputs hold too little to compute the metric (no finite value, no labels…)."""
