"""Attributions of shadow rows: production's model and each candidate explained alike.

For a model whose policy asks for it (:meth:`Shadow.explained
<watchkeeper.policies.shadow.Shadow.explained>`: attributions enabled and production's
own ONNX file given as ``baseline``), :class:`Explainers` holds one
:class:`~watchkeeper.detectors.shapley.ShapleyExplainer` per model over production's
input features, against a background of ``attributions.background_rows`` rows: evenly
spaced rows of the reference profile's sample, or — for a reference without one — the
first shadow rows seen after the policy loaded (logged; the metrics then compare both
models against that same background, which is what a shadow comparison needs).

A candidate with inputs of its own is explained in production's feature space when its
features are among production's (its columns taken in its order and cast to its dtype,
categorical codes the same); otherwise it has no attributions, with the reason shown.

Which rows: those of a candidate's shadow rows whose record key falls below
``candidate rate × attributions.sample_rate`` (:func:`sample_mask`: a subset of the
shadow rows, the same on every replica and replay), at most
``attributions.max_rows_per_window`` per window and candidate. Production's attributions
of the union of the candidates' rows are computed once; each row's orderings are seeded
by its key, so two identical models get identical attributions.

The CPU: :class:`AttributionBudget` lets attribution take at most
``shadow.attribution_cpu_share`` of the shadow worker's budget (a leaky bucket of CPU
seconds, filled per wall second, spent in the worker thread's own CPU time,
``time.thread_time``: neither the time it waits for the GIL or a core nor other
threads' work counts). A batch's chosen rows are explained a slice at a time
(:func:`~attributing.slice_rows`), the budget asked before each, so it is overdrawn by at
most one slice; after each slice the worker pauses in proportion (its duty cycle, as after
a batch). Rows not reached while it is spent, or chosen while the evaluation queue is
backed up, are skipped and counted (``attribution_skipped`` in the window's summary and
the ``watchkeeper_shadow_attribution_skipped_rows`` counter) — never waited for.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from watchkeeper.daemon.shadow.runtime import OnnxModel, columns_from_rows, feature_matrix
from watchkeeper.detectors.shapley import ShapleyExplainer
from watchkeeper.policies.shadow import Inputs, Outputs, Shadow

log = logging.getLogger(__name__)
Array = np.ndarray[Any, Any]
MAX_BATCH_ROWS = 8192
"""Rows per ONNX Runtime call when explaining: large enough that calls are few, small
enough that the sessions' memory arenas stay small (65,536-row calls grew the daemon's
peak RSS by ~200 MB on a 20→128→64 MLP in bench_shadow)."""


class AttributionBudget:
    """CPU seconds attribution may spend: ``rate`` per second of ``clock`` (wall time),
    up to ``burst_s`` seconds' worth saved. ``allows()`` while any is left; ``spend``
    takes the CPU seconds a slice cost and may overdraw it by that slice (the next rows
    are skipped until it is paid back)."""

    def __init__(
        self, rate: float, burst_s: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.capacity = rate * burst_s
        self.clock = clock
        self.credit = self.capacity
        self._at = clock()

    def allows(self) -> bool:
        now = self.clock()
        self.credit = min(self.capacity, self.credit + (now - self._at) * self.rate)
        self._at = now
        return self.credit > 0

    def spend(self, seconds: float) -> None:
        self.credit -= seconds


def background_rows(sample: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``n`` evenly spaced feature rows of a reference sample (its rows' ``features``)."""
    return split_sample(sample, n, 0)[0]


def split_sample(
    sample: list[dict[str, Any]], n_background: int, n_reference: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(background, reference rows) of a reference sample, disjoint: ``n_background``
    evenly spaced rows, then up to ``n_reference`` evenly spaced rows of the others —
    the rows production is explained on for ``attribution_shift`` (explaining the
    background itself would compare each row with itself)."""
    rows = [r.get("features", r) for r in sample if isinstance(r, dict)]
    rows = [r for r in rows if isinstance(r, dict)]
    if len(rows) <= n_background:
        return rows, []
    picks = set(np.linspace(0, len(rows) - 1, n_background).round().astype(int).tolist())
    rest = [r for i, r in enumerate(rows) if i not in picks]
    if len(rest) > n_reference:
        at = np.linspace(0, len(rest) - 1, n_reference).round().astype(int).tolist()
        rest = [rest[i] for i in at] if n_reference else []
    return [rows[i] for i in sorted(picks)], rest


def sample_identity(spec: Shadow, baseline: OnnxModel, rows: list[dict[str, Any]]) -> str:
    """What production's attributions of a reference sample depend on, as a digest: the
    rows, production's file (path, size), its inputs and the explainer's settings. The
    cached reference summary is reused while it is the same, recomputed when it changes."""
    a = spec.attributions
    basis = {
        "rows": rows,
        "inputs": spec.inputs.model_dump(mode="json"),
        "baseline": [str(baseline.path), baseline.size_bytes],
        "explainer": [a.background_rows, a.permutations, a.reference_rows],
    }
    return hashlib.sha256(orjson.dumps(basis, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]


def column_map(production: Inputs, candidate: Inputs) -> list[int] | str:
    """Columns of production's input matrix the candidate's input takes, in its order —
    or why the candidate cannot be explained in production's feature space."""
    if candidate == production:
        return list(range(len(production.features)))
    index = {name: i for i, name in enumerate(production.features)}
    extra = [f for f in candidate.features if f not in index]
    if extra:
        return f"its inputs {extra} are not among production's inputs.features"
    for f in candidate.features:
        if candidate.encodings.get(f) != production.encodings.get(f):
            return f"its encoding of '{f}' differs from production's"
    if (candidate.unknown, candidate.missing) != (production.unknown, production.missing):
        return "its unknown / missing codes differ from production's"
    return [index[f] for f in candidate.features]


def _has_score(outputs: Outputs) -> bool:
    return outputs.score is not None or outputs.probabilities is not None


def _scores(model: OnnxModel, columns: list[int] | None) -> Callable[[Array], Array]:
    def predict(x: Array) -> Array:
        z = x if columns is None else x[:, columns]
        return model.scores(np.ascontiguousarray(z, dtype=model.dtype))

    return predict


@dataclass
class Explainers:
    """One model's explainers (see the module docstring); ``reason`` says why there are
    none (yet)."""

    spec: Shadow
    baseline: OnnxModel | None
    candidates: dict[str, OnnxModel]
    background: Array | None = None
    production: ShapleyExplainer | None = None
    per_candidate: dict[str, ShapleyExplainer] = field(default_factory=dict)
    unexplained: dict[str, str] = field(default_factory=dict)
    """Candidates without attributions, and why."""
    reason: str = ""
    source: str = ""
    """Where the background came from: ``reference`` or ``live``."""
    waiting: bool = False
    """No reference sample: the first shadow rows become the background."""
    reference: Array | None = None
    """Reference-sample rows (not the background) production is explained on, once per
    reference, for ``attribution_shift``; None: the reference has no such rows."""
    identity: str = ""
    """:func:`sample_identity` of the reference sample."""
    _live: list[Array] = field(default_factory=list)

    @property
    def features(self) -> tuple[str, ...]:
        return self.spec.inputs.features

    def ready(self) -> bool:
        return self.production is not None

    def fill(self, rows: list[dict[str, Any]], source: str) -> None:
        """Build the explainers over ``rows`` (feature dicts) as the background."""
        if self.baseline is None or not rows:
            return
        n = len(rows)
        x = feature_matrix(self.spec.inputs, columns_from_rows(rows), n).astype(np.float64)
        self.use_background(x, source)

    def collect(self, x: Array) -> None:
        """Production's input rows seen live, until they make a background."""
        if not self.waiting:
            return
        self._live.append(np.asarray(x, dtype=np.float64))
        have = sum(len(p) for p in self._live)
        if have >= self.spec.attributions.background_rows:
            self.waiting = False
            log.info(
                "model %s: shadow attributions use the first %d live rows as background "
                "(the reference has no sample)",
                self.baseline.model if self.baseline else "?",
                self.spec.attributions.background_rows,
            )
            self.use_background(np.concatenate(self._live), "live")
            self._live = []

    def use_background(self, x: Array, source: str) -> None:
        assert self.baseline is not None
        a = self.spec.attributions
        self.background = x[: a.background_rows]
        self.source = source
        self.reason = ""

        def explainer(predict: Callable[[Array], Array]) -> ShapleyExplainer:
            assert self.background is not None
            return ShapleyExplainer(
                predict,
                self.background,
                permutations=a.permutations,
                max_batch_rows=MAX_BATCH_ROWS,
            )

        if not _has_score(self.spec.outputs):
            self.reason = "production's outputs name no score or probabilities to explain"
            return
        self.production = explainer(_scores(self.baseline, None))
        by_name = {c.name: c for c in self.spec.candidates}
        for name, model in self.candidates.items():
            columns = column_map(self.spec.inputs, self.spec.inputs_of(by_name[name]))
            if not _has_score(self.spec.outputs_of(by_name[name])):
                columns = "its outputs name no score or probabilities to explain"
            if isinstance(columns, str):
                self.unexplained[name] = columns
                continue
            identity = columns == list(range(len(self.features)))
            self.per_candidate[name] = explainer(_scores(model, None if identity else columns))

    def describe(self) -> dict[str, Any]:
        """What ``/api/shadow`` shows of the set-up."""
        p = self.production
        return {
            "ready": self.ready(),
            "reason": self.reason,
            "background": self.source,
            "background_rows": 0 if self.background is None else len(self.background),
            "method": None if p is None else p.method,
            "model_rows_per_row": None if p is None else p.model_rows_per_row(),
            "reference_rows": 0 if self.reference is None else len(self.reference),
            "unexplained": dict(self.unexplained),
        }


def explainers_for(
    spec: Shadow,
    baseline: OnnxModel | None,
    candidates: dict[str, OnnxModel],
    sample: list[dict[str, Any]],
) -> Explainers | None:
    """A model's explainers from its reference's sample (None: attributions not asked)."""
    if not spec.attributions.enabled:
        return None
    out = Explainers(spec, baseline, candidates)
    if spec.baseline is None:
        out.reason = "attributions need production's model file (shadow.baseline)"
    elif baseline is None:
        out.reason = "production's model file (shadow.baseline) could not be loaded"
    else:
        a = spec.attributions
        rows, reference = split_sample(sample, a.background_rows, a.reference_rows)
        if rows:
            out.fill(rows, "reference")
            if reference:
                n = len(reference)
                matrix = feature_matrix(spec.inputs, columns_from_rows(reference), n)
                out.reference = matrix.astype(np.float64)
                out.identity = sample_identity(spec, baseline, rows + reference)
        else:
            out.reason = "waiting for live rows as the background (no reference sample)"
            out.waiting = True
    return out
