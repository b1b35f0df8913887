"""The daemon as a process, two versions of one model on one predictions topic (labels on
their own): ``compare: latest`` finds the pair, and the A/B finding — decision ``worse``
for a true gap, with its interval — shows in ``/api/shadow`` and as an incident in
``/api/incidents``; a restart continues the same experiment (its start is kept)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from watchkeeper.daemon.demo.broker import EmbeddedBroker

from tests.integration.test_ab_daemon import ROWS, events
from tests.support import DaemonProcess, create_topic, policy_daemon, produce, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.broker]
POLICY = """\
model: fraud
window: 5s
schedule: {every: 5s}
min_samples: 10
compare: latest
rules:
  - name: ab-accuracy
    metric: ab_accuracy_delta
    critical: -0.01
    actions: {critical: [console]}
  - name: ab-latency
    metric: ab_latency_p99_ratio
    critical: 1.5
"""


def test_two_versions_on_one_topic_give_an_ab_finding_in_the_api(
    broker: EmbeddedBroker,
    tmp_path: Path,
    topic_name: str,
    processes: list[DaemonProcess],
) -> None:
    preds = create_topic(broker.bootstrap, f"p-{topic_name}")
    labels = create_topic(broker.bootstrap, f"l-{topic_name}")
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "fraud.yaml").write_text(POLICY)
    daemon = policy_daemon(
        tmp_path,
        broker.bootstrap,
        {"predictions": {"name": preds}, "labels": {"name": labels}},
        tmp_path / "policies",
        store="store.db",
        windows={"size": "5s", "allowed_lateness": "1s"},
        alerts={"channels": {"console": {"type": "console"}}},
        ingest={"idle_timeout": "1s"},
    )
    p, lab = events({"3": 0.92, "4": 0.84}, seed=11)
    produce(broker.bootstrap, labels, lab)
    produce(broker.bootstrap, preds, p)
    processes.append(daemon.start())

    def comparison() -> dict[str, Any] | None:
        body = daemon.get("/api/shadow")
        if not body:
            return None
        found = body["ab"].get("fraud", {}).get("comparisons", [])
        if not found:
            return None
        values = found[0]["values"].get("ab_accuracy_delta", {})
        done = values.get("n_candidate") == ROWS and values.get("n_baseline") == ROWS
        return found[0] if done else None

    shown = wait_until(comparison, timeout=120, describe=daemon.tail)
    assert (shown["baseline"], shown["candidate"], shown["pair"]) == ("3", "4", "4 vs 3")
    accuracy = shown["values"]["ab_accuracy_delta"]
    assert accuracy["decision"] == "worse" and accuracy["high"] < -0.01
    assert accuracy["confidence"] == 0.95 and 0 <= accuracy["p_value"] < 0.05
    assert shown["values"]["ab_latency_p99_ratio"]["value"] == pytest.approx(1.0)  # same 5 ms
    incidents = wait_until(
        lambda: [i for i in daemon.get("/api/incidents")["incidents"] if i["rule"] == "ab-accuracy"]
    )
    assert incidents[0]["feature"] == "4 vs 3" and "less accurate than 3" in incidents[0]["summary"]
    assert not [i for i in daemon.get("/api/incidents")["incidents"] if i["rule"] == "ab-latency"]
    assert "A/B comparison in force: candidate 4 against baseline 3" in daemon.log.read_text()
    # a restart continues the experiment: the same start, the same narrowed interval
    processes[-1].stop()
    processes.append(daemon.start())
    again = wait_until(lambda: comparison() if daemon.get("/healthz") else None, timeout=60)
    assert again["since_ms"] == shown["since_ms"]
    assert again["values"]["ab_accuracy_delta"]["high"] <= accuracy["high"]
