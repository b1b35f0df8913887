"""A changed ``kafka.group_id`` over a store another group filled: refused, or (with
``kafka.adopt_offsets_from``) continued from that group's offsets, never counted twice.
On the real broker, with both clients and both stores."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest
from watchkeeper.daemon.app import Daemon
from watchkeeper.daemon.config import Config
from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.store.group_offsets import OffsetsOfAnotherGroupError
from watchkeeper.daemon.store.store import Store

from tests.integration.test_ingest import running, totals
from tests.support import create_topic, make_config, produce, wait_until

pytestmark = pytest.mark.broker
NOW_MS = 1_795_255_200_000


def prediction(i: int) -> bytes:
    return orjson.dumps(
        {
            "model": "fraud",
            "model_version": "3",
            "request_id": f"r{i}",
            "ts": NOW_MS + i,
            "prediction": [0.3, 0.7],
            "features": {"x": float(i)},
        }
    )


def label(i: int) -> bytes:
    return orjson.dumps({"model": "fraud", "request_id": f"r{i}", "ts": NOW_MS + i, "label": 1})


def joined(config: Config) -> int:
    with Store.open(config.store_url(), migrate=False) as store:
        return store.join_counts().get("fraud", {}).get("joined", 0)


def refused(config: Config) -> OffsetsOfAnotherGroupError:
    with pytest.raises(OffsetsOfAnotherGroupError) as caught:
        Daemon(config).run(threading.Event())
    return caught.value


def test_a_new_group_over_a_filled_store_is_refused_or_adopts_without_doubling(
    broker: EmbeddedBroker, store_url: str, tmp_path: Path, topic_name: str, kafka_client: str
) -> None:
    preds = create_topic(broker.bootstrap, f"p-{topic_name}", partitions=3)
    labels = create_topic(broker.bootstrap, f"l-{topic_name}", partitions=2)
    topics = {"predictions": {"name": preds}, "labels": {"name": labels}}

    # group ids of their own: the broker outlives the test, and its groups with it
    ga, gb = f"group-a-{topic_name}", f"group-b-{topic_name}"

    def config(group: str, **kafka: str) -> Config:
        path = tmp_path / group / (kafka.get("adopt_offsets_from") or "plain")
        path.mkdir(parents=True, exist_ok=True)
        made = make_config(path, broker.bootstrap, store_url, topics, group, kafka_client)
        if kafka:  # make_config's sections update whole sections: set the one key here
            made = made.model_copy(update={"kafka": made.kafka.model_copy(update=kafka)}, deep=True)
        return made

    a, b = config(ga), config(gb)
    produce(broker.bootstrap, preds, [prediction(i) for i in range(300)])
    produce(broker.bootstrap, labels, [label(i) for i in range(0, 300, 2)])
    with running(a):
        wait_until(lambda: totals(a)["events"] == 450 and joined(a) == 150)
        # a second daemon with another group on the same store, by mistake: refused too
        error = refused(b)
    assert f"'{ga}'" in str(error) and f"'{gb}'" in str(error)
    assert f"kafka.adopt_offsets_from: {ga}" in str(error) and "store.url" in str(error)
    # stopped: refused again, and nothing was read into the windows
    refused(b)
    assert totals(a)["events"] == 450 and joined(a) == 150
    # a group to adopt from that holds nothing here is named as such
    assert "holds no offsets" in str(refused(config(gb, adopt_offsets_from="nobody")))

    # group B takes over A's positions: only what was produced since is read
    produce(broker.bootstrap, preds, [prediction(i) for i in range(300, 400)])
    produce(broker.bootstrap, labels, [label(i) for i in range(300, 400, 2)])
    adopting = config(gb, adopt_offsets_from=ga)
    with running(adopting):
        wait_until(
            lambda: totals(a)["events"] == 400 + 200 and joined(a) == 200,
            describe=lambda: (totals(a), joined(a)),
        )
    assert totals(a) == {"events": 600, "late_events": 0, "quarantined": 0}
    with Store.open(a.store_url(), migrate=False) as store:
        assert store.offsets(ga) == {}
        offsets = store.offsets(gb)
        assert sum(o for (t, _), o in offsets.items() if t == preds) == 400
        assert sum(o for (t, _), o in offsets.items() if t == labels) == 200
        (window,) = store.windows("fraud", "3")
        assert window.summary.features["x"].count == 400
    # the old group is now the one refused; B (still with the switch set) restarts as usual
    refused(a)
    with running(adopting):
        wait_until(lambda: totals(a)["events"] == 600)
    assert totals(a)["events"] == 600 and joined(a) == 200


def test_a_daemon_whose_offsets_another_group_takes_over_stops_loudly(
    broker: EmbeddedBroker, store_url: str, tmp_path: Path, topic_name: str, kafka_client: str
) -> None:
    """A rolling deploy that changes the group id: the new daemon adopts the old group's
    offsets while the old one still runs; the old one's next commit is refused (rolled
    back) and it stops, so no event is counted by both."""
    preds = create_topic(broker.bootstrap, f"p-{topic_name}", partitions=2)
    topics = {"predictions": {"name": preds}}
    ga, gb = f"group-a-{topic_name}", f"group-b-{topic_name}"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = make_config(tmp_path / "a", broker.bootstrap, store_url, topics, ga, kafka_client)
    b = make_config(tmp_path / "b", broker.bootstrap, store_url, topics, gb, kafka_client)
    b = b.model_copy(update={"kafka": b.kafka.model_copy(update={"adopt_offsets_from": ga})})
    produce(broker.bootstrap, preds, [prediction(i) for i in range(200)])
    old = Daemon(a)
    stop = threading.Event()
    died: list[BaseException] = []

    def target() -> None:
        try:
            old.run(stop)
        except BaseException as exc:  # the test thread reads it
            died.append(exc)

    thread = threading.Thread(target=target, name="wk-old-group")
    thread.start()
    try:
        wait_until(lambda: old.started.is_set() or died, timeout=30)
        wait_until(lambda: totals(a)["events"] == 200)
        with running(b):
            # the old daemon reads these too, but cannot commit them
            produce(broker.bootstrap, preds, [prediction(i) for i in range(200, 300)])
            wait_until(lambda: totals(a)["events"] == 300)
            thread.join(timeout=60)
            assert not thread.is_alive(), "the old daemon did not stop"
        assert totals(a)["events"] == 300  # each event once
    finally:
        stop.set()
        thread.join(timeout=60)
    assert len(died) == 1 and f"consumer group '{gb}' is committing offsets" in str(died[0])
