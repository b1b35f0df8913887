"""Live A/B between two versions of one model on one topic, in the running daemon on the
real broker and both stores: a true accuracy gap becomes an ``ab_accuracy_delta``
finding with decision ``worse`` and an incident that says what the interval means; the
same true accuracy gives no incident. Labels arrive on their own topic and join."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pytest
from watchkeeper.daemon.checks.ab_store import ABStore
from watchkeeper.daemon.cli.main import main
from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.store.store import Store

from tests.integration.test_ingest import fetch, running, totals
from tests.support import create_topic, make_config, produce, wait_until

pytestmark = pytest.mark.broker
NOW_MS = 1_795_255_200_000
ROWS = 3_000  # per version
POLICY = """\
model: fraud
window: 5s
schedule: {every: 5s}
min_samples: 10
compare: {baseline: "3", candidate: "4", min_rows: 200}
rules:
  - name: ab-accuracy
    metric: ab_accuracy_delta
    critical: -0.01
    actions: {critical: [console]}
  - name: ab-inputs
    metric: ab_population_js_distance
    critical: 0.2
    actions: {critical: [console]}
"""


def events(
    accuracy: dict[str, float], seed: int, shift: float = 0.0
) -> tuple[list[bytes], list[bytes]]:
    """Predictions of versions 3 and 4 (assigned at random, 10 ms apart) and their labels,
    each version right at its ``accuracy``; version 4's input ``x`` moved by ``shift``."""
    rng = np.random.default_rng(seed)
    n = 2 * ROWS
    versions = rng.permutation(np.repeat(["3", "4"], ROWS))
    p = rng.random(n)
    predicted = (p >= 0.5).astype(int)
    hit = np.array([rng.random() < accuracy[v] for v in versions])
    label = np.where(hit, predicted, 1 - predicted)
    preds, labels = [], []
    for i in range(n):
        ts = NOW_MS + 10 * i
        preds.append(
            orjson.dumps(
                {
                    "model": "fraud",
                    "model_version": str(versions[i]),
                    "request_id": f"r{i}",
                    "ts": ts,
                    "prediction": [1 - float(p[i]), float(p[i])],
                    "latency_ms": 5.0,
                    "features": {"x": float(i % 7) + (shift if versions[i] == "4" else 0.0)},
                }
            )
        )
        labels.append(
            orjson.dumps(
                {"model": "fraud", "request_id": f"r{i}", "ts": ts + 1, "label": int(label[i])}
            )
        )
    return preds, labels


def run(
    broker: EmbeddedBroker,
    store_url: str,
    tmp_path: Path,
    topic: str,
    accuracy: dict[str, float],
    policy: str = POLICY,
    shift: float = 0.0,
) -> Run:
    preds = create_topic(broker.bootstrap, f"p-{topic}")
    labels = create_topic(broker.bootstrap, f"l-{topic}")
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "fraud.yaml").write_text(policy)
    config = make_config(
        tmp_path,
        broker.bootstrap,
        store_url,
        {"predictions": {"name": preds}, "labels": {"name": labels}},
        windows={"size": "5s", "allowed_lateness": "1s"},
        policies={"paths": [str(policies)]},
        alerts={"channels": {"console": {"type": "console"}}},
        ingest={"idle_timeout": "1s"},
    )
    p, lab = events(accuracy, seed=7, shift=shift)
    produce(broker.bootstrap, labels, lab)  # labels first: each joins as its prediction lands
    produce(broker.bootstrap, preds, p)
    last_tick = NOW_MS + 10 * len(p)
    with running(config) as daemon, Store.open(config.store_url(), migrate=False) as store:
        wait_until(lambda: totals(config)["events"] == 2 * len(p), timeout=120)
        incidents = IncidentStore(store.engine)

        def final() -> list[dict]:  # type: ignore[type-arg]
            rows = incidents.evaluations("fraud", "ab-accuracy", None, 1000)
            return [
                r for r in rows if r["at_ms"] >= last_tick and r["decision"] != "insufficient_data"
            ]

        wait_until(final, timeout=120, describe=lambda: incidents.evaluations(limit=5))
        inputs = [
            r
            for r in incidents.evaluations("fraud", "ab-inputs", None, 1000)
            if r["at_ms"] >= last_tick
        ]
        looks = ABStore(store.engine).looks("fraud")
        base = f"http://{daemon.http.address}"
        shadow = orjson.loads(fetch(base + "/api/shadow")[1])
        found = incidents.incidents(None)
        pages = {i["rule"]: fetch(f"{base}/incidents/{i['fingerprint']}")[1] for i in found}
        pages["model"] = fetch(f"{base}/models/fraud")[1]  # where an A/B decision links
        config_path = str(tmp_path / "watchkeeper.yaml")
        return Run(final(), found, looks, shadow, pages, config_path, inputs)


@dataclass
class Run:
    evaluations: list[dict]  # type: ignore[type-arg]
    incidents: list[dict]  # type: ignore[type-arg]
    looks: list[dict]  # type: ignore[type-arg]
    shadow: dict  # type: ignore[type-arg]
    pages: dict[str, str]
    config: str
    inputs: list[dict]  # type: ignore[type-arg]
    """Evaluations of the ``ab_population_js_distance`` rule at the last ticks."""


def test_a_true_accuracy_gap_is_found_worse_with_an_incident(
    broker: EmbeddedBroker,
    store_url: str,
    tmp_path: Path,
    topic_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    r = run(broker, store_url, tmp_path, topic_name, {"3": 0.92, "4": 0.84})
    evaluations, incidents, (look,) = r.evaluations, r.incidents, r.looks
    details = look["last"]["values"]["ab_accuracy_delta"]
    assert (look["baseline"], look["candidate"]) == ("3", "4")
    assert details["decision"] == "worse"
    assert details["n_baseline"] == details["n_candidate"] == ROWS  # every label joined
    assert details["low"] < -0.08 < details["high"] < -0.01  # covers the true 8-point gap
    merged = look["last"]["merged"]
    assert merged["baseline"]["labelled_rows"] == merged["candidate"]["labelled_rows"] == ROWS
    assert merged["candidate"]["accuracy"] - merged["baseline"]["accuracy"] == pytest.approx(
        details["estimate"], abs=1e-12
    )
    assert evaluations[0]["decision"] == "breach" and evaluations[0]["feature"] == "4 vs 3"
    (incident,) = [i for i in incidents if i["rule"] == "ab-accuracy"]
    assert incident["severity"] == "critical" and incident["feature"] == "4 vs 3"
    # said when it opened, at the first look whose interval lay below −1 point
    assert re.fullmatch(
        r"fraud: version 4 is \d+\.\d points less accurate than 3, 95 % CI \[−\d+\.\d, "
        r"−\d+\.\d\], over [\d,]+ labelled rows of 4 and [\d,]+ of 3 "
        r"\(ab_accuracy_delta critical\)",
        incident["summary"],
    ), incident["summary"]
    # /api/shadow, the console page behind the alert link and `watchkeeper status`
    (shown,) = r.shadow["ab"]["fraud"]["comparisons"]
    assert shown["pair"] == "4 vs 3" and shown["values"]["ab_accuracy_delta"]["decision"] == "worse"
    assert shown["values"]["ab_accuracy_delta"]["text"].startswith("version 4 is ")
    assert shown["merged"]["candidate"]["labelled_rows"] == ROWS
    assert shown["window"]["baseline"]["events"] > 0
    assert "warning" not in shown["window"]["population"]  # randomised: the same traffic
    assert r.inputs and {e["decision"] for e in r.inputs} == {"ok"}
    assert {e["value"] for e in r.inputs} == {0.0}  # within the noise: nothing to say
    assert not [i for i in incidents if i["rule"] == "ab-inputs"]
    page = r.pages["ab-accuracy"]
    assert "A/B comparison: version 4 against 3" in page and "always-valid" in page
    assert "labelled_rows" in page and "less accurate than 3" in page
    assert "A/B comparison: version 4 against 3" in r.pages["model"]
    assert main(["status", "-c", r.config]) == 0
    out = capsys.readouterr().out
    assert "A/B of fraud (fraud): 4 vs 3" in out and "worse" in out
    assert "side by side" in out


def test_the_same_true_accuracy_gives_no_finding(
    broker: EmbeddedBroker, store_url: str, tmp_path: Path, topic_name: str
) -> None:
    r = run(broker, store_url, tmp_path, topic_name, {"3": 0.9, "4": 0.9})
    evaluations, incidents, (look,) = r.evaluations, r.incidents, r.looks
    details = look["last"]["values"]["ab_accuracy_delta"]
    assert details["decision"] == "no_evidence"
    assert details["low"] < 0 < details["high"]
    assert {e["decision"] for e in evaluations} == {"ok"}
    assert not [i for i in incidents if i["rule"] == "ab-accuracy"]
    (shown,) = r.shadow["ab"]["fraud"]["comparisons"]
    assert shown["values"]["ab_accuracy_delta"]["decision"] == "no_evidence"


def test_with_a_short_label_wait_the_fold_runs_and_loses_no_label(
    broker: EmbeddedBroker, store_url: str, tmp_path: Path, topic_name: str
) -> None:
    short = POLICY.replace("min_rows: 200}", "min_rows: 200, label_wait: 5s}")
    r = run(broker, store_url, tmp_path, topic_name, {"3": 0.92, "4": 0.84}, short)
    (look,) = r.looks
    details = look["last"]["values"]["ab_accuracy_delta"]
    with Store.open(store_url, migrate=False) as store:
        state = ABStore(store.engine).load("fraud", "3", "4")
    assert state is not None
    # settled windows (5 s of label wait, 1 s of lateness and a window) were folded …
    assert state.folded_until_ms >= state.since_ms + 5 * 5_000
    folded = state.folded["baseline"].performance
    assert folded is not None and 0 < folded.n < ROWS
    # … and the fold plus the tail hold every labelled row, exactly once
    assert details["n_baseline"] == details["n_candidate"] == ROWS
    assert details["decision"] == "worse"


def test_versions_serving_different_inputs_give_a_population_finding(
    broker: EmbeddedBroker, store_url: str, tmp_path: Path, topic_name: str
) -> None:
    r = run(broker, store_url, tmp_path, topic_name, {"3": 0.9, "4": 0.9}, shift=3.0)
    (look,) = r.looks
    details = look["last"]["values"]["ab_population_js_distance"]
    assert details["feature"] == "x" and details["value"] == details["js"] > 0.2
    assert details["value"] > 3 * details["noise_floor"]
    # the same number the side-by-side report shows for the policy window
    top = look["last"]["window"]["population"]["largest"][0]
    assert top["feature"] == "x" and top["js"] == details["js"]
    assert r.inputs and all(e["decision"] == "breach" for e in r.inputs)
    (incident,) = [i for i in r.incidents if i["rule"] == "ab-inputs"]
    assert incident["severity"] == "critical" and incident["feature"] == "4 vs 3"
    assert "version 4's inputs differ from 3's: x at JS distance" in incident["summary"]
    (shown,) = r.shadow["ab"]["fraud"]["comparisons"]
    assert shown["values"]["ab_population_js_distance"]["text"].startswith("version 4's inputs")
