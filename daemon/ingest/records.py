"""Records one at a time: JSON parsing for the per-record path, and a bad record's
quarantine entry (reason, detail and a bounded prefix of its raw bytes)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from watchkeeper.daemon.ingest.decoded import RecordLike
from watchkeeper.daemon.ingest.fields import type_name
from watchkeeper.daemon.store.quarantine import Quarantined

Entry = Callable[[RecordLike, str, str], Quarantined]
"""Builds the quarantine entry of a record: (record, reason, detail) → entry."""


def parse(value: bytes) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        # orjson is strict JSON; the stdlib also reads NaN and Infinity, which model
        # servers written in Python emit, and which the NaN-rate checks want to see.
        return json.loads(value)


def quarantine_entry(
    topic: str, partition: int, prefix_bytes: int, rec: RecordLike, reason: str, detail: str
) -> Quarantined:
    raw = rec.value or b""
    return Quarantined(topic, partition, rec.offset, reason, detail, raw[:prefix_bytes], len(raw))


def parse_all(
    records: Sequence[RecordLike], limit: int, quarantined: list[Quarantined], entry: Entry
) -> tuple[list[dict[str, Any]], list[int], list[int], list[int]]:
    """JSON objects of the good records, their offsets, timestamps and positions; the bad
    ones (empty, oversized, not JSON, not an object) appended to ``quarantined``."""
    values = [rec.value for rec in records]
    if values and all(values) and max(map(len, values)) <= limit:  # type: ignore[arg-type]
        try:
            objs: list[Any] = list(map(orjson.loads, values))  # type: ignore[arg-type]
        except orjson.JSONDecodeError:
            pass
        else:
            if set(map(type, objs)) == {dict}:
                return (
                    objs,
                    [r.offset for r in records],
                    [r.timestamp for r in records],
                    list(range(len(records))),
                )
    # one record at a time, only for a batch holding a bad record
    objs = []
    offsets: list[int] = []
    stamps: list[int] = []
    kept: list[int] = []
    for pos, rec in enumerate(records):
        value = rec.value
        if not value:
            quarantined.append(entry(rec, "empty", "the record has no value"))
            continue
        if len(value) > limit:
            detail = f"{len(value)} bytes > max_record_bytes {limit}"
            quarantined.append(entry(rec, "oversized", detail))
            continue
        try:
            obj = parse(value)
        except (ValueError, RecursionError) as exc:
            quarantined.append(entry(rec, "not_json", str(exc)[:200]))
            continue
        if type(obj) is not dict:
            detail = f"expected a JSON object, got {type_name(obj)}"
            quarantined.append(entry(rec, "not_object", detail))
            continue
        objs.append(obj)
        offsets.append(rec.offset)
        stamps.append(rec.timestamp)
        kept.append(pos)
    return objs, offsets, stamps, kept
