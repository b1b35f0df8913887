"""When a model was last seen: the end of its newest stored window with traffic.

A "no data" incident says since when (``engine.no_data``): the end of the model's newest
window before the tick whose :attr:`WindowSummary.traffic` (its predictions or features,
never its labels, which go on arriving after the predictions stop) is not zero. The
stored ``events`` column counts every role, so a window's traffic is read from its
stored counts (no sketches); :func:`whole_walk` reads them from the newest window back,
and a labels-only model had all its history read so on every no-data tick.

:class:`LastSeen` remembers, per model, each window start's traffic with the events and
late events totals it was read at, and gives exactly the whole walk's answer:

* Rows are only added to a start, except by a set-aside (housekeeping moves a corrupt
  window's key aside, and new rows may land at the same key; one start holds several
  keys: labels are stored under version ``""``), by retention (every window before a
  cut) and by a fold (parts moved into the base row, totals unchanged). So a start whose
  totals did not change since its traffic was read has the same rows, unless rows were
  deleted: the model's count of ``set_aside_windows`` rows (append-only, never deleted)
  is read before and after each lookup, and a change drops the model's cache (one during
  the lookup retries it, then falls back to the whole walk). A remembered start that a
  lookup's totals no longer hold (retention deleted it) drops the model's entries too: a
  start deleted and stored again by late events would look unchanged otherwise. One
  case stays unseen: every remembered start retention deleted stored again, by events
  older than the retention cut, with the same events and late events totals, before the
  next lookup.
* A window's traffic read runs two SELECTs (base rows, then parts): a fold between them
  under-reads. Each read is checked against the totals read after it: a start whose
  count read differs (a fold or write meanwhile, or a corrupt row the read skipped) is
  answered from the read, as the whole walk would, but not remembered.
* The totals are read from the newest start known to have traffic, and from the
  beginning only when the walk goes below it (the window last seen lost its traffic).

A tick reads the totals (one indexed aggregate of integer columns, no summaries) and the
traffic of only the starts new or changed since: a second tick costs the windows written
since the first. Memory is bounded: per model, entries below the oldest of the recent
answers go, at most ``limit`` entries are kept, and at most ``models`` models (the
least recently asked go first).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from sqlalchemy import func, select
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store import window_reads
from watchkeeper.daemon.store.connection import reading
from watchkeeper.daemon.store.store import Store
from watchkeeper.daemon.store.window_queries import counts_view

ATTEMPTS = 3
"""Lookups tried while windows are being set aside under them, before the whole walk."""

RECENT = 8
"""Answers per model whose windows are kept: policies of one model at different ticks
(another window size, a backtest stepping) do not undo each other's entries."""

Totals = dict[int, tuple[int, int]]
"""Per window start holding events: (events, late events) of every key and role."""


@dataclass
class _Model:
    """One model's remembered windows: start -> (events, late events, traffic)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    known: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    set_aside: int | None = None
    """The model's ``set_aside_windows`` rows when ``known`` was read (None: unknown)."""
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT))
    """The starts the latest lookups answered."""


class LastSeen:
    """The end of a model's newest stored window with traffic before a tick, per model
    remembered across ticks (the checker keeps one, and ``policy backtest``). ``run``: the
    first run of windows read at once, from the newest back, doubling after each run
    without traffic (an hour of 5-minute windows); ``limit`` entries kept per model, for
    at most ``models`` models."""

    def __init__(self, run: int = 12, limit: int = 16_384, models: int = 64) -> None:
        self.run = run
        self.limit = limit
        self.models = models
        self.windows_read = 0
        """Windows whose traffic was read (a test's measure of the cost)."""
        self._models: OrderedDict[str, _Model] = OrderedDict()
        # held only to hand out a model's state: lookups of different models (policies
        # tick on several scheduler threads) read the store at once, one model's in turn
        self._lock = threading.Lock()

    def __call__(self, store: Store, model: str, before_ms: int, size_ms: int) -> int | None:
        """The end of ``model``'s newest stored window starting before ``before_ms`` with
        traffic; None if it never had any."""
        with self._lock:
            state = self._models.get(model)
            if state is None:
                state = self._models[model] = _Model()
            self._models.move_to_end(model)
            while len(self._models) > self.models:
                self._models.popitem(last=False)  # a lookup holding it finishes on its own
        with state.lock:
            start = self._newest(store, model, state, before_ms)
        return None if start is None else start + size_ms

    def _newest(self, store: Store, model: str, state: _Model, before_ms: int) -> int | None:
        for _ in range(ATTEMPTS):
            moved = _set_aside_rows(store, model)
            if moved != state.set_aside:
                state.known.clear()
                state.set_aside = moved
            start = self._walk(store, model, state.known, before_ms)
            if _set_aside_rows(store, model) == moved:
                self._keep(state, start)
                return start
            # a window was set aside while this lookup read: nothing it read is trusted
            state.known.clear()
            state.set_aside = None
        return whole_walk(store, model, before_ms, self.run, self)

    def _walk(
        self, store: Store, model: str, known: dict[int, tuple[int, int, int]], before_ms: int
    ) -> int | None:
        seen = [s for s, (_, _, traffic) in known.items() if traffic and s < before_ms]
        lo = max(seen, default=0)
        totals = _totals(store, model, lo, before_ms)
        if _gone(known, totals, lo, before_ms):
            known.clear()
        starts = sorted(totals)
        i, run = len(starts), self.run
        while True:
            if not i:
                if not lo:
                    return None
                # the window last seen with traffic lost it (or is gone): the older count
                older = _totals(store, model, 0, lo)
                if _gone(known, older, 0, lo):  # every entry goes: walk again from the top
                    known.clear()
                    return self._walk(store, model, known, before_ms)
                totals |= older
                starts = sorted(older) + starts
                i, lo = len(older), 0
                continue
            start = starts[i - 1]
            entry = known.get(start)
            if entry is not None and entry[:2] == totals[start]:
                if entry[2]:
                    return start
                i -= 1
                continue
            # the run of new or changed windows ending at i, at most ``run`` of them
            j = i - 1
            while j > 0 and i - j < run and not _fresh(known, starts[j - 1], totals):
                j -= 1
            lo_read, hi_read = starts[j], starts[i - 1] + 1
            counts = _counts(store, model, lo_read, hi_read)
            after = _totals(store, model, lo_read, hi_read)
            self.windows_read += i - j
            found = None
            for s in starts[j:i]:
                events, traffic = counts.get(s, (0, 0))
                if s in after and after[s][0] == events:
                    known[s] = (*after[s], traffic)
                else:  # a fold, a write or a corrupt row met the read: not kept
                    known.pop(s, None)
                if traffic:
                    found = s
            if found is not None:
                return found
            i, run = j, run * 2

    def _keep(self, state: _Model, start: int | None) -> None:
        """Entries below the oldest recent answer go, and the oldest beyond ``limit``."""
        known = state.known
        if start is not None:
            state.recent.append(start)
            oldest = min(state.recent)
            for s in [s for s in known if s < oldest]:
                del known[s]
        if len(known) > self.limit:
            for s in sorted(known)[: len(known) - self.limit]:
                del known[s]


def whole_walk(
    store: Store, model: str, before_ms: int, run: int = 12, counter: LastSeen | None = None
) -> int | None:
    """The start of the model's newest stored window before ``before_ms`` with traffic,
    from every start's totals read from the beginning and the traffic read from the newest
    window back in doubling runs (``counter`` counts the windows read)."""
    starts = sorted(_totals(store, model, 0, before_ms))
    while starts:
        lo, hi = starts[-min(run, len(starts))], starts[-1] + 1
        if counter is not None:
            counter.windows_read += min(run, len(starts))
        seen = [s for s, (_, traffic) in _counts(store, model, lo, hi).items() if traffic]
        if seen:
            return max(seen)
        del starts[-min(run, len(starts)) :]
        run *= 2
    return None


def _fresh(known: dict[int, tuple[int, int, int]], start: int, totals: Totals) -> bool:
    entry = known.get(start)
    return entry is not None and entry[:2] == totals[start]


def _gone(known: dict[int, tuple[int, int, int]], totals: Totals, lo: int, hi: int) -> bool:
    """Whether an entry in [lo, hi) names a window no longer stored: retention deleted
    every window before its cut, and a start it deleted that late events stored again
    since would look unchanged if its totals came back the same (so every entry goes)."""
    return any(lo <= s < hi and s not in totals for s in known)


def _set_aside_rows(store: Store, model: str) -> int:
    """The model's rows in ``set_aside_windows`` (append-only: any move aside raises it)."""
    c = t.set_aside_windows.c
    query = select(func.count()).select_from(t.set_aside_windows).where(c.model == model)
    with reading(store.engine, "read the windows set aside") as conn:
        return int(conn.execute(query).scalar() or 0)


def _totals(store: Store, model: str, start_ms: int, end_ms: int) -> Totals:
    """(events, late events) of every role and key per start of the model's windows in
    [start, end) holding any: one aggregate of integer columns (no summary)."""
    c = window_reads.rows().c
    query = (
        select(c.window_start_ms, func.sum(c.events), func.sum(c.late_events))
        .where((c.model == model) & (c.window_start_ms >= start_ms) & (c.window_start_ms < end_ms))
        .group_by(c.window_start_ms)
    )
    with reading(store.engine, "read window totals") as conn:
        rows = conn.execute(query).all()
    return {int(s): (int(n), int(late or 0)) for s, n, late in rows if n}


def _counts(store: Store, model: str, start_ms: int, end_ms: int) -> dict[int, tuple[int, int]]:
    """(events, traffic) per start of the model's windows in [start, end), from their
    stored counts (no sketches); a window that does not load is left out, as every read
    leaves it."""
    out: dict[int, tuple[int, int]] = {}
    for w in store.windows(model, None, start_ms, end_ms, view=counts_view):
        s = w.summary.start_ms
        events, traffic = out.get(s, (0, 0))
        out[s] = (events + w.summary.count, traffic + w.summary.traffic)
    return out
