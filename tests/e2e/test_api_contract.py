"""The JSON API against its OpenAPI description (``/openapi.json``), on a live daemon
process with data in it (events, a drift incident, a quarantined record): schemathesis
generates requests for every operation; no answer is a 5xx, and every answer's status,
content type and body match the description."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from watchkeeper.daemon.demo.broker import EmbeddedBroker, free_port

from tests.integration.test_console import POLICY
from tests.integration.test_policy_daemon import store_reference
from tests.support import (
    DaemonProcess,
    create_topic,
    daemon_config_dict,
    produce,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.broker]

AB_POLICY = """\
model: fraud
name: fraud-ab
window: 5s
schedule: {every: 1s}
compare: latest
rules:
  - {metric: ab_score_mean_delta, critical: 0.5}
"""
EXAMPLES = 25
"""Generated requests per operation (12 operations: a few seconds each)."""
CROSS_FIELD = {"POST /api/reports"}
"""Operations with a rule JSON Schema cannot state (``start_ms < end_ms``): a schema-valid
body may rightly be refused with 400 there."""


def _incidents(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/api/incidents", timeout=5) as response:
            return bool(orjson.loads(response.read())["incidents"])
    except OSError:
        return False


def _ab_looked(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/api/shadow", timeout=5) as response:
            return bool(orjson.loads(response.read())["ab"]["fraud-ab"]["comparisons"])
    except OSError:
        return False


@pytest.fixture(scope="module")
def live(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("contract")
    topic = create_topic(broker.bootstrap, f"contract-{time.time_ns()}")
    url = f"sqlite:///{tmp / 'store.db'}"
    store_reference(url)
    (tmp / "policies").mkdir()
    (tmp / "policies" / "fraud.yaml").write_text(POLICY)
    (tmp / "policies" / "fraud-ab.yaml").write_text(AB_POLICY)  # /api/shadow's ab part
    port = free_port()
    data = daemon_config_dict(
        broker.bootstrap,
        url,
        {"predictions": {"name": topic}},
        http={"listen": f"127.0.0.1:{port}"},
        windows={"size": "5s", "allowed_lateness": "5s"},
        policies={"paths": [str(tmp / "policies")]},
        alerts={"channels": {"oncall": {"type": "console"}}},
        reports={"dir": str(tmp / "reports")},
        ingest={"idle_timeout": "1s"},  # the one batch's windows close without more events
    )
    config = write_config(tmp / "watchkeeper.yaml", data)
    process = DaemonProcess(config, tmp / "daemon.log").start()
    base = f"http://127.0.0.1:{port}"
    try:
        now = int(time.time() * 1000)
        values = np.random.default_rng(5).normal(1.5, 1.0, 400)  # drifted
        events = [
            orjson.dumps(
                {
                    "model": "fraud",
                    "model_version": str(1 + i % 2),
                    "request_id": f"c{i}",
                    "ts": now,
                    "features": {"amount": float(x)},
                    "prediction": 0.5,
                }
            )
            for i, x in enumerate(values)
        ]
        produce(broker.bootstrap, topic, [*events, b"{not json"])
        wait_until(lambda: _incidents(base), timeout=90)
        wait_until(lambda: _ab_looked(base), timeout=60)
        yield base
    finally:
        process.stop()


def test_every_answer_matches_the_description(live: str) -> None:
    api = schemathesis.openapi.from_url(live + "/openapi.json")
    labels = []
    for result in api.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def check(case: Any) -> None:
            # not_a_server_error, status code / content type / schema conformance, …
            cross_field = case.operation.label in CROSS_FIELD
            case.call_and_validate(excluded_checks=[positive_data_acceptance] * cross_field)

        check()
    assert len(labels) == 12, labels  # every operation was exercised
