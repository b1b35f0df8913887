"""The record decoder: columnar output for good records, a reason for every bad one."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from watchkeeper.daemon.config import IngestConfig
from watchkeeper.daemon.config_kafka import FieldPaths, TopicConfig
from watchkeeper.daemon.ingest.decode import REASONS, Decoder
from watchkeeper.daemon.ingest.kinds import KindRegistry

NOW = 1_795_255_200_000  # 2026-11-21T10:00:00Z


@dataclass
class Rec:
    offset: int
    value: bytes | None
    timestamp: int = NOW


def decoder(role: str = "predictions", **topic: object) -> Decoder:
    ingest = IngestConfig(max_record_bytes=2048, max_features=50)
    cfg = TopicConfig(name="t", **topic)  # type: ignore[arg-type]
    kinds = KindRegistry(max_features=ingest.max_features)
    return Decoder("t", role, cfg, ingest, kinds)  # type: ignore[arg-type]


def recs(*values: object) -> list[Rec]:
    out = []
    for i, v in enumerate(values):
        out.append(Rec(i, v if isinstance(v, bytes) or v is None else orjson.dumps(v)))
    return out


def good(i: int = 0, **over: object) -> dict[str, object]:
    event: dict[str, object] = {
        "model": "fraud",
        "model_version": "3",
        "request_id": f"r{i}",
        "ts": "2026-11-21T10:00:00Z",
        "features": {"amount": 12.5 + i, "country": "DE"},
        "prediction": 0.91,
        "latency_ms": 23.4,
    }
    event.update(over)
    return event


def test_documented_event_shapes_decode_into_columns() -> None:
    result = decoder().decode(
        0, recs(good(0), good(1, ts=NOW), good(2, prediction="approve", model="other")), NOW
    )
    assert result.quarantined == []
    fraud, other = sorted(result.batches, key=lambda b: b.model)
    assert (fraud.model, len(fraud), other.model, len(other)) == ("fraud", 2, "other", 1)
    assert fraud.ts_ms.tolist() == [NOW, NOW]
    assert fraud.features["amount"].values.tolist() == [12.5, 13.5]
    assert fraud.features["country"].kind == "categorical"
    assert fraud.prediction is not None and fraud.prediction.values.tolist() == [0.91, 0.91]
    assert other.prediction is not None and other.prediction.kind == "categorical"
    assert fraud.latency_ms is not None and fraud.latency_ms.tolist() == [23.4, 23.4]
    assert fraud.versions.tolist() == ["3", "3"] and fraud.request_ids is not None


def test_probability_vectors_become_score_and_class() -> None:
    result = decoder().decode(
        0, recs(good(0, prediction=[0.1, 0.9]), good(1, prediction=[0.8, 0.2])), NOW
    )
    (batch,) = result.batches
    assert batch.prediction is not None and batch.prediction_class is not None
    assert batch.prediction.values.tolist() == [0.9, 0.2]  # P(class 1)
    assert batch.prediction_class.values.tolist() == ["1", "0"]


def test_features_and_labels_topics() -> None:
    feats = decoder("features").decode(
        0, recs({"model": "fraud", "request_id": "r1", "ts": NOW, "features": {"a": 1}}), NOW
    )
    assert len(feats.batches[0]) == 1 and feats.batches[0].role == "features"
    labels = decoder("labels").decode(
        0,
        recs(
            {"model": "fraud", "request_id": "r1", "ts": NOW, "label": 1},
            {"model": "fraud", "ts": NOW, "label": 1},
        ),
        NOW,
    )
    assert len(labels.batches[0]) == 1
    assert labels.batches[0].label is not None
    assert [(q.offset, q.reason) for q in labels.quarantined] == [(1, "missing_field")]


def test_field_paths_are_configurable() -> None:
    d = decoder(
        model="fraud",
        fields=FieldPaths(
            model=None,
            ts="meta.time",
            features="payload.inputs",
            prediction="payload.output.score",
            latency_ms="meta.latency",
            request_id="meta.id",
            model_version=None,
        ),
    )
    event = {
        "meta": {"time": NOW, "latency": 3.0, "id": "x"},
        "payload": {"inputs": {"a": 1.0}, "output": {"score": 0.5}},
    }
    (batch,) = d.decode(0, recs(event), NOW).batches
    assert batch.model == "fraud" and batch.features["a"].values.tolist() == [1.0]
    assert batch.prediction is not None and batch.prediction.values.tolist() == [0.5]
    assert batch.versions.tolist() == [""]


@pytest.mark.parametrize(
    ("value", "reason", "detail"),
    [
        (None, "empty", "no value"),
        (b"x" * 3000, "oversized", "3000 bytes"),
        (b"{not json", "not_json", ""),
        (b"[1, 2]", "not_object", "array"),
        ({"ts": NOW, "prediction": 1}, "missing_field", "model is required"),
        ({"model": "fraud", "ts": NOW}, "missing_field", "prediction is required"),
        ({"model": "fraud", "prediction": 1}, "missing_field", "ts is required"),
        ({"model": 5.5, "ts": NOW, "prediction": 1}, "wrong_type", "model: expected a string"),
        ({"model": "m", "ts": "yesterday", "prediction": 1}, "bad_timestamp", "yesterday"),
        ({"model": "m", "ts": [1], "prediction": 1}, "wrong_type", "ts: expected"),
        (
            {"model": "m", "ts": NOW, "prediction": 1, "latency_ms": "fast"},
            "wrong_type",
            "latency_ms: expected a number",
        ),
        (
            b'{"model": "m", "ts": 1795255200000, "prediction": 1, "latency_ms": NaN}',
            "not_finite",
            "latency_ms",
        ),
        (b'{"model": "m", "ts": Infinity, "prediction": 1}', "not_finite", "ts is not finite"),
        ({"model": "m", "ts": NOW, "prediction": 1, "latency_ms": -1}, "not_finite", "≥ 0"),
        ({"model": "m", "ts": NOW + 86_400_000, "prediction": 1}, "ts_in_future", "ahead"),
        (
            {"model": "m", "ts": NOW, "prediction": 1, "features": [1]},
            "wrong_type",
            "features: expected an object",
        ),
        ({"model": "m", "ts": NOW, "prediction": {"a": 1}}, "wrong_type", "prediction"),
    ],
)
def test_each_kind_of_bad_record_is_quarantined_with_its_reason(
    value: object, reason: str, detail: str
) -> None:
    result = decoder().decode(7, recs(good(0), value, good(2)), NOW)
    assert [(q.offset, q.reason) for q in result.quarantined] == [(1, reason)]
    (q,) = result.quarantined
    assert detail in q.detail and q.partition == 7 and q.topic == "t"
    assert len(q.raw) <= 1024
    assert sum(len(b) for b in result.batches) == 2  # the good records around it count


def test_a_feature_keeps_its_first_kind() -> None:
    d = decoder()
    d.decode(0, recs(good(0)), NOW)
    result = d.decode(
        0,
        recs(
            good(1, features={"amount": "lots", "country": "DE"}),
            good(2, features={"amount": 1.0, "country": 7}),
        ),
        NOW,
    )
    assert [(q.offset, q.reason) for q in result.quarantined] == [(0, "wrong_type")]
    assert "features.amount: expected a number, got string" in result.quarantined[0].detail
    (batch,) = result.batches
    assert batch.features["country"].values.tolist() == ["7"]  # integers read as categories


def test_nan_features_and_nulls_are_data_not_bad_records() -> None:
    raw = b'{"model":"m","ts":1795255200000,"prediction":NaN,"features":{"a":NaN,"b":null}}'
    result = decoder().decode(
        0,
        [
            Rec(0, raw),
            Rec(
                1,
                orjson.dumps(
                    {"model": "m", "ts": NOW, "prediction": 1.0, "features": {"a": 2.0, "b": 1.0}}
                ),
            ),
        ],
        NOW,
    )
    assert result.quarantined == []
    (batch,) = result.batches
    a, b = batch.features["a"], batch.features["b"]
    assert np.isnan(a.values[0]) and not a.null[0]
    assert b.null.tolist() == [True, False]
    assert batch.prediction is not None and np.isnan(batch.prediction.values[0])


def test_missing_features_are_marked_missing() -> None:
    result = decoder().decode(0, recs(good(0), good(1, features={"amount": 1.0})), NOW)
    country = result.batches[0].features["country"]
    assert country.missing.tolist() == [False, True]


def test_features_beyond_the_bound_are_ignored_and_counted() -> None:
    many = {f"f{i}": float(i) for i in range(60)}
    result = decoder().decode(0, recs(good(0, features=many)), NOW)
    assert len(result.batches[0].features) == 50
    assert result.ignored_features == 10


def test_iso_timestamps_with_offsets_and_epoch_seconds() -> None:
    d = decoder()
    result = d.decode(0, recs(good(0, ts="2026-11-21T11:00:00+01:00"), good(1, ts=NOW / 1000)), NOW)
    assert result.batches[0].ts_ms.tolist() == [NOW, NOW]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
events = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["fraud", "churn"]) | json_values,
        "ts": st.just(NOW) | st.just("2026-11-21T09:59:00Z") | json_values,
        "features": st.dictionaries(st.sampled_from(["a", "b", "c"]), json_values, max_size=3)
        | json_values,
        "prediction": json_values,
        "latency_ms": json_values,
        "request_id": json_values,
        "model_version": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(events.map(lambda e: json.dumps(e).encode()) | st.binary(max_size=64), max_size=12))
def test_no_input_crashes_the_decoder_and_every_record_is_accounted_for(
    values: list[bytes],
) -> None:
    d = decoder()
    records = [Rec(i, v) for i, v in enumerate(values)]
    result = d.decode(0, records, NOW)
    quarantined = {q.offset for q in result.quarantined}
    assert len(quarantined) == len(result.quarantined)  # each at most once
    assert all(q.reason in REASONS and q.detail for q in result.quarantined)
    decoded = sum(len(b) for b in result.batches)
    assert decoded + len(quarantined) == len(values)


def test_an_internal_failure_quarantines_the_batch_instead_of_crashing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(KindRegistry):
        def admit(self, model: str, names: list[str]) -> list[str]:
            raise RuntimeError("boom")

    d = Decoder("t", "predictions", TopicConfig(name="t"), IngestConfig(), Broken())
    result = d.decode(0, recs(good(0), good(1)), NOW)
    assert [(q.offset, q.reason) for q in result.quarantined] == [
        (0, "internal_error"),
        (1, "internal_error"),
    ]
    assert "RuntimeError: boom" in result.quarantined[0].detail
    assert "decoding 2 records of t[0] failed" in caplog.text


def test_a_logged_class_is_read_beside_the_score_and_wins_over_the_argmax() -> None:
    """``prediction`` and ``prediction_class`` mapped to a model's ``y_pred_proba`` and its
    own decision ``y_pred`` (which need not be score ≥ 0.5: the model may use another
    threshold); class spellings are normalised as labels' are."""
    d = decoder(fields=FieldPaths(prediction="y_pred_proba", prediction_class="y_pred"))
    events = [
        good(0, y_pred_proba=0.62, y_pred=0),  # the model's own threshold is higher
        good(1, y_pred_proba=0.30, y_pred=True),
        good(2, y_pred_proba=0.8, y_pred=1.0),
        good(3, y_pred_proba=0.9),  # no class logged for this one
        good(4, y_pred_proba=0.5, y_pred={"oops": 1}),
    ]
    result = d.decode(0, recs(*events), NOW)
    (bad,) = result.quarantined
    assert bad.offset == 4 and bad.reason == "wrong_type" and "prediction_class" in bad.detail
    (batch,) = result.batches
    assert batch.prediction is not None and batch.prediction_class is not None
    assert batch.prediction.values.tolist() == [0.62, 0.30, 0.8, 0.9]
    assert batch.prediction_class.values.tolist() == ["0", "1", "1", None]
    assert batch.prediction_class.missing.tolist() == [False, False, False, True]
