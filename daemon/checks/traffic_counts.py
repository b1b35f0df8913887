"""The whole model's traffic baseline counts of one role, read cheaply every tick.

The stored ``events`` column is every role's total; a role's count is only inside each
stored window's summary (``Store.event_counts(role=)`` reads those, ≈ 100 ms for six
hour-long policy windows of 5-minute windows with 21 columns, against ≈ 1 ms for the
column). So each window's role count is remembered beside the total it was read with,
and a window is read again only when its total changed (a flush or late events added to
it: a role's count grows only with the total), or was never read. Exact, as reading
every window every tick.
"""

from __future__ import annotations

from watchkeeper.daemon.store.store import Store


class RoleCounts:
    """Per (model, role), each stored window start's (total, role count) as last read."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], dict[int, tuple[int, int]]] = {}
        self.read = 0
        """Windows whose summaries were read (for tests and the benchmark)."""

    def counts(
        self, store: Store, model: str, start_ms: int, end_ms: int, role: str
    ) -> list[tuple[int, int]]:
        """(window start, events of ``role``) of the model's stored windows starting in
        ``[start_ms, end_ms)``, as ``store.event_counts(model, start_ms, end_ms, role=role)``."""
        totals = store.event_counts(model, start_ms, end_ms)
        known = self._known.setdefault((model, role), {})
        stale = [s for s, n in totals if known.get(s, (-1, 0))[0] != n]
        if stale:
            lo, hi = min(stale), max(stale) + 1
            fresh = dict(store.event_counts(model, lo, hi, role=role))
            for s, n in totals:
                if lo <= s < hi:
                    known[s] = (n, fresh.get(s, 0))
                    self.read += 1
        for s in [s for s in known if s < start_ms]:  # a later tick never reads them
            del known[s]
        return [(s, known[s][1]) for s, _ in totals]
