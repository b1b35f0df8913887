"""What ``watchkeeper drift`` says about findings it could not judge: one line per reason
under the tables, the counts line, and the line it exits 2 with when nothing was judged
(or could be)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from watchkeeper.alerts.text import terminal
from watchkeeper.daemon.offline.batch_performance import GateVerdict
from watchkeeper.daemon.offline.drift import MAX_NAME_WIDTH
from watchkeeper.detectors.base import Finding
from watchkeeper.policies.schema import Policy
from watchkeeper.policies.segments import shown_name

MAX_REASONS = 5
"""Distinct reasons for ``n/a`` listed under the tables (the JSON has every one)."""
MAX_REASON = 200
"""Characters of a reason shown (an error's may quote data)."""


def not_judged_lines(results: Sequence[tuple[Finding, GateVerdict]]) -> list[str]:
    """One line per distinct reason a finding was not judged, naming what it covers."""
    covered: dict[str, list[str]] = {}
    for f, s in results:
        if s == "n/a":
            what = f.metric if f.feature is None else f"{f.metric} ({_shown(f.feature)})"
            covered.setdefault(str(f.details.get("reason", f.status)), []).append(what)
    lines: list[str] = []
    for reason, names in list(covered.items())[:MAX_REASONS]:
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        lines.append(f"n/a: {terminal(reason)[:MAX_REASON]} ({', '.join(names[:3])}{more})")
    if len(covered) > MAX_REASONS:
        lines.append(f"n/a: {len(covered) - MAX_REASONS} more reasons (see --format json)")
    return lines


def counts_line(results: Sequence[tuple[Finding, GateVerdict]], rows: int) -> str:
    """``2 critical, 1 warnings, 3 not judged over 500 rows`` (no n/a part when none)."""
    count = Counter(v for _, v in results)
    na = f", {count['n/a']} not judged" if count["n/a"] else ""
    return f"{count['critical']} critical, {count['warn']} warnings{na} over {rows} rows"


def _shown(feature: str) -> str:
    return terminal(shown_name(feature))[:MAX_NAME_WIDTH]


def nothing_judged(results: Sequence[tuple[Finding, GateVerdict]], rows: int, path: str) -> str:
    """The line ``drift`` exits 2 with when no finding was judged, naming why."""
    head = f"watchkeeper drift: no metric could be judged on the {rows} rows of {path}"
    # a value without a threshold: more rows would not help
    unthresholded = Counter(
        str(f.details.get("reason", "")) for f, _ in results if f.value is not None
    )
    unthresholded.pop("", None)
    if unthresholded:
        return f"{head}: no threshold applies ({unthresholded.most_common(1)[0][0]})"
    reasons = Counter(str(f.details.get("reason", "")) for f, _ in results)
    reasons.pop("", None)
    why = f" (most often: {reasons.most_common(1)[0][0]})" if reasons else ""
    return f"{head}{why}; lower --min-samples (or the policy's min_samples) or give a larger batch"


def no_offline_rules(path: Path | str, policy: Policy) -> str:
    """The exit-2 line for a policy whose rules a batch file cannot answer."""
    metrics = ", ".join(dict.fromkeys(r.metric for r in policy.rules))
    return (
        f"watchkeeper drift: {path} has no column, performance or estimate rules to judge "
        f"offline (its rules read {metrics or 'nothing'}; latency, A/B and shadow rules "
        "need the live streams)"
    )
