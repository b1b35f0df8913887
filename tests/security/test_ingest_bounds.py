"""Hostile events: unbounded model and version names, long and reserved names, odd
timestamps, and feature names meant to make decoding quadratic. Beyond a bound a record
is quarantined with its reason and counted, never a new series."""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass

import orjson
import pytest
from watchkeeper.daemon.config import IngestConfig
from watchkeeper.daemon.config_kafka import TopicConfig
from watchkeeper.daemon.ingest.decode import Decoder
from watchkeeper.daemon.ingest.kinds import KindRegistry

from tests.security.conftest import RunningDaemon
from tests.security.probes import rss_bytes
from tests.support import produce, wait_until

NOW_MS = int(time.time() * 1000)


@dataclass
class Rec:
    offset: int
    timestamp: int
    value: bytes | None


def records(objs: list[dict[str, object]]) -> list[Rec]:
    return [Rec(i, NOW_MS, orjson.dumps(o)) for i, o in enumerate(objs)]


def decoder(**ingest: object) -> Decoder:
    config = IngestConfig(**ingest)  # type: ignore[arg-type]
    kinds = KindRegistry(max_features=config.max_features)
    return Decoder("p", "predictions", TopicConfig(name="p"), config, kinds)


def event(model: object, **extra: object) -> dict[str, object]:
    return {"model": model, "ts": NOW_MS, "prediction": 0.5, "features": {"a": 1.0}, **extra}


def reasons(result: object) -> dict[str, int]:
    out: dict[str, int] = {}
    for q in result.quarantined:  # type: ignore[attr-defined]
        out[q.reason] = out.get(q.reason, 0) + 1
    return out


def test_models_and_versions_beyond_their_bounds_are_quarantined() -> None:
    d = decoder(max_models=3, max_versions=2)
    result = d.decode(0, records([event(f"m{i}") for i in range(10)]), NOW_MS)
    assert sorted(b.model for b in result.batches) == ["m0", "m1", "m2"]
    assert reasons(result) == {"too_many_models": 7}
    versions = [event("m0", model_version=f"v{i}") for i in range(6)]
    result = d.decode(0, records(versions), NOW_MS)
    # "" (no version, seen above) and v0 fill the two places
    assert reasons(result) == {"too_many_versions": 5}


def test_names_are_bounded_and_reserved_names_refused() -> None:
    d = decoder(max_name_chars=50)
    objs = [
        event(""),
        event("x" * 51),
        event("ok", model_version="v" * 51),
        event("ok", request_id="r" * 51),
        event("ok", features={"__prediction__": 1.0}),
        event("ok", features={"__label__": 1.0}),
        event("ok", features={"f" * 51: 1.0}),
        event("ok", features={"": 1.0}),
        event("ok", features={"country": "c" * 51}),
        event("ok", ts="now"),
        event("ok", ts="today"),
        event("ok"),
    ]
    result = d.decode(0, records(objs), NOW_MS)
    got = {q.offset: q.reason for q in result.quarantined}
    assert got == {
        0: "empty_name",
        1: "name_too_long",
        2: "name_too_long",
        3: "name_too_long",
        4: "reserved_name",
        5: "reserved_name",
        6: "name_too_long",
        7: "empty_name",
        8: "value_too_long",
        9: "bad_timestamp",
        10: "bad_timestamp",
    }
    (batch,) = result.batches
    assert batch.model == "ok" and len(batch.ts_ms) == 1


def _decode_work(d: Decoder, n: int, names_per_record: int) -> int:
    """The Python-level work of decoding ``n`` records, each with ``names_per_record``
    feature names of its own beyond the one admitted: the "call" and "line" events of
    ``sys.settrace``, which fire for each pass of a Python loop or comprehension (a line
    re-executed). A count, not a time: the same on an idle or a loaded machine. Work in C
    (a set operation) is not seen, but the Python loop that would repeat it is."""
    objs = [
        event("m", features={"a": 1.0, **{f"id-{i}-{j}": 1.0 for j in range(names_per_record)}})
        for i in range(n)
    ]
    recs = records(objs)
    steps = 0

    def count(_frame: object, _event: str, _arg: object) -> object:
        nonlocal steps
        steps += 1  # a frame entered, a line begun, a loop's next pass (sys.settrace)
        return count  # trace the lines of every frame, comprehensions' included

    previous = sys.gettrace()  # a debugger's or coverage's tracer, put back after
    sys.settrace(count)
    try:
        result = d.decode(0, recs, NOW_MS)
    finally:
        sys.settrace(previous)
    assert result.ignored_features == n * names_per_record
    return steps


def test_decoding_stays_linear_whatever_the_feature_names() -> None:
    """Was 2k records 1.5 s, 4k 5.8 s, 8k 25 s: the ignored names were counted name by name,
    ``sum(1 for d in rows if name in d)`` for each, O(records × names). Judged by a count of
    work, never by wall time (timing belongs in ``make bench``): doubling the records
    doubles the steps (1.96× measured, 500 → 1,000 records) where that bug made them 3.8×
    (checked by putting it back)."""
    d = decoder(max_features=1)
    d.decode(0, records([event("m")]), NOW_MS)  # "a" takes the one place
    small = _decode_work(d, 500, 3)
    large = _decode_work(d, 1_000, 3)
    assert large / small < 2.5, f"500 records: {small} steps, 1,000: {large}"
    assert small > 1_000  # the tracer saw the decoding (a count of 0 would prove nothing)


def _series(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


@pytest.mark.broker
def test_the_daemon_keeps_model_and_version_series_bounded(daemon: RunningDaemon) -> None:
    """Was: 20,000 models → 46,142 series, /metrics 17 KB → 3.4 MB, RSS 303 → 593 MB."""
    rss = rss_bytes(daemon.pid)
    now = int(time.time() * 1000)
    values = [
        orjson.dumps({"model": f"m{i}", "ts": now, "prediction": 0.5, "features": {"a": 1.0}})
        for i in range(2000)
    ]
    values += [
        orjson.dumps({"model": "m0", "model_version": f"v{i}", "ts": now, "prediction": 0.5})
        for i in range(50)
    ]
    produce(daemon.bootstrap, daemon.topic, values)

    def quarantined(reason: str) -> float:
        pattern = rf'^watchkeeper_quarantined_records_total{{[^}}]*reason="{reason}"[^}}]*}} (\S+)$'
        found = re.findall(pattern, daemon.metrics(), re.M)
        return sum(float(v) for v in found)

    wait_until(
        lambda: (
            quarantined("too_many_models") >= 2000 - 20
            and quarantined("too_many_versions") >= 50 - 4
        ),
        timeout=60,
        describe=lambda: (quarantined("too_many_models"), quarantined("too_many_versions")),
    )
    text = daemon.metrics()
    models = set()
    for line in _series(text, "watchkeeper_events_total"):
        found = re.search(r'model="([^"]*)"', line)
        assert found is not None
        models.add(found.group(1))
    assert len(models) <= 20
    assert len(text) < 200_000
    assert rss_bytes(daemon.pid) < rss + 150 * 1024 * 1024
