"""The one root of watchkeeper's exceptions, outside the layers so that every layer —
``detectors``, ``policies``, ``alerts`` and ``daemon`` — may import it (the import-linter
contracts in pyproject.toml allow exactly this package, and it imports nothing of ours).

Each exception builds its own message from what it is given, and says whether another
attempt may succeed: ``retriable``. Whoever decides to retry — the delivery worker, the
ingestion loop, the store-outage pause, the shadow evaluator — reads ``retriable`` and
nothing else; an error that is not retriable stops the operation for good (a delivery is
given up on, a candidate disabled) or stops the daemon loudly.

>>> class Busy(WatchkeeperError):
...     retriable = True
...     def __init__(self, what: str) -> None:
...         super().__init__(f"{what} is busy")
>>> err = Busy("the store")
>>> str(err), err.retriable, WatchkeeperError("x").retriable
('the store is busy', True, False)
"""

from __future__ import annotations


class WatchkeeperError(Exception):
    """Root of every watchkeeper exception."""

    retriable: bool = False
    """Whether another attempt of the same operation may succeed (a timeout, an outage),
    as opposed to failing the same way until something is changed (a bad file, a 4xx)."""
