"""Reference profiles: what "normal" looks like for a model, to score windows against.

A profile holds, per feature and for the prediction and the label:

* numeric columns — quantile bin edges (``bins`` bins, default 10, open-ended outer bins:
  ``(-inf, e1], (e1, e2], …, (em, inf)``), the reference's proportion in each bin, a KLL
  sketch for CDF-based metrics (KS, Wasserstein), null and NaN rates, min, max, mean, std;
* categorical columns — the proportion of each category (the ``max_categories`` most
  frequent; the rest as one ``other`` share), and the null rate;
* the model's reference performance (accuracy, AUC, … or MAE, RMSE …) when labels were given.

File format (JSON, ``"format": "watchkeeper.reference/v2"``)::

    {"format": "watchkeeper.reference/v2", "model": "fraud", "created_at": "…",
     "source": "train.parquet", "rows": 1000000, "bins": 10, "task": "classification",
     "features": {"amount": {"kind": "numeric", "count": …, "nulls": …, "nans": …,
                  "min": …, "max": …, "mean": …, "std": …, "edges": [...],
                  "proportions": [...], "sketch": "<base64 KLL>"},
                  "country": {"kind": "categorical", "count": …, "nulls": …,
                  "proportions": {"DE": 0.3, …}, "other": 0.0}},
     "prediction": {…} | null, "prediction_class": {…} | null, "label": {…} | null,
     "metrics": {"accuracy": 0.93, …},
     "estimation": {"format": "watchkeeper.estimation/v1", …} | null,
     "column_names": {"prediction": "score", "label": "is_fraud", …},
     "segments": {"country": {"feature": "country", "k": 20, "values": ["DE", …],
                  "profiles": {"DE": {<a profile>}, …, "(other)": {…}}}}}

``estimation`` (new in v2) is what the label-free estimates need: the calibrator (or the
regression loss model), the reference's realised metrics and their chunk spreads
(:mod:`watchkeeper.detectors.estimation_reference`); ``column_names`` (also new) says
which columns of the reference file were the prediction, its class, the label and the
per-class scores, so a batch file is read the same way. A v1 profile still loads, with no
estimation, so it simply has no estimates. ``segments`` (optional, added to v2 with
segments) holds, per segment feature, a profile per segment
(:mod:`~watchkeeper.detectors.segment_reference`); profiles written before it load
without segments. Readers refuse other ``format`` values, so a future v3 cannot be
misread.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from datasketches import kll_doubles_sketch
from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.estimation_reference import Estimation
from watchkeeper.detectors.reserved_names import LABEL, PREDICTION, PREDICTION_CLASS
from watchkeeper.detectors.segment_reference import SegmentReference
from watchkeeper.detectors.segments import top_values
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window import WindowSummary

FORMAT = "watchkeeper.reference/v2"
READABLE = (FORMAT, "watchkeeper.reference/v1")

# a profile's (and a window's) prediction, its class and the label sit beside the
# features under the reserved names of detectors/reserved_names.py


@dataclass(frozen=True)
class NumericProfile:
    """The reference distribution of one numeric column; see the module docstring."""

    count: int
    nulls: int
    nans: int
    min: float
    max: float
    mean: float
    std: float
    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    sketch: bytes = b""
    kind: Literal["numeric"] = "numeric"

    @property
    def total(self) -> int:
        return self.count + self.nulls + self.nans

    def kll(self) -> kll_doubles_sketch:
        return kll_doubles_sketch.deserialize(self.sketch)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "nulls": self.nulls,
            "nans": self.nans,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "std": self.std,
            "edges": list(self.edges),
            "proportions": list(self.proportions),
            "sketch": base64.b64encode(self.sketch).decode(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NumericProfile:
        return cls(
            count=int(d["count"]),
            nulls=int(d["nulls"]),
            nans=int(d["nans"]),
            min=float(d["min"]),
            max=float(d["max"]),
            mean=float(d["mean"]),
            std=float(d["std"]),
            edges=tuple(float(e) for e in d["edges"]),
            proportions=tuple(float(p) for p in d["proportions"]),
            sketch=base64.b64decode(d["sketch"]),
        )


@dataclass(frozen=True)
class CategoricalProfile:
    """The reference distribution of one categorical column."""

    count: int
    nulls: int
    proportions: dict[str, float]
    other: float = 0.0
    """Share of the categories beyond the ones listed (rare ones folded together)."""
    kind: Literal["categorical"] = "categorical"

    @property
    def total(self) -> int:
        return self.count + self.nulls

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "nulls": self.nulls,
            "proportions": self.proportions,
            "other": self.other,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CategoricalProfile:
        return cls(
            count=int(d["count"]),
            nulls=int(d["nulls"]),
            proportions={str(k): float(v) for k, v in d["proportions"].items()},
            other=float(d.get("other", 0.0)),
        )


ColumnProfile = NumericProfile | CategoricalProfile


def column_from_dict(d: dict[str, Any]) -> ColumnProfile:
    if d["kind"] == "numeric":
        return NumericProfile.from_dict(d)
    if d["kind"] == "categorical":
        return CategoricalProfile.from_dict(d)
    raise ValueError(f"unknown column kind {d['kind']!r}")


@dataclass(frozen=True)
class ReferenceProfile:
    """A model's reference: column profiles and reference metrics."""

    model: str
    features: dict[str, ColumnProfile]
    rows: int
    bins: int = 10
    prediction: ColumnProfile | None = None
    prediction_class: ColumnProfile | None = None
    label: ColumnProfile | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    task: Literal["classification", "regression"] | None = None
    source: str = ""
    created_at: str = ""
    sample: tuple[dict[str, Any], ...] = ()
    """A bounded uniform sample of reference rows, for drift reports (not for metrics)."""
    estimation: Estimation | None = None
    """What the label-free estimates read (None: a v1 profile, no labels or no prediction
    at build time, or a reference from stored windows, which keep no raw rows)."""
    column_names: dict[str, str] = field(default_factory=dict)
    """Which file columns were ``prediction``, ``prediction_class``, ``label`` and
    ``score:<class>`` (a multiclass model's per-class scores) at build time."""
    segments: dict[str, SegmentReference[ReferenceProfile]] = field(default_factory=dict)
    """Per segment feature, the profile of each of its segments (none in older files)."""

    def column(self, name: str) -> ColumnProfile | None:
        """A feature by name, or ``__prediction__`` / ``__prediction_class__`` / ``__label__``."""
        special = {
            PREDICTION: self.prediction,
            PREDICTION_CLASS: self.prediction_class,
            LABEL: self.label,
        }
        return special[name] if name in special else self.features.get(name)

    def to_dict(self) -> dict[str, Any]:
        def opt(c: ColumnProfile | None) -> dict[str, Any] | None:
            return None if c is None else c.to_dict()

        return {
            "format": FORMAT,
            "model": self.model,
            "created_at": self.created_at,
            "source": self.source,
            "rows": self.rows,
            "bins": self.bins,
            "task": self.task,
            "features": {n: c.to_dict() for n, c in self.features.items()},
            "prediction": opt(self.prediction),
            "prediction_class": opt(self.prediction_class),
            "label": opt(self.label),
            "metrics": self.metrics,
            "sample": list(self.sample),
            "estimation": None if self.estimation is None else self.estimation.to_dict(),
            "column_names": self.column_names,
            "segments": {n: s.to_dict() for n, s in self.segments.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReferenceProfile:
        if d.get("format") not in READABLE:
            raise ValueError(f"not a {FORMAT} reference profile (format {d.get('format')!r})")

        def opt(x: dict[str, Any] | None) -> ColumnProfile | None:
            return None if x is None else column_from_dict(x)

        return cls(
            model=str(d["model"]),
            rows=int(d["rows"]),
            bins=int(d["bins"]),
            features={n: column_from_dict(c) for n, c in d["features"].items()},
            prediction=opt(d.get("prediction")),
            prediction_class=opt(d.get("prediction_class")),
            label=opt(d.get("label")),
            metrics={k: float(v) for k, v in d["metrics"].items()},
            task=d.get("task"),
            source=str(d.get("source", "")),
            created_at=str(d.get("created_at", "")),
            sample=tuple(d.get("sample", ())),
            column_names={str(k): str(v) for k, v in (d.get("column_names") or {}).items()},
            estimation=None
            if d.get("estimation") is None
            else Estimation.from_dict(d["estimation"]),
            segments={
                str(n): SegmentReference.from_dict(s, ReferenceProfile.from_dict)
                for n, s in (d.get("segments") or {}).items()
            },
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False))

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        return cls.from_dict(json.loads(Path(path).read_text()))


def quantile_edges(sketch: NumericSketch, bins: int) -> tuple[float, ...]:
    """Inner edges at the reference's 1/bins … (bins-1)/bins quantiles, duplicates removed.

    A feature with few distinct values gets fewer bins; a constant one gets a single bin.
    """
    if sketch.count == 0 or bins < 2:
        return ()
    ranks = [i / bins for i in range(1, bins)]
    edges = np.unique(sketch.quantiles(ranks))
    edges = edges[(edges < sketch.max)]  # an edge at the max would leave the top bin empty
    return tuple(float(e) for e in edges)


def bin_counts(values: np.ndarray[Any, Any], edges: tuple[float, ...]) -> np.ndarray[Any, Any]:
    """Exact counts of finite ``values`` in the bins (-inf, e1], (e1, e2], …, (em, inf)."""
    finite = values[np.isfinite(values)]
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), finite, side="left")
    return np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)


def numeric_profile(
    sketch: NumericSketch, edges: tuple[float, ...], counts: np.ndarray[Any, Any] | None = None
) -> NumericProfile:
    """A numeric profile from a sketch; ``counts`` are exact bin counts when known, else the
    sketch's histogram (within its rank error) is used."""
    hist = counts if counts is not None else sketch.histogram(edges)
    total = float(hist.sum())
    proportions = (
        tuple(float(c / total) for c in hist)
        if total
        else tuple(0.0 for _ in range(len(edges) + 1))
    )
    std = math.sqrt(sketch.variance) if sketch.count else 0.0
    return NumericProfile(
        count=sketch.count,
        nulls=sketch.nulls + sketch.missing,
        nans=sketch.nans + sketch.infs,
        min=sketch.min if sketch.count else 0.0,
        max=sketch.max if sketch.count else 0.0,
        mean=sketch.mean if sketch.count else 0.0,
        std=std if math.isfinite(std) else 0.0,
        edges=edges,
        proportions=proportions,
        sketch=sketch.kll_bytes(),
    )


def categorical_profile(counts: CategoryCounts, max_categories: int = 256) -> CategoricalProfile:
    n = counts.count
    ranked = sorted(counts.counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = ranked[:max_categories]
    other = counts.overflow + sum(c for _, c in ranked[max_categories:])
    return CategoricalProfile(
        count=n,
        nulls=counts.nulls + counts.missing,
        proportions={k: v / n for k, v in kept} if n else {},
        other=other / n if n else 0.0,
    )


def profile_from_window(
    summary: WindowSummary,
    bins: int = 10,
    source: str = "",
    created_at: str = "",
    edges: dict[str, tuple[float, ...]] | None = None,
) -> ReferenceProfile:
    """A reference from stored window state (e.g. "the first 24 h after deploy").

    Bin proportions come from the windows' KLL sketches, so they are within the sketch's
    rank error of the exact ones (exact where the windows counted those bins); a profile
    built from a file counts them exactly. ``edges`` fixes a column's bin edges (a
    segment's profile is cut where its whole reference is).
    """
    cut = edges or {}

    def col(name: str, s: ColumnSketch) -> ColumnProfile:
        return column_profile(s, bins, cut.get(name))

    def opt(name: str, s: ColumnSketch | None) -> ColumnProfile | None:
        return None if s is None else col(name, s)

    perf = summary.performance
    features = {n: col(n, s) for n, s in sorted(summary.features.items())}
    prediction = opt(PREDICTION, summary.prediction)
    whole = {
        n: p.edges
        for n, p in [*features.items(), (PREDICTION, prediction)]
        if isinstance(p, NumericProfile)
    }
    return ReferenceProfile(
        model=summary.model,
        rows=summary.count,
        bins=bins,
        features=features,
        prediction=prediction,
        prediction_class=opt(PREDICTION_CLASS, summary.prediction_class),
        label=opt(LABEL, summary.label),
        metrics=perf.metrics() if perf is not None else {},
        task=perf.task if perf is not None else None,
        source=source,
        created_at=created_at,
        sample=tuple(summary.sample.rows),
        segments={
            name: _segment_reference(split.spec.k, split.children, bins, name, whole)
            for name, split in summary.segments.items()
        },
    )


def _segment_reference(
    k: int,
    children: dict[str, WindowSummary],
    bins: int,
    feature: str,
    edges: dict[str, tuple[float, ...]],
) -> SegmentReference[ReferenceProfile]:
    """A segment feature's reference from stored windows: its K largest segments there,
    cut at the whole reference's ``edges``."""
    values = top_values({label: c.count for label, c in children.items()}, k)
    return SegmentReference(
        feature,
        k,
        values,
        {label: profile_from_window(c, bins, edges=edges) for label, c in children.items()},
    )


def column_profile(
    sketch: ColumnSketch, bins: int, edges: tuple[float, ...] | None = None
) -> ColumnProfile:
    """A profile from a sketch alone (a stored window range): bins from its quantiles,
    or at ``edges`` (exact when the sketch counted them)."""
    if isinstance(sketch, NumericSketch):
        return numeric_profile(sketch, quantile_edges(sketch, bins) if edges is None else edges)
    return categorical_profile(sketch)
