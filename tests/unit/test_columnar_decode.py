"""The columnar path (Arrow's JSON reader) against the per-record path: the same batches,
the same quarantine reasons and details, the same kinds learned, on hypothesis-generated
mixes of good and bad records; and the columnar path really takes the clean batches."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from confluent_kafka import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from watchkeeper.daemon.config import IngestConfig
from watchkeeper.daemon.config_kafka import FieldPaths, TopicConfig
from watchkeeper.daemon.ingest.admission import Admission
from watchkeeper.daemon.ingest.confluent_messages import MessageRun
from watchkeeper.daemon.ingest.decode import Decoder
from watchkeeper.daemon.ingest.decoded import DecodeResult
from watchkeeper.daemon.ingest.kinds import KindRegistry
from watchkeeper.detectors.column_batch import Column, ColumnBatch

NOW = 1_795_255_200_000  # 2026-11-21T10:00:00Z


@dataclass
class Rec:
    offset: int
    value: bytes | None
    timestamp: int = NOW - 5_000


def dumps(event: Any) -> bytes:
    """Compact JSON, UTF-8 as producers send it (the stdlib: integers of any size)."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


def pair(role: str = "predictions", **topic: Any) -> tuple[Decoder, Decoder]:
    """A decoder with the columnar path and one without, each with its own state."""
    out = []
    for _ in range(2):
        ingest = IngestConfig(max_record_bytes=600, max_features=4, max_name_chars=12)
        admission = Admission(max_models=2, max_versions=2, max_name_chars=12)
        kinds = KindRegistry(max_features=ingest.max_features)
        cfg = TopicConfig(name="t", **topic)
        out.append(Decoder("t", role, cfg, ingest, kinds, admission))  # type: ignore[arg-type]
    out[1].columnar = None
    return out[0], out[1]


def same_column(a: Column | None, b: Column | None) -> None:
    assert (a is None) == (b is None)
    if a is None or b is None:
        return
    assert a.kind == b.kind
    same_array(a.values, b.values)
    assert a.null.tolist() == b.null.tolist() and a.missing.tolist() == b.missing.tolist()


def same_array(a: Any, b: Any) -> None:
    assert (a is None) == (b is None)
    if a is None:
        return
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.dtype == np.float64:
        # bit for bit: equal values, NaN where NaN, the sign of zero
        assert a.tobytes() == b.tobytes() or np.array_equal(a, b, equal_nan=True)
        assert np.signbit(a).tolist() == np.signbit(b).tolist()
    else:
        assert a.tolist() == b.tolist()


def same_result(a: DecodeResult, b: DecodeResult) -> None:
    assert [(q.offset, q.reason, q.detail, q.raw, q.size) for q in a.quarantined] == [
        (q.offset, q.reason, q.detail, q.raw, q.size) for q in b.quarantined
    ]
    assert a.ignored_features == b.ignored_features
    assert [x.model for x in a.batches] == [x.model for x in b.batches]
    for x, y in zip(a.batches, b.batches, strict=True):
        same_batch(x, y)


def same_batch(x: ColumnBatch, y: ColumnBatch) -> None:
    assert (x.model, x.role) == (y.model, y.role)
    for name in ("ts_ms", "versions", "keys", "offsets", "request_ids", "latency_ms"):
        same_array(getattr(x, name), getattr(y, name))
    same_array(x.class_scores, y.class_scores)  # a probability vector, kept whole
    assert sorted(x.features) == sorted(y.features)
    for name in x.features:
        same_column(x.features[name], y.features[name])
    same_column(x.prediction, y.prediction)
    same_column(x.prediction_class, y.prediction_class)
    same_column(x.label, y.label)


def check(fast: Decoder, slow: Decoder, values: list[bytes | None], offset: int = 0) -> Any:
    records = [Rec(offset + i, v) for i, v in enumerate(values)]
    a = fast.decode(3, records, NOW)
    b = slow.decode(3, records, NOW)
    same_result(a, b)
    assert fast.kinds.pending() == slow.kinds.pending()
    assert fast.admission._versions == slow.admission._versions
    return a


# -- generated events ---------------------------------------------------------------------
texts = st.text(alphabet="abcxyzé€😀", min_size=1, max_size=5)
floats = st.floats(allow_nan=False, allow_infinity=False)
ints = st.integers(-(2**63), 2**63 - 1) | st.integers(-(10**25), 10**25)
numbers = st.one_of(floats, ints, st.sampled_from([0.0, -0.0, 5e-324, 1.7976931348623157e308]))
KIND = st.sampled_from(["float", "int", "number", "text"])


@st.composite
def schema(draw: st.DrawFn) -> dict[str, Any]:
    """One topic's shape: feature names and kinds, the prediction's kind, the ts form."""
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), unique=True))
    return {
        "features": {n: draw(KIND) for n in names},
        "prediction": draw(st.sampled_from(["float", "text", "proba2", "proba3"])),
        "ts": draw(st.sampled_from(["ms", "s", "iso", "iso_offset"])),
        "ids": draw(st.sampled_from(["text", "int", "none"])),
        "latency": draw(st.booleans()),
        "models": draw(st.sampled_from([["fraud"], ["fraud", "churn"]])),
    }


def value_of(draw: st.DrawFn, kind: str) -> Any:
    if kind == "float":
        return draw(floats)
    if kind == "int":
        return draw(ints)
    if kind == "number":
        return draw(numbers)
    return draw(texts)


@st.composite
def good_event(draw: st.DrawFn, shape: dict[str, Any]) -> dict[str, Any]:
    ts = {
        "ms": NOW - draw(st.integers(0, 10**9)),
        "s": (NOW - draw(st.integers(0, 10**9))) / 1000,
        "iso": "2026-11-21T09:59:00Z",
        "iso_offset": "2026-11-21T10:59:00.250+01:00",
    }[shape["ts"]]
    pred = shape["prediction"]
    if pred.startswith("proba"):
        width = int(pred[-1])
        prediction: Any = draw(st.lists(st.floats(0, 1), min_size=width, max_size=width))
    else:
        prediction = value_of(draw, pred)
    event: dict[str, Any] = {
        "model": draw(st.sampled_from(shape["models"])),
        "model_version": draw(st.sampled_from(["1", "2"])),
        "ts": ts,
        "features": {n: value_of(draw, k) for n, k in shape["features"].items()},
        "prediction": prediction,
        "extra": {"ignored": [1, 2], "tags": {"k": "v"}},
    }
    if shape["ids"] != "none":
        event["request_id"] = draw(st.integers(0, 10**6)) if shape["ids"] == "int" else draw(texts)
    if shape["latency"]:
        event["latency_ms"] = draw(st.floats(0, 1e4))
    return event


def bad_forms(event: dict[str, Any]) -> st.SearchStrategy[bytes | None]:
    """Ways a record can go wrong or leave the shape Arrow reads faithfully."""
    raw = dumps(event)

    def with_(**over: Any) -> bytes:
        return dumps({**event, **over})

    def without(key: str) -> bytes:
        return dumps({k: v for k, v in event.items() if k != key})

    feats = event["features"]
    some = next(iter(feats), "a")
    return st.sampled_from(
        [
            None,
            b"",
            b"x" * 700,
            b"{not json",
            b"[1, 2]",
            b"7",
            b'"text"',
            without("model"),
            without("ts"),
            without("prediction"),
            without("features"),
            without("request_id"),
            without("latency_ms"),
            with_(model=5.5),
            with_(model=""),
            with_(model="a-very-long-model-name"),
            with_(model="third"),  # beyond max_models once two are known
            with_(model_version="9"),  # beyond max_versions
            with_(model_version=3),
            with_(ts="yesterday"),
            with_(ts=[1]),
            with_(ts=None),
            with_(ts=NOW + 86_400_000),
            with_(ts=-5),
            with_(latency_ms="fast"),
            with_(latency_ms=-1),
            with_(latency_ms=None),
            with_(request_id="r" * 20),
            with_(request_id=None),
            with_(features=[1]),
            with_(features=None),
            with_(features={}),
            with_(features={**feats, some: None}),
            with_(features={**feats, some: "lots"}),
            with_(features={**feats, some: 1.5}),
            with_(features={**feats, some: True}),
            with_(features={**feats, some: [1]}),
            with_(features={**feats, some: "2026-11-21"}),
            with_(features={**feats, some: "y" * 20}),
            with_(features={**feats, "__label__": 1.0}),
            with_(features={**feats, "": 1.0}),
            with_(features={**feats, "z" * 20: 1.0}),
            with_(features={**feats, "extra1": 1.0, "extra2": "x"}),
            with_(prediction={"a": 1}),
            with_(prediction=None),
            with_(prediction="approve"),
            with_(prediction=[0.5]),
            with_(prediction=[]),
            with_(prediction=[0.2, None]),
            with_(prediction=True),
            with_(extra=[1, "x", None]),  # a field nobody reads, mixing types
            raw.replace(b"{", b'{"model":"dup",', 1),  # a key twice (the last one wins)
            raw.replace(b",", b",\n  ", 2),  # pretty-printed
            raw[:-1] + b',"latency_ms":NaN}',
            raw[:-1] + b',"nan_feature":Infinity}',
            raw.replace(b'"features":{', b'"features":{"n":NaN,', 1),
            raw + b" " + raw,  # two objects in one value
            raw + b"\r" + raw,
            raw + raw,
            b" ",  # whitespace only: Arrow reads no row for it
            b"\t\r",
            b" " + raw + b" ",
            b"\xff" + raw,
            raw[:-1] + b',"junk":"\xc3\x28"}',  # invalid UTF-8 in a field nobody reads
        ]
    )


@st.composite
def batches(draw: st.DrawFn) -> tuple[dict[str, Any], list[list[bytes | None]]]:
    shape = draw(schema())
    out = []
    for _ in range(draw(st.integers(1, 3))):
        size = draw(st.integers(1, 8))
        values: list[bytes | None] = []
        for _ in range(size):
            event = draw(good_event(shape))
            if draw(st.integers(0, 5)) == 0:
                values.append(draw(bad_forms(event)))
            else:
                values.append(dumps(event))
        out.append(values)
    return shape, out


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_the_columnar_path_decodes_exactly_as_the_per_record_path(
    case: tuple[dict[str, Any], list[list[bytes | None]]],
) -> None:
    _, sequence = case
    fast, slow = pair()
    offset = 0
    for values in sequence:  # one after another: the kinds learned carry over
        check(fast, slow, values, offset)
        offset += len(values)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_clean_batches_take_the_columnar_path(data: st.DataObject) -> None:
    shape = data.draw(schema())
    fast, slow = pair()
    offset = 0
    for _ in range(3):
        size = data.draw(st.integers(1, 8))
        values: list[bytes | None] = [dumps(data.draw(good_event(shape))) for _ in range(size)]
        check(fast, slow, values, offset)
        offset += size
    assert fast.columnar is not None
    # Arrow reads whole-second ISO text as timestamps: the first such batch goes record
    # by record and teaches the path to read ts as text; every other clean batch is columnar
    assert fast.columnar.fallbacks == (1 if shape["ts"] == "iso" else 0)


def bench_event(i: int) -> dict[str, Any]:
    return {
        "model": "fraud",
        "model_version": "3",
        "request_id": f"r{i}",
        "ts": NOW - 60_000 + i,
        "features": {f"f{j:02d}": round(0.1 * i - j, 4) for j in range(4)},
        "prediction": 0.25 + i / 1000,
        "latency_ms": 12.5,
    }


def test_a_clean_batch_is_read_whole_and_a_bad_record_sends_it_record_by_record() -> None:
    fast, slow = pair()
    clean = [dumps(bench_event(i)) for i in range(50)]
    result = check(fast, slow, list(clean))
    assert fast.columnar is not None and fast.columnar.fallbacks == 0
    (batch,) = result.batches
    assert len(batch) == 50 and batch.features["f01"].values[10] == round(1.0 - 1, 4)
    mixed: list[bytes | None] = [*clean[:10], b'{"model": "fraud", "ts": "soon"}', *clean[10:]]
    result = check(fast, slow, mixed, 50)
    assert fast.columnar.fallbacks == 1
    assert [(q.offset, q.reason) for q in result.quarantined] == [(60, "bad_timestamp")]


def test_two_objects_beside_a_blank_record_are_not_read_as_two_events() -> None:
    """Arrow reads ``{..} {..}`` as two rows and a blank line as none: together they add
    up to the batch's record count, with the second event on the blank record's offset."""
    fast, slow = pair()
    one, two = dumps(bench_event(1)), dumps(bench_event(2))
    for blank in (b" ", b"\t", b"\r", b" \r "):
        for joiner in (b" ", b"\r", b""):
            result = check(fast, slow, [one + joiner + two, blank, one])
            assert sorted(q.offset for q in result.quarantined) == [0, 1]
            assert sum(len(b) for b in result.batches) == 1


def test_dotted_paths_read_nested_columns() -> None:
    fields = FieldPaths(
        model=None,
        ts="meta.time",
        features="payload.inputs",
        prediction="payload.output.score",
        latency_ms="meta.latency",
        request_id="meta.id",
        model_version=None,
    )
    fast, slow = pair(model="fraud", fields=fields)
    events = [
        {
            "meta": {"time": NOW - i, "latency": 3.0, "id": f"x{i}"},
            "payload": {"inputs": {"a": float(i), "b": "DE"}, "output": {"score": 0.5}},
        }
        for i in range(5)
    ]
    result = check(fast, slow, [dumps(e) for e in events])
    assert fast.columnar is not None and fast.columnar.fallbacks == 0
    (batch,) = result.batches
    assert batch.features["a"].values.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert batch.features["b"].kind == "categorical"
    assert batch.latency_ms is not None and batch.latency_ms.tolist() == [3.0] * 5
    assert batch.versions.tolist() == [""] * 5


def test_labels_and_features_topics() -> None:
    fast, slow = pair("labels")
    labels = [
        {"model": "fraud", "request_id": f"r{i}", "ts": NOW - i, "label": i % 2} for i in range(6)
    ]
    check(fast, slow, [dumps(e) for e in labels])
    assert fast.columnar is not None and fast.columnar.fallbacks == 0
    fast, slow = pair("features")
    feats = [{"model": "fraud", "ts": NOW - i, "features": {"a": i, "c": "x"}} for i in range(6)]
    check(fast, slow, [dumps(e) for e in feats])
    assert fast.columnar is not None and fast.columnar.fallbacks == 0


def test_a_topic_that_keeps_missing_is_only_retried_now_and_then() -> None:
    fast, slow = pair()
    assert fast.columnar is not None
    nulls = [dumps({**bench_event(i), "latency_ms": None}) for i in range(5)]
    offset = 0
    for _ in range(4):  # four hand-overs in a row
        check(fast, slow, list(nulls), offset)
        offset += 5
    assert (fast.columnar.fallbacks, fast.columnar.skipped) == (4, 0)
    clean = [dumps(bench_event(i)) for i in range(5)]
    for _ in range(31):  # sent straight on, decoded exactly all the same
        check(fast, slow, list(clean), offset)
        offset += 5
    assert (fast.columnar.fallbacks, fast.columnar.skipped) == (4, 31)
    check(fast, slow, list(clean), offset)  # the 32nd is tried again, and taken
    assert (fast.columnar.fallbacks, fast.columnar.skipped) == (4, 31)
    check(fast, slow, list(clean), offset + 5)
    assert fast.columnar.skipped == 31


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_confluents_message_runs_decode_as_their_records(
    case: tuple[dict[str, Any], list[list[bytes | None]]],
) -> None:
    """The confluent source hands librdkafka's messages over as a MessageRun (fields read
    as lists, no record object each): the same batches and quarantine as the records."""
    _, sequence = case
    from_records, _ = pair()
    from_messages, _ = pair()
    offset = 0
    for values in sequence:
        records = [Rec(offset + i, v) for i, v in enumerate(values)]
        run = MessageRun(
            [
                Message(
                    topic="t",
                    partition=3,
                    offset=r.offset,
                    value=r.value,
                    timestamp=(1, r.timestamp),
                )
                for r in records
            ]
        )
        assert [(r.offset, r.value, r.timestamp) for r in run] == [
            (r.offset, r.value, r.timestamp) for r in records
        ]
        assert run[1:].record_offsets() == [r.offset for r in records[1:]]
        same_result(from_messages.decode(3, run, NOW), from_records.decode(3, records, NOW))
        offset += len(values)
    assert from_messages.columnar is not None and from_records.columnar is not None
    assert from_messages.columnar.fallbacks == from_records.columnar.fallbacks
