"""Durations as people write them in YAML: ``500ms``, ``30s``, ``5m``, ``1h30m``, ``7d``.

>>> parse_duration("1h30m")
5400.0
>>> parse_duration(2.5)
2.5
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import pydantic

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: Any) -> float:
    """Seconds in ``value``: a non-negative number of seconds or a string such as ``1h30m``.

    Raises ``ValueError`` with the accepted forms when ``value`` is neither.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 1h or a number of seconds")
    if isinstance(value, int | float):
        if value < 0 or value != value:
            raise ValueError("a duration must be a non-negative number of seconds")
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        pos = 0
        total = 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos == len(text) and text:
            return total
    raise ValueError(
        f"'{value}' is not a duration: write a number with a unit "
        "(ms, s, m, h, d, w), e.g. 500ms, 30s, 5m, 1h30m, or a number of seconds"
    )


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of ``seconds`` in the units above.

    >>> format_duration(5400)
    '1h30m'
    >>> format_duration(0.25)
    '250ms'
    """
    if seconds == 0:
        return "0s"
    millis = round(seconds * 1000)
    out = ""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if millis >= size:
            out += f"{millis // size}{unit}"
            millis %= size
    if millis:
        out += f"{millis}ms"
    return out


def _validate(value: Any) -> float:
    return parse_duration(value)


Duration = Annotated[float, pydantic.BeforeValidator(_validate)]
"""A pydantic field type: seconds as a float, written in YAML as ``5m`` or ``300``."""
