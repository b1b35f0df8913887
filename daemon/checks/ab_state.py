"""The running state of one A/B comparison: what a check keeps between looks.

* ``folded``: per version, the roll-up of its windows from the comparison's start up to
  ``folded_until_ms``, trimmed to what the comparison reads (no feature sketches, row
  sample or segments: :func:`comparison_view`), so a check reads only the windows after
  it: the cost of a look does not grow with the length of the experiment. Windows are
  folded once they are *settled* — ended longer ago than the label TTL plus a window
  (labels keep joining into a window's performance sketch until then) — so a late label
  is not lost to the fold.
* ``intervals``: per interval metric, the running intersection of every look's interval
  (:meth:`~watchkeeper.detectors.sequential.Interval.narrowed`), so a decision, once
  reached, never flips back; reset when the interval settings (alpha, tuned_rows,
  min_rows) change.
* ``last``: what the latest look found (values, side-by-side columns), for
  ``/api/shadow`` and the CLI, which read it instead of computing anything.

Pure: summaries in, summaries out; :mod:`ab_store` persists it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from watchkeeper.detectors.reservoir import Reservoir
from watchkeeper.detectors.sequential import Interval
from watchkeeper.detectors.window import WindowSummary

STATE_FORMAT = 1


def comparison_view(data: dict[str, Any]) -> WindowSummary:
    """A stored summary without its feature sketches, row sample and segments, which are
    never built: a comparison reads the prediction, latency, performance and estimate
    state and the event counts (what :meth:`ABState.fold` keeps, and the look's windows
    before the policy window)."""
    reservoir = int(data["settings"][2])
    data = data | {"features": {}, "segments": [], "sample": Reservoir(reservoir).to_dict()}
    return WindowSummary.from_dict(data)


def trimmed(summary: WindowSummary) -> WindowSummary:
    """A copy as :func:`comparison_view` reads it."""
    return comparison_view(summary.to_dict())


def rolled(
    model: str,
    version: str,
    since_ms: int,
    until_ms: int,
    base: WindowSummary | None,
    parts: Iterable[WindowSummary],
) -> WindowSummary:
    """``base`` (the folded roll-up from ``since_ms``) and then ``parts`` (windows after it,
    oldest first), as one summary of ``[since_ms, until_ms)``: the same merges, in the same
    order, as :meth:`WindowSummary.rollup` of every window at once."""
    inputs = ([base] if base is not None else []) + sorted(parts, key=lambda p: p.start_ms)
    if not inputs:
        return WindowSummary(model, version, since_ms, max(1, until_ms - since_ms))
    return WindowSummary.rollup(inputs, since_ms, max(1, until_ms - since_ms), version)


@dataclass
class ABState:
    """See the module docstring."""

    policy: str
    baseline: str
    candidate: str
    since_ms: int
    folded_until_ms: int
    settings: dict[str, Any]
    folded: dict[str, WindowSummary] = field(default_factory=dict)
    """``baseline`` / ``candidate`` → trimmed roll-up of [since_ms, folded_until_ms)."""
    intervals: dict[str, Interval] = field(default_factory=dict)
    disjoint: dict[str, int] = field(default_factory=dict)
    """Per metric: looks whose interval missed the running intersection (see narrow)."""
    last: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] | None = None
    """The latest promotion verdict announced (decision, reasons, at_ms), if any."""

    def fold(self, role: str, model: str, parts: list[WindowSummary], until_ms: int) -> None:
        """Fold ``parts`` (settled windows in [folded_until_ms, until_ms)) into ``role``."""
        version = self.baseline if role == "baseline" else self.candidate
        base = self.folded.get(role)
        self.folded[role] = trimmed(rolled(model, version, self.since_ms, until_ms, base, parts))

    def advance(self, until_ms: int) -> None:
        self.folded_until_ms = max(self.folded_until_ms, until_ms)

    def narrow(self, metric: str, interval: Interval) -> Interval:
        """This look's interval intersected with every earlier look's; kept.

        A look whose interval misses the running intersection altogether (which happens
        with probability ≤ α if the true difference holds still, and routinely when it
        moves: a version changed mid-experiment, traffic shifted) keeps the intersection
        as it was and is counted in ``disjoint``, which the details show: the experiment
        no longer measures one difference and wants a new ``since``.
        """
        previous = self.intervals.get(metric)
        if previous is not None and (interval.low > previous.high or interval.high < previous.low):
            self.disjoint[metric] = self.disjoint.get(metric, 0) + 1
        out = interval.narrowed(previous)  # the one intersection rule: disjoint keeps previous
        self.intervals[metric] = out
        return out

    def reset_intervals(self, settings: dict[str, Any]) -> None:
        self.intervals = {}
        self.disjoint = {}
        self.last = {}
        self.settings = dict(settings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "since_ms": self.since_ms,
            "folded_until_ms": self.folded_until_ms,
            "settings": self.settings,
            "folded": {k: v.to_dict() for k, v in self.folded.items()},
            "intervals": {k: v.to_dict() for k, v in self.intervals.items()},
            "disjoint": self.disjoint,
            "last": self.last,
            "decision": self.decision,
        }

    @classmethod
    def from_dict(cls, policy: str, baseline: str, candidate: str, d: dict[str, Any]) -> ABState:
        return cls(
            policy,
            baseline,
            candidate,
            int(d["since_ms"]),
            int(d["folded_until_ms"]),
            dict(d.get("settings", {})),
            {k: WindowSummary.from_dict(v) for k, v in d.get("folded", {}).items()},
            {k: Interval.from_dict(v) for k, v in d.get("intervals", {}).items()},
            {k: int(v) for k, v in d.get("disjoint", {}).items()},
            dict(d.get("last", {})),
            d.get("decision"),
        )
