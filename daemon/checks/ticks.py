"""The ticks of a policy's schedule, and when each is ready to be evaluated.

A policy is evaluated at *ticks*: the instants of its schedule on a fixed grid — every
multiple of ``every`` since the Unix epoch, or each firing of its ``cron`` expression
(UTC). A tick ``T`` reads the stored windows of the last ``window`` before it
(:func:`~watchkeeper.daemon.eventtime.windows.window_bounds`: on a window boundary exactly the
windows ending by ``T``), and is stamped ``T``: its evaluations, incidents and
notifications carry ``T``, not the moment it ran. Each tick is evaluated once, in order,
and the last one is stored with its evaluations, so a restart continues after it.

A tick ``T`` whose windows end by ``E = ⌈T / size⌉ · size`` is **ready** when ``T`` is not
in the future and one of:

1. **event time** — every role the policy reads has a watermark (the minimum over its
   partitions, :mod:`watermarks`) at or past ``E + allowed_lateness``; for the labels
   role (policies with performance rules) ``E + allowed_lateness + label_ttl``, when
   every label that can still join the tick's predictions has arrived or expired. The
   windows the tick reads are then final: what arrives for them later is late. This is
   how catch-up, backfill and replay are evaluated: each period once, in order, on the
   same windows live traffic would have filled, whatever the speed of each partition.
2. **live** — every partition of those roles is caught up (within one poll of its end)
   and each role's watermark is within ``allowed_lateness`` of the wall clock: the
   stream is current, and ticks run on the wall clock, as soon as they pass, on what
   has arrived (waiting for the lateness would only delay alerts).
3. **idle** — every partition of those roles is caught up and has brought none of the
   model's events for ``ingest.idle_timeout``: nothing more is coming, so what is stored
   is all there is. This evaluates the end of a backfill, and opens the "no data"
   incident of a model that stopped.

A role quiet on every partition does not hold the others back; a partition behind that
has shown none of the model's events yet holds the whole policy (its backlog may start
earlier), and so does a role whose stream has shown none of the model's events at all
until it has been caught up and empty for ``idle_timeout``
(:mod:`~watchkeeper.daemon.eventtime.empty_streams`): an empty labels topic during a
catch-up means "not yet", never "no constraint". These functions are pure;
:mod:`stepping` reads the clocks from the store.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from watchkeeper.daemon.eventtime.watermarks import StreamTime
from watchkeeper.policies.cron import crontab_trigger
from watchkeeper.policies.schema import Schedule


@dataclass(frozen=True)
class Ticks:
    """The tick grid of one schedule."""

    every_ms: int | None = None
    cron: str | None = None

    @classmethod
    def of(cls, schedule: Schedule) -> Ticks:
        if schedule.every is not None:
            return cls(every_ms=max(1, round(schedule.every * 1000)))
        return cls(cron=schedule.cron)

    @cached_property
    def _trigger(self) -> Any:
        return crontab_trigger(str(self.cron))

    def after(self, t_ms: int) -> int:
        """The first tick strictly after ``t_ms``.

        >>> Ticks(every_ms=300_000).after(600_000), Ticks(every_ms=300_000).after(600_001)
        (900000, 900000)
        >>> Ticks(cron="0 * * * *").after(0)  # hourly, on the hour
        3600000
        """
        if self.every_ms is not None:
            return (t_ms // self.every_ms + 1) * self.every_ms
        start = dt.datetime.fromtimestamp((t_ms + 1) / 1000, dt.UTC)
        # APScheduler fires at whole seconds: round a partial second up
        if start.microsecond:
            start = start.replace(microsecond=0) + dt.timedelta(seconds=1)
        fire = self._trigger.get_next_fire_time(None, start)
        assert fire is not None, "a crontab expression always fires again"
        return int(fire.timestamp() * 1000)

    def at_or_after(self, t_ms: int) -> int:
        return self.after(t_ms - 1)

    def at_or_before(self, t_ms: int, period_ms: int) -> int:
        """The last tick at or before ``t_ms`` (``period_ms``: about the gap between ticks).

        >>> Ticks(every_ms=300_000).at_or_before(899_999, 300_000)
        600000
        >>> Ticks(cron="0 9 * * *").at_or_before(1_799_000_000_000, 86_400_000)  # at 18:13
        1798966800000
        """
        if self.every_ms is not None:
            return t_ms // self.every_ms * self.every_ms
        back = max(period_ms, 1000)
        while True:
            tick = self.at_or_after(t_ms - back)
            if tick <= t_ms:
                while (following := self.after(tick)) <= t_ms:
                    tick = following
                return tick
            back *= 2

    def count_between(self, after_ms: int, until_ms: int, period_ms: int) -> int:
        """How many ticks fall in ``(after_ms, until_ms]`` (cron: estimated by the period)."""
        if until_ms <= after_ms:
            return 0
        if self.every_ms is not None:
            return until_ms // self.every_ms - after_ms // self.every_ms
        return max(0, (until_ms - after_ms) // max(period_ms, 1))


def read_end(tick_ms: int, size_ms: int) -> int:
    """The end of the last stored window a tick reads: ``tick`` rounded up to a window."""
    return -(-tick_ms // size_ms) * size_ms


@dataclass(frozen=True)
class PolicyClock:
    """What decides which of a policy's ticks are ready (see the module docstring)."""

    closed_ms: int | None
    """Windows ending at or before this are final in event time; None: none yet."""
    live: bool
    idle: bool
    reason: str = ""
    """Why ticks wait, when they do (for status pages)."""

    @property
    def mode(self) -> str:
        if self.idle:
            return "idle"
        if self.live:
            return "live"
        return "event time"

    def ready(self, tick_ms: int, size_ms: int, now_ms: int) -> bool:
        if tick_ms > now_ms:
            return False
        if self.idle or self.live:
            return True
        return self.closed_ms is not None and read_end(tick_ms, size_ms) <= self.closed_ms

    def ready_until(self, size_ms: int, now_ms: int) -> int | None:
        """Every tick at or before this instant is ready (None: none is)."""
        if self.idle or self.live:
            return now_ms
        if self.closed_ms is None:
            return None
        return min(now_ms, self.closed_ms - self.closed_ms % size_ms)


def policy_clock(
    times: dict[str, StreamTime],
    margins: dict[str, int],
    now_ms: int,
    lateness_ms: int,
    within_a_poll: bool,
) -> PolicyClock:
    """A policy's clock from the stream times of the roles it reads.

    ``margins`` per role: how far past a window's end the role's watermark must be for
    the window to be final (``allowed_lateness``; plus ``label_ttl`` for labels).
    ``within_a_poll``: every partition of those roles is within one poll of its end.

    >>> t = StreamTime(10_000, False, False, True)
    >>> policy_clock({"predictions": t}, {"predictions": 1_000}, 10**9, 1_000, True).closed_ms
    9000
    """
    bounds: list[int] = []
    reason = ""
    held = False
    for role, time in sorted(times.items()):
        if time.idle:
            continue
        if time.watermark_ms is None:
            held = True
            if not time.partitions:
                reason = f"no {role} partition has reported yet"
            elif time.caught_up and time.newest_ms is None:
                reason = f"no {role} yet (the stream counts as idle after ingest.idle_timeout)"
            else:
                reason = f"a {role} partition has shown none of the model's events yet"
            continue
        bounds.append(time.watermark_ms - margins.get(role, lateness_ms))
    idle = all(time.idle for time in times.values())
    closed = None if held else (min(bounds) if bounds else None)
    current = all(
        time.idle or (time.watermark_ms is not None and time.watermark_ms >= now_ms - lateness_ms)
        for time in times.values()
    )
    live = not idle and within_a_poll and current and not held
    if not reason and not idle and not live:
        reason = "waiting for the watermark"
    return PolicyClock(closed, live, idle, reason)
