"""Crontab expressions with crontab's meaning, on APScheduler's cron trigger.

APScheduler 3 numbers the days of the week from Monday (``0 = mon … 6 = sun``) and
``CronTrigger.from_crontab`` passes the fifth field through unchanged, so the crontab
``0 9 * * 1-5`` ("weekdays at 09:00" in crontab(5), where ``0`` and ``7`` are Sunday)
would fire Tuesday to Saturday. Here the day-of-week field is read as crontab(5) reads
it — numbers ``0``–``7`` (0 and 7: Sunday), names, ranges, lists and steps — and handed
to APScheduler as an explicit list of day names, which both read alike.

crontab(5) fires when *either* the day of month or the day of week matches if both are
restricted; APScheduler requires both. Rather than fire on other days than written, an
expression restricting both is refused.

>>> import datetime as dt
>>> t = crontab_trigger("0 9 * * 1-5")
>>> sunday = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
>>> [d.strftime("%a") for d in _firings(t, sunday, 5)]
['Mon', 'Tue', 'Wed', 'Thu', 'Fri']
>>> [d.strftime("%a") for d in _firings(crontab_trigger("0 0 * * 0,7"), sunday, 2)]
['Sun', 'Sun']
>>> day_of_week("*/2"), day_of_week("sat-sun"), day_of_week("5-7")
('sun,tue,thu,sat', 'sun,sat', 'sun,fri,sat')
"""

from __future__ import annotations

import datetime as dt
from typing import Any

_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _day(token: str) -> int:
    token = token.strip().lower()
    if token in _NAMES:
        return _NAMES.index(token)
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)
    raise ValueError(f"'{token}' is not a day of the week (0-7 or sun-sat)")


def day_of_week(field: str) -> str:
    """The crontab(5) day-of-week field as a list of day names (``*`` stays ``*``)."""
    if field.strip() == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"'{part}': a step is a positive number")
            step = int(step_text)
        if body == "*":
            low, high = 0, 6
        elif "-" in body:
            first, _, last = body.partition("-")
            low, high = _day(first), _day(last)
            if high == 0 and low > 0:  # "sat-sun": Sunday as 7 closes a range
                high = 7
            if high < low:
                raise ValueError(f"'{body}': a range runs from the earlier day to the later")
        else:
            low = high = _day(body)
            if step_text:  # "1/2": from Monday every second day (cronie's reading)
                high = 7
        days.update(d % 7 for d in range(low, high + 1, step))
    return ",".join(_NAMES[d] for d in sorted(days))


def crontab_trigger(expression: str, timezone: str = "UTC") -> Any:
    """An APScheduler ``CronTrigger`` firing when crontab(5) would."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"a crontab expression has 5 fields, got {len(fields)}")
    minute, hour, day, month, weekday = fields
    if day != "*" and weekday != "*":
        raise ValueError(
            "restrict either the day of month or the day of week, not both "
            "(crontab fires when either matches, which is rarely what is meant)"
        )
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=day_of_week(weekday),
        timezone=timezone,
    )


def _firings(trigger: Any, after: dt.datetime, count: int) -> list[dt.datetime]:
    out: list[dt.datetime] = []
    previous = None
    moment = after
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, moment)
        out.append(fire)
        previous, moment = fire, fire + dt.timedelta(seconds=1)
    return out
