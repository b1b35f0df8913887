"""The ``compare`` section of a policy file: a live A/B test between two model versions.

::

    compare:
      baseline: "3"                   # model_version values as the events carry them
      candidate: "4"
      alpha: 0.05                     # 95 % always-valid intervals
      tuned_rows: 10000               # rows (both versions) where the interval is tightest
      min_rows: 100                   # no interval below this many rows per version
      label_wait: 1d                  # labels joining a window later than this don't count
      margin: {ab_accuracy_delta: 0.005}   # a decision needs a difference beyond this
      since: 2026-01-05T00:00:00Z     # optional start; default: when first seen in force
      promotion:                      # optional: a recommendation, announced once
        when:
          - ab_accuracy_delta.low > -0.005    # "not worse than 0.5 points", at 95 %
          - ab_latency_p99_ratio <= 1.2
        on_promote: [oncall-slack]
        on_reject: [oncall-slack]

or ``compare: latest``: the two most recent versions of the model seen on the stream —
"most recent" by the start of the first window in which the version was seen (event
time, recorded durably so retention does not change it; ties in natural order, so "10"
is newer than "9"), the newest being the candidate. A version enters the ranking only
once it has ``min_rows`` events (a stray test event or a three-event canary is not an
experiment), and never with an empty version. The pair in force stays until a strictly
newer version qualifies; it is logged when it changes and shown in ``/api/shadow``.

Rules on ``ab_*`` metrics (``metric: ab_accuracy_delta``) judge, by default, the
*bound* of the interval nearest the good side (for accuracy: its upper end), so a rule
``critical: -0.01`` fires only once the candidate is worse by more than a point at the
comparison's confidence; ``options: {value: estimate}`` judges the point value instead
(``low`` / ``high``: that end). docs/comparison.md describes the statistics.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Protocol

import pydantic
from pydantic import ConfigDict, Field
from watchkeeper.detectors.ab_metrics import AB_METRICS
from watchkeeper.detectors.sequential import DEFAULT_ALPHA, DEFAULT_MIN_ROWS, DEFAULT_TUNED_ROWS
from watchkeeper.policies.conditions import OPS, parsed_each
from watchkeeper.policies.durations import Duration

INTERVAL_METRICS = tuple(n for n, m in AB_METRICS.items() if m.interval)
STATISTICS = ("bound", "estimate", "low", "high")
"""What an ``ab_*`` rule judges (``options: {value: …}``); see the module docstring."""
VERSION = r"[^\x00-\x1f\x7f]{1,200}"
_CONDITION = re.compile(
    r"^\s*(ab_[a-z0-9_]+)(?:\.(low|high|estimate|decision))?\s*(>=|<=|>|<|==)\s*(\S+)\s*$"
)
DECISIONS = ("worse", "better", "no_evidence", "changed")


class RuleLike(Protocol):
    """What :func:`ab_rule_problems` reads of a rule (the schema's ``Rule``)."""

    @property
    def metric(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def options(self) -> dict[str, Any]: ...


class _Strict(pydantic.BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _version(value: object) -> object:
    """YAML reads ``baseline: 3`` as a number; the events' ``model_version`` is a string."""
    if isinstance(value, bool):
        raise ValueError("a version is a string such as '3' or 'v2025-01', not a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise ValueError(f"write the version {value!r} as a quoted string ('{value}')")
    if isinstance(value, str) and not re.fullmatch(VERSION, value):
        raise ValueError(
            "a version is 1 to 200 characters without control characters (as the events' "
            "model_version carries it)"
        )
    return value


Version = Annotated[str, pydantic.BeforeValidator(_version)]


class ABCondition(_Strict):
    """One promotion criterion on an ``ab_*`` metric: ``metric[.stat] op bound``.

    ``stat``: ``low`` / ``high`` (the interval's ends, narrowed over the looks),
    ``estimate``, or ``decision`` (compared with ``==`` to worse / better / no_evidence /
    changed); without it the metric's value (the estimate; a ratio or distance itself).

    >>> c = ABCondition.parse("ab_accuracy_delta.low > -0.005")
    >>> c.metric, c.stat, c.op, c.bound, str(c)
    ('ab_accuracy_delta', 'low', '>', -0.005, 'ab_accuracy_delta.low > -0.005')
    """

    metric: str
    stat: Literal["value", "low", "high", "estimate", "decision"] = "value"
    op: Literal[">=", "<=", ">", "<", "=="]
    bound: float | str

    @classmethod
    def parse(cls, text: str) -> ABCondition:
        m = _CONDITION.match(text)
        if m is None:
            raise ValueError(
                f"'{text[:200]}' is not a condition: write `metric[.low|.high|.estimate] op "
                "number` (op one of >=, <=, >, <) or `metric.decision == worse|better|"
                "no_evidence|changed`, e.g. `ab_accuracy_delta.low > -0.005`"
            )
        metric, stat, op, bound = m.groups()
        if metric not in AB_METRICS:
            names = ", ".join(AB_METRICS)
            raise ValueError(f"'{metric[:200]}' is not an A/B metric (known: {names})")
        stat = stat or "value"
        # a ratio or a distance has a value only: .estimate on it would name a field its
        # details never carry (and fail at every look instead of here)
        if stat in ("low", "high", "estimate", "decision") and metric not in INTERVAL_METRICS:
            raise ValueError(
                f"{metric} carries no interval, so no .{stat}: conditions on it compare its "
                f"value (metrics with an interval: {', '.join(INTERVAL_METRICS)})"
            )
        if stat == "decision":
            if op != "==" or bound not in DECISIONS:
                raise ValueError(f"write `{metric}.decision == D`, D one of {', '.join(DECISIONS)}")
            return cls(metric=metric, stat="decision", op="==", bound=bound)
        if op == "==":
            raise ValueError("== compares a decision; numbers take >=, <=, >, <")
        try:
            number = float(bound)
        except ValueError:
            raise ValueError(f"'{bound}' in '{text[:200]}' is not a number") from None
        if not math.isfinite(number):  # nan never compares true, inf always: never meant
            raise ValueError(f"'{bound}' in '{text[:200]}' is not a finite number")
        return cls(metric=metric, stat=stat, op=op, bound=number)  # type: ignore[arg-type]

    def holds(self, value: float | str) -> bool:
        if self.stat == "decision":
            return value == self.bound
        assert isinstance(value, float | int) and isinstance(self.bound, float)
        return OPS[self.op](float(value), self.bound)

    def __str__(self) -> str:
        name = self.metric if self.stat == "value" else f"{self.metric}.{self.stat}"
        bound = self.bound if isinstance(self.bound, str) else f"{self.bound:g}"
        return f"{name} {self.op} {bound}"


class ABPromotion(_Strict):
    """When the candidate version is recommended (or not) over the baseline."""

    when: Annotated[
        tuple[ABCondition, ...],
        Field(min_length=1),
        pydantic.BeforeValidator(parsed_each(ABCondition.parse, "ab_accuracy_delta.low > -0.005")),
    ]
    on_promote: tuple[str, ...] = ()
    on_reject: tuple[str, ...] = ()


class Compare(_Strict):
    """See the module docstring. Exactly one of (``baseline`` and ``candidate``) or
    ``versions: latest``."""

    baseline: Version | None = None
    candidate: Version | None = None
    versions: Literal["latest"] | None = None
    """``latest``: the two most recent versions seen (the newest is the candidate)."""
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = DEFAULT_ALPHA
    tuned_rows: Annotated[int, Field(ge=1, le=10**12)] = DEFAULT_TUNED_ROWS
    min_rows: Annotated[int, Field(ge=2, le=10**9)] = DEFAULT_MIN_ROWS
    margin: dict[str, Annotated[float, Field(ge=0)]] | Annotated[float, Field(ge=0)] = 0.0
    """The difference a decision must exceed: one number for every interval metric or
    per metric (in its units: 0.01 = 1 point of accuracy)."""
    label_wait: Annotated[Duration, Field(gt=0)] | None = None
    """How long after a window ends its labels still count in the comparison (default a
    day, at most ``ingest.label_ttl``): each look re-reads the windows of that span."""
    since: dt.datetime | None = None
    """Start of the experiment; default the start of the windows in which both versions
    were first seen, recorded when the pair first comes into force."""
    promotion: ABPromotion | None = None

    @pydantic.model_validator(mode="before")
    @classmethod
    def _latest(cls, value: object) -> object:
        if value == "latest":
            return {"versions": "latest"}
        if isinstance(value, str):
            raise ValueError(
                f"compare is `latest` or a mapping such as {{baseline: '3', candidate: '4'}}, "
                f"not '{value[:100]}'"
            )
        return value

    @pydantic.field_validator("margin")
    @classmethod
    def _margin_metrics(cls, value: object) -> object:
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(INTERVAL_METRICS))
            if unknown:
                raise ValueError(
                    f"margin names {unknown}: margins apply to the metrics with an interval "
                    f"({', '.join(INTERVAL_METRICS)})"
                )
        return value

    @pydantic.field_validator("since")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give since with its time zone, e.g. 2026-01-05T00:00:00Z")
        return value

    @pydantic.model_validator(mode="after")
    def _pair(self) -> Compare:
        named = self.baseline is not None or self.candidate is not None
        if self.versions == "latest":
            if named:
                raise ValueError("give either versions: latest or baseline and candidate")
            return self
        if self.baseline is None or self.candidate is None:
            raise ValueError(
                "give both baseline and candidate (model_version values), or `compare: latest`"
            )
        if self.baseline == self.candidate:
            raise ValueError(f"baseline and candidate are both version '{self.baseline}'")
        return self

    def margins(self) -> dict[str, float]:
        """Per interval metric, the margin its decision must exceed."""
        if isinstance(self.margin, dict):
            return {m: float(self.margin.get(m, 0.0)) for m in INTERVAL_METRICS}
        return dict.fromkeys(INTERVAL_METRICS, float(self.margin))

    def since_ms(self) -> int | None:
        return None if self.since is None else int(self.since.timestamp() * 1000)

    def settings(self) -> dict[str, Any]:
        """What the intervals depend on: a change restarts their narrowing."""
        return {"alpha": self.alpha, "tuned_rows": self.tuned_rows, "min_rows": self.min_rows}


def ab_rule_problems(
    rules: Sequence[RuleLike], compare: Compare | None
) -> list[tuple[int, str, str]]:
    """(rule index, field, message) for every ``ab_*`` rule the policy cannot run: no
    ``compare`` section, or ``options`` other than ``value``. The schema locates them."""
    out: list[tuple[int, str, str]] = []
    for i, rule in enumerate(rules):
        if rule.metric not in AB_METRICS:
            continue
        if compare is None:
            out.append(
                (
                    i,
                    "metric",
                    f"rule '{rule.key}' uses {rule.metric}, but the policy has no compare "
                    "section (compare: {baseline: '3', candidate: '4'} or compare: latest)",
                )
            )
        unknown = sorted(set(rule.options) - {"value"})
        if unknown:
            out.append((i, "options", f"{rule.metric} takes only options.value; not {unknown}"))
        stat = rule.options.get("value", "bound")
        if stat not in STATISTICS:
            out.append(
                (i, "options", f"options.value is one of {', '.join(STATISTICS)}, not {stat!r}")
            )
        elif stat in ("low", "high") and rule.metric not in INTERVAL_METRICS:
            out.append((i, "options", f"{rule.metric} carries no interval, so no {stat}"))
    return out
