"""When the label join's rows make a commit due: :class:`JoinFlushRule`.

A prediction and its label that are in the same commit's buffer are paired in memory
(:func:`~watchkeeper.daemon.store.label_join.join_in_transaction`); one that is committed
without its partner is inserted into a ``pending_*`` table and deleted again by a
``DELETE … RETURNING`` when the partner comes (~5 µs per row each on SQLite, half of a
labels commit in the ingest benchmark). Both Kafka clients hand over one topic at a time,
in polls of up to ``max_poll_records``, so a commit falling due at a fixed row count held
only labels or only predictions nearly every time (the per-commit trace in README.md,
"Performance", Labels).

So reaching ``rows`` makes a commit due only once the buffer holds *both* roles (checked
at the end of a poll, so the poll that brought the second role is in it whole), or as soon
as the role missing from the buffer has nothing more to give: each of its assigned
partitions caught up or paused, or none assigned (another replica reads them). Whatever
the streams do, two bounds hold: at ``cap`` rows a commit is due (memory, tracemalloc: a
label row ~0.3 KB, a prediction row ~0.43 KB with its request id, so 40,000 rows ~15 MB),
and ``wait_s`` after ``rows`` was first reached (a stalled labels partition, neither
caught up nor paused, holds predictions no longer than that; ``flush_interval`` commits
them anyway too). What then waits for its partner waits in the store, counted and shown
as before.

The rule has no I/O: the loop tells it the buffer's rows per role and whether the missing
role can still give anything, and reads the reasons commits fell due from ``reasons``.

>>> t = [0.0]
>>> rule = JoinFlushRule(rows=4, cap=8, wait_s=2.0, clock=lambda: t[0])
>>> rule.due(predictions=4, labels=0, partner_idle=False, end_of_poll=True)
False
>>> rule.due(predictions=4, labels=3, partner_idle=False, end_of_poll=True)
True
>>> rule.committed(); t[0] = 1.0
>>> rule.due(predictions=5, labels=0, partner_idle=False, end_of_poll=True)
False
>>> t[0] = 3.0
>>> rule.due(predictions=5, labels=0, partner_idle=False, end_of_poll=True)
True
>>> sorted(rule.reasons.items())
[('both', 1), ('wait', 1)]
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

JOIN_ROWS = 20_000
"""Join rows (predictions and labels) from which a commit is due once both roles are in
(was the commit bound itself: 50,000 peaked 305-336 MB, 20,000 263-276 MB)."""
JOIN_ROWS_CAP = 40_000
"""Join rows at which a commit is due whatever the streams do (two polls of one role)."""
JOIN_WAIT_S = 2.0
"""Seconds a commit due at ``JOIN_ROWS`` waits at most for the other role."""


class JoinFlushRule:
    """See the module docstring. ``clock``: monotonic seconds (injected in tests)."""

    def __init__(
        self,
        rows: int = JOIN_ROWS,
        cap: int = JOIN_ROWS_CAP,
        wait_s: float = JOIN_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < rows <= cap:
            raise ValueError(f"need 0 < rows ({rows}) <= cap ({cap})")
        self.rows = rows
        self.cap = cap
        self.wait_s = wait_s
        self.clock = clock
        self._reached: float | None = None  # when the buffer first held ``rows`` rows
        self.reasons: Counter[str] = Counter()
        """Why join-driven commits fell due: ``both``, ``partner_idle``, ``cap``, ``wait``."""
        self.waited = 0
        """Checks at which ``rows`` was reached but the commit waited for the other role."""

    def due(self, predictions: int, labels: int, partner_idle: bool, end_of_poll: bool) -> bool:
        """Whether the join's rows make a commit due now.

        ``partner_idle``: the role the buffer lacks has nothing more to give (read only
        when one role is missing); ``end_of_poll``: every slice of the last poll is in the
        buffer (a buffer holding both roles is due only then, so that the first slice of
        the other role does not commit the buffer without the rest of its poll)."""
        total = predictions + labels
        if total < self.rows:
            return False
        now = self.clock()
        if self._reached is None:
            self._reached = now
        if total >= self.cap:
            return self._due("cap")
        if now - self._reached >= self.wait_s:
            return self._due("wait")
        if predictions and labels:
            return end_of_poll and self._due("both")
        if partner_idle:
            return self._due("partner_idle")
        self.waited += 1
        return False

    def missing(self, predictions: int, labels: int) -> str | None:
        """The role the buffer lacks (None: it holds both, or neither)."""
        if predictions and not labels:
            return "labels"
        if labels and not predictions:
            return "predictions"
        return None

    def committed(self) -> None:
        """The buffer was committed (for whatever reason): the wait starts afresh."""
        self._reached = None

    def _due(self, reason: str) -> bool:
        self.reasons[reason] += 1
        return True
