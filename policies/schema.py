"""The policy file schema: frozen, strict, self-describing when wrong.

A policy file describes one model's checks::

    model: fraud
    reference: fraud-ref.json        # a profile file (relative to this file) or store:NAME
    window: 1h                       # what each evaluation looks at (multiple of windows.size)
    schedule: {every: 5m}            # or {cron: "*/5 * * * *"}
    min_samples: 500                 # fewer events / values: "insufficient data", never drift
    rules:
      - name: feature-drift
        metric: psi
        features: all                # all (the inputs) | [a, b] | "amount*" | prediction
        warn: 0.1
        critical: 0.25
        for: 2                       # consecutive evaluations before firing (and resolving)
        resolve: 0.08                # hysteresis: back below this to count as resolved
        actions: {warn: [console], critical: [oncall, retrain]}
      - name: accuracy-drop
        metric: accuracy
        relative: true               # thresholds are changes from the reference's value
        critical: -0.02
      - name: psi-auto
        metric: psi
        threshold: auto              # derived from the reference: one false alarm per…
        false_alarm_every: 30d       # …30 days at this schedule, over all features checked
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Final, Literal

import pydantic
from pydantic import ConfigDict, Field
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError
from watchkeeper.detectors.estimate_trust import TRUST_METRIC
from watchkeeper.detectors.registry import METRICS
from watchkeeper.detectors.reserved_names import PREDICTION
from watchkeeper.policies.compare import Compare, ab_rule_problems
from watchkeeper.policies.cron import crontab_trigger
from watchkeeper.policies.durations import Duration
from watchkeeper.policies.segments import SegmentedPolicy
from watchkeeper.policies.shadow import Shadow

Severity = Literal["warn", "critical"]
Verdict = Literal["ok", "warn", "critical"]
"""A value judged against a rule's thresholds: a :data:`Severity`, or ``ok`` below both."""
SEVERITIES: tuple[Severity, ...] = ("warn", "critical")
# declared with each metric (MetricInfo.auto in detectors/registry.py)
AUTO_METRICS = tuple(name for name, info in METRICS.items() if info.auto)
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Strict(pydantic.BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


class Schedule(_Strict):
    every: Duration | None = None
    cron: str | None = None

    @pydantic.model_validator(mode="after")
    def _one(self) -> Schedule:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of every (e.g. 5m) or cron (e.g. '*/5 * * * *')")
        if self.every is not None and self.every < 1:
            raise ValueError("every must be at least 1s")
        if self.cron is not None:
            try:
                crontab_trigger(self.cron)
            except ValueError as exc:
                raise ValueError(f"cron '{self.cron}' is not a crontab expression: {exc}") from None
        return self

    def period_s(self) -> float:
        """The interval, or for cron the gap between its next two firings."""
        if self.every is not None:
            return self.every
        import datetime as dt

        trigger = crontab_trigger(str(self.cron))
        start = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
        first = trigger.get_next_fire_time(None, start)
        assert first is not None
        second = trigger.get_next_fire_time(first, first + dt.timedelta(seconds=1))
        assert second is not None
        return float((second - first).total_seconds())


class Actions(_Strict):
    warn: tuple[str, ...] = ()
    critical: tuple[str, ...] = ()


class Rule(_Strict):
    name: Annotated[str, Field(pattern=NAME)] | None = None
    metric: str
    features: Literal["all", "prediction"] | str | list[str] = "all"
    """``all``: the model's input features; ``prediction``: its output (score and class);
    or names and globs, ``prediction`` among them if wanted."""
    warn: float | None = None
    critical: float | None = None
    threshold: Literal["auto"] | None = None
    false_alarm_every: Duration = 30 * 86400.0
    comparison: Literal["above", "below"] | None = None
    """Which side is bad; by default the metric's own (accuracy: below, psi: above)."""
    relative: bool = False
    resolve: float | None = None
    for_: Annotated[int, Field(alias="for", ge=1, le=1000)] = 1
    group: Literal["rule", "segment", "feature"] | None = None
    """One incident for the rule (a digest over its features and segments), one per
    segment (a digest of each) or one per feature (policies/digest.py)."""
    actions: Actions = Actions()
    min_samples: Annotated[int, Field(ge=1)] | None = None
    options: dict[str, Any] = {}
    """Arguments of the metric's detector, e.g. {smoothing: laplace} for psi."""
    candidates: Literal["all"] | list[str] = "all"
    """For ``shadow_*`` metrics: which candidates of the policy's shadow section."""

    # a NaN threshold never compares true (the rule never fires) and an infinite one
    # always or never: refused, as a typo the file's author never meant
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )

    @pydantic.field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRICS:
            names = sorted(METRICS)
            raise ValueError(
                f"metric '{value}' is not known{_suggest(value, names)} (known: {', '.join(names)})"
            )
        return value

    @pydantic.model_validator(mode="after")
    def _thresholds(self) -> Rule:
        if self.threshold == "auto":
            if self.metric not in AUTO_METRICS:
                raise ValueError(
                    f"threshold: auto is derived for {', '.join(AUTO_METRICS)}; "
                    f"give warn / critical for {self.metric}"
                )
            if self.warn is not None or self.critical is not None:
                raise ValueError("threshold: auto replaces warn / critical; give one or the other")
            if self.relative:
                raise ValueError("threshold: auto cannot be relative")
            return self
        if self.warn is None and self.critical is None:
            raise ValueError("give a warn and/or a critical threshold (or threshold: auto)")
        if self.relative and METRICS[self.metric].scope not in ("performance", "estimate"):
            raise ValueError(
                "relative thresholds compare with the reference's metrics: they "
                "apply to accuracy, f1, roc_auc, mae, estimated_accuracy … not to "
                f"{self.metric}"
            )
        if self.relative and self.metric == TRUST_METRIC:
            raise ValueError(f"{TRUST_METRIC} has no reference value to be relative to")
        if self.warn is not None and self.critical is not None:
            bad_side = self.bad_side()
            worse = (
                self.critical >= self.warn if bad_side == "above" else (self.critical <= self.warn)
            )
            if not worse:
                raise ValueError(
                    f"critical ({self.critical}) must be beyond warn ({self.warn}) "
                    f"on the bad side ({bad_side})"
                )
        if self.resolve is not None:
            first = self.warn if self.warn is not None else self.critical
            assert first is not None
            ok = self.resolve <= first if self.bad_side() == "above" else self.resolve >= first
            if not ok:
                raise ValueError(
                    f"resolve ({self.resolve}) must be on the good side of the "
                    f"first threshold ({first})"
                )
        return self

    @pydantic.model_validator(mode="after")
    def _features_apply(self) -> Rule:
        info = METRICS[self.metric]
        if info.scope == "shadow" and self.features != "all":
            raise ValueError(
                f"{self.metric} compares candidate models: choose them with `candidates`"
            )
        if info.scope != "column" and self.features not in ("all",):
            raise ValueError(f"{self.metric} is a whole-window metric: it takes no features")
        if info.scope != "shadow" and self.candidates != "all":
            raise ValueError("`candidates` applies to shadow_* metrics only")
        if self.metric == "attribution_shift" and self.candidates != "all":
            raise ValueError(
                "attribution_shift compares production's attributions with its reference's: "
                "it takes no `candidates`"
            )
        return self

    def bad_side(self) -> Literal["above", "below"]:
        if self.comparison is not None:
            return self.comparison
        if self.relative:
            return "below" if METRICS[self.metric].direction == "lower_is_worse" else "above"
        return "below" if METRICS[self.metric].direction == "lower_is_worse" else "above"

    @property
    def key(self) -> str:
        return self.name or self.metric

    def feature_patterns(self) -> list[str] | None:
        """Selected features as names / globs; None for every input feature (never the
        prediction); [PREDICTION] for the prediction (and its class)."""
        if self.features == "all":
            return None
        if self.features == "prediction":
            return [PREDICTION]
        if isinstance(self.features, str):
            return [self.features]
        return [PREDICTION if f == "prediction" else f for f in self.features]

    def grouped(self) -> bool:
        if self.group is not None:
            return self.group != "feature"
        patterns = self.feature_patterns()
        if METRICS[self.metric].scope == "shadow":
            return False  # one incident per candidate
        if METRICS[self.metric].scope != "column":
            return False
        return patterns is None or len(patterns) > 1 or any("*" in p for p in patterns)


def _located(loc: tuple[str | int, ...], value: Any, message: str) -> None:
    """Raise ``message`` located at ``loc`` (so the loader names that line and field)."""
    raise ValidationError.from_exception_data(
        "Policy",
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", message),
                loc=loc,
                input=value,
            )
        ],
    )


_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
STORED_REFERENCE_PREFIX: Final = "store:"
"""``reference: store:NAME``: a reference kept in the daemon's store under NAME."""
DEFAULT_STORED_REFERENCE: Final = "default"
"""The stored reference a policy without ``reference`` scores against."""


class Policy(SegmentedPolicy, _Strict):  # segments: policies/segments.py
    model: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(pattern=NAME)] | None = None
    reference: str | None = None
    """A profile file (relative to the policy file) or ``store:NAME`` (default store:default)."""
    window: Duration = Field(default=3600.0, gt=0)
    schedule: Schedule = Schedule(every=300.0)
    min_samples: Annotated[int, Field(ge=1)] = 100
    rules: Annotated[list[Rule], Field(min_length=1)]
    labels: dict[str, str] = {}
    """Extra labels carried into incidents and alerts (team, service …)."""
    shadow: Shadow | None = None
    """Candidate models evaluated in shadow (see :mod:`watchkeeper.policies.shadow`)."""
    compare: Compare | None = None
    """A live A/B test between two versions (see :mod:`watchkeeper.policies.compare`)."""

    def stored_reference(self) -> str | None:
        """The name of the stored reference the policy scores against; None when its
        ``reference`` is a profile file.

        >>> rules = [{"metric": "psi", "critical": 0.25}]
        >>> Policy(model="m", rules=rules).stored_reference()
        'default'
        >>> Policy(model="m", reference="store:v2", rules=rules).stored_reference()
        'v2'
        >>> Policy(model="m", reference="f.json", rules=rules).stored_reference() is None
        True
        """
        if self.reference is None:
            return DEFAULT_STORED_REFERENCE
        if self.reference.startswith(STORED_REFERENCE_PREFIX):
            return self.reference.removeprefix(STORED_REFERENCE_PREFIX)
        return None

    def rule(self, key: str) -> Rule | None:
        """The rule of that key; None for a no-data or check-failure incident's rule key,
        or a rule no longer in the policy.

        >>> policy = Policy(model="m", rules=[{"name": "acc", "metric": "accuracy", "warn": 0.8}])
        >>> policy.rule("acc").metric, policy.rule("gone")
        ('accuracy', None)
        """
        return next((r for r in self.rules if r.key == key), None)

    def bad_side_of(self, key: str) -> Literal["above", "below"]:
        """The bad side of the rule of that key (:meth:`Rule.bad_side`), ``"above"`` when
        there is none (no data, a check failure): the one the channels list members by.

        >>> policy = Policy(model="m", rules=[{"name": "acc", "metric": "accuracy", "warn": 0.8}])
        >>> policy.bad_side_of("acc"), policy.bad_side_of("no-data")
        ('below', 'above')
        """
        rule = self.rule(key)
        return "above" if rule is None else rule.bad_side()

    @pydantic.field_validator("reference")
    @classmethod
    def _path_or_stored(cls, value: str | None) -> str | None:
        # a URL would be read as a file name under the policy's folder (".../file:/x"):
        # say what a reference is instead. Two letters at least: "C:" is no scheme here.
        if value is not None and not value.startswith(STORED_REFERENCE_PREFIX):
            scheme = _URL_SCHEME.match(value)
            if scheme is not None:
                raise ValueError(
                    f"'{value[:200]}' looks like a URL ({scheme.group(1)}:): a reference is a "
                    "profile file's path, relative to the policy file (or absolute), or "
                    "store:NAME; write the path itself (a file name with a colon: rename it)"
                )
        return value

    @pydantic.model_validator(mode="after")
    def _unique_rules(self) -> Policy:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.key in seen:
                raise ValueError(f"two rules are named '{rule.key}': give each a distinct name")
            seen.add(rule.key)
        names = {c.name for c in self.shadow.candidates} if self.shadow else set()
        for rule in self.rules:
            if METRICS[rule.metric].scope != "shadow":
                continue
            if self.shadow is None:
                raise ValueError(
                    f"rule '{rule.key}' uses {rule.metric}, but the policy has no shadow section"
                )
            if rule.metric == "attribution_shift" and not self.shadow.explained():
                why = (
                    "shadow.attributions.enabled is false"
                    if not self.shadow.attributions.enabled
                    else "shadow.baseline (production's own ONNX file) is not given"
                )
                _located(
                    ("rules", self.rules.index(rule), "metric"),
                    rule.metric,
                    f"attribution_shift explains production's model, but {why}",
                )
            if rule.candidates != "all":
                unknown = sorted(set(rule.candidates) - names)
                if unknown:
                    raise ValueError(
                        f"rule '{rule.key}' names candidates {unknown} that the shadow "
                        f"section does not declare ({', '.join(sorted(names))})"
                    )
        return self

    @pydantic.model_validator(mode="after")
    def _ab_rules(self) -> Policy:
        for index, field, message in ab_rule_problems(self.rules, self.compare):
            _located(("rules", index, field), self.rules[index].metric, message)
        return self

    @property
    def key(self) -> str:
        return self.name or self.model
