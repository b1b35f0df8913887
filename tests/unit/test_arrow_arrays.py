"""Arrow arrays read without pyarrow's pandas bridge (daemon/ingest/arrow_arrays.py) give
exactly what ``to_numpy`` gave: the same dtype, the same float64 bits, the same text; and
decoding a clean batch no longer imports pandas."""

from __future__ import annotations

import subprocess
import sys
from itertools import pairwise
from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from watchkeeper.daemon.ingest.arrow_arrays import numbers, primitive, texts
from watchkeeper.daemon.ingest.fields import object_array

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def reference_numbers(arr: pa.Array) -> Any:
    # the code this replaced (columnar_decode._numbers before 2026-12-07)
    return arr.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False, writable=True)


def reference_texts(arr: pa.Array, few: bool) -> Any:
    if pa.types.is_int64(arr.type):
        arr = arr.cast(pa.string())
    if few:
        encoded = arr.dictionary_encode()
        distinct = object_array(encoded.dictionary.to_numpy(zero_copy_only=False))
        return distinct[encoded.indices.to_numpy(zero_copy_only=False)]
    return object_array(arr.to_numpy(zero_copy_only=False))


def sliced(arr: pa.Array, lo: int, hi: int) -> pa.Array:
    """A slice (a nonzero offset into the buffers, as a struct's child can have)."""
    lo = min(lo, len(arr))
    return arr.slice(lo, max(0, min(hi, len(arr)) - lo))


@settings(deadline=None)  # the reference's first to_numpy imports pandas (~0.3 s)
@given(st.lists(floats, max_size=60), st.integers(0, 10), st.integers(0, 70))
def test_float_columns_bit_for_bit(values: list[float], lo: int, hi: int) -> None:
    for arr in (pa.array(values, pa.float64()), sliced(pa.array(values, pa.float64()), lo, hi)):
        got, want = numbers(arr), reference_numbers(arr)
        assert got.dtype == want.dtype == np.float64 and got.shape == want.shape
        assert got.tobytes() == want.tobytes()
        assert got.flags.writeable and got.flags.owndata  # a copy, not a view on Arrow's buffer


@settings(deadline=None)  # the reference's first to_numpy imports pandas (~0.3 s)
@given(st.lists(ints, max_size=60), st.integers(0, 10), st.integers(0, 70))
def test_int_columns_round_as_before(values: list[int], lo: int, hi: int) -> None:
    for arr in (pa.array(values, pa.int64()), sliced(pa.array(values, pa.int64()), lo, hi)):
        assert numbers(arr).tobytes() == reference_numbers(arr).tobytes()
        got = primitive(arr)
        assert got.dtype == np.int64 and got.tolist() == arr.to_numpy().tolist()


def test_nulls_and_other_types_go_through_to_numpy() -> None:
    with_null = pa.array([1.5, None, -0.0])
    assert numbers(with_null).tobytes() == reference_numbers(with_null).tobytes()
    flags = pa.array([True, False])
    assert primitive(flags).tolist() == [True, False]
    assert numbers(pa.array([], pa.float64())).shape == (0,)


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)


@settings(deadline=None)  # the reference's first to_numpy imports pandas (~0.3 s)
@given(st.lists(text | st.none(), max_size=40), st.booleans(), st.integers(0, 5))
def test_text_columns_as_before(values: list[str | None], few: bool, lo: int) -> None:
    if few:  # the decoder's few-valued columns (model, version) never hold nulls (_column)
        values = [v for v in values if v is not None]
    for arr in (pa.array(values, pa.string()), sliced(pa.array(values, pa.string()), lo, 99)):
        got, want = texts(arr, few), reference_texts(arr, few)
        assert got is not None
        assert got.dtype == want.dtype == object and got.shape == want.shape
        assert got.tolist() == want.tolist()
        assert [type(v) for v in got.tolist()] == [type(v) for v in want.tolist()]


@settings(deadline=None)  # the reference's first to_numpy imports pandas (~0.3 s)
@given(st.lists(ints, max_size=30), st.booleans())
def test_numeric_identifiers_as_their_text(values: list[int], few: bool) -> None:
    arr = pa.array(values, pa.int64())
    got = texts(arr, few)
    assert got is not None and got.tolist() == reference_texts(arr, few).tolist()


def test_other_columns_are_not_text() -> None:
    assert texts(pa.array([1.5])) is None


def test_a_clean_batch_decodes_without_importing_pandas() -> None:
    # pandas (~45 MB of RSS) is for reports and offline files, never for ingest (issue 14)
    script = """
import sys, orjson
from watchkeeper.daemon.config import IngestConfig
from watchkeeper.daemon.config_kafka import TopicConfig
from watchkeeper.daemon.ingest.admission import Admission
from watchkeeper.daemon.ingest.decode import Decoder
from watchkeeper.daemon.ingest.kinds import KindRegistry

class Rec:
    def __init__(self, offset, value):
        self.offset, self.value, self.timestamp = offset, value, 1_795_255_195_000

ingest = IngestConfig()
decoder = Decoder("t", "predictions", TopicConfig(name="t"), ingest,
                  KindRegistry(max_features=ingest.max_features), Admission())
records = [Rec(i, orjson.dumps({"model": "m", "model_version": "1", "request_id": f"r{i}",
           "ts": 1_795_255_190_000 + i, "features": {"a": i * 0.5, "b": "x"},
           "prediction": 0.25, "latency_ms": 3.5})) for i in range(50)]
result = decoder.decode(0, records, 1_795_255_200_000)
assert decoder.columnar.fallbacks == 0 and decoder.columnar.skipped == 0
assert len(result.batches) == 1 and len(result.batches[0]) == 50, result
print("pandas" in sys.modules)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False", out.stdout + out.stderr


def chunked(values: list[Any], kind: pa.DataType, cuts: list[int]) -> pa.ChunkedArray:
    """``values`` as a ChunkedArray cut at ``cuts`` (empty chunks included), as a table's
    column is."""
    bounds = [0, *sorted(min(c, len(values)) for c in cuts), len(values)]
    chunks = [pa.array(values[a:b], kind) for a, b in pairwise(bounds)]
    return pa.chunked_array(chunks, kind)


@settings(deadline=None)  # the reference's first to_numpy imports pandas (~0.3 s)
@given(
    st.lists(floats | st.none(), max_size=40),
    st.lists(ints, max_size=40),
    st.lists(text, max_size=40),
    st.lists(st.integers(0, 40), max_size=4),
    st.booleans(),
)
def test_chunked_columns_read_as_their_combined_array(
    floats_: list[float | None], ints_: list[int], texts_: list[str], cuts: list[int], few: bool
) -> None:
    # a ChunkedArray has no buffers(): it raised AttributeError out of decode
    for values, kind in ((floats_, pa.float64()), (ints_, pa.int64())):
        arr = chunked(values, kind, cuts)
        want = reference_numbers(arr.combine_chunks())
        assert numbers(arr).tobytes() == want.tobytes()
        as_is = arr.combine_chunks().to_numpy(zero_copy_only=False, writable=True)
        got = primitive(arr)
        assert got.dtype == as_is.dtype and got.tobytes() == as_is.tobytes()
    arr = chunked(texts_, pa.string(), cuts)
    got, want = texts(arr, few), reference_texts(arr.combine_chunks(), few)
    assert got is not None and got.tolist() == want.tolist()
    empty = pa.chunked_array([], pa.float64())  # no chunks at all
    assert numbers(empty).shape == (0,) and primitive(empty).shape == (0,)
