"""Joining delayed labels to the predictions they grade.

Labels arrive on their own topic, keyed by ``request_id``, minutes to days after the
prediction. Predictions waiting for their label are kept in the store
(``pending_predictions``), not in memory, so memory stays bounded and a restart loses no
join; labels that arrive before their prediction wait in ``pending_labels``. Both are
written, matched and deleted inside the same transaction that commits the window state
and the consumer offsets, so a crash can neither lose a pair nor count it twice.

A matched pair is graded into the performance sketch of the *prediction's* window
(:mod:`~watchkeeper.daemon.store.label_grading`): a window's accuracy keeps improving in
completeness as its labels arrive. When the model's windows split into segments
(docs/segments.md), each waiting prediction keeps its segment labels (``segments``: per
segment feature, the label of its value as the window labels it — bounded, ``(other)``
outside a fixed value set or for a null), and the pair is graded into each of those
segments' children too.

A label joins its prediction only within ``ingest.label_ttl`` of it in event time (either
way); one further off expires both, so which pairs join never depends on when the
expiry below happened to run. Expiry runs on the clock of the stream that would bring
the missing partner: a waiting
prediction expires once the model's *labels* stream has progressed ``ingest.label_ttl``
past it in event time (the minimum over the labels topic's partitions,
:func:`~watchkeeper.daemon.eventtime.watermarks.expiry_watermark`), and a waiting label once the
predictions stream has. A labels stream that is behind — a backfill of predictions read
before their labels, a labels consumer catching up — expires nothing. Two caps keep the
store bounded whatever the streams do: a row that has waited ``ingest.label_max_wait`` by
the wall clock expires, and at most ``ingest.max_pending`` rows wait per model (oldest
first). Every join and every expiry is counted per model (``join_counts``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection, delete, func, select
from watchkeeper.daemon.eventtime.watermarks import PartitionClock, PartitionKey, expiry_watermark
from watchkeeper.daemon.eventtime.windows import Delta, WindowKey
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store.label_grading import grade_pairs
from watchkeeper.daemon.store.upsert import insert_new
from watchkeeper.detectors.column_batch import ColumnBatch
from watchkeeper.detectors.performance import class_names
from watchkeeper.detectors.segments import OTHER, SegmentPlan, segment_labels
from watchkeeper.detectors.window import WindowSummary

_CHUNK = 5_000  # request ids per statement (SQLite allows 32,766 parameters)
# A label late in its own stream (past allowed_lateness) is not in its labels window, but
# its pair belongs to the *prediction's* window, which a waiting prediction proves is still
# open to labels: checks on labels wait for the labels watermark to pass a window's end +
# allowed_lateness + label_ttl, and the prediction would have expired by then. So it joins
# the prediction waiting for it (rather than leave it waiting label_ttl for nothing); with
# no prediction waiting it is dropped and counted, never stored to wait.
_LATE = "late"


@dataclass(frozen=True)
class JoinSettings:
    ttl_ms: int = 7 * 86_400_000
    max_pending: int = 1_000_000
    threshold: float = 0.5
    """Decision threshold turning a binary score into a predicted class."""
    max_wait_ms: int = 30 * 86_400_000
    """Wall-clock cap on how long a row waits for its partner."""


@dataclass
class JoinOutcome:
    """What one commit's join did, per model (for the metrics and the log)."""

    joined: Counter[str] = field(default_factory=Counter)
    expired: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(model, side) → rows expired; side is ``prediction`` or ``label``."""
    reasons: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(model, side, reason) → rows; reason ``ttl``, ``max_wait``, ``max_pending``, or
    ``apart``: a pair more than ``ttl`` apart, neither joined."""
    late_joined: Counter[str] = field(default_factory=Counter)
    """model → late labels joined to the prediction waiting for them (in ``joined`` too)."""
    late_unmatched: Counter[str] = field(default_factory=Counter)
    """model → late labels no prediction waited for: dropped, never stored."""
    in_buffer: Counter[str] = field(default_factory=Counter)
    """model → pairs whose prediction and label were both in this commit's buffer (joined
    in memory, neither stored; in ``joined`` too unless more than ``ttl`` apart)."""


@dataclass
class JoinBuffer:
    """Predictions and labels seen since the last commit (rows ready for the store)."""

    predictions: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)
    plans: dict[str, SegmentPlan] = field(default_factory=dict)
    """Model → the segment plan its batches came with (the latest): how its pairs grade
    into segments (the value set; the hash fallback's K)."""

    def __bool__(self) -> bool:
        return bool(self.predictions or self.labels)

    def add(
        self,
        batch: ColumnBatch,
        window_size_ms: int,
        plan: SegmentPlan | None = None,
        late: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
    ) -> None:
        """The batch's rows with a request id; ``plan``: how the model's windows split
        into segments now (its predictions keep their segment labels); ``late``: which
        rows of a labels batch are late (they join a waiting prediction only)."""
        if plan:
            self.plans[batch.model] = plan
        if batch.request_ids is None:
            return
        # vectorised: a Python statement per row was most of this method (the profile of
        # the labels phase: 1.8 s of 200,000 predictions and their labels)
        has_id: np.ndarray[Any, np.dtype[np.bool_]] = np.not_equal(  # type: ignore[call-overload]
            batch.request_ids, None
        )
        if not has_id.any():
            return
        idx = np.flatnonzero(has_id)
        ids = batch.request_ids[idx].tolist()
        ts = batch.ts_ms[idx]
        times = ts.tolist()
        model = batch.model
        if batch.role == "predictions" and batch.prediction is not None:
            score = (
                _numbers(batch.prediction.values[idx])
                if batch.prediction.kind == "numeric"
                else [None] * idx.size
            )
            if batch.prediction_class is not None:
                predicted = _texts(batch.prediction_class.values[idx])
            elif batch.prediction.kind == "categorical":
                predicted = _texts(batch.prediction.values[idx])
            else:
                predicted = [None] * idx.size
            starts = (ts - ts % window_size_ms).tolist()
            versions = batch.versions[idx].tolist()
            segments = _segment_texts(batch, idx, plan)
            self.predictions += [
                {
                    "model": model,
                    "request_id": rid,
                    "model_version": version,
                    "window_start_ms": start,
                    "ts_ms": at,
                    "score": number,
                    "predicted": name,
                    "segments": labels,
                }
                for rid, version, start, at, number, name, labels in zip(
                    ids, versions, starts, times, score, predicted, segments, strict=True
                )
            ]
        elif batch.role == "labels" and batch.label is not None:
            absent = (batch.label.null | batch.label.missing)[idx]
            if absent.any():  # a row without a label is no label: the rows left only
                idx = idx[~absent]
                ids = batch.request_ids[idx].tolist()
                times = batch.ts_ms[idx].tolist()
            values = batch.label.values[idx]
            if batch.label.kind == "categorical":
                names = class_names(values)
                numbers: list[float | None] = [None] * idx.size
            else:
                names = _class_names_of_numbers(values)
                numbers = _numbers(values)
            rows = [
                {"model": model, "request_id": rid, "label": name, "value": number, "ts_ms": at}
                for rid, name, number, at in zip(ids, names, numbers, times, strict=True)
            ]
            if late is not None:
                for i in np.flatnonzero(late[idx]).tolist():
                    rows[i][_LATE] = True
            self.labels += rows


def _class_names_of_numbers(values: Any) -> list[str]:
    """:func:`class_names` of numeric labels, spelled once per distinct value (a labels
    topic holds a few classes): the same texts as spelling each value."""
    numbers = np.asarray(values, dtype=np.float64)
    if numbers.size == 0:
        return []
    distinct, inverse = np.unique(numbers, return_inverse=True)
    spelled = np.asarray(class_names(distinct.tolist()), dtype=object)
    out: list[str] = spelled[inverse.reshape(-1)].tolist()
    return out


def _segment_texts(
    batch: ColumnBatch, idx: np.ndarray[Any, Any], plan: SegmentPlan | None
) -> list[str | None]:
    """Per row of ``idx``, its segment labels as a JSON object (None without a plan).

    Labelled once per distinct value (:func:`segment_labels`, as the window's split does),
    mapped with numpy: a value outside a fixed value set, a null or an absent feature is
    ``(other)``; under the hash fallback the label itself is kept (the window decides at
    grading which K values have segments of their own). Bounded: at most
    ``MAX_SEGMENT_FEATURES`` labels of ``MAX_VALUE_CHARS`` characters."""
    if not plan:
        return [None] * idx.size
    names: list[str] = []
    vocab: list[np.ndarray[Any, Any]] = []  # per feature: its distinct labels, OTHER first
    matrix = np.zeros((idx.size, len(plan)), dtype=np.int64)  # a row's code per feature
    for j, spec in enumerate(plan):
        codes = matrix[:, j]  # 0: OTHER
        labels: list[str] = []
        column = batch.features.get(spec.feature)
        if column is not None:
            present = ~(column.null[idx] | column.missing[idx])
            labels, inverse = segment_labels(column.values[idx[present]], column.kind)
            if spec.values is not None:  # outside the fixed value set: OTHER
                kept = set(spec.values)
                lut = np.array([0] + [i + 1 if v in kept else 0 for i, v in enumerate(labels)])
            else:
                lut = np.arange(len(labels) + 1)
            if labels:
                codes[present] = lut[inverse + 1]
        names.append(spec.feature)
        vocab.append(np.asarray([OTHER, *labels], dtype=object))
    # one JSON text per distinct combination of labels, spread to the rows by index: the
    # combination as one integer (mixed radix) unless that could overflow int64
    radices = [len(words) for words in vocab]
    if math.prod(radices) < 2**62:
        combined = np.zeros(idx.size, dtype=np.int64)
        for j, radix in enumerate(radices):
            combined = combined * radix + matrix[:, j]
        flat, inverse = np.unique(combined, return_inverse=True)
        distinct = [_digits(code, radices) for code in flat.tolist()]
    else:
        rows, inverse = np.unique(matrix, axis=0, return_inverse=True)
        distinct = rows.tolist()
    texts = [
        orjson.dumps(
            {n: str(vocab[j][c]) for j, (n, c) in enumerate(zip(names, row, strict=True))}
        ).decode()
        for row in distinct
    ]
    out: list[str | None] = np.asarray(texts, dtype=object)[inverse.reshape(-1)].tolist()
    return out


def _digits(code: int, radices: list[int]) -> list[int]:
    """A mixed-radix number's digits, most significant first."""
    out = []
    for radix in reversed(radices):
        code, digit = divmod(code, radix)
        out.append(digit)
    return out[::-1]


def _numbers(values: Any) -> list[float | None]:
    """Floats, NaN as None."""
    numbers = np.asarray(values, dtype=np.float64)
    nan = np.isnan(numbers)
    if not nan.any():
        out: list[float | None] = numbers.tolist()
        return out
    held = numbers.astype(object)
    held[nan] = None
    return list(held.tolist())


def _texts(values: Any) -> list[str | None]:
    return [None if v is None else str(v) for v in values.tolist()]


def join_in_transaction(
    conn: Connection,
    buffer: JoinBuffer,
    delta: Delta,
    settings: JoinSettings,
    expire: bool = True,
    clocks: Mapping[PartitionKey, PartitionClock] | None = None,
) -> tuple[dict[WindowKey, WindowSummary], JoinOutcome]:
    """Store, match and grade the buffer's rows on ``conn``; expire old waiting rows.

    Returns window summaries holding only the performance of the pairs graded, keyed by
    their predictions' windows, for the caller to merge in the same transaction (new
    objects: a retried transaction grades afresh and counts nothing twice), and what was
    joined and expired.

    Rows are written in bulk (:func:`~watchkeeper.daemon.store.upsert.insert_new`), keeping
    a row already waiting under the same key. New predictions are stored first, so a
    label in the same buffer finds its prediction; labels left unmatched wait for theirs.
    ``clocks`` are the group's partitions (committed marks), the clocks expiry runs on.
    """
    outcome = JoinOutcome()
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    stamp = {"created_ms": delta.now_ms}
    # a prediction whose label is in the same buffer, or already waiting, joins it here
    # and is never stored: the same pair as storing it and taking it back (the first
    # prediction of a request id wins, as the insert keeps it; a stored one wins over
    # both), without the insert and the delete that were half of a labels commit
    fresh: dict[tuple[str, str], dict[str, Any]] = {}
    for row in buffer.predictions:
        fresh.setdefault((row["model"], row["request_id"]), row)
    matched: set[tuple[str, str]] = set()
    if buffer.labels:
        labels = {(lab["model"], lab["request_id"]): lab for lab in buffer.labels}
        found = _take(conn, t.pending_predictions, list(labels))
        waiting = []
        for key, label in labels.items():
            pred: dict[str, Any] | None = found.get(key)
            if key in fresh:  # joined here, or shadowed by the stored one as the insert was
                matched.add(key)
                if pred is None:
                    pred = fresh[key]
                    outcome.in_buffer[label["model"]] += 1
            if pred is None:
                if label.get(_LATE):
                    outcome.late_unmatched[label["model"]] += 1
                else:
                    waiting.append(label)
            else:
                pairs.append((pred, label))
        if waiting:
            insert_new(
                conn, t.pending_labels, [row | stamp for row in waiting], ["model", "request_id"]
            )
    unmatched = [key for key in fresh if key not in matched]
    if unmatched:
        # labels that arrived before their prediction: joined to it here, so it is never
        # stored either (a stored prediction of the same request id cannot exist beside a
        # waiting label: that label would have taken it when it came)
        early = _take(conn, t.pending_labels, unmatched)
        pairs += [(fresh[key], early[key]) for key in unmatched if key in early]
        rest = [fresh[key] | stamp for key in unmatched if key not in early]
        if rest:
            insert_new(conn, t.pending_predictions, rest, ["model", "request_id"])
    # a label more than label_ttl (event time) from its prediction does not join, whether
    # or not the expiry has run yet: which pairs join must not depend on when it ran
    timely = [(p, lab) for p, lab in pairs if abs(lab["ts_ms"] - p["ts_ms"]) <= settings.ttl_ms]
    for pred, _label in pairs:
        if abs(_label["ts_ms"] - pred["ts_ms"]) > settings.ttl_ms:
            for side in ("prediction", "label"):
                outcome.expired[(pred["model"], side)] += 1
                outcome.reasons[(pred["model"], side, "apart")] += 1
    for pred, label in timely:
        if label.get(_LATE):
            outcome.late_joined[pred["model"]] += 1
    graded: dict[WindowKey, WindowSummary] = {}
    outcome.joined = grade_pairs(graded, delta.size_ms, timely, settings.threshold, buffer.plans)
    if expire:
        _expire(conn, clocks or {}, settings, delta.now_ms, outcome)
    return graded, outcome


def _take(
    conn: Connection, table: Any, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The rows of ``table`` with these (model, request_id) keys, deleted as they are read.

    One ``DELETE … RETURNING`` per model and chunk of ids, sent as the driver's own SQL:
    building SQLAlchemy's expanding ``IN`` for thousands of ids cost more than the query
    (the profile of a labels commit). A model with no row waiting costs one index probe.
    """
    out: dict[tuple[str, str], dict[str, Any]] = {}
    by_model: dict[str, list[str]] = {}
    for model, rid in keys:
        by_model.setdefault(model, []).append(rid)
    names = [c.name for c in table.c]
    rid_at = names.index("request_id")
    returning = ", ".join(f'"{n}"' for n in names)  # our own column names, not input
    postgres = conn.dialect.name == "postgresql"
    for model, ids in by_model.items():
        waiting = conn.execute(select(table.c.model).where(table.c.model == model).limit(1))
        if waiting.first() is None:
            continue
        for lo in range(0, len(ids), _CHUNK):
            chunk = ids[lo : lo + _CHUNK]
            if postgres:  # one array parameter
                sql = (
                    f"DELETE FROM {table.name} WHERE model = %s AND request_id = ANY(%s) "
                    f"RETURNING {returning}"
                )
                params: tuple[Any, ...] = (model, chunk)
            else:
                marks = ",".join("?" * len(chunk))
                sql = (
                    f"DELETE FROM {table.name} WHERE model = ? AND request_id IN ({marks}) "
                    f"RETURNING {returning}"
                )
                params = (model, *chunk)
            # rows of this model: keyed by their request id's position, no lookup per row
            for row in conn.exec_driver_sql(sql, params).all():
                out[(model, row[rid_at])] = dict(zip(names, row, strict=True))
    return out


_SIDES = (
    ("prediction", t.pending_predictions, "labels"),
    ("label", t.pending_labels, "predictions"),
)
"""Each side's table, and the role whose stream brings its partner (and expires it)."""


def _expire(
    conn: Connection,
    clocks: Mapping[PartitionKey, PartitionClock],
    settings: JoinSettings,
    now_ms: int,
    outcome: JoinOutcome,
) -> None:
    """Drop waiting rows the partner's stream has passed by ``ttl``, those that waited
    ``max_wait`` by the wall clock, and those beyond the per-model bound; count them."""
    partitions = list(clocks.values())
    for side, table, partner in _SIDES:
        models = [m for (m,) in conn.execute(select(table.c.model).distinct()).all()]
        for model in models:
            mine = table.c.model == model

            def drop(
                where: Any, reason: str, side: str = side, model: str = model, table: Any = table
            ) -> None:
                mine = table.c.model == model
                n = int(conn.execute(delete(table).where(mine & where)).rowcount or 0)
                if n:
                    outcome.expired[(model, side)] += n
                    outcome.reasons[(model, side, reason)] += n

            clock = expiry_watermark(partitions, model, partner)
            if clock is not None:
                drop(table.c.ts_ms < clock - settings.ttl_ms, "ttl")
            if now_ms:
                drop(table.c.created_ms < now_ms - settings.max_wait_ms, "max_wait")
            count = conn.execute(select(func.count()).select_from(table).where(mine)).scalar()
            if (count or 0) > settings.max_pending:
                bound = conn.execute(
                    select(table.c.ts_ms)
                    .where(mine)
                    .order_by(table.c.ts_ms)
                    .offset(int(count or 0) - settings.max_pending)
                    .limit(1)
                ).scalar()
                drop(table.c.ts_ms < bound, "max_pending")
