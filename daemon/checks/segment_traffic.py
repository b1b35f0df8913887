"""Each segment's traffic baseline, so ``traffic_ratio`` runs per segment as it runs on the
whole model: the segment's event rate over the median rate of the same segment in the
previous :data:`~watchkeeper.daemon.checks.assessment.BASELINE_WINDOWS` policy windows
("traffic from country=DE fell to a fifth of normal").

Both count the rule's role (predictions by default: every role's total would make steady
traffic with a features or labels stream read 0.5). The whole model's baseline reads the
stored windows' role counts (:mod:`traffic_counts`); a segment's count lives only inside
each stored window's segment children. So the counts, per role, are taken
from the windows every tick reads anyway (the policy window's parts) and remembered, per
stored window, for as long as a baseline needs them, with the spans of window starts
they cover; the parts of the baseline span no earlier tick covered (the first tick, a
policy ticking less often than its window, a tick that returned early for too few
events) are read from the store, one policy window at a time, so the baseline is the
same whenever the checker started. A baseline window split by another value set is
skipped for a label it may have folded into ``(other)`` or split out
(:func:`comparable`). What a policy remembers is keyed by its model, window and segment
features: a reload that changes them starts afresh (a removed
policy's memory is dropped by the scheduler). A policy without such a rule costs
nothing here.

Windows late events changed after they left the policy window keep the counts they had
when last read (the whole model's baseline counts them; a segment's misses them).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from watchkeeper.daemon.checks.traffic_counts import RoleCounts
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.segments import OTHER
from watchkeeper.detectors.traffic import role_of
from watchkeeper.detectors.window import WindowSummary
from watchkeeper.policies.schema import Policy

Segment = tuple[str, str, str]
"""(segment feature, segment label, role), e.g. ("country", "DE", "predictions")."""
METRIC = "traffic_ratio"


MIXED = "mixed"
"""The value set of a stored window split by different sets (its parts disagree)."""
ValueSet = tuple[str, ...] | None | str
"""A split's value set: the fixed values, None (the hash fallback), or :data:`MIXED`."""


def counts_of(parts: Iterable[WindowSummary]) -> dict[int, dict[Segment, int]]:
    """Events per segment and role of each stored window start (every version's part
    summed)."""
    out: dict[int, dict[Segment, int]] = {}
    for part in parts:
        into = out.setdefault(part.start_ms, defaultdict(int))
        for feature, split in part.segments.items():
            for label, child in split.children.items():
                # per role: a rule's rate counts one role (predictions), not every role's
                for role, n in child.events.items():
                    into[(feature, label, role)] += n
    return out


def value_sets_of(parts: Iterable[WindowSummary]) -> dict[int, dict[str, ValueSet]]:
    """Each stored window start's value set per segment feature (:data:`MIXED` when its
    parts were split by different sets)."""
    out: dict[int, dict[str, ValueSet]] = {}
    for part in parts:
        into = out.setdefault(part.start_ms, {})
        for feature, split in part.segments.items():
            values: ValueSet = MIXED if split.mixed else split.spec.values
            if into.setdefault(feature, values) != values:
                into[feature] = MIXED
    return out


def comparable(stored: ValueSet, current: ValueSet, label: str) -> bool:
    """Whether ``label``'s count in a window split by ``stored`` is the same segment's
    as in one split by ``current``: the same value set, or (fixed sets) a label kept
    apart by both. Else the label may have been folded into ``(other)`` or split out of
    it (a new reference changed the top values), so that window is skipped for it rather
    than read as a rate of 0 (or ``(other)``'s as inflated). A current window split by
    different sets (:data:`MIXED`; its findings say so) compares with every window."""
    if current == MIXED or stored == current:
        return True
    if stored == MIXED or stored is None or current is None or label == OTHER:
        return False
    return label in stored and label in current


Identity = tuple[str, int, tuple[str, ...]]
"""What a policy's counts mean: its model, policy window (ms) and segment features."""


@dataclass
class _Memory:
    identity: Identity
    counts: dict[int, dict[Segment, int]] = field(default_factory=dict)
    value_sets: dict[int, dict[str, ValueSet]] = field(default_factory=dict)
    covered: list[tuple[int, int]] = field(default_factory=list)
    """The [a, b) spans of window starts read (from the store or a tick's parts)."""

    def missing(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The parts of [lo, hi) no span read covers, oldest first."""
        out, at = [], lo
        for a, b in sorted(self.covered):
            if b <= at:
                continue
            if a >= hi:
                break
            if a > at:
                out.append((at, a))
            at = max(at, b)
        if at < hi:
            out.append((at, hi))
        return out

    def remember(self, parts: list[WindowSummary]) -> None:
        self.counts.update(counts_of(parts))
        self.value_sets.update(value_sets_of(parts))

    def cover(self, a: int, b: int, parts: list[WindowSummary]) -> None:
        self.remember(parts)
        self.covered.append((a, b))

    def forget_before(self, lo: int) -> None:
        for old in [s for s in self.counts if s < lo]:
            del self.counts[old]
            self.value_sets.pop(old, None)
        self.covered = [(a, b) for a, b in self.covered if b > lo]


class SegmentTraffic:
    """Per policy, the segment counts of the stored windows a traffic baseline reads
    (see the module docstring)."""

    def __init__(self, windows: int = 6) -> None:
        self.windows = windows
        self._memory: dict[str, _Memory] = {}
        self.whole = RoleCounts()
        """The whole model's baseline counts per role (:mod:`traffic_counts`)."""
        self.seeded = 0
        """Ticks that read part of their baseline span from the store (for tests)."""

    @staticmethod
    def wanted(policy: Policy) -> bool:
        rules = {r.key: r.metric for r in policy.rules}
        return any(rules[key] == METRIC for key in policy.segmented_rules())

    def forget(self, key: str) -> None:
        """Drop what a policy (by key) remembered: the policy was removed."""
        self._memory.pop(key, None)

    def baselines(
        self,
        store: Store,
        policy: Policy,
        parts: list[WindowSummary],
        start_ms: int,
        window_ms: int,
        end_ms: int | None = None,
    ) -> dict[Segment, tuple[float, ...]]:
        """Each segment's rates (events of a traffic rule's role / s, keyed by segment
        and role) in the previous policy windows before
        ``start_ms`` that had traffic, newest first, as ``traffic_ratio`` reads them;
        ``parts``: the stored windows starting in ``[start_ms, end_ms)`` this tick read
        (``end_ms`` unknown: they are remembered but cover no span)."""
        if not self.wanted(policy):
            self._memory.pop(policy.key, None)
            return {}
        lo = start_ms - self.windows * window_ms
        identity = (policy.model, window_ms, tuple(policy.segments))
        memory = self._memory.get(policy.key)
        if memory is None or memory.identity != identity:
            # a reload that changed what the counts mean starts afresh
            memory = self._memory[policy.key] = _Memory(identity)
        memory.forget_before(lo)
        gaps = memory.missing(lo, start_ms)
        for a0, b0 in gaps:  # windows no earlier tick read: a slow schedule, an early return
            for a in range(a0, b0, window_ms):  # one policy window at a time: bounded memory
                b = min(a + window_ms, b0)
                read = [w.summary for w in store.windows(policy.model, None, a, b)]
                memory.cover(a, b, read)
        if gaps:
            self.seeded += 1
        if end_ms is not None:
            memory.cover(start_ms, end_ms, parts)
        else:
            memory.remember(parts)
        current = value_sets_of(parts)
        seconds = window_ms / 1000
        out: dict[Segment, tuple[float, ...]] = {}
        segmented = set(policy.segmented_rules())
        roles = {
            role_of(r.options) for r in policy.rules if r.key in segmented and r.metric == METRIC
        }
        for feature in policy.segments:
            now = {sets.get(feature, MIXED) for sets in current.values()}
            want = now.pop() if len(now) == 1 else MIXED
            spans = []
            for i in range(self.windows):
                a = start_ms - (i + 1) * window_ms
                starts = [s for s in memory.counts if a <= s < a + window_ms]
                if starts:  # no traffic then: skipped, as the whole model's baseline skips it
                    sets = [memory.value_sets.get(s, {}).get(feature, MIXED) for s in starts]
                    spans.append(([memory.counts[s] for s in starts], sets))
            labels = {
                seg[1] for inside, _ in spans for c in inside for seg in c if seg[0] == feature
            }
            for label, role in itertools.product(labels, roles):
                seg = (feature, label, role)
                # a segment without events in a window that had traffic: a rate of 0 there
                rates = tuple(
                    sum(c.get(seg, 0) for c in inside) / seconds
                    for inside, sets in spans
                    if all(comparable(v, want, label) for v in sets)
                )
                if rates:
                    out[seg] = rates
        return out
