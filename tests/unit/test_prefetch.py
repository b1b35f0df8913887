"""The parse stage run one slice ahead: results in order, a failing stage handed on as
None (the decoder redoes it), nothing left running, and the same decoded batches."""

from __future__ import annotations

import doctest
import threading

import orjson
from watchkeeper.daemon.config import IngestConfig
from watchkeeper.daemon.config_kafka import TopicConfig
from watchkeeper.daemon.ingest import prefetch
from watchkeeper.daemon.ingest.decode import Decoder
from watchkeeper.daemon.ingest.kinds import KindRegistry
from watchkeeper.daemon.ingest.prefetch import Prefetch


def test_the_module_example_holds() -> None:
    result = doctest.testmod(prefetch)
    assert result.attempted and not result.failed


def test_items_come_in_order_with_their_stage_run_on_the_worker() -> None:
    threads: list[str] = []

    def stage(i: int) -> int:
        threads.append(threading.current_thread().name)
        if i == 2:
            raise RuntimeError("boom")
        return i * i

    with Prefetch[int, int]() as ahead:
        got = list(ahead.run(list(range(5)), stage))
    assert got == [(0, 0), (1, 1), (2, None), (3, 9), (4, 16)]
    assert all(name.startswith("watchkeeper-parse") for name in threads)


def test_leaving_early_waits_for_the_stage_in_flight() -> None:
    done: list[int] = []
    with Prefetch[int, int]() as ahead:
        run = ahead.run([1, 2, 3], lambda i: done.append(i) or i)
        assert next(run) == (1, 1)
        run.close()
        assert done in ([1, 2], [1])  # 2 ran to its end or was never started


class Rec:
    def __init__(self, offset: int, value: bytes) -> None:
        self.offset, self.value, self.timestamp = offset, value, 0


def test_a_prepared_batch_decodes_as_the_decoder_alone_does() -> None:
    values = [
        orjson.dumps({"model": "m", "ts": 1_795_255_200_000 + i, "features": {"x": i * 0.5}})
        for i in range(50)
    ]
    records = [Rec(i, v) for i, v in enumerate(values)]
    bad = [*records[:10], Rec(10, b"{not json"), *records[11:]]

    def decoder() -> Decoder:
        return Decoder("t", "predictions", TopicConfig(name="t"), IngestConfig(), KindRegistry())

    for batch in (records, bad):
        alone, ahead = decoder(), decoder()
        want = alone.decode(0, batch, 1_795_255_300_000)
        got = ahead.decode(0, batch, 1_795_255_300_000, ahead.prepare(batch))
        assert [q.reason for q in got.quarantined] == [q.reason for q in want.quarantined]
        assert [(b.model, len(b), b.ts_ms.tolist()) for b in got.batches] == [
            (b.model, len(b), b.ts_ms.tolist()) for b in want.batches
        ]
        assert [b.features["x"].values.tolist() for b in got.batches] == [
            b.features["x"].values.tolist() for b in want.batches
        ]
        assert ahead.columnar is not None and alone.columnar is not None
        assert ahead.columnar.fallbacks == alone.columnar.fallbacks
