"""The tick grid of a schedule and the readiness rules (event time, live, idle)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st
from watchkeeper.daemon.checks.ticks import PolicyClock, Ticks, policy_clock, read_end
from watchkeeper.daemon.eventtime.watermarks import StreamTime
from watchkeeper.daemon.eventtime.windows import window_bounds
from watchkeeper.policies.schema import Schedule

MIN = 60_000
HOUR = 60 * MIN
NOW = 1_800_000_000_000


def utc(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)


@given(st.integers(0, 10**13), st.integers(1, 10**7))
def test_every_ticks_lie_on_the_epoch_grid(t: int, every: int) -> None:
    ticks = Ticks(every_ms=every)
    nxt = ticks.after(t)
    assert nxt > t and nxt % every == 0 and nxt - every <= t
    assert ticks.at_or_after(nxt) == nxt


def test_cron_ticks_are_its_firings_in_utc() -> None:
    ticks = Ticks.of(Schedule(cron="*/10 * * * *"))
    assert ticks.after(utc("2026-11-21T10:00:00")) == utc("2026-11-21T10:10:00")
    assert ticks.after(utc("2026-11-21T10:03:17.250")) == utc("2026-11-21T10:10:00")
    daily = Ticks.of(Schedule(cron="0 3 * * *"))
    assert daily.after(utc("2026-11-21T03:00:00")) == utc("2026-11-22T03:00:00")
    assert (
        daily.count_between(utc("2026-11-21T00:00:00"), utc("2026-11-24T00:00:00"), 86_400_000) == 3
    )


def test_a_tick_on_a_window_boundary_reads_the_windows_ending_by_it() -> None:
    size = 5 * MIN
    assert window_bounds(10 * HOUR, size, HOUR) == (9 * HOUR, 10 * HOUR)
    assert read_end(10 * HOUR, size) == 10 * HOUR
    # off the boundary: the partial window and the oldest partly covered one
    assert window_bounds(10 * HOUR + MIN, size, HOUR) == (9 * HOUR, 10 * HOUR + size)
    assert read_end(10 * HOUR + MIN, size) == 10 * HOUR + size


def t(watermark: int | None, *, held: bool = False, idle: bool = False) -> StreamTime:
    return StreamTime(watermark, held, idle, True)


def test_event_time_readiness_waits_for_every_role_past_end_plus_lateness() -> None:
    margins = {"predictions": 10 * MIN, "labels": 10 * MIN + 24 * HOUR}
    clock = policy_clock(
        {"predictions": t(100 * HOUR), "labels": t(90 * HOUR)}, margins, NOW, 10 * MIN, False
    )
    assert clock.mode == "event time"
    # labels 90h, minus lateness and a day of label_ttl → windows ending by 65h50m are final
    assert clock.closed_ms == 90 * HOUR - 10 * MIN - 24 * HOUR
    assert clock.ready(65 * HOUR, 5 * MIN, NOW)
    assert not clock.ready(66 * HOUR, 5 * MIN, NOW)
    assert clock.ready_until(5 * MIN, NOW) == 65 * HOUR + 50 * MIN


def test_a_held_role_holds_the_policy_and_an_idle_role_does_not() -> None:
    margins = {"predictions": 0, "labels": 0}
    held = policy_clock(
        {"predictions": t(None, held=True), "labels": t(5 * HOUR)}, margins, NOW, 0, False
    )
    assert held.closed_ms is None and not held.ready(HOUR, MIN, NOW) and held.reason
    idle_labels = policy_clock(
        {"predictions": t(5 * HOUR), "labels": t(HOUR, idle=True)}, margins, NOW, 0, False
    )
    assert idle_labels.closed_ms == 5 * HOUR
    all_idle = policy_clock(
        {"predictions": t(5 * HOUR, idle=True), "labels": t(HOUR, idle=True)},
        margins,
        NOW,
        0,
        False,
    )
    assert all_idle.mode == "idle" and all_idle.ready(NOW - 1, MIN, NOW)
    assert not all_idle.ready(NOW + 1, MIN, NOW)  # never a tick in the future


def test_live_needs_caught_up_partitions_and_a_current_watermark() -> None:
    margins = {"predictions": 10 * MIN}
    current = {"predictions": t(NOW - 2_000)}
    assert policy_clock(current, margins, NOW, 10 * MIN, True).mode == "live"
    assert policy_clock(current, margins, NOW, 10 * MIN, False).mode == "event time"
    behind = {"predictions": t(NOW - HOUR)}
    assert policy_clock(behind, margins, NOW, 10 * MIN, True).mode == "event time"
    live = PolicyClock(None, live=True, idle=False)
    assert live.ready(NOW, MIN, NOW) and live.ready_until(MIN, NOW) == NOW


def test_the_examples_in_the_time_modules_hold() -> None:
    """``daemon/`` is not collected for doctests: run the event-time modules' here."""
    import doctest

    from watchkeeper.daemon.checks import retention, ticks
    from watchkeeper.daemon.eventtime import watermarks

    for module in (ticks, watermarks, retention):
        result = doctest.testmod(module)
        assert result.attempted and not result.failed, module.__name__
