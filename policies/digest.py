"""Digests: which firing members of a grouped rule share one incident, and how it reads.

A rule's ``group`` says what one incident is::

    group: rule      # one digest for the rule: every firing feature, in every segment
    group: segment   # one digest per segment (and one for the whole window)
    group: feature   # one incident per feature, and per feature and segment

``rule`` is the default of a rule over several features (``features: all``, a list, a
glob). A digest groups segments as it groups features: "psi on amount for country=DE,
FR and ES" is one incident naming the three segments, each segment's value a member
of the incident (``amount[country=DE]: 0.41``), updated as segments fire and clear and
resolved when none fires. ``segment`` keeps one digest per segment, the features
grouped within it ("2 features drifted on fraud for country=DE …").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeVar

from watchkeeper.policies.incident_model import DIGEST
from watchkeeper.policies.member_order import worst_first
from watchkeeper.policies.schema import Policy, Rule, Severity
from watchkeeper.policies.segments import segment_digest, shown_name, split_slot

M = TypeVar("M")
LISTED: Final = 5
"""Segments (or features) a digest's summary names before "and N more"."""
PER_SEGMENT: Final = 3
"""Features named per segment in a digest over several features and segments."""
OVERALL: Final = "overall"
"""How a summary names the whole window among segments."""


def digest_groups(firing: Mapping[str, M], by_segment: bool) -> dict[str, dict[str, M]]:
    """A grouped rule's firing members by digest slot: all under ``*``, or (``by_segment``,
    ``group: segment``) the whole window's under ``*`` and each segment's under its own.

    >>> firing = {"a": 1, "a[country=DE]": 2, "b[country=DE]": 3}
    >>> list(digest_groups(firing, by_segment=False))
    ['*']
    >>> sorted(digest_groups(firing, by_segment=True).items())
    [('*', {'a': 1}), ('*[country=DE]', {'a[country=DE]': 2, 'b[country=DE]': 3})]
    """
    out: dict[str, dict[str, M]] = {}
    for text, member in firing.items():
        segment = split_slot(text)[1] if by_segment else None
        key = DIGEST if segment is None else segment_digest(segment)
        out.setdefault(key, {})[text] = member
    return out


def _more(total: int, shown: int, noun: str = "") -> str:
    return f" and {total - shown} more{noun}" if total > shown else ""


def _value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def digest_summary(
    policy: Policy, rule: Rule, members: dict[str, float | None], severity: Severity
) -> str:
    """The one line of a digest incident: its features, and the segments they fired in.

    Members are ordered worst first (the rule's bad side); at most :data:`LISTED`
    features (or segments) are named, then "and N more". Segment values are shown as the
    window labels them (cut at ingestion, escaped by each channel).
    """
    ordered = worst_first(members, rule.bad_side())
    parsed = {s: split_slot(s) for s in ordered}
    features = list(dict.fromkeys(_name(bare) for bare, _ in parsed.values()))
    segments = list(dict.fromkeys(segment for _, segment in parsed.values()))
    named = [s for s in segments if s is not None]
    head = f"({rule.metric} {severity})"
    if not named or segments == named[:1]:  # no segment, or all in one: the features
        where = "" if not named else f" for {named[0][0]}={named[0][1]}"
        noun = "feature" if len(members) == 1 else "features"
        shown = ", ".join(
            f"{_name(parsed[s][0])} {_value(members[s])}".strip() for s in ordered[:LISTED]
        )
        if not features[0]:  # a whole-window metric (accuracy, latency …): no feature
            return f"{rule.metric} {severity} on {policy.model}{where}: {shown}"
        return (
            f"{len(members)} {noun} drifted on {policy.model}{where} {head}: "
            f"{shown}{_more(len(ordered), LISTED)}"
        )
    # across segments: name the segments, worst first, each with its value(s)
    by_segment: dict[tuple[str, str] | None, list[str]] = {}
    for s in ordered:
        by_segment.setdefault(parsed[s][1], []).append(s)
    parts = []
    for segment in segments[:LISTED]:
        label = OVERALL if segment is None else f"{segment[0]}={segment[1]}"
        slots = by_segment[segment]
        if len(features) == 1:
            parts.append(f"{label} {_value(members[slots[0]])}")
            continue
        listed = ", ".join(
            f"{_name(parsed[s][0])} {_value(members[s])}" for s in slots[:PER_SEGMENT]
        )
        parts.append(f"{label} ({listed}{_more(len(slots), PER_SEGMENT)})")
    where = f"{policy.model}{' overall and' if None in segments else ''} in {len(named)} segment"
    where += "s" if len(named) > 1 else ""
    shown = ", ".join(parts) + _more(len(segments), LISTED, " segments")
    if not features[0]:  # a whole-window metric (accuracy, latency …) grouped by segment
        return f"{rule.metric} {severity} on {where}: {shown}"
    what = f"{features[0]} drifted" if len(features) == 1 else f"{len(features)} features drifted"
    return f"{what} on {where} {head}: {shown}"


def _name(bare: str | None) -> str:
    return shown_name(bare)
