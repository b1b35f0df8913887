"""The references in force at ingest: which reference bins each model's windows count.

A window scored against a reference gets exact, repeatable PSI / KL / JS / χ² when its
sketches counted that reference's own bins from the window's first event
(:meth:`~watchkeeper.detectors.sketches.NumericSketch.count_bins_on`). So the daemon tells
the ingestor, whenever the policies (re)load, the reference each model's policies score
against, and every window sketch created from then on counts those edges exactly.

The edges in force also hold the reference's out-of-range limits (its [min, max] ± 10 %
of its range, :func:`~watchkeeper.detectors.out_of_range.pinned_edges`), so such a
window's ``out_of_range_rate`` is exact too (its counts below and above the range are
sums of exact bins).

What stays approximate (KLL, within its rank error, reported as ``error_bound``): a
window begun before its reference was in force (a reference adopted later, or changed
mid-window, or one reference among several for one column: the first policy in key order
decides; and windows stored before the limits were pinned), an ``out_of_range_rate``
rule with another ``margin``, and KS, Wasserstein and quantiles, which always read KLL.

The label-free estimates read the same seam: :meth:`ReferencesInForce.estimation` gives
the estimation (calibrator or loss model) of the reference in force for a model, and
every window's prediction batches update its estimate state from then on (a window
begun before counts only the rows after: its estimate's ``n`` says how many). Every
distinct reference with an estimation among a model's policies keeps its own state (up
to ``MAX_SKETCHES``, in policy key order), so two policies on two references both get
estimates.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping

from watchkeeper.detectors.calibrator import StepCalibrator
from watchkeeper.detectors.estimation_reference import Estimation
from watchkeeper.detectors.out_of_range import pinned_edges
from watchkeeper.detectors.profile import NumericProfile, ReferenceProfile
from watchkeeper.detectors.reserved_names import PREDICTION
from watchkeeper.detectors.segment_reference import segment_plan
from watchkeeper.detectors.segments import SegmentPlan, SegmentSpec
from watchkeeper.detectors.window_estimates import MAX_SKETCHES

log = logging.getLogger(__name__)
Edges = tuple[float, ...]


def edges_of(reference: ReferenceProfile) -> dict[str, Edges]:
    """The edges a window counts exactly for each numeric column of ``reference``: its bin
    edges plus its out-of-range limits at the default margin
    (:func:`~watchkeeper.detectors.out_of_range.pinned_edges`), by column name."""
    columns = dict(reference.features)
    if reference.prediction is not None:
        columns[PREDICTION] = reference.prediction
    out: dict[str, Edges] = {}
    for name, profile in columns.items():
        # a constant reference column has no bins (and a segment no grid to cut): none
        if isinstance(profile, NumericProfile) and profile.edges:
            out[name] = pinned_edges(profile)
    return out


def _identity(references: list[ReferenceProfile]) -> tuple[tuple[str, str, str, int], ...]:
    """What tells a rebuilt reference from the one in force (a build stamps ``created_at``)."""
    return tuple((r.model, r.source, r.created_at, r.rows) for r in references)


def threshold_conflict(
    reference: ReferenceProfile, decision_threshold: float | None, config_path: str = ""
) -> str | None:
    """Why ``reference``'s binary estimation cannot be used with ``decision_threshold``
    (None: it can). Its calibrator's steps split at the threshold it was built for, and
    the estimates count a row as predicted positive at that threshold; the label join
    grades realised metrics at ``ingest.decision_threshold``. With two thresholds the
    estimate and the realised value would measure two different classifiers, and the
    trust check would call the difference concept drift.

    >>> import numpy as np
    >>> from watchkeeper.detectors.estimation_reference import fit_binary_estimation
    >>> rng = np.random.default_rng(1); s = rng.random(2000)
    >>> ref = ReferenceProfile("fraud", {}, 2000, source="ref.json",
    ...     estimation=fit_binary_estimation(s, rng.random(2000) < s, threshold=0.3))
    >>> print(threshold_conflict(ref, 0.5, "watchkeeper.yaml"))  # doctest: +NORMALIZE_WHITESPACE
    watchkeeper.yaml: ingest.decision_threshold is 0.5, but the reference of model fraud
    (ref.json) was built for decision threshold 0.3: its estimates are not used. Rebuild
    it with --threshold 0.5, or set ingest.decision_threshold: 0.3
    >>> threshold_conflict(ref, 0.3) is None
    True
    """
    est = reference.estimation
    if decision_threshold is None or est is None or not isinstance(est.model, StepCalibrator):
        return None
    built = est.model.threshold
    if built is None or math.isclose(built, decision_threshold, rel_tol=0.0, abs_tol=1e-12):
        return None
    where = f"{config_path}: " if config_path else ""
    return (
        f"{where}ingest.decision_threshold is {decision_threshold:g}, but the reference of "
        f"model {reference.model} ({reference.source or 'the store'}) was built for decision "
        f"threshold {built:g}: its estimates are not used. Rebuild it with --threshold "
        f"{decision_threshold:g}, or set ingest.decision_threshold: {built:g}"
    )


class ReferencesInForce:
    """Bin edges per model and column; replaced whole (one assignment, so the ingestion
    thread reads either the old set or the new, never a mix).

    >>> r = ReferencesInForce()
    >>> r.replace({"fraud": {"amount": (1.0, 5.0)}})
    >>> r.edges("fraud", "amount"), r.edges("fraud", "age"), r.edges("spam", "amount")
    ((1.0, 5.0), None, None)
    """

    def __init__(self, decision_threshold: float | None = None, config_path: str = "") -> None:
        self._edges: dict[str, dict[str, Edges]] = {}
        self._estimations: dict[str, tuple[Estimation, ...]] = {}
        self._adopted: tuple[tuple[str, str, str, int], ...] | None = None
        self.decision_threshold = decision_threshold
        """``ingest.decision_threshold`` (None: not checked): a binary reference whose
        calibrator was fitted for another threshold is refused (see :meth:`adopt`)."""
        self.config_path = config_path
        self.refused: dict[str, str] = {}
        """Per model, why its reference's estimation is not in force (logged once)."""
        self.declared_segments: dict[str, tuple[SegmentSpec, ...]] = {}
        """Per model, the segment features its policies declare (set on each policy load)."""
        self._segments: dict[str, SegmentPlan] = {}

    def replace(
        self,
        edges: Mapping[str, Mapping[str, Edges]],
        estimations: Mapping[str, Estimation | tuple[Estimation, ...]] | None = None,
    ) -> None:
        self._edges = {model: dict(columns) for model, columns in edges.items()}
        self._estimations = {
            model: e if isinstance(e, tuple) else (e,) for model, e in (estimations or {}).items()
        }

    def adopt_if_changed(self, references: Iterable[ReferenceProfile]) -> bool:
        """Put ``references`` in force unless the same ones are already: a reference rebuilt
        in the store or over its file (new ``created_at``) reaches ingest without a policy
        reload. Whether it adopted.

        >>> from watchkeeper.detectors.profile import ReferenceProfile
        >>> r = ReferencesInForce()
        >>> old = ReferenceProfile("fraud", {}, rows=10, created_at="2026-12-01T00:00:00Z")
        >>> r.adopt_if_changed([old]), r.adopt_if_changed([old])
        (True, False)
        >>> new = ReferenceProfile("fraud", {}, rows=10, created_at="2026-12-02T00:00:00Z")
        >>> r.adopt_if_changed([new])
        True
        """
        refs = list(references)
        if _identity(refs) == self._adopted:
            return False
        self.adopt(refs)
        return True

    def adopt(self, references: Iterable[ReferenceProfile]) -> None:
        """Put ``references`` in force; the first one of a model wins each column."""
        references = list(references)
        self._adopted = _identity(references)
        edges: dict[str, dict[str, Edges]] = {}
        estimations: dict[str, tuple[Estimation, ...]] = {}
        refused: dict[str, str] = {}
        for reference in references:
            columns = edges.setdefault(reference.model, {})
            for name, cut in edges_of(reference).items():
                columns.setdefault(name, cut)
            est = reference.estimation
            if est is None:
                continue
            mine = estimations.get(reference.model, ())
            if any(e.fingerprint == est.fingerprint for e in mine):
                continue  # two policies on one reference: one state
            why = threshold_conflict(reference, self.decision_threshold, self.config_path)
            if why is None and len(mine) >= MAX_SKETCHES:
                why = (
                    f"model {reference.model}: more than {MAX_SKETCHES} references with "
                    f"estimations in force; the first {MAX_SKETCHES} in policy key order keep "
                    f"estimate state, not {reference.source or 'this one'}"
                )
            if why is None:
                estimations[reference.model] = (*mine, est)
                continue
            if self.refused.get(reference.model) != why:
                log.error("%s", why)  # once per reason, not per reload
            refused[reference.model] = why
        self.refused = refused
        self.replace(edges, estimations)
        self._segments = {  # value sets of the references' segments (detectors/segments.py)
            model: segment_plan(specs, [r for r in references if r.model == model])
            for model, specs in self.declared_segments.items()
        }

    def segments(self, model: str) -> SegmentPlan | None:
        """How ``model``'s new windows split into segments, if they do."""
        return self._segments.get(model)

    def edges(self, model: str, column: str) -> Edges | None:
        """The edges a new window sketch of ``model``'s ``column`` counts exactly, if any."""
        columns = self._edges.get(model)
        return None if columns is None else columns.get(column)

    def estimation(self, model: str) -> tuple[Estimation, ...] | None:
        """The estimations whose state ``model``'s windows update at ingest (one per
        distinct reference of its policies, in policy key order), if any."""
        return self._estimations.get(model) or None

    def models(self) -> dict[str, dict[str, Edges]]:
        """What is in force now (for status pages and tests)."""
        return {model: dict(columns) for model, columns in self._edges.items()}
