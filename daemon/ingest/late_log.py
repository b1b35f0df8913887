"""The log line for late events: every one reported, at most once a minute per stream.

Late events (past the watermark + ``windows.allowed_lateness``) are counted at once
(``watchkeeper_late_events_dropped_total``, the status, the console); the log says so at
most once per :data:`LATE_LOG_INTERVAL_S` per model and role, so a backfill's stream of
late batches writes one line a minute, not one per batch. What arrives inside the
interval is carried, with the oldest such event and the latest watermark, and reported by
the next :meth:`LateLog.report` once the interval has passed — the loop calls it at every
flush, and with ``force`` at close — so the count logged always reaches the count
counted, even when no later late event comes (a line short by the carried events would
contradict the counter).

>>> now = [1000.0]
>>> late = LateLog(lambda: now[0], interval_s=60.0)
>>> late.add("m", "predictions", 3, oldest_ms=0, watermark_ms=None)  # logged at once
>>> late.add("m", "predictions", 4, oldest_ms=0, watermark_ms=None)  # carried
>>> late.carried()
{('m', 'predictions'): 4}
>>> late.report()  # the interval has not passed
>>> now[0] += 60.0
>>> late.report()
>>> late.carried()
{}
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from watchkeeper.daemon.store.skipped_windows import printable

log = logging.getLogger("watchkeeper.daemon.ingest.loop")

LATE_LOG_INTERVAL_S = 60.0


@dataclass
class _Carried:
    logged_at: float = -math.inf
    count: int = 0
    oldest_ms: int | None = None
    watermark_ms: int | None = None


class LateLog:
    """Late events per (model, role), logged at most once per ``interval_s`` of ``clock``."""

    def __init__(
        self,
        clock: Callable[[], float],
        interval_s: float = LATE_LOG_INTERVAL_S,
        lateness_s: float = 0.0,
    ) -> None:
        self._clock = clock
        self._interval_s = interval_s
        self._lateness_s = lateness_s
        self._streams: dict[tuple[str, str], _Carried] = {}

    def add(
        self, model: str, role: str, count: int, *, oldest_ms: int, watermark_ms: int | None
    ) -> None:
        """``count`` late events of one batch; logged now unless a line was written within
        the interval, else carried to the next :meth:`report`."""
        carried = self._streams.setdefault((model, role), _Carried())
        carried.count += count
        carried.oldest_ms = (
            oldest_ms if carried.oldest_ms is None else min(carried.oldest_ms, oldest_ms)
        )
        carried.watermark_ms = watermark_ms
        self._report_one(model, role, carried, force=False)

    def report(self, force: bool = False) -> None:
        """Log what was carried whose interval has passed (everything, with ``force``)."""
        for (model, role), carried in self._streams.items():
            self._report_one(model, role, carried, force=force)

    def carried(self) -> dict[tuple[str, str], int]:
        """The late events counted and not logged yet, per (model, role)."""
        return {key: c.count for key, c in self._streams.items() if c.count}

    def _report_one(self, model: str, role: str, carried: _Carried, *, force: bool) -> None:
        now = self._clock()
        # a clock stepped back (the loop's wall clock, NTP) counts as the interval passed:
        # the line must not fall silent for the size of the step
        if not carried.count or (not force and 0 <= now - carried.logged_at < self._interval_s):
            return
        log.warning(
            "%s: %d late %s event(s) dropped since the last report (the oldest at %s; the %s "
            "watermark is %s and windows close %gs after their end); counted per window",
            printable(model),  # from events: bounded at admission, escaped here
            carried.count,
            role,
            _iso(carried.oldest_ms),
            role,
            _iso(carried.watermark_ms),
            self._lateness_s,
        )
        carried.logged_at = now
        carried.count = 0
        carried.oldest_ms = None


def _iso(ms: int | None) -> str:
    if ms is None:
        return "none yet"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
