"""Which pair of versions an A/B comparison compares: the named ones, or for
``compare: latest`` the two first seen most recently (docs/comparison.md, "The pair")."""

from __future__ import annotations

import logging

from watchkeeper.daemon.checks.ab_report import natural, shown
from watchkeeper.daemon.checks.ab_store import ABStore
from watchkeeper.policies.compare import Compare
from watchkeeper.policies.schema import Policy

log = logging.getLogger(__name__)


def pair_in_force(db: ABStore, policy: Policy, compare: Compare) -> tuple[str, str] | str:
    """(baseline, candidate) in force, or why there is none yet. The pair in force is
    the one recorded with the comparison (``ab_comparisons.in_force``), so a restart
    or another replica taking over continues it; ``compare: latest`` moves on only
    when a strictly newer version qualifies (docs/comparison.md)."""
    seen = db.first_seen(policy.model)
    current = db.in_force(policy.key)
    if compare.versions == "latest":
        qualified = {v: first for v, (first, n) in seen.items() if v and n >= compare.min_rows}
        ranked = sorted(qualified.items(), key=lambda kv: (kv[1], natural(kv[0])))
        if (
            current is not None
            and all(v in qualified for v in current)
            and not any(f > qualified[current[1]] for f in qualified.values())
        ):
            b, c = current
        elif len(ranked) < 2:
            listed = ", ".join(f"{shown(v)} ({n:,} events)" for v, (_, n) in seen.items())
            return (
                f"compare: latest needs two versions of {policy.model} with at least "
                f"{compare.min_rows:,} events each; seen: {listed or 'none'}"
            )
        else:
            (b, _), (c, _) = ranked[-2], ranked[-1]
    else:
        assert compare.baseline is not None and compare.candidate is not None
        b, c = compare.baseline, compare.candidate
        missing = [shown(v) for v in (b, c) if v not in seen]
        if missing:
            return f"version {', '.join(missing)} of {policy.model} not seen yet"
    if current != (b, c):
        log.info(
            "policy %s: A/B comparison in force: candidate %s against baseline %s%s",
            policy.key,
            shown(c),
            shown(b),
            " (the two most recent versions by first event time)"
            if compare.versions == "latest"
            else "",
        )
    return b, c
