"""Errors of the measurement layer. None is retriable: the same inputs fail the same way."""

from __future__ import annotations

from watchkeeper.errors import WatchkeeperError


class DetectorError(WatchkeeperError, ValueError):
    """Base of the detectors' errors."""

    retriable = False


class InsufficientDataError(DetectorError):
    """The inputs hold too little to compute the metric (no finite value, no labels…)."""


class CorruptStateError(DetectorError):
    """A stored summary that does not hold together (arrays of the wrong size, an unknown
    kind): never what watchkeeper writes, so a hand-edited or damaged row."""

    def __init__(self, what: str, problem: str) -> None:
        super().__init__(f"stored {what} is corrupt: {problem}")
