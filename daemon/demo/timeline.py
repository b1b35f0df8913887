"""The demo's timeline: which fault is injected when, what it must open, and the check.

Times are in seconds from the moment the policies come into force. Every phase lasts
``phase_s``; each fault is followed by a quiet phase as long, in which its incident must
resolve. The demo compresses time to fit: stored windows of ``phase_s / 10``, policies
that look at the last ``phase_s / 2`` and run every ``phase_s / 10`` (see
:func:`demo_policy`), so a fault is visible within seconds and gone from the windows well
before the next one starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from watchkeeper.daemon.demo.synthetic import Faults


@dataclass(frozen=True)
class Phase:
    name: str
    title: str
    start_s: float
    end_s: float
    """The injection ends here; the quiet phase after it runs to ``settle_s``."""
    settle_s: float
    faults: Faults = field(default_factory=Faults)
    expects: tuple[str, ...] = ()
    """Rules of the ``fraud`` policy that must open an incident, and only these."""
    shadow: bool = False


@dataclass
class Scale:
    """The demo's time compression, derived from the phase length."""

    phase_s: float

    @property
    def window_size_s(self) -> float:
        return max(1.0, round(self.phase_s / 10))

    @property
    def lookback_s(self) -> float:
        return 5 * self.window_size_s

    @property
    def every_s(self) -> float:
        return self.window_size_s

    @property
    def label_delay_s(self) -> float:
        return self.window_size_s


def timeline(phase_s: float) -> list[Phase]:
    """Baseline, five faults each followed by a quiet phase, then shadow evaluation."""
    p = phase_s
    faults = [
        (
            "drift",
            "feature drift: fraud.amount ×e (log-mean +1)",
            Faults(amount_shift=1.0),
            ("feature-drift", "feature-kl", "score-drift"),
        ),
        (
            "latency",
            "latency regression: fraud answers 8× slower",
            Faults(latency_factor=8.0),
            ("latency",),
        ),
        (
            "nan-burst",
            "silent failure: 30 % of fraud.age arrive as NaN, the model imputes",
            Faults(nan_share=0.3),
            ("nan-burst",),
        ),
        (
            "accuracy",
            "accuracy drop: 15 % of delayed fraud labels disagree with the model",
            Faults(label_flip=0.15),
            # the labels now contradict the scores (P(y | x) changed): the estimates,
            # which assume it did not, no longer match the realised accuracy
            ("accuracy-drop", "estimates-trust"),
        ),
        (
            "unlabelled",
            "labels stop while fraud's amounts move to its decision boundary: the "
            "estimate opens first, the late labels confirm it",
            Faults(unsure=True, labels_held=True),
            # the amounts drifted (feature-drift …), the estimate fell with no label
            # in sight, and the labels sent when the phase ends confirm the drop
            (
                "feature-drift",
                "feature-kl",
                "score-drift",
                "estimated-accuracy-drop",
                "accuracy-drop",
            ),
        ),
    ]
    phases = [Phase("baseline", "healthy traffic", 0.0, p, p)]
    t = p
    for name, title, f, expects in faults:
        phases.append(Phase(name, title, t, t + p, t + 2 * p, f, expects))
        t += 2 * p
    phases.append(
        Phase(
            "shadow",
            "INT8 candidate of fraud (watchkeeper compress) in shadow on live traffic",
            t,
            t + 2 * p,
            t + 2 * p,
            shadow=True,
        )
    )
    return phases


def phase_at(phases: list[Phase], t: float) -> Phase | None:
    return next((p for p in phases if p.start_s <= t < p.settle_s), None)


def demo_policy(source: Path, scale: Scale) -> dict[str, Any]:
    """A shipped example policy with its time compressed to the demo's scale."""
    doc = yaml.safe_load(source.read_text())
    doc["window"] = f"{scale.lookback_s:g}s"
    doc["schedule"] = {"every": f"{scale.every_s:g}s"}
    return dict(doc)


def write_policies(source_dir: Path, target_dir: Path, scale: Scale) -> list[Path]:
    """Time-compressed copies of every policy file in ``source_dir`` (tests excluded)."""
    target_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(source_dir.glob("*.yaml")):
        if path.name.endswith((".test.yaml", ".snippet.yaml")):
            continue
        doc = demo_policy(path, scale)
        target = target_dir / path.name
        header = (
            f"# {path.name} from the shipped examples, time-compressed for the demo: "
            f"window {doc['window']}, every {doc['schedule']['every']}\n"
        )
        target.write_text(header + yaml.safe_dump(doc, sort_keys=False))
        written.append(target)
    return written


@dataclass
class Outcome:
    """What one phase opened and whether it resolved, against what it should (a quiet
    phase should open nothing)."""

    phase: str
    expected: list[str]
    opened: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    first_open_s: float | None = None
    last_resolve_s: float | None = None

    @property
    def ok(self) -> bool:
        return sorted(set(self.opened)) == sorted(self.expected) and not self.unresolved


def judge(phases: list[Phase], t0_ms: int, incidents: list[dict[str, Any]]) -> list[Outcome]:
    """Match incidents (rows of the store's ``incidents`` table) to the fault phases."""
    out = []
    for phase in phases:
        lo, hi = t0_ms + phase.start_s * 1000, t0_ms + phase.settle_s * 1000
        mine = [i for i in incidents if lo <= i["opened_ms"] < hi]
        outcome = Outcome(phase.name, sorted(phase.expects))
        outcome.opened = sorted({i["rule"] or i["feature"] or "?" for i in mine})
        outcome.unresolved = sorted(
            {i["rule"] for i in mine if i["resolved_ms"] is None or i["resolved_ms"] >= hi}
        )
        if mine:
            outcome.first_open_s = (min(i["opened_ms"] for i in mine) - lo) / 1000
            resolved = [i["resolved_ms"] for i in mine if i["resolved_ms"] is not None]
            if resolved:
                end = t0_ms + phase.end_s * 1000
                outcome.last_resolve_s = (max(resolved) - end) / 1000
        out.append(outcome)
    return out


def outcome_dicts(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [asdict(o) | {"ok": o.ok} for o in outcomes]
