"""A corrupt stored window part on the running daemon (real broker, SQLite and
PostgreSQL): the console's model page reads past it, and the skip shows on ``/metrics``
(labelled by the policies' models only), on ``/api/status`` and on the overview page
(every stored name escaped); housekeeping then sets the windows aside and reads stop
meeting them."""

from __future__ import annotations

import html
import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import orjson
import pytest
import yaml
from sqlalchemy import select
from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.eventtime.windows import WindowState
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store.skipped_windows import OTHER
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.reservoir import record_keys

from tests.integration.test_ingest import fetch, running
from tests.integration.test_policy_daemon import store_reference
from tests.support import create_topic, make_config, wait_until

pytestmark = pytest.mark.broker

OPENAPI = Path(__file__).parents[2] / "daemon" / "http" / "openapi.yaml"
SIZE_MS = 300_000
SCRIPT = "<script>alert(1)</script>"
POLICY = """\
model: fraud
reference: store:default
window: 10m
schedule: {every: 1m}
min_samples: 1
rules:
  - name: eps
    metric: throughput_eps
    critical: 1.0e9
"""


def batch(model: str, version: str, ts_ms: np.ndarray) -> ColumnBatch:
    n = ts_ms.size
    rng = np.random.default_rng(3)
    none = np.zeros(n, bool)
    return ColumnBatch(
        model=model,
        role="predictions",
        ts_ms=ts_ms.astype(np.int64),
        versions=np.array([version] * n, dtype=object),
        keys=record_keys(0, 0, np.arange(n)),
        features={"amount": Column("numeric", rng.normal(size=n), none, none)},
        prediction=Column("numeric", rng.random(n), none, none),
        latency_ms=np.full(n, 12.5),
    )


def store_corrupt_windows(url: str, start_ms: int) -> dict[str, int]:
    """Two windows of "fraud" (the second's part, of version SCRIPT, corrupt) and one of
    model SCRIPT (corrupt, and no policy names it); returns the corrupt part ids."""
    with Store.open(url) as store:
        state = WindowState(SIZE_MS // 1000, 3600)
        ts = np.array([start_ms + 10, start_ms + 20, start_ms + 30])
        state.add(batch("fraud", "3", ts))
        state.add(batch("fraud", SCRIPT, ts + SIZE_MS))
        state.add(batch(SCRIPT, "1", ts))
        store.commit("setup", state.drain(), {("setup", 0): 9})
        ids = {}
        with store.engine.begin() as conn:
            p = t.window_parts.c
            for model, version in (("fraud", SCRIPT), (SCRIPT, "1")):
                part_id = conn.execute(
                    select(p.id).where((p.model == model) & (p.model_version == version))
                ).scalar_one()
                damaged = orjson.dumps({"format": 3, "rows": f"not rows {SCRIPT}"})
                conn.execute(t.window_parts.update().where(p.id == part_id).values(summary=damaged))
                ids[model] = int(part_id)
        return ids


def test_a_corrupt_part_shows_on_metrics_status_and_the_overview_escaped(
    broker: EmbeddedBroker, tmp_path: Path, topic_name: str, store_url: str
) -> None:
    create_topic(broker.bootstrap, topic_name)
    store_reference(store_url)
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - 2 * 3600_000 - now_ms % SIZE_MS  # within the model page's day
    ids = store_corrupt_windows(store_url, start_ms)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "fraud.yaml").write_text(POLICY)
    config = make_config(
        tmp_path,
        broker.bootstrap,
        store_url,
        {"predictions": {"name": topic_name}},
        policies={"paths": [str(policies)]},
    )
    with running(config) as daemon:
        assert daemon.http is not None and daemon.store is not None
        base = f"http://{daemon.http.address}"
        # real readers meet the corrupt parts: the model pages read the latency windows
        # (and the policy's checks read fraud's)
        for model in ("fraud", SCRIPT):
            code, _ = fetch(f"{base}/models/{urllib.parse.quote(model, safe='')}")
            assert code == 200

        # housekeeping (a round every 15 s) moves both windows aside; from then on the
        # counts stay as they are, so every view below is compared exactly
        def set_aside() -> dict[str, Any]:
            doc = json.loads(fetch(base + "/api/status")[1])["skipped_windows"]
            return doc if len(doc["set_aside"]) == 2 else {}

        section = wait_until(set_aside, timeout=60)
        status_schema = yaml.safe_load(OPENAPI.read_text())["components"]["schemas"]["Status"]
        jsonschema.Draft202012Validator(status_schema).validate(
            json.loads(fetch(base + "/api/status")[1])
        )  # the section as openapi.yaml describes it
        assert section["set_aside"] == {
            "fraud": {"windows": 1, "rows": 1, "events": 3},
            SCRIPT: {"windows": 1, "rows": 1, "events": 3},
        }
        reads = daemon.store.skipped_windows.counts()
        assert reads["fraud"] >= 1 and reads[SCRIPT] >= 1 and section["reads"] == reads
        assert section["parts"] == {"fraud": 1, SCRIPT: 1}
        recent = {p["model"]: p for p in section["recent"]}
        fraud = recent["fraud"]
        assert (fraud["version"], fraud["part"]) == (SCRIPT, ids["fraud"])
        assert fraud["window_start_ms"] == start_ms + SIZE_MS
        assert fraud["window_size_ms"] == SIZE_MS and fraud["reads"] == reads["fraud"]
        assert fraud["what"] == "window summary" and "KeyError" in fraud["problem"]
        assert recent[SCRIPT]["part"] == ids[SCRIPT]
        assert all(p["set_aside"] for p in section["recent"])

        _, metrics = fetch(base + "/metrics")
        samples = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith(("watchkeeper_window_reads_skipped", "watchkeeper_corrupt_window"))
        }
        assert samples == {
            'watchkeeper_window_reads_skipped_total{model="fraud"}': reads["fraud"],
            f'watchkeeper_window_reads_skipped_total{{model="{OTHER}"}}': reads[SCRIPT],
            'watchkeeper_corrupt_window_parts_total{model="fraud"}': 1.0,
            f'watchkeeper_corrupt_window_parts_total{{model="{OTHER}"}}': 1.0,
        }
        assert "script" not in metrics  # a stored name never becomes a label value

        code, page = fetch(base + "/")
        assert code == 200
        assert SCRIPT not in page  # the version, the model and the problem: all escaped
        assert page.count(html.escape(SCRIPT)) >= 3
        assert 'id="skipped-windows"' in page and 'id="set-aside-windows"' in page
        assert f"<td>{ids['fraud']}</td>" in page

        # reads no longer meet them (fraud's page reads its windows again; SCRIPT has none)
        assert fetch(f"{base}/models/fraud")[0] == 200
        assert daemon.store.skipped_windows.counts() == reads
