"""Errors of alert delivery. Each says whether another attempt may succeed."""

from __future__ import annotations

from watchkeeper.errors import WatchkeeperError


class DeliveryError(WatchkeeperError):
    """A channel could not deliver a notification.

    ``retriable`` is False when the far end refused it for good (a 4xx other than 408 /
    429, an invalid token); ``retry_after`` is the delay the far end asked for, if any.
    """

    def __init__(
        self, channel: str, reason: str, *, retriable: bool = True, retry_after: float | None = None
    ) -> None:
        self.channel = channel
        self.reason = reason
        self.retriable = retriable  # per instance: the far end's answer decides
        self.retry_after = retry_after
        super().__init__(f"{channel}: {reason}")
