"""What every alert channel receives: one incident change, channel-neutral."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from watchkeeper.policies.member_order import worst_first


@dataclass(frozen=True)
class Notification:
    kind: str
    """opened, escalated, de-escalated, updated or resolved; for shadow candidates'
    recommendations, promote or reject."""
    fingerprint: str
    severity: str
    summary: str
    model: str
    policy: str
    rule: str
    metric: str
    feature: str | None
    members: dict[str, float | None]
    at_ms: int
    opened_ms: int
    note: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    delivery_id: str = ""
    """Stable across redeliveries of this notification: receivers dedupe on it."""
    details: dict[str, Any] = field(default_factory=dict)
    """Kind-specific content, e.g. a shadow decision's comparison table."""
    bad_side: Literal["above", "below"] = "above"
    """The rule's bad side (``Rule.bad_side``): which end of ``members`` is worst, so a
    channel lists a digest's members worst first as its summary does."""

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Notification:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


DECISIONS = ("promote", "reject")
"""Kinds of a shadow candidate's recommendation (the rest are incident changes)."""

LISTED_MEMBERS = 10
"""Members of a digest a channel lists before "…and N more"."""
OVERALL = "overall"
"""How a member list names the whole window (the member ``""`` of a whole-window metric)."""


def worst_members(n: Notification, limit: int = LISTED_MEMBERS) -> list[tuple[str, float | None]]:
    """The first ``limit`` members, worst first on the rule's bad side (as the digest's
    summary orders them, policies/digest.py), members without a value last.

    >>> n = Notification("opened", "f", "warn", "s", "m", "p", "r", "accuracy", "*",
    ...     {"[c=A]": 0.9, "[c=B]": 0.5, "[c=C]": None, "[c=D]": 0.7}, 0, 0, bad_side="below")
    >>> worst_members(n, 3)
    [('[c=B]', 0.5), ('[c=D]', 0.7), ('[c=A]', 0.9)]
    """
    return [(key, n.members[key]) for key in worst_first(n.members, n.bad_side)[:limit]]


def members_title(n: Notification) -> str:
    """The heading of a digest's member list: drifted features for a per-feature metric,
    the worst segments of a whole-window one (accuracy, latency, traffic_ratio …), whose
    members name no feature (``""`` and ``[country=DE]``)."""
    if all(k and not k.startswith("[") for k in n.members):
        return "Top drifted features"
    return f"Worst segments ({n.metric}, {'highest' if n.bad_side == 'above' else 'lowest'} first)"


def member_name(key: str) -> str:
    """A member's name as listed: the whole window's (``""``) is "overall"."""
    return key or OVERALL


def comparison_lines(n: Notification) -> list[str]:
    """A shadow decision's comparison table as aligned text lines (empty for incidents).

    Conditions come first with their verdict, then the other measured values.
    """
    if n.kind not in DECISIONS:
        return []
    checks = n.details.get("checks", [])
    table: dict[str, float] = n.details.get("table", {})
    lines = []
    shown = set()
    for c in checks:
        metric = str(c["condition"]).split()[0]
        shown.add(metric)
        shown_value = "—" if c["value"] is None else f"{c['value']:.4g}"
        mark = {True: "ok", False: "FAIL", None: "wait"}[c["holds"]]
        lines.append(f"{c['condition']:<36} {shown_value:>10}  {mark}")
    for metric, number in table.items():
        if metric not in shown:
            lines.append(f"{metric:<36} {number:>10.4g}")
    moved = (n.details.get("attribution") or {}).get("protected") or {}
    if "feature" in moved:
        lines.append(
            f"protected {str(moved['feature'])[:40]}: share of attribution "
            f"{moved['production_share']:.3f} → {moved['candidate_share']:.3f}"
        )
    shift = n.details.get("attribution_shift") or {}
    if isinstance(shift.get("value"), int | float):
        lines.append(f"{'attribution_shift (production)':<36} {shift['value']:>10.4g}")
    # an A/B decision: what each value says, interval and rows included (texts built
    # from the details, versions clipped; the channel escapes them)
    texts = n.details.get("texts") or {}
    if n.details.get("comparison") == "ab":
        lines += [str(t)[:300] for t in list(texts.values())[:10]]
    return lines


SIDE_ROWS = 30
SIDE_CELL = 17
"""Width of a version's or a value's cell (the column is 17 wide)."""
SIDE_NAME = 24
"""Width of a column name's cell."""


def side_by_side_lines(n: Notification) -> list[str]:
    """An A/B decision's columns of both versions, merged since the experiment's start
    (``details["side_by_side"]``, in the order the check wrote them), as aligned text:
    a header of the two versions, then one line per column. Versions and text values come
    from events: each cell is clipped (the channel escapes them). Empty for anything else.
    """
    side = n.details.get("side_by_side") or {}
    if n.kind not in DECISIONS or n.details.get("comparison") != "ab" or not side:
        return []
    b, c = side.get("baseline") or {}, side.get("candidate") or {}
    names = [*b, *(k for k in c if k not in b)][:SIDE_ROWS]

    def cell(value: Any, width: int = SIDE_CELL) -> str:
        if value is None:
            return "—"
        if isinstance(value, bool) or not isinstance(value, int | float):
            text = " ".join(str(value).split())
            return text if len(text) <= width else text[: width - 1] + "…"
        return f"{value:.4g}"

    base, cand = (
        "—" if n.details.get(r) is None else " ".join(str(n.details[r]).split())
        for r in ("baseline", "candidate")
    )
    lines = [f"{'version':<24} " + " ".join(f"{v:>17}" for v in distinct(base, cand, SIDE_CELL))]
    for name in names:
        lines.append(f"{cell(name, SIDE_NAME):<24} {cell(b.get(name)):>17} {cell(c.get(name)):>17}")
    return lines


def distinct(a: str, b: str, width: int) -> tuple[str, str]:
    """``a`` and ``b`` each clipped to at most ``width`` characters so that they still
    differ if they did: the tail is kept (versions differ at their end: ``v2.3.1`` /
    ``v2.3.2``), else the first character where they differ is shown, an ellipsis
    marking each cut.

    >>> distinct("fraud-model-v2.3.1", "fraud-model-v2.3.2", 12)
    ('fraud…v2.3.1', 'fraud…v2.3.2')
    >>> distinct("v1-" + "a" * 20 + "X" + "a" * 20, "v1-" + "a" * 20 + "Y" + "a" * 20, 12)
    ('…aaaaaXaaaa…', '…aaaaaYaaaa…')
    >>> distinct("x" * 30, "x" * 31, 12)
    ('…xxxxx', '…xxxxxx')
    >>> distinct("3", "4", 12)
    ('3', '4')
    """

    def middle(text: str) -> str:
        if len(text) <= width:
            return text
        head = (width - 1) // 2
        return text[:head] + "…" + text[len(text) - (width - 1 - head) :]

    out = middle(a), middle(b)
    if a == b or out[0] != out[1]:
        return out
    # they share their head and their tail: show both around where they first differ
    at = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    start = max(0, at - (width - 2) // 2)

    def around(text: str) -> str:
        cut = text[start : start + width - 2]
        return ("…" if start else "") + cut + ("…" if start + width - 2 < len(text) else "")

    return around(a), around(b)


def comparison_title(n: Notification) -> str:
    """The heading of a decision's comparison table."""
    return "A/B comparison" if n.details.get("comparison") == "ab" else "Shadow comparison"


class Channel(Protocol):
    """One alert destination: ``send`` one notification, ``close`` at shutdown."""

    name: str

    def send(self, notification: Notification) -> None: ...

    def close(self) -> None: ...


# Optional capabilities: a channel declares one by having its members; the delivery worker
# asks with isinstance, so what a channel may do is written here, not probed by name.
@runtime_checkable
class Ungrouped(Protocol):
    """A channel that takes every notification, in order, never grouped (webhooks,
    Alertmanager): its receiver decides what to do with each one."""

    grouped: Literal[False]


@runtime_checkable
class Refreshing(Protocol):
    """A channel whose receiver forgets what is not sent again (Alertmanager drops an
    alert not re-posted within its ``resolve_timeout``): the delivery worker calls
    :meth:`refresh` every :attr:`resend_interval_s`."""

    resend_interval_s: float

    def refresh(self) -> None: ...


class ChannelState(Protocol):
    """Durable per-incident memory of a channel (e.g. which Slack message to update)."""

    def get(self, fingerprint: str) -> dict[str, Any] | None: ...

    def set(self, fingerprint: str, state: dict[str, Any]) -> None: ...
