"""When a model was last seen: the end of its newest stored window with traffic.

A "no data" incident says since when (``engine.no_data``): the end of the model's newest
window before the tick whose :attr:`WindowSummary.traffic` (its predictions or features,
never its labels, which go on arriving after the predictions stop) is not zero. The
stored ``events`` column counts every role, so a window's traffic is read from its
stored counts (no sketches), and a labels-only model had all its history read so on every
no-data tick.

:class:`LastSeen` remembers, per model, each window's traffic with the events total it
was read at. A window's traffic changes only with its events total (every row of every
role counts in the total, and a fold or a read never changes it), so a tick reads the
totals (one indexed aggregate of integer columns, no summaries) from the newest window
known to have traffic on, and the traffic of only the windows that are new or whose
total changed since: a second tick costs the windows written since the first.
"""

from __future__ import annotations

import threading

from watchkeeper.daemon.store.store import Store


class LastSeen:
    """The end of a model's newest stored window with traffic before a tick, per model
    remembered across ticks (the checker keeps one, and ``policy backtest``). ``run``: the
    first run of windows read at once, from the newest back, doubling after each run
    without traffic (an hour of 5-minute windows)."""

    def __init__(self, run: int = 12) -> None:
        self.run = run
        self.read = 0
        """Windows whose traffic was read (a test's measure of the cost)."""
        self._known: dict[str, dict[int, tuple[int, int]]] = {}
        # per model, window start -> (events total, traffic) as last read
        self._lock = threading.Lock()  # policies of one model tick on different threads

    def __call__(self, store: Store, model: str, before_ms: int, size_ms: int) -> int | None:
        """The end of ``model``'s newest stored window starting before ``before_ms`` with
        traffic; None if it never had any."""
        with self._lock:
            start = self._newest(store, model, before_ms)
        return None if start is None else start + size_ms

    def _newest(self, store: Store, model: str, before_ms: int) -> int | None:
        known = self._known.setdefault(model, {})
        seen = [s for s, (_, traffic) in known.items() if traffic and s < before_ms]
        since = max(seen, default=None)
        totals = dict(_totals(store, model, 0 if since is None else since, before_ms))
        if since is not None and since not in totals:
            # the window last seen with traffic is gone (set aside): the older ones count
            del known[since]
            totals = dict(_totals(store, model, 0, before_ms))
        starts = sorted(totals)
        i, run = len(starts), self.run
        while i:
            entry = known.get(starts[i - 1])
            if entry is not None and entry[0] == totals[starts[i - 1]]:
                if entry[1]:
                    return self._found(known, starts[i - 1])
                i -= 1
                continue
            # the run of new or changed windows ending at i, at most ``run`` of them
            j = i - 1
            while j > 0 and i - j < run and not _same(known, starts[j - 1], totals):
                j -= 1
            traffic = dict(store.traffic_counts(model, starts[j], starts[i - 1] + 1))
            self.read += i - j
            for s in starts[j:i]:
                known[s] = (totals[s], traffic.get(s, 0))
            found = [s for s in starts[j:i] if traffic.get(s, 0)]
            if found:
                return self._found(known, max(found))
            i, run = j, run * 2
        return None

    @staticmethod
    def _found(known: dict[int, tuple[int, int]], start: int) -> int:
        # the windows before the newest with traffic are not read again while it stays
        for s in [s for s in known if s < start]:
            del known[s]
        return start


def _totals(store: Store, model: str, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """(start, events of every role) of the model's windows holding any."""
    return [(s, n) for s, n in store.event_counts(model, start_ms, end_ms) if n]


def _same(known: dict[int, tuple[int, int]], start: int, totals: dict[int, int]) -> bool:
    entry = known.get(start)
    return entry is not None and entry[0] == totals[start]
