"""Crontab expressions fire on the days crontab(5) means, not APScheduler's numbering."""

from __future__ import annotations

import datetime as dt

import pytest
from watchkeeper.policies.cron import crontab_trigger
from watchkeeper.policies.schema import Schedule

SUNDAY = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)


def weekdays(expression: str) -> list[str]:
    """The days of the week the expression fires on in one week from a Sunday, in order."""
    trigger = crontab_trigger(expression)
    fired: list[str] = []
    previous, moment = None, SUNDAY
    while True:
        fire = trigger.get_next_fire_time(previous, moment)
        if fire is None or fire >= SUNDAY + dt.timedelta(days=7):
            return fired
        fired.append(fire.strftime("%a"))
        previous, moment = fire, fire + dt.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("field", "days"),
    [
        # crontab(5): "0 or 7 is Sunday", names allowed, ranges, lists and steps
        ("1-5", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("0", ["Sun"]),
        ("7", ["Sun"]),
        ("6,0", ["Sun", "Sat"]),
        ("mon-fri", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("sat-sun", ["Sun", "Sat"]),
        ("5-7", ["Sun", "Fri", "Sat"]),
        ("*/2", ["Sun", "Tue", "Thu", "Sat"]),
        ("1-5/2", ["Mon", "Wed", "Fri"]),
        ("1/3", ["Sun", "Mon", "Thu"]),
        ("*", ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]),
    ],
)
def test_day_of_week_reads_as_crontab(field: str, days: list[str]) -> None:
    assert weekdays(f"0 9 * * {field}") == days


@pytest.mark.parametrize("field", ["8", "fri-mon", "mon-", "1/0", "x"])
def test_bad_day_of_week_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match=r"day|range|step"):
        crontab_trigger(f"0 9 * * {field}")


def test_day_of_month_and_week_together_are_refused() -> None:
    with pytest.raises(ValueError, match="either the day of month or the day of week"):
        Schedule(cron="0 9 1 * 1")


def test_period_of_a_weekday_schedule() -> None:
    assert Schedule(cron="0 9 * * 1-5").period_s() == 86_400.0
