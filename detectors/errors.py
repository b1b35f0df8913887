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

    def __init__(self, what: str, problem: str, where: str = "") -> None:
        self.what, self.problem, self.where = what, problem, where
        at = f" ({where})" if where else ""
        super().__init__(f"stored {what}{at} is corrupt: {problem}")

    def located(self, where: str) -> CorruptStateError:
        """The same error naming where the state was read (a store's model, window and
        part): the summary that finds it knows only its own fields.

        >>> err = CorruptStateError("window rows", "'keys' does not hold 2 values")
        >>> print(err.located("model 'm', window 0, part 7"))
        stored window rows (model 'm', window 0, part 7) is corrupt: 'keys' does not hold 2 values
        """
        return CorruptStateError(self.what, self.problem, where)
