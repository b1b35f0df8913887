"""Turning a batch of Kafka records of one topic into columnar arrays, per model.

Good records become :class:`~watchkeeper.detectors.column_batch.ColumnBatch` objects (numpy
arrays per feature). A batch is first offered to the columnar path
(:mod:`~watchkeeper.daemon.ingest.columnar_decode`, Arrow's JSON reader), which decodes
it whole when it can do so exactly; otherwise it is decoded here record by record. Bad
records become
:class:`~watchkeeper.daemon.store.quarantine.Quarantined` entries with a reason, and never
an exception. The reasons:

=================  ===============================================================
``empty``          the record has no value (a tombstone)
``oversized``      larger than ``ingest.max_record_bytes``
``not_json``       the value does not parse as JSON
``not_object``     it parses, but not to a JSON object
``missing_field``  a field the topic's role requires is absent or null
``wrong_type``     a field has the wrong JSON type (a string where a number belongs…)
``not_finite``     NaN or ±inf where a finite number is required (timestamp, latency)
``bad_timestamp``  a timestamp string that is not ISO-8601
``ts_in_future``   stamped further ahead of the clock than ``ingest.max_future_skew``
``value_too_long`` a category value (feature, prediction, label) longer than
                   ``ingest.max_name_chars``
(and the bounds of :mod:`~watchkeeper.daemon.ingest.admission`: ``too_many_models``,
``too_many_versions``, ``name_too_long``, ``empty_name``, ``reserved_name``)
``internal_error`` watchkeeper itself failed on the batch (a bug: logged with its
                   traceback); the batch is set aside so a restart cannot loop on it
=================  ===============================================================

NaN in a *feature* or *prediction* is not a bad record: it is data about the model, and
the NaN-rate checks count it.
"""

from __future__ import annotations

import functools
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from watchkeeper.daemon.config import IngestConfig
from watchkeeper.daemon.config_kafka import REQUIRED_FIELDS, Role, TopicConfig
from watchkeeper.daemon.ingest.admission import REASONS as ADMISSION_REASONS
from watchkeeper.daemon.ingest.admission import Admission
from watchkeeper.daemon.ingest.columnar_decode import ColumnarDecoder
from watchkeeper.daemon.ingest.columns import ColumnBuilder
from watchkeeper.daemon.ingest.decoded import DecodeResult, Prepared, RecordLike
from watchkeeper.daemon.ingest.fields import (
    MISSING,
    BadRows,
    columns_of,
    numeric_block,
    numeric_column,
    object_array,
    string_column,
    timestamps_ms,
    transpose,
    type_name,
)
from watchkeeper.daemon.ingest.kinds import KindRegistry
from watchkeeper.daemon.ingest.records import parse_all, quarantine_entry
from watchkeeper.daemon.store.quarantine import Quarantined
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.reserved_names import LABEL, PREDICTION
from watchkeeper.detectors.reservoir import record_keys

log = logging.getLogger(__name__)

REASONS = (
    "internal_error",
    "empty",
    "oversized",
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "not_finite",
    "bad_timestamp",
    "ts_in_future",
    "value_too_long",
    *ADMISSION_REASONS,
)


@dataclass(frozen=True)
class _Rows:
    """One decoded batch's columns and per-row arrays, for every model in it."""

    cols: dict[str, list[Any]]
    ts: Any
    versions: Any
    request_ids: Any
    latency: Any
    keys: Any
    offsets: Any


class Decoder:
    """Decodes records of one topic (one role); see the module docstring."""

    def __init__(
        self,
        topic: str,
        role: Role,
        config: TopicConfig,
        ingest: IngestConfig,
        kinds: KindRegistry,
        admission: Admission | None = None,
    ) -> None:
        self.topic = topic
        self.role = role
        self.config = config
        self.ingest = ingest
        self.kinds = kinds
        self.admission = admission or Admission(
            ingest.max_models, ingest.max_versions, ingest.max_name_chars
        )
        self.columns = ColumnBuilder(kinds, ingest.max_name_chars)
        self._topic_hash = zlib.crc32(topic.encode())
        self._required = set(REQUIRED_FIELDS[role])
        f = config.fields
        self._paths = {
            name: path
            for name in (
                "model",
                "model_version",
                "request_id",
                "ts",
                "features",
                "prediction",
                "prediction_class",
                "latency_ms",
                "label",
            )
            if (path := getattr(f, name)) is not None
        }
        if role != "predictions":
            for name in ("prediction", "prediction_class", "latency_ms"):
                self._paths.pop(name, None)
        if role != "labels":
            self._paths.pop("label", None)
        if role == "labels":
            self._paths.pop("features", None)
        self.columnar: ColumnarDecoder | None = ColumnarDecoder(
            topic, role, config, ingest, kinds, self.admission, self._paths, self._required
        )

    def prepare(self, records: Sequence[RecordLike]) -> Prepared | None:
        """The parse stage of :meth:`decode`, safe on another thread (None: none to run
        ahead); hand its result to :meth:`decode` of the same records."""
        if self.columnar is None:
            return None
        return self.columnar.prepare(records)

    def decode(
        self,
        partition: int,
        records: Sequence[RecordLike],
        now_ms: int,
        prepared: Prepared | None = None,
    ) -> DecodeResult:
        """Decode one partition's records (in offset order); never raises."""
        try:
            return self._decode(partition, records, now_ms, prepared)
        except Exception as exc:
            log.exception(
                "decoding %d records of %s[%d] failed", len(records), self.topic, partition
            )
            detail = f"{type(exc).__name__}: {exc}"[:200]
            result = DecodeResult()
            result.quarantined = [
                self._entry(partition, r, "internal_error", detail) for r in records
            ]
            return result

    def _decode(
        self,
        partition: int,
        records: Sequence[RecordLike],
        now_ms: int,
        prepared: Prepared | None = None,
    ) -> DecodeResult:
        if self.columnar is not None:
            fast = self.columnar.decode(partition, records, now_ms, prepared)
            if fast is not None:
                return fast
        return self.decode_per_record(partition, records, now_ms)

    def decode_per_record(
        self, partition: int, records: Sequence[RecordLike], now_ms: int
    ) -> DecodeResult:
        """The per-record path: every batch the columnar one declines (module docstring)."""
        result = DecodeResult()
        objs, offsets, stamps, kept = parse_all(
            records,
            self.ingest.max_record_bytes,
            result.quarantined,
            functools.partial(self._entry, partition),
        )
        if not objs:
            return result
        bad: BadRows = {}
        cols = columns_of(objs, self._paths)
        n = len(objs)
        models = self._models(cols, n, bad)
        versions = object_array([""] * n)
        if "model_version" in cols:
            given = string_column(cols["model_version"], "model_version", bad, False)
            known = given != None  # noqa: E711 (elementwise on an object array)
            versions[known] = given[known]
        request_ids = (
            string_column(cols["request_id"], "request_id", bad, "request_id" in self._required)
            if "request_id" in cols
            else None
        )
        self.admission.check(models, versions, request_ids, bad)
        if "ts" in cols:
            ts = timestamps_ms(cols["ts"], self.config.ts_unit, "ts", bad)
        else:
            ts = np.asarray(stamps, dtype=np.int64)
        future = np.flatnonzero(ts > now_ms + int(self.ingest.max_future_skew * 1000))
        for i in future.tolist():
            bad.setdefault(i, ("ts_in_future", f"ts is {(ts[i] - now_ms) / 1000:.0f}s ahead"))
        latency = self._latency(cols.get("latency_ms"), bad)
        for name in ("features", "prediction", "label"):
            if name in self._required and name in cols:
                for i, v in enumerate(cols[name]):
                    if v is MISSING or v is None:
                        bad.setdefault(i, ("missing_field", f"{name} is required"))
        feats = cols.get("features")
        if feats is not None:
            for i, v in enumerate(feats):
                if type(v) is not dict:
                    if v is not MISSING and v is not None:
                        bad.setdefault(
                            i, ("wrong_type", f"features: expected an object, got {type_name(v)}")
                        )
                    feats[i] = {}
        offs = np.asarray(offsets, dtype=np.int64)
        keys = record_keys(self._topic_hash, partition, offs)
        for model in sorted({m for m in models.tolist() if m is not None}):
            idx = np.flatnonzero(models == model)
            idx = idx[[i not in bad for i in idx.tolist()]] if bad else idx
            rows = _Rows(cols, ts, versions, request_ids, latency, keys, offs)
            batch = self._model_batch(model, idx, rows, bad, result)
            if batch is not None:
                result.batches.append(batch)
        for i, (reason, detail) in sorted(bad.items()):
            rec = records[kept[i]]
            result.quarantined.append(self._entry(partition, rec, reason, detail))
        return result

    # -- stages -------------------------------------------------------------------------
    def _models(self, cols: dict[str, list[Any]], n: int, bad: BadRows) -> Any:
        if self.config.model is not None:
            return object_array([self.config.model] * n)
        return string_column(cols["model"], "model", bad, True)

    def _latency(self, values: list[Any] | None, bad: BadRows) -> Any:
        if values is None:
            return None
        types = set(map(type, values))
        out = numeric_column(values, types, "latency_ms", bad)
        present = (
            np.ones(out.size, dtype=bool)
            if not types & {type(None), type(MISSING)}
            else (np.fromiter((v is not None and v is not MISSING for v in values), bool, out.size))
        )
        invalid = present & ~(np.isfinite(out) & (out >= 0))
        for i in np.flatnonzero(invalid).tolist():
            if i not in bad:
                bad[i] = ("not_finite", f"latency_ms must be a finite number ≥ 0, got {values[i]}")
        return out

    def _model_batch(
        self, model: str, idx: Any, batch: _Rows, bad: BadRows, result: DecodeResult
    ) -> ColumnBatch | None:
        """The batch of ``model``'s good rows (positions ``idx`` in ``batch``)."""
        if idx.size == 0:
            return None
        rows = idx.tolist()
        local_bad: BadRows = {}
        feats = batch.cols.get("features")
        features = (
            self._features(model, [feats[i] for i in rows], local_bad, result)
            if feats is not None
            else {}
        )
        prediction, prediction_class, label, scores = self._outputs(
            model, batch.cols, rows, local_bad
        )
        keep = np.ones(len(rows), dtype=bool)
        for j, entry in local_bad.items():
            bad.setdefault(rows[j], entry)
            keep[j] = False
        if not keep.any():
            return None
        sel = idx[keep]

        def take(c: Column | None) -> Column | None:
            if c is None or keep.all():
                return c
            return Column(c.kind, c.values[keep], c.null[keep], c.missing[keep])

        return ColumnBatch(
            model=model,
            role=self.role,
            ts_ms=batch.ts[sel],
            versions=batch.versions[sel],
            keys=batch.keys[sel],
            offsets=batch.offsets[sel],
            request_ids=None if batch.request_ids is None else batch.request_ids[sel],
            features={n: c for n, c in ((n, take(c)) for n, c in features.items()) if c},
            prediction=take(prediction),
            prediction_class=take(prediction_class),
            label=take(label),
            latency_ms=None if batch.latency is None else batch.latency[sel],
            class_scores=None if scores is None else scores[keep],
        )

    def _features(
        self, model: str, sub: list[Any], local_bad: BadRows, result: DecodeResult
    ) -> dict[str, Column]:
        """The feature columns of one model's rows (``sub``: their feature objects)."""
        features: dict[str, Column] = {}
        names = sorted(set().union(*sub))
        wrong = self.admission.bad_feature_names(names)
        if wrong:  # one pass over the records, whatever the number of wrong names
            for j, d in enumerate(sub):
                if not wrong.keys().isdisjoint(d):
                    local_bad.setdefault(j, wrong[next(n for n in d if n in wrong)])
            names = [n for n in names if n not in wrong]
        admitted = self.kinds.admit(model, names)
        if len(admitted) < len(names):
            # counted in one pass over the records (linear, whatever the names)
            ignored = set(names).difference(admitted)
            result.ignored_features += sum(map(len, map(ignored.intersection, sub)))
        numeric = [n for n in admitted if self.kinds.kind(model, n) == "numeric"]
        block = numeric_block(sub, numeric)
        if block is not None:
            present = np.zeros(len(sub), dtype=bool)
            for j, name in enumerate(numeric):
                features[name] = Column("numeric", block[:, j], present, present)
            admitted = [n for n in admitted if n not in features]
        for name, values in zip(admitted, transpose(sub, admitted), strict=True):
            column = self.columns.build(
                model, name, values, f"features.{name}", local_bad, allow_proba=False
            )
            if isinstance(column, Column):
                features[name] = column
        return features

    def _outputs(
        self, model: str, cols: dict[str, list[Any]], rows: list[int], local_bad: BadRows
    ) -> tuple[Column | None, Column | None, Column | None, Any]:
        """The prediction, its class, the label of one model's rows, and the probability
        matrix when the prediction is a vector (None otherwise)."""
        prediction = prediction_class = label = scores = None
        if "prediction" in cols:
            values = [cols["prediction"][i] for i in rows]
            column = self.columns.build(model, PREDICTION, values, "prediction", local_bad, True)
            if isinstance(column, tuple):  # a probability vector: score, class, matrix
                prediction, prediction_class, scores = column
            else:
                prediction = column
        if "prediction_class" in cols:  # the model's own decision wins over an argmax
            values = [cols["prediction_class"][i] for i in rows]
            prediction_class = self.columns.classes(values, "prediction_class", local_bad)
        if "label" in cols:
            column = self.columns.build(
                model, LABEL, [cols["label"][i] for i in rows], "label", local_bad, False
            )
            label = column if not isinstance(column, tuple) else None
        return prediction, prediction_class, label, scores

    def _entry(self, partition: int, rec: RecordLike, reason: str, detail: str) -> Quarantined:
        return quarantine_entry(
            self.topic, partition, self.ingest.quarantine_prefix_bytes, rec, reason, detail
        )
