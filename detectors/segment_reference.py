"""The reference's side of segments: one reference profile per segment of a feature.

A :class:`SegmentReference` is what a window's :class:`~watchkeeper.detectors.segments.
SegmentSplit` is scored against: for one segment feature, its value set (the K most
frequent values of the reference, most frequent first) and, per value and for
``(other)``, the profile of the reference rows of that segment. Numeric columns of a
segment profile are cut at the *whole* reference's bin edges, so a window's segment
children (which count those edges exactly, like the whole window) and the reference's
segments share their bins.

Built by ``watchkeeper reference --segments`` from a file (exact counts) or from stored
windows that kept segments (:func:`~watchkeeper.detectors.profile.profile_from_window`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from watchkeeper.detectors.segments import OTHER, SegmentPlan, SegmentSpec


class _Profile(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


P = TypeVar("P", bound=_Profile)
"""A segment's profile: a :class:`~watchkeeper.detectors.profile.ReferenceProfile` (generic
here, so this module does not import the one that imports it)."""


@dataclass(frozen=True)
class SegmentReference(Generic[P]):
    """One segment feature of a reference; see the module docstring."""

    feature: str
    k: int
    values: tuple[str, ...]
    """The K most frequent values of the feature in the reference (ties by value)."""
    profiles: dict[str, P] = field(default_factory=dict)
    """Value (or ``(other)``) → the profile of the reference's rows of that segment."""

    def profile(self, label: str) -> P | None:
        return self.profiles.get(label)

    def spec(self) -> SegmentSpec:
        """How windows split by this feature while this reference is in force."""
        return SegmentSpec(self.feature, self.k, self.values)

    def labels(self) -> tuple[str, ...]:
        """Every segment, ``(other)`` last."""
        return (*self.values, OTHER)

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "k": self.k,
            "values": list(self.values),
            "profiles": {label: p.to_dict() for label, p in self.profiles.items()},
        }

    @classmethod
    def from_dict(
        cls, d: dict[str, Any], load: Callable[[dict[str, Any]], P]
    ) -> SegmentReference[P]:
        return cls(
            feature=str(d["feature"]),
            k=int(d["k"]),
            values=tuple(str(v) for v in d["values"]),
            profiles={str(label): load(p) for label, p in d["profiles"].items()},
        )


class _Segmented(Protocol):
    @property
    def segments(self) -> dict[str, SegmentReference[Any]]: ...


def segment_plan(declared: Sequence[SegmentSpec], references: Iterable[_Segmented]) -> SegmentPlan:
    """The split of a model's new windows: each declared segment feature takes the value
    set of the first reference (policy key order) that carries its segments, else the
    declared spec (the hash fallback of :mod:`segments`).

    >>> from watchkeeper.detectors.profile import ReferenceProfile
    >>> ref = ReferenceProfile("m", {}, 10, segments={
    ...     "country": SegmentReference("country", 2, ("DE", "FR"))})
    >>> [s.values for s in segment_plan([SegmentSpec("country"), SegmentSpec("os")], [ref])]
    [('DE', 'FR'), None]
    """
    refs = list(references)
    plan: list[SegmentSpec] = []
    for spec in declared:
        fixed = next((r.segments[spec.feature] for r in refs if spec.feature in r.segments), None)
        plan.append(spec if fixed is None else fixed.spec())
    return tuple(plan)


def declared_segments(
    policies: Iterable[tuple[str, Sequence[SegmentSpec]]],
) -> dict[str, tuple[SegmentSpec, ...]]:
    """Per model, the segment features its policies declare (``(model, specs)`` in policy
    key order; the first policy naming a feature sets its K).

    >>> declared_segments([("m", [SegmentSpec("a", 5)]), ("m", [SegmentSpec("a", 9),
    ...     SegmentSpec("b")])])["m"]
    (SegmentSpec(feature='a', k=5, values=None), SegmentSpec(feature='b', k=20, values=None))
    """
    out: dict[str, dict[str, SegmentSpec]] = {}
    for model, specs in policies:
        mine = out.setdefault(model, {})
        for spec in specs:
            mine.setdefault(spec.feature, spec)
    return {model: tuple(specs.values()) for model, specs in out.items() if specs}
