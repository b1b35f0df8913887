"""The loop's join-driven commits (daemon/ingest/join_flush.py) against the real broker and
both stores, with each client: a commit waits until its buffer holds both roles, so the
pairs meet in memory and neither side is stored; a labels stream with nothing to give
does not hold the predictions back. The rule's clock is frozen: no commit here is due by
time, and each wait ends on a counter."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry
from watchkeeper.daemon.config import Config
from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.ingest import loop
from watchkeeper.daemon.ingest.join_flush import JoinFlushRule
from watchkeeper.daemon.ingest.metrics import IngestMetrics
from watchkeeper.daemon.store.store import Store

from tests.integration.test_ingest import event
from tests.support import create_topic, make_config, produce

pytestmark = pytest.mark.broker
NOW_MS = 1_795_255_200_000
ROWS = 40


def label(i: int) -> bytes:
    return orjson.dumps({"model": "fraud", "request_id": f"r{i}", "ts": NOW_MS + 50, "label": 1})


@contextmanager
def ingesting(config: Config) -> Iterator[tuple[loop.Ingestor, Store]]:
    store = Store.open(config.store_url())
    topics = [t.name for t in config.kafka.topics.by_role().values()]
    ingestor = loop.Ingestor(config, store, IngestMetrics(CollectorRegistry(), topics))
    ingestor._join_flush = JoinFlushRule(ROWS, 1_000, wait_s=1.0, clock=lambda: 0.0)
    ingestor.open()
    try:
        yield ingestor, store
    finally:
        ingestor.close()
        store.close()


def step_until(ingestor: loop.Ingestor, done: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not met"
        ingestor.step()


def config_for(
    broker: EmbeddedBroker, store_url: str, tmp_path: Path, topic: str, client: str
) -> tuple[Config, str, str]:
    preds = create_topic(broker.bootstrap, f"p-{topic}")
    labels = create_topic(broker.bootstrap, f"l-{topic}")
    config = make_config(
        tmp_path,
        broker.bootstrap,
        store_url,
        {"predictions": {"name": preds}, "labels": {"name": labels}},
        client=client,
        ingest={"flush_interval": "1h"},
    )
    return config, preds, labels


def test_a_commit_waits_for_both_roles_and_their_pairs_meet_in_memory(
    broker: EmbeddedBroker, store_url: str, tmp_path: Path, topic_name: str, kafka_client: str
) -> None:
    """30 labels and 30 predictions: neither role alone reaches the 40 rows, so the
    first commit is due once a poll's end finds both in the buffer; every pair is joined
    there and nothing waits in the store."""
    config, preds, labels = config_for(broker, store_url, tmp_path, topic_name, kafka_client)
    produce(broker.bootstrap, labels, [label(i) for i in range(30)])
    produce(broker.bootstrap, preds, [event(i) for i in range(30)])
    with ingesting(config) as (ingestor, store):
        step_until(ingestor, lambda: bool(ingestor._join_flush.reasons))
        assert ingestor._join_flush.reasons == {"both": 1}
        assert ingestor.joined_in_buffer == 30
        counts = store.join_counts()["fraud"]
        assert counts["joined"] == 30
        assert counts.get("pending_predictions", 0) == counts.get("pending_labels", 0) == 0
        assert store.totals()["events"] == 60


def test_predictions_do_not_wait_for_a_labels_stream_with_nothing_to_give(
    broker: EmbeddedBroker, store_url: str, tmp_path: Path, topic_name: str, kafka_client: str
) -> None:
    """The labels topic is empty (caught up): 50 predictions commit at the row bound while
    the loop runs, to wait for their labels in the store, counted there as before."""
    config, preds, _labels = config_for(broker, store_url, tmp_path, topic_name, kafka_client)
    produce(broker.bootstrap, preds, [event(i) for i in range(50)])
    with ingesting(config) as (ingestor, store):
        step_until(ingestor, lambda: bool(ingestor._join_flush.reasons))
        assert ingestor._join_flush.reasons == {"partner_idle": 1}
        assert store.join_counts()["fraud"]["pending_predictions"] == 50
        assert store.totals()["events"] == 50
        assert ingestor.joined_in_buffer == 0
