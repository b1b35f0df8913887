"""The columnar fast path: a whole batch of one topic parsed by pyarrow's JSON reader.

The batch's values are joined with newlines and read by Arrow's C++ JSON reader
(RapidJSON underneath) into one Arrow table, one column per field; the field mapping is
applied on those columns (a dotted path walks into struct columns), and numbers reach
numpy without a Python object per value. On 20 numeric features this reads about twice
as fast as ``orjson.loads`` per record followed by the per-record column code (figures
in the README's benchmark section).

The path only answers for a batch it can decode *exactly* as the per-record path of
:mod:`~watchkeeper.daemon.ingest.decode` would. Whenever the batch may hold a bad record
or a shape Arrow cannot represent faithfully, :meth:`ColumnarDecoder.decode` returns
``None`` and the caller decodes record by record, so every quarantine reason and detail
stays exact. ``None`` is returned when:

* a value is empty, oversized, holds a newline, or the batch is not valid UTF-8;
* Arrow refuses the batch (not JSON, not an object, a key twice, a field changing type
  between records, a number beyond float64…) or reads a different number of rows;
* a field in use is null or absent in some records (Arrow cannot tell null from absent;
  the per-record path keeps both masks), or has a type the per-record path would treat
  differently (booleans, nested values, strings Arrow read as timestamps);
* a column's type disagrees with the kind the registry holds for it;
* any bound or check would mark a row bad (admission, timestamps, latency, category
  length, feature names).

Those checks run before the path teaches the kind registry anything, so a fallback
leaves no state behind that the per-record path would not also leave.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from watchkeeper.daemon.config import IngestConfig
from watchkeeper.daemon.config_kafka import Role, TopicConfig
from watchkeeper.daemon.ingest.admission import Admission
from watchkeeper.daemon.ingest.arrow_arrays import numbers, texts
from watchkeeper.daemon.ingest.columns import proba_columns
from watchkeeper.daemon.ingest.decoded import (
    DecodeResult,
    Prepared,
    RecordLike,
    offsets_of,
    timestamps_of,
    values_of,
)
from watchkeeper.daemon.ingest.fields import BadRows, epoch_ms, object_array, timestamps_ms
from watchkeeper.daemon.ingest.kinds import KindRegistry
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.performance import class_names
from watchkeeper.detectors.reserved_names import LABEL, PREDICTION
from watchkeeper.detectors.reservoir import record_keys
from watchkeeper.errors import WatchkeeperError

_ARROW_ERRORS = (pa.ArrowException, UnicodeDecodeError, ValueError, TypeError, OverflowError)


_MISSES = 4
_RETRY = 32


class _FallbackError(WatchkeeperError):
    """The batch needs the per-record path (never leaves this module; not retriable: the
    same batch would hand over again)."""


def _is_number(t: pa.DataType) -> bool:
    return bool(pa.types.is_int64(t) or pa.types.is_float64(t))


def _numbers(arr: pa.Array) -> Any:
    return numbers(arr)  # arrow_arrays.py: not through pyarrow's pandas bridge


def _texts(arr: pa.Array, few: bool = False) -> Any:
    """An object array of the column's strings (:func:`~.arrow_arrays.texts`)."""
    out = texts(arr, few)
    if out is None:
        raise _FallbackError
    return out


class ColumnarDecoder:
    """Decodes whole batches of one topic through Arrow; see the module docstring."""

    def __init__(
        self,
        topic: str,
        role: Role,
        config: TopicConfig,
        ingest: IngestConfig,
        kinds: KindRegistry,
        admission: Admission,
        paths: dict[str, str],
        required: set[str],
    ) -> None:
        self.topic = topic
        self.role = role
        self.config = config
        self.ingest = ingest
        self.kinds = kinds
        self.admission = admission
        self._paths = paths
        self._required = required
        self._topic_hash = zlib.crc32(topic.encode())  # the record keys decode.py gives
        # Arrow turns ISO-8601 strings into timestamps by itself; once a batch shows text
        # timestamps, the ts column is read as text (and parsed as the per-record path does)
        self._ts_text = False
        self.fallbacks = 0
        """Batches handed to the per-record path (a gauge of how often the fast path misses)."""
        self.skipped = 0
        """Batches sent straight to the per-record path, without an Arrow attempt."""
        self._misses = 0  # hand-overs in a row
        self._skip = 0  # batches left to send straight on

    # -- reading ------------------------------------------------------------------------
    def _read(self, values: list[bytes]) -> pa.Table:
        joined = b"\n".join(values)
        if joined.count(b"\n") != len(values) - 1:
            raise _FallbackError  # a value holding a newline: rows would not line up
        if not joined.isascii():
            joined.decode("utf-8")  # Arrow does not validate text it does not convert
        schema = None
        ts_path = self._paths.get("ts")
        if self._ts_text and ts_path is not None:
            field: pa.Field = pa.field(ts_path.split(".")[-1], pa.string())
            for part in reversed(ts_path.split(".")[:-1]):
                field = pa.field(part, pa.struct([field]))
            schema = pa.schema([field])
        table = pj.read_json(
            # an Arrow buffer over the bytes, not io.BytesIO: Arrow reads a Python file
            # object through Python calls, each taking the GIL back inside the parse, and
            # the loop's thread holds it for up to the switch interval (5 ms) each time:
            # 2,000 events parsed beside a Python-busy thread took 11.7 µs an event from
            # BytesIO, 6.3 from this buffer (2.5 alone; README Performance)
            pa.BufferReader(joined),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(joined) + 1),
            parse_options=pj.ParseOptions(explicit_schema=schema),
            # malloc, not Arrow's default mimalloc pool: that one keeps the pages of freed
            # batches, ~20 MB of peak RSS on the 1 M-event benchmark (README Performance)
            memory_pool=pa.system_memory_pool(),
        )
        if table.num_rows != len(values):
            raise _FallbackError
        return table

    def _column(self, table: pa.Table, name: str) -> pa.Array | None:
        """The column at field ``name``'s path: None when absent from every record."""
        parts = self._paths[name].split(".")
        if parts[0] not in table.column_names:
            return None
        chunked = table.column(parts[0])
        # one block, one chunk (_read): taken as it is, where combining copies it (the
        # features' struct of 20 columns) and, under the loop's GIL contention, measured
        # ~130 µs a column in the profile of the 1,000,000-event confluent phase
        arr = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
        for part in parts[1:]:
            if arr.null_count or not pa.types.is_struct(arr.type):
                raise _FallbackError
            if arr.type.get_field_index(part) < 0:
                return None
            arr = arr.field(part)
        if arr.null_count:
            raise _FallbackError  # null or absent in some records: the per-record path tells which
        return arr

    # -- decoding -----------------------------------------------------------------------
    def prepare(self, records: Sequence[RecordLike]) -> Prepared:
        """The first stage of :meth:`decode`, Arrow's parse of the batch: it touches no
        state but the text-timestamp flag it reads (kept with the result), and Arrow
        releases the GIL while it parses, so the loop runs it on a worker for the next
        slice while this one is summarised (:mod:`~watchkeeper.daemon.ingest.prefetch`)."""
        ts_text = self._ts_text
        try:
            return Prepared(self._parse(values_of(records)), ts_text)
        except (_FallbackError, *_ARROW_ERRORS):
            return Prepared(None, ts_text, attempted=True)

    def _parse(self, values: list[bytes | None]) -> pa.Table | None:
        """The batch as an Arrow table; None: the per-record path decides (no attempt)."""
        # Arrow reads a whitespace-only line as no row and two objects on one line as two
        # rows, so one of each would still add up to len(values) with the rows misplaced;
        # both are "not JSON" to the per-record path, which says so record by record
        if not values or not all(values) or any(map(bytes.isspace, values)):  # type: ignore[arg-type]
            return None
        if max(map(len, values)) > self.ingest.max_record_bytes:  # type: ignore[arg-type]
            return None
        return self._read(values)  # type: ignore[arg-type]

    def decode(
        self,
        partition: int,
        records: Sequence[RecordLike],
        now_ms: int,
        prepared: Prepared | None = None,
    ) -> DecodeResult | None:
        """The batch decoded, or None when it must go record by record.

        A topic whose batches keep missing (several models with different features, nulls
        for missing values) would pay an Arrow attempt before every per-record decode:
        after ``_MISSES`` hand-overs in a row, only every ``_RETRY``-th batch is tried.
        Skipping is always exact (the per-record path is the reference)."""
        if self._skip:
            self._skip -= 1
            self.skipped += 1
            return None
        if prepared is not None and prepared.ts_text != self._ts_text:
            prepared = None  # parsed before a batch switched timestamps to text: again
        result = self._attempt(partition, records, now_ms, prepared)
        self._misses = 0 if result is not None else self._misses + 1
        if self._misses >= _MISSES:
            self._skip = _RETRY - 1
        return result

    def _attempt(
        self,
        partition: int,
        records: Sequence[RecordLike],
        now_ms: int,
        prepared: Prepared | None = None,
    ) -> DecodeResult | None:
        if prepared is None:
            prepared = self.prepare(records)
        table = prepared.table
        if table is None:
            if prepared.attempted:
                self.fallbacks += 1
            return None
        try:
            cols = {name: self._column(table, name) for name in self._paths}
            return self._decode(partition, records, now_ms, cols)
        except _FallbackError:
            pass
        except _ARROW_ERRORS:
            pass
        self.fallbacks += 1
        return None

    def _decode(
        self,
        partition: int,
        records: Sequence[RecordLike],
        now_ms: int,
        cols: dict[str, pa.Array | None],
    ) -> DecodeResult:
        n = len(records)
        for name in ("request_id", "features", "prediction", "label"):
            if name in self._required and name in self._paths and cols.get(name) is None:
                raise _FallbackError  # required and absent from every record
        if self.config.model is not None:
            models = object_array([self.config.model] * n)
        else:
            models = _texts(_present(cols["model"]), few=True)
        versions = _texts(col, few=True) if (col := cols.get("model_version")) is not None else None
        versions = object_array([""] * n) if versions is None else versions
        request_ids = None
        if "request_id" in self._paths:
            col = cols["request_id"]
            request_ids = _texts(col) if col is not None else object_array([None] * n)
        ts = self._timestamps(cols.get("ts"), records)
        if (ts > now_ms + int(self.ingest.max_future_skew * 1000)).any():
            raise _FallbackError
        latency = None
        if "latency_ms" in self._paths:
            col = cols["latency_ms"]
            latency = np.full(n, np.nan) if col is None else _numbers(_number(col))
            if col is not None and not (np.isfinite(latency) & (latency >= 0)).all():
                raise _FallbackError
        feats = _features_struct(cols.get("features"))
        outputs = {
            key: col for key in ("prediction", "label") if (col := cols.get(key)) is not None
        }
        bad: BadRows = {}
        # the admission bounds on the batch's distinct (model, version) pairs, and the
        # request ids' length on the Arrow column: what the rows would be marked for is
        # then known without a set of 2,000 Python strings and pairs per slice (a row
        # marked means the per-record path anyway); what admission learns is the same,
        # as it learns from the distinct values
        self.admission.check(*_distinct(models, versions), None, bad)
        if bad or _longest(cols.get("request_id")) > self.admission.max_name_chars:
            raise _FallbackError
        names = sorted(feats)
        if self.admission.bad_feature_names(names):
            raise _FallbackError
        distinct = sorted(set(models.tolist()))
        # every check that could mark a row bad runs before the registry learns anything
        plans = {model: self._plan(model, names, feats, outputs) for model in distinct}
        offs = np.asarray(offsets_of(records), dtype=np.int64)
        keys = record_keys(self._topic_hash, partition, offs)
        result = DecodeResult()
        for model in distinct:
            idx = np.arange(n) if len(distinct) == 1 else np.flatnonzero(models == model)
            features, prediction, prediction_class, label, scores, ignored = self._build(
                model, plans[model], cols, idx
            )
            result.ignored_features += ignored * idx.size
            result.batches.append(
                ColumnBatch(
                    model=model,
                    role=self.role,
                    ts_ms=ts[idx],
                    versions=versions[idx],
                    keys=keys[idx],
                    offsets=offs[idx],
                    request_ids=None if request_ids is None else request_ids[idx],
                    features=features,
                    prediction=prediction,
                    prediction_class=prediction_class,
                    label=label,
                    latency_ms=None if latency is None else latency[idx],
                    class_scores=scores,
                )
            )
        return result

    def _timestamps(self, col: pa.Array | None, records: Sequence[RecordLike]) -> Any:
        if "ts" not in self._paths:
            return np.asarray(timestamps_of(records), dtype=np.int64)
        if col is None:
            raise _FallbackError
        if pa.types.is_timestamp(col.type):
            self._ts_text = True  # Arrow parsed text timestamps: read them as text from now on
            raise _FallbackError
        if _is_number(col.type):
            ms, finite, in_range = epoch_ms(_numbers(col), self.config.ts_unit)
            if not (finite & in_range).all():
                raise _FallbackError
            return ms
        if not pa.types.is_string(col.type):
            raise _FallbackError
        bad: BadRows = {}
        ms = timestamps_ms(_texts(col), self.config.ts_unit, "ts", bad)
        if bad:
            raise _FallbackError
        return ms

    def _plan(
        self,
        model: str,
        names: list[str],
        feats: dict[str, pa.Array],
        outputs: dict[str, pa.Array],
    ) -> dict[str, str]:
        """Kind per column of ``model`` (features admitted, then the prediction / label),
        checked against the registry without changing it."""
        plan: dict[str, str] = {}
        for name in self.kinds.admit(model, names):
            plan[name] = self._kind(model, name, feats[name], allow_proba=False)
        if "prediction" in outputs:
            plan[PREDICTION] = self._kind(model, PREDICTION, outputs["prediction"], True)
        if "label" in outputs:
            plan[LABEL] = self._kind(model, LABEL, outputs["label"], False)
        return plan

    def _kind(self, model: str, name: str, arr: pa.Array, allow_proba: bool) -> str:
        t = arr.type
        if _is_number(t):
            kind = "numeric"
        elif pa.types.is_string(t):
            kind = "categorical"
            if len(arr) and pc.max(pc.utf8_length(arr)).as_py() > self.ingest.max_name_chars:
                raise _FallbackError  # value_too_long
        elif allow_proba and pa.types.is_list(t) and _is_number(t.value_type):
            kind = "proba"
            widths = pc.min_max(pc.list_value_length(arr)).as_py()
            if arr.flatten().null_count or widths["min"] != widths["max"] or not widths["min"]:
                raise _FallbackError  # ragged, empty or with nulls: the per-record path says which
        else:
            raise _FallbackError
        known = self.kinds.kind(model, name)
        if known is not None and known != kind:
            raise _FallbackError  # the per-record path reports the records of the other type
        return kind

    def _build(
        self, model: str, plan: dict[str, str], cols: dict[str, pa.Array | None], idx: Any
    ) -> tuple[dict[str, Column], Column | None, Column | None, Column | None, Any, int]:
        n = idx.size
        none = np.zeros(n, dtype=bool)
        feats = _features_struct(cols.get("features"))
        features: dict[str, Column] = {}
        prediction = prediction_class = label = scores = None
        for name, kind in plan.items():
            self.kinds.learn(model, name, kind)
            arr = feats[name] if name in feats and name not in (PREDICTION, LABEL) else None
            if name == PREDICTION:
                arr = cols["prediction"]
            elif name == LABEL:
                arr = cols["label"]
            assert arr is not None
            if kind == "proba":
                width = pc.list_value_length(arr)[0].as_py()
                rows = _numbers(arr.flatten()).reshape(len(arr), width)[idx]
                prediction, prediction_class, scores = proba_columns(rows, none, none)
                continue
            values = _numbers(arr) if kind == "numeric" else _texts(arr)
            column = Column(kind, values[idx] if n != len(arr) else values, none, none)  # type: ignore[arg-type]
            if name == PREDICTION:
                prediction = column
            elif name == LABEL:
                label = column
            else:
                features[name] = column
        if "prediction_class" in self._paths:
            prediction_class = self._classes(cols.get("prediction_class"), idx)
        ignored = len(feats) - sum(1 for name in plan if name not in (PREDICTION, LABEL))
        return features, prediction, prediction_class, label, scores, ignored

    @staticmethod
    def _classes(arr: pa.Array | None, idx: Any) -> Column:
        n = idx.size
        none = np.zeros(n, dtype=bool)
        if arr is None:
            return Column("categorical", object_array([None] * n), none, np.ones(n, dtype=bool))
        if pa.types.is_string(arr.type):
            values = object_array(arr.to_pylist())[idx]
        elif _is_number(arr.type) or pa.types.is_boolean(arr.type):
            values = object_array(class_names(object_array(arr.to_pylist())[idx]))
        else:
            raise _FallbackError
        return Column("categorical", values, none, none)


def _distinct(models: Any, versions: Any) -> tuple[Any, Any]:
    """The rows' (model, version) pairs, as one row of each when every row has the first
    row's (the common batch); else all the rows."""
    if models.size and _all_same(models) and _all_same(versions):
        return models[:1], versions[:1]
    return models, versions


def _all_same(values: Any) -> bool:
    first = values[0]
    return isinstance(first, str) and bool((values == first).all())


def _longest(arr: pa.Array | None) -> int:
    """The longest value of a text (or integer) column, in characters (0: none)."""
    if arr is None or not len(arr):
        return 0
    if pa.types.is_int64(arr.type):  # an identifier logged as a number: its decimal text
        arr = arr.cast(pa.string())
    if not pa.types.is_string(arr.type):
        raise _FallbackError
    longest = pc.max(pc.utf8_length(arr)).as_py()
    return int(longest or 0)


def _present(arr: pa.Array | None) -> pa.Array:
    if arr is None:
        raise _FallbackError
    return arr


def _number(arr: pa.Array) -> pa.Array:
    if not _is_number(arr.type):
        raise _FallbackError
    return arr


def _features_struct(arr: pa.Array | None) -> dict[str, pa.Array]:
    """The feature columns by name ({} when no record has features)."""
    if arr is None:
        return {}
    if not pa.types.is_struct(arr.type):
        raise _FallbackError
    out = {arr.type.field(i).name: arr.field(i) for i in range(arr.type.num_fields)}
    if any(child.null_count for child in out.values()):
        raise _FallbackError  # a feature null or absent in some records
    return out
