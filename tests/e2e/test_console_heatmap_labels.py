"""The model page's drift heatmaps show whole feature names, in Chromium.

Trial on the Palmer penguins (2026-12-07): the heatmap's fixed 60-pixel left margin cut
every name to its last eight characters — ``bill_length_mm`` and ``flipper_length_mm`` both
read "ength_mm" — and the prediction read "ediction__" (its store key).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.reserved_names import PREDICTION
from watchkeeper.policies.schema import Policy

from tests.security.browser import chromium
from tests.support import console_server, make_config

pytestmark = [pytest.mark.slow, pytest.mark.browser]

MODEL = "penguin"
AT_MS = 1_796_680_000_000 - 1_796_680_000_000 % 300_000
FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", PREDICTION]


@pytest.fixture
def console(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = Store.open(url)
    with store.engine.begin() as conn:
        for i in range(6):
            for feature in FEATURES:
                conn.execute(
                    insert(t.evaluations).values(
                        at_ms=AT_MS + i * 300_000,
                        policy=MODEL,
                        model=MODEL,
                        rule="drift",
                        metric="psi",
                        feature=feature,
                        value=0.05 * (i + 1),
                        warn=0.1,
                        critical=0.25,
                        resolve=None,
                        decision="ok",
                        severity=None,
                        state="ok",
                        n_current=1200,
                        reason="",
                    )
                )
    config = make_config(tmp_path, "127.0.0.1:9", url, {"predictions": {"name": "t"}})
    policy = Policy.model_validate(
        {
            "model": MODEL,
            "window": "15m",
            "rules": [{"name": "drift", "metric": "psi", "features": "all", "critical": 0.25}],
        }
    )
    clock = lambda: AT_MS / 1000 + 3_600  # noqa: E731 (the daemon's injected wall clock)
    try:
        with console_server(store, config, policy, clock=clock) as base:
            yield base
    finally:
        store.close()


def test_every_heatmap_row_is_named_whole_and_inside_the_chart(console: str) -> None:
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            page = context.new_page()
            page.goto(f"{console}/models/{MODEL}", wait_until="load")
            page.wait_for_selector("#heatmap-0[data-drawn='1']", timeout=30_000)
            chart = page.locator("#heatmap-0").bounding_box()
            assert chart is not None
            labels = page.locator("#heatmap-0 .ytick text")
            names = labels.all_text_contents()
            expected = [*FEATURES[:4], "prediction"]
            assert sorted(names) == sorted(expected)
            for i in range(labels.count()):
                box = labels.nth(i).bounding_box()
                assert box is not None
                # the label's left end is inside the chart: nothing cut by the margin
                assert box["x"] >= chart["x"], (names[i], box, chart)
        finally:
            context.close()
