"""Segments in a policy: which features split the model's windows, and what runs per segment.

::

    segments: [country, channel]     # features (or mapped fields) of the model's events
    segment_top_k: 20                # per feature: its K most frequent values + (other)
    segment_rules: all               # or [feature-drift, latency]: rules run per segment
    segment_min_samples: 200         # the sample-size guard of a segment (default: the rule's)

Every drift and sanity rule (column and whole-window metrics) and every realised or
estimated performance rule runs per segment unless
``segment_rules`` names a subset; each segment is scored against the same segment of the
reference and guarded by its own sample size. A segment's finding names the segment in
its feature slot — ``amount[country=DE]`` (``[country=DE]`` for a whole-window metric)
— so members and their fingerprints are per segment. A digest rule groups the segments
as it groups the features (one incident naming the segments that fired); ``group:
segment`` gives one digest per segment instead (slot ``*[country=DE]``;
policies/digest.py).

Realised performance metrics (accuracy, f1, mae … on joined labels) run per segment too:
the label join grades each pair into its prediction's segments, the sample-size guard
counts a segment's labelled pairs, and ``relative: true`` shifts the same segment of the
reference's value. So do the label-free estimates (``estimated_*``): segment children
keep the estimate state of the references in force, and the trust check
(``estimate_mismatch``) compares them with each segment's realised value once the
segment's labels are in. Not per segment: shadow and A/B comparisons; ``segment_rules``
naming one of them is an error (docs/segments.md).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import pydantic
from pydantic import ConfigDict, Field
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.registry import METRICS
from watchkeeper.detectors.reserved_names import PREDICTION, PREDICTION_CLASS
from watchkeeper.detectors.segments import DEFAULT_TOP_K, MAX_TOP_K, SegmentSpec
from watchkeeper.detectors.window import WindowSummary

SEGMENT_SCOPES: Final = ("column", "window", "performance", "estimate")
"""Metric scopes a segment can run (shadow and A/B comparisons are not per segment)."""
FEATURE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$"
"""A segment feature's name: no ``[``, ``]`` or ``=`` (they delimit the segment slot)."""
MAX_SEGMENT_FEATURES = 4


class SegmentedPolicy(pydantic.BaseModel):
    """The ``segment*`` keys of a policy (see the module docstring); the policy schema
    inherits them, so they validate with the rest of the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    segments: Annotated[
        tuple[Annotated[str, Field(pattern=FEATURE_NAME, max_length=128)], ...],
        Field(max_length=MAX_SEGMENT_FEATURES),
    ] = ()
    segment_top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K)] = DEFAULT_TOP_K
    segment_rules: Literal["all"] | tuple[str, ...] = "all"
    segment_min_samples: Annotated[int, Field(ge=1)] | None = None

    @pydantic.field_validator("segments")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"segments names a feature twice: {list(value)}")
        return value

    @pydantic.model_validator(mode="after")
    def _segment_keys(self) -> SegmentedPolicy:
        given = self.model_fields_set & {"segment_top_k", "segment_rules", "segment_min_samples"}
        if given and not self.segments:
            raise ValueError(f"{', '.join(sorted(given))} without segments: name the features")
        rules = [(r.key, r.metric) for r in getattr(self, "rules", ())]
        why = check_rules(self.segment_rules, rules)
        if why is not None:
            raise ValueError(why)
        segmented = self.segmented_rules()
        for i, rule in enumerate(getattr(self, "rules", ())):
            if rule.group == "segment" and rule.key not in segmented:
                why = (
                    "the policy names no segments"
                    if not self.segments
                    else f"rule '{rule.key}' does not run per segment (segment_rules)"
                )
                located(("rules", i, "group"), "segment", f"group: segment needs segments: {why}")
        return self

    def segment_specs(self) -> tuple[SegmentSpec, ...]:
        """The split windows take while no reference in force fixes the value sets."""
        return tuple(SegmentSpec(f, self.segment_top_k) for f in self.segments)

    def segmented_rules(self) -> list[str]:
        """Keys of the rules that run per segment."""
        rules = [(r.key, r.metric) for r in getattr(self, "rules", ())]
        return [
            key
            for key, metric in rules
            if self.segments
            and METRICS[metric].scope in SEGMENT_SCOPES
            and (self.segment_rules == "all" or key in self.segment_rules)
        ]


def located(loc: tuple[str | int, ...], value: object, message: str) -> None:
    """Raise ``message`` located at ``loc`` of the policy (the loader names its line)."""
    detail = InitErrorDetails(
        type=PydanticCustomError("value_error", message), loc=loc, input=value
    )
    raise ValidationError.from_exception_data("Policy", [detail])


def check_rules(
    chosen: Literal["all"] | tuple[str, ...], rules: list[tuple[str, str]]
) -> str | None:
    """Why ``segment_rules`` is wrong for rules ``(key, metric)``; None when it is fine."""
    keys = dict(rules)
    if chosen == "all":
        return None
    for key in chosen:
        if key not in keys:
            return f"segment_rules names '{key}', which is not a rule of this policy"
        scope = METRICS[keys[key]].scope
        if scope not in SEGMENT_SCOPES:
            return (
                f"segment_rules: '{key}' ({keys[key]}) is {'an' if scope[0] in 'aeiou' else 'a'} "
                f"{scope} metric; per segment run "
                "drift, sanity, realised performance and estimated_* metrics only"
            )
    return None


# -- the segment slot: a finding's feature, as members and incidents key it -----------------


def slot(feature: str | None, segment: str, value: str) -> str:
    """The feature slot of a segment's finding.

    >>> slot("amount", "country", "DE"), slot(None, "country", "DE")
    ('amount[country=DE]', '[country=DE]')
    """
    return f"{feature or ''}[{segment}={value}]"


def split_slot(text: str | None) -> tuple[str | None, tuple[str, str] | None]:
    """``(feature, (segment feature, value))`` of a slot; ``(text, None)`` for a slot
    without a segment. Values never hold brackets (ingest replaces them), segment
    features never hold ``=``, so the last ``[`` opens the segment.

    >>> split_slot("amount[country=DE]"), split_slot("[country=DE]"), split_slot("amount")
    (('amount', ('country', 'DE')), (None, ('country', 'DE')), ('amount', None))
    """
    if text is None or not text.endswith("]"):
        return text, None
    at = text.rfind("[")
    name, eq, value = text[at + 1 : -1].partition("=")
    if at < 0 or not eq:
        return text, None
    return (text[:at] or None), (name, value)


def segment_digest(segment: tuple[str, str]) -> str:
    """The digest slot of a segment (``group: segment``: one digest per segment)."""
    return slot("*", *segment)


def shown_name(bare: str | None) -> str:
    """A feature as people read it: the prediction (and its class) as the policy names
    them, not by the store's reserved keys.

    >>> shown_name("__prediction__"), shown_name("__prediction_class__"), shown_name("age")
    ('prediction', 'prediction class', 'age')
    """
    return {PREDICTION: "prediction", PREDICTION_CLASS: "prediction class"}.get(
        bare or "", bare or ""
    )


def described(text: str | None) -> str:
    """A slot as people read it: ``amount for country=DE``.

    >>> described("amount[country=DE]"), described("[country=DE]"), described("amount")
    ('amount for country=DE', 'country=DE', 'amount')
    """
    feature, segment = split_slot(text)
    if segment is None:
        return shown_name(text)
    where = f"{segment[0]}={segment[1]}"
    return f"{shown_name(feature)} for {where}" if feature else where


def is_digest(text: str | None) -> bool:
    """Whether a slot is a digest's: over the features (``*``) or over one segment's."""
    return text == "*" or split_slot(text)[0] == "*"


def segment_view(
    reference: ReferenceProfile, window: WindowSummary, text: str
) -> tuple[str, ReferenceProfile | None, WindowSummary | None]:
    """``(column, reference, window)`` a slot is about: for ``amount[country=DE]`` the
    column ``amount`` of the reference's and the window's DE segment (None where one
    has no such segment); for a plain feature, the feature of both as given."""
    feature, segment = split_slot(text)
    if segment is None:
        return text, reference, window
    name, value = segment
    segs = reference.segments.get(name)
    split = window.segments.get(name)
    return (
        feature or "",
        segs.profile(value) if segs is not None else None,
        split.children.get(value) if split is not None else None,
    )
