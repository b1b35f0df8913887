"""Errors of the daemon. Each builds its own message and says whether retrying may help."""

from __future__ import annotations

# the root is defined in watchkeeper.errors; it is named here too because the ingestion
# modules (rewritten in parallel) still import it from this module
from watchkeeper.errors import WatchkeeperError as WatchkeeperError


class DataFileError(WatchkeeperError, ValueError):
    """A data file (CSV / Parquet) or profile that cannot be used; the message is one line
    naming the file and what is wrong."""


class StoreUnavailableError(WatchkeeperError):
    """The store could not be reached or refused a transaction; nothing was committed."""

    retriable = True

    def __init__(self, operation: str, cause: BaseException) -> None:
        self.operation = operation
        self.cause = cause
        super().__init__(f"store unavailable during {operation}: {type(cause).__name__}: {cause}")


class BrokerBinaryError(WatchkeeperError):
    """The embedded Tansu broker could not be found or did not start."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"embedded Kafka broker: {reason}")


class MigrationError(WatchkeeperError):
    """The store's schema could not be brought up to date."""

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(f"cannot migrate the store at {url}: {cause}")


class CandidateError(WatchkeeperError):
    """A shadow candidate (or baseline) model cannot be used: it is disabled and reported.

    Not retriable: the same file fails the same way until it (or the policy) changes.
    """

    def __init__(self, model: str, candidate: str, reason: str) -> None:
        self.model = model
        self.candidate = candidate
        self.reason = reason
        super().__init__(f"candidate {candidate} of model {model}: {reason}")
