"""kafka-python's records as a RecordRun (daemon/ingest/record_run.py): the same fields and
byte count as read record by record, slices that stay runs, and the same decoded batches
and quarantine as the plain list of records the source handed over before."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.consumer.fetcher import ConsumerRecord
from watchkeeper.daemon.config import IngestConfig
from watchkeeper.daemon.config_kafka import TopicConfig
from watchkeeper.daemon.ingest.admission import Admission
from watchkeeper.daemon.ingest.decode import Decoder
from watchkeeper.daemon.ingest.decoded import bytes_of, offsets_of, timestamps_of, values_of
from watchkeeper.daemon.ingest.kinds import KindRegistry
from watchkeeper.daemon.ingest.record_run import RecordRun

from tests.unit.test_columnar_decode import same_result

NOW = 1_795_255_200_000


def record(offset: int, value: bytes | None) -> ConsumerRecord:
    size = -1 if value is None else len(value)
    ts = NOW - 9_000 + offset
    return ConsumerRecord("t", 0, -1, offset, ts, 0, None, value, [], None, -1, size, -1)


good = st.builds(
    lambda i, x: orjson.dumps(
        {
            "model": "m",
            "model_version": "1",
            "request_id": f"r{i}",
            "ts": NOW - 5_000 + i,
            "features": {"a": x},
            "prediction": 0.5,
        }
    ),
    st.integers(0, 10**6),
    st.floats(-1e6, 1e6),
)
values = st.lists(good | st.sampled_from([None, b"", b"{", b"[1]", b'{"model": 3}']), max_size=30)


@given(values, st.integers(0, 40), st.integers(0, 40))
def test_fields_as_read_record_by_record(vals: list[bytes | None], lo: int, hi: int) -> None:
    records = [record(100 + i, v) for i, v in enumerate(vals)]
    for run, plain in ((RecordRun(records), records), (RecordRun(records)[lo:hi], records[lo:hi])):
        assert isinstance(run, RecordRun) and len(run) == len(plain) and list(run) == plain
        assert run.record_values() == [r.value for r in plain] == values_of(run)
        assert offsets_of(run) == [r.offset for r in plain]
        assert timestamps_of(run) == [r.timestamp for r in plain]
        assert bytes_of(run) == sum(len(r.value) for r in plain if r.value)
        assert bytes_of(RecordRun(plain)) == bytes_of(plain)  # counted before any parse, too
        if plain:
            assert run[0] is plain[0] and run[-1].offset == plain[-1].offset


def decoder() -> Decoder:
    ingest = IngestConfig(max_record_bytes=600)
    return Decoder(
        "t",
        "predictions",
        TopicConfig(name="t"),
        ingest,
        KindRegistry(max_features=ingest.max_features),
        Admission(),
    )


@settings(max_examples=60)
@given(values)
def test_decoded_as_the_plain_list(vals: list[bytes | None]) -> None:
    records = [record(i, v) for i, v in enumerate(vals)]
    run_decoder, list_decoder = decoder(), decoder()
    run = RecordRun(records)
    prepared = run_decoder.prepare(run)  # on the prefetch worker in the loop
    same_result(run_decoder.decode(0, run, NOW, prepared), list_decoder.decode(0, records, NOW))
    assert bytes_of(run) == bytes_of(records)
