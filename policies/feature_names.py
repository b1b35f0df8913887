"""Rule ``features:`` and policy ``segments:`` against the features a reference knows.

A typo there (``countryy``) used to select nothing: the rule or segment silently never
evaluated. Where the features are known when the file loads (a profile file the policy
names) the loader reports each unknown name, located, with the known ones; where they
are known only at evaluation time (a stored reference), the checker records an
``insufficient_data`` evaluation naming the missing feature (``daemon/checks/rule_findings.py``:
an ``error`` would open a check-failure incident over a typo).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator
from fnmatch import fnmatchcase

from watchkeeper.detectors.registry import METRICS
from watchkeeper.detectors.reserved_names import PREDICTION
from watchkeeper.policies.schema import Policy, Rule

Problem = tuple[tuple[str | int, ...], str, str]
"""Where in the file (``rules[1].features[0]``), the name, and what is wrong with it."""
MAX_LISTED = 20


def known_list(known: Collection[str]) -> str:
    names = sorted(known)
    head = ", ".join(names[:MAX_LISTED])
    return head + (f" … ({len(names)} in all)" if len(names) > MAX_LISTED else "") or "none"


def _why(name: str, known: Collection[str], what: str) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    verb = "matches no feature" if "*" in name or "?" in name else "is not a feature"
    return f"'{name}' {verb} of {what}{hint} (known: {known_list(known)})"


def unknown_rule_features(
    index: int, rule: Rule, known: Collection[str], what: str
) -> Iterator[Problem]:
    """Names and globs of a column rule's ``features`` that select none of ``known``."""
    if METRICS[rule.metric].scope != "column":
        return
    raw = rule.features
    if raw in ("all", "prediction"):
        return
    items = [raw] if isinstance(raw, str) else list(raw)
    for j, item in enumerate(items):
        if item in ("prediction", PREDICTION):
            continue
        if any(fnmatchcase(name, item) for name in known):
            continue
        where: tuple[str | int, ...] = (
            ("rules", index, "features")
            if isinstance(raw, str)
            else ("rules", index, "features", j)
        )
        yield where, item, _why(item, known, what)


def unknown_names(
    policy: Policy, known: Collection[str], what: str, segmented: Collection[str] = ()
) -> list[Problem]:
    """Every rule feature and segment of ``policy`` that ``known`` does not have
    (a segment may also be one of the reference's ``segmented`` fields).

    >>> p = Policy(model="m", segments=["chanel"],
    ...            rules=[{"metric": "psi", "critical": 0.2, "features": ["countryy"]}])
    >>> for where, name, why in unknown_names(p, {"country", "channel"}, "the reference"):
    ...     print(where, why)
    ('segments', 0) 'chanel' is not a feature of the reference; did you mean 'channel'? (known: channel, country)
    ('rules', 0, 'features', 0) 'countryy' is not a feature of the reference; did you mean 'country'? (known: channel, country)
    """  # noqa: E501
    out: list[Problem] = [
        (("segments", i), name, _why(name, {*known, *segmented}, what))
        for i, name in enumerate(policy.segments)
        if name not in known and name not in segmented
    ]
    for i, rule in enumerate(policy.rules):
        out += unknown_rule_features(i, rule, known, what)
    return out
