"""The one order of an incident's members: worst first on the rule's bad side.

The digest's summary (policies/digest.py), every channel's member list
(alerts/notification.py ``worst_members``) and the pages' "now" line
(daemon/store/incident_values.py) read it, so they all name the same members first. It
imports nothing of ours: the channels (which may not reach the detectors) use it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal


def worst_first(
    members: Mapping[str, float | None], bad_side: Literal["above", "below"]
) -> list[str]:
    """The members' keys, worst first on ``bad_side`` (highest first for ``"above"``,
    lowest first for ``"below"``), members without a value last, ties by key.

    >>> worst_first({"a": 0.2, "b": 0.9, "c": None, "d": 0.5}, "above")
    ['b', 'd', 'a', 'c']
    >>> worst_first({"a": 0.2, "b": 0.9, "c": None, "d": 0.5}, "below")
    ['a', 'd', 'b', 'c']
    """
    sign = -1.0 if bad_side == "above" else 1.0

    def badness(key: str) -> tuple[bool, float, str]:
        value = members[key]
        return (value is None, 0.0 if value is None else sign * value, key)

    return sorted(members, key=badness)
