"""Multiclass estimates at ingest (issue 19): a probability-vector prediction is decoded
whole (both decoding paths), its rows update the window's multiclass estimate state, and
that state equals a direct row-by-row computation with the same calibrators; partial
windows merged equal the whole; the estimates read from it are the reference build's."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from watchkeeper.daemon.config import IngestConfig
from watchkeeper.daemon.config_kafka import FieldPaths, TopicConfig
from watchkeeper.daemon.ingest.admission import Admission
from watchkeeper.daemon.ingest.decode import Decoder
from watchkeeper.daemon.ingest.kinds import KindRegistry
from watchkeeper.detectors.column_batch import ColumnBatch
from watchkeeper.detectors.estimate_sketch import (
    SCALE,
    MulticlassEstimateSketch,
    binary_decisions,
    vector_scores,
)
from watchkeeper.detectors.estimation_reference import Estimation, fit_multiclass_estimation
from watchkeeper.detectors.window import SketchSettings, WindowSummary

NOW = 1_795_255_200_000
CLASSES = ("0", "1", "2")


@dataclass
class Rec:
    offset: int
    value: bytes | None
    timestamp: int = NOW - 5_000


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def three_class_reference(
    n: int = 9000, seed: int = 19, classes: tuple[str, ...] = CLASSES
) -> Estimation:
    rng = np.random.default_rng(seed)
    p = softmax(rng.normal(size=(n, 3)) * 1.5)
    # over-confident scores: the calibrators have something to correct
    scores = softmax(np.log(p) * 1.6)
    y = np.array([rng.choice(3, p=row) for row in p])
    return fit_multiclass_estimation(scores, [classes[i] for i in y], classes)


def decoders() -> tuple[Decoder, Decoder]:
    """A decoder with the columnar path and one without (``prediction_class`` mapped)."""
    out = []
    for _ in range(2):
        ingest = IngestConfig()
        kinds = KindRegistry(max_features=ingest.max_features)
        admission = Admission(ingest.max_models, ingest.max_versions, ingest.max_name_chars)
        fields = FieldPaths(prediction_class="prediction_class")
        cfg = TopicConfig(name="t", model="iris", fields=fields)
        out.append(Decoder("t", "predictions", cfg, ingest, kinds, admission))
    out[1].columnar = None
    return out[0], out[1]


def events(n: int, seed: int, own_class: bool = False) -> tuple[list[Rec], np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = softmax(rng.normal(size=(n, 3)) * 2.0)
    recs = []
    for i, v in enumerate(vectors.tolist()):
        event: dict[str, Any] = {"ts": NOW - 1000, "prediction": v}
        if own_class:
            event["prediction_class"] = int(np.argmin(v))  # a model that decides its own way
        recs.append(Rec(i, json.dumps(event).encode()))
    return recs, vectors


def summary(est: Estimation, batches: list[ColumnBatch]) -> WindowSummary:
    w = WindowSummary("iris", "", 0, 10**13, SketchSettings(k=8, estimation=lambda m: est))
    for b in batches:
        w.update(b, np.arange(len(b)))
    return w


def direct(est: Estimation, scores: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """The state row by row: each row's calibrated, renormalised vector (the calibrator's
    own ``calibrate``), rounded to the sketch's fixed point, added to its predicted row."""
    cal = est.calibrator
    q = cal.calibrate(scores)
    k = len(CLASSES)
    expected = [[0] * k for _ in range(k)]
    step_count = [dict[int, int]() for _ in range(k)]
    step_mass = [dict[int, int]() for _ in range(k)]
    for row, pred in zip(q, predicted.tolist(), strict=True):
        fixed = [round(float(v) * SCALE) for v in row]
        for j in range(k):
            expected[pred][j] += fixed[j]
    for j, c in enumerate(cal.per_class):  # type: ignore[union-attr]
        for s, fixed_q in zip(c.step_of(scores[:, j]).tolist(), q[:, j].tolist(), strict=True):
            step_count[j][s] = step_count[j].get(s, 0) + 1
            step_mass[j][s] = step_mass[j].get(s, 0) + round(fixed_q * SCALE)
    return {
        "expected": expected,
        "predicted": np.bincount(predicted, minlength=k).tolist(),
        "step_count": [sorted([s, v] for s, v in d.items()) for d in step_count],
        "step_mass": [sorted([s, v] for s, v in d.items() if v) for d in step_mass],
    }


def state_of(sketch: MulticlassEstimateSketch) -> dict[str, Any]:
    d = sketch.to_dict()
    return {key: d[key] for key in ("expected", "predicted", "step_count", "step_mass")}


@pytest.mark.parametrize("own_class", [False, True])
def test_a_probability_vector_updates_the_multiclass_state_row_by_row_exactly(
    own_class: bool,
) -> None:
    est = three_class_reference()
    recs, vectors = events(700, seed=3, own_class=own_class)
    fast, slow = decoders()
    a, b = fast.decode(0, recs, NOW), slow.decode(0, recs, NOW)
    assert fast.columnar is not None and fast.columnar.fallbacks == 0  # really columnar
    for result in (a, b):
        (batch,) = result.batches
        assert batch.class_scores is not None
        assert batch.class_scores.tolist() == vectors.tolist()
        sketch = summary(est, result.batches).estimates.of(est)
        assert isinstance(sketch, MulticlassEstimateSketch) and sketch.n == 700
        predicted = np.argmin(vectors, axis=1) if own_class else np.argmax(vectors, axis=1)
        assert state_of(sketch) == direct(est, vectors, predicted)
        # the metrics are the reference build's functions on that state
        values = est.estimate_all(sketch)
        q = est.calibrator.calibrate(vectors)
        assert values["estimated_accuracy"].value == pytest.approx(
            float(q[np.arange(700), predicted].mean()), abs=1e-9
        )
        assert set(values) >= {"estimated_accuracy", "estimated_f1", "estimated_roc_auc"}


def test_partial_windows_merged_equal_the_whole_bit_for_bit() -> None:
    est = three_class_reference()
    recs, _ = events(900, seed=5)
    fast, _ = decoders()
    whole = summary(est, fast.decode(0, recs, NOW).batches)
    parts = [summary(est, fast.decode(0, recs[i : i + 300], NOW).batches) for i in (0, 300, 600)]
    merged = parts[2]
    merged.merge(parts[0])
    merged.merge(parts[1])
    assert merged.estimates.to_dict() == whole.estimates.to_dict()
    again = WindowSummary.from_dict(json.loads(json.dumps(merged.to_dict())))
    assert again.estimates.to_dict() == whole.estimates.to_dict()


def test_a_reference_with_class_names_reads_the_vector_by_position() -> None:
    names = ("setosa", "versicolor", "virginica")
    est = three_class_reference(classes=names)
    recs, vectors = events(400, seed=7)
    fast, _ = decoders()
    sketch = summary(est, fast.decode(0, recs, NOW).batches).estimates.of(est)
    assert isinstance(sketch, MulticlassEstimateSketch)
    # the decoder's arg-max class "i" is the i-th class of the reference
    assert state_of(sketch) == direct(est, vectors, np.argmax(vectors, axis=1))
    assert sketch.unknown_class == 0


def test_index_named_classes_follow_their_names_not_their_order() -> None:
    v = np.array([[0.1, 0.2, 0.7]])
    assert vector_scores(("2", "0", "1"), v).tolist() == [[0.7, 0.1, 0.2]]  # type: ignore[union-attr]
    assert vector_scores(("0", "1"), v) is None  # another width: no estimate, no crash


def test_a_vector_of_another_width_leaves_the_state_empty_and_nan_rows_are_counted() -> None:
    est = three_class_reference()
    fast, _ = decoders()
    two = [Rec(0, json.dumps({"ts": NOW - 1000, "prediction": [0.4, 0.6]}).encode())]
    assert not summary(est, fast.decode(0, two, NOW).batches).estimates
    fast, _ = decoders()
    recs, _ = events(3, seed=9)
    (batch,) = fast.decode(0, recs, NOW).batches
    assert batch.class_scores is not None
    batch.class_scores[1] = np.nan  # what a NaN in a vector leaves (JSON has no NaN)
    sketch = summary(est, [batch]).estimates.of(est)
    assert isinstance(sketch, MulticlassEstimateSketch)
    assert (sketch.n, sketch.nan_scores) == (2, 1)


def test_binary_decisions_follow_the_label_joins_rule_row_by_row() -> None:
    """The realised side (daemon/store/label_join.py) grades a row as predicted "1" when
    its class reads "1", as its class otherwise, and by score ≥ threshold without one."""
    rng = np.random.default_rng(1)
    scores = rng.random(500)
    spellings = np.array(["1", "0", "true", "1.0", None], dtype=object)
    classes = spellings[rng.integers(0, 5, 500)]
    absent = np.asarray([c is None for c in classes.tolist()])
    got = binary_decisions(classes, absent, scores, 0.3)
    realised = [
        (c if c is not None else ("1" if s >= 0.3 else "0")) == "1"
        for c, s in zip(classes.tolist(), scores.tolist(), strict=True)
    ]
    assert got.tolist() == realised


@pytest.mark.parametrize("side", ["above", "below"])
def test_the_threshold_is_a_step_boundary_even_with_every_score_on_one_side(side: str) -> None:
    from watchkeeper.detectors.calibrator_fit import fit_binary_calibrator

    rng = np.random.default_rng(4)
    s = rng.uniform(0.6, 0.9, 2000) if side == "above" else rng.uniform(0.1, 0.4, 2000)
    cal = fit_binary_calibrator(s, rng.random(2000) < s, threshold=0.5)
    assert 0.5 in cal.edges
    # a window row on the other side of the threshold is decided by its step alike
    window = np.array([0.45, 0.5, 0.55, 0.2, 0.95])
    assert (cal.step_of(window) >= cal.threshold_step).tolist() == (window >= 0.5).tolist()
    # and calibrates as before: both sides of the new edge keep one value
    i = cal.edges.index(0.5)
    assert cal.values[i] == cal.values[i + 1]
