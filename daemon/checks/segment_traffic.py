"""Each segment's traffic baseline, so ``traffic_ratio`` runs per segment as it runs on the
whole model: the segment's event rate over the median rate of the same segment in the
previous :data:`~watchkeeper.daemon.checks.checker.BASELINE_WINDOWS` policy windows
("traffic from country=DE fell to a fifth of normal").

The whole model's baseline is a cheap count in the store (``Store.event_counts``); a
segment's count lives only inside each stored window's summary. So the counts are taken
from the windows every tick reads anyway (the policy window's parts) and remembered, per
stored window, for as long as a baseline needs them; only the first tick of a policy
with a per-segment ``traffic_ratio`` rule reads the baseline span from the store, one
policy window at a time (a restart does it once more). A policy without such a rule
costs nothing here.

Windows late events changed after they left the policy window keep the counts they had
when last read (the whole model's baseline counts them; a segment's misses them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.traffic import TRAFFIC_ROLE
from watchkeeper.detectors.window import WindowSummary
from watchkeeper.policies.schema import Policy

Segment = tuple[str, str]
"""(segment feature, segment label), e.g. ("country", "DE")."""
METRIC = "traffic_ratio"


def counts_of(parts: Iterable[WindowSummary]) -> dict[int, dict[Segment, int]]:
    """Predictions per segment of each stored window start (every version's part summed)."""
    out: dict[int, dict[Segment, int]] = {}
    for part in parts:
        into = out.setdefault(part.start_ms, defaultdict(int))
        for feature, split in part.segments.items():
            for label, child in split.children.items():
                # the role traffic_ratio counts now, not every role's total
                into[(feature, label)] += child.events.get(TRAFFIC_ROLE, 0)
    return out


class SegmentTraffic:
    """Per policy, the segment counts of the stored windows a traffic baseline reads
    (see the module docstring)."""

    def __init__(self, windows: int = 6) -> None:
        self.windows = windows
        self._counts: dict[str, dict[int, dict[Segment, int]]] = {}
        self.seeded = 0
        """Policies whose baseline span was read from the store (for tests)."""

    @staticmethod
    def wanted(policy: Policy) -> bool:
        rules = {r.key: r.metric for r in policy.rules}
        return any(rules[key] == METRIC for key in policy.segmented_rules())

    def baselines(
        self,
        store: Store,
        policy: Policy,
        parts: list[WindowSummary],
        start_ms: int,
        window_ms: int,
    ) -> dict[Segment, tuple[float, ...]]:
        """Each segment's rates (events / s) in the previous policy windows before
        ``start_ms`` that had traffic, newest first, as ``traffic_ratio`` reads them;
        ``parts``: the policy window's stored windows this tick read."""
        if not self.wanted(policy):
            self._counts.pop(policy.key, None)
            return {}
        lo = start_ms - self.windows * window_ms
        known = self._counts.get(policy.key)
        if known is None:
            known = self._counts[policy.key] = {}
            for i in range(self.windows):  # one policy window at a time: bounded memory
                a = lo + i * window_ms
                read = [w.summary for w in store.windows(policy.model, None, a, a + window_ms)]
                known.update(counts_of(read))
            self.seeded += 1
        known.update(counts_of(parts))
        for old in [s for s in known if s < lo]:
            del known[old]
        seconds = window_ms / 1000
        spans = []
        for i in range(self.windows):
            a = start_ms - (i + 1) * window_ms
            inside = [c for s, c in known.items() if a <= s < a + window_ms]
            if inside:  # no traffic then: skipped, as the whole model's baseline skips it
                spans.append(inside)
        segments = {seg for inside in spans for c in inside for seg in c}
        # a segment without events in a window that had traffic: a rate of 0 there
        return {
            seg: tuple(sum(c.get(seg, 0) for c in inside) / seconds for inside in spans)
            for seg in segments
        }
