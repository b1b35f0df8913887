"""An open incident's members as the latest evaluation has them.

An incident's ``summary`` and ``members`` are written at its transitions; the values go on
changing between them, so the pages and the API show the latest ones beside them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Connection, select
from watchkeeper.daemon.store import tables as t
from watchkeeper.policies.member_order import worst_first
from watchkeeper.policies.segments import shown_name, slot, split_slot

if TYPE_CHECKING:
    from watchkeeper.policies.schema import Policy

MAX_CURRENT_MEMBERS = 200
"""Members of one incident whose latest value is read (a digest's features)."""


def current_values(conn: Connection, incident: dict[str, Any]) -> dict[str, Any] | None:
    """The latest evaluation of an open incident's members: ``{"at_ms": tick, "values":
    {feature: value}}``; None for a resolved incident or before any evaluation.

    ``summary`` and ``members`` are written at the incident's last transition (opened,
    escalated, members changed); the value goes on changing between transitions, and
    the pages show both (two indexed reads: the rule's newest tick, then its rows)."""
    if incident.get("state") != "open":
        return None
    features = [f for f in incident["members"] if f][:MAX_CURRENT_MEMBERS]
    if not features and incident.get("feature"):
        features = [incident["feature"]]
    e = t.evaluations.c
    mine = (e.policy == incident["policy"]) & (e.rule == incident["rule"])
    at_ms = conn.execute(select(e.at_ms).where(mine).order_by(e.at_ms.desc()).limit(1)).scalar()
    if at_ms is None:
        return None
    rows = conn.execute(
        select(e.feature, e.value).where(mine & (e.at_ms == at_ms) & e.feature.in_(features))
    ).all()
    if not rows:
        return None
    return {"at_ms": int(at_ms), "values": {str(f): v for f, v in rows}}


def rule_bad_side(
    policies: Mapping[str, Policy], incident: dict[str, Any]
) -> Literal["above", "below"]:
    """The bad side of the incident's rule (``Rule.bad_side``), as the router gives it to
    the channels: ``"above"`` when its policy or rule is no longer loaded."""
    policy = policies.get(incident["policy"])
    return "above" if policy is None else policy.bad_side_of(incident["rule"])


def current_line(incident: dict[str, Any], bad_side: Literal["above", "below"]) -> str | None:
    """ "now (tick 01:55 UTC): income 0.9566" when a member's latest value differs from
    the one its summary states; None when they agree (or nothing newer is known).

    Members are listed worst first on the rule's ``bad_side``, as the summary and the
    channels list them (policies/member_order.py).

    >>> row = {"members": {"a": 0.2974}, "current": {"at_ms": 0, "values": {"a": 0.9566}}}
    >>> current_line(row, "above")
    'now (tick 1970-01-01 00:00 UTC): a 0.9566'
    >>> row = {"members": {"a": 0.9, "b": 0.8},
    ...        "current": {"at_ms": 0, "values": {"a": 0.7, "b": 0.6}}}
    >>> current_line(row, "below")
    'now (tick 1970-01-01 00:00 UTC): b 0.6, a 0.7'
    >>> current_line({"members": {"a": 0.5}, "current": {"at_ms": 0, "values": {"a": 0.5}}},
    ...     "above")
    >>> row = {"members": {"__prediction__": 0.2}, "current": {"at_ms": 0,
    ...        "values": {"__prediction__": 0.87}}}
    >>> current_line(row, "above")  # named as the policy names it, as the summary does
    'now (tick 1970-01-01 00:00 UTC): prediction 0.87'
    """
    current = incident.get("current")
    if not current:
        return None
    values: dict[str, float | None] = current["values"]
    members: dict[str, float | None] = incident.get("members") or {}
    if all(members.get(f) == v for f, v in values.items()) and set(values) >= set(members):
        return None
    tick = dt.datetime.fromtimestamp(current["at_ms"] / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")
    ordered = worst_first(values, bad_side)
    shown = ", ".join(
        f"{_shown(f)} {values[f]:.4g}" if values[f] is not None else f"{_shown(f)} n/a"
        for f in ordered[:5]
    )
    more = f" and {len(ordered) - 5} more" if len(ordered) > 5 else ""
    return f"now (tick {tick} UTC): {shown}{more}"


def _shown(member: str) -> str:
    """A member's slot with the prediction named as the policy names it, the segment kept
    as the store writes it (``income[country=DE]``, ``prediction[country=DE]``)."""
    feature, segment = split_slot(member)
    if segment is None:
        return shown_name(member)
    return slot(shown_name(feature), *segment)
