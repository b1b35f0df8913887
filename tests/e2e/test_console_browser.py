"""The on-call's path in a real browser (Playwright driving Debian's Chromium): the daemon
runs as a process on the real broker with drift injected; the link in the message the
Slack-compatible server received opens the incident page; its plot is drawn with one
point per evaluation and the warn / critical / resolve thresholds on it; the silence form
silences the incident, seen in ``/api/silences``. Screenshots go to the test's folder."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from watchkeeper.daemon.demo.broker import EmbeddedBroker, free_port

from tests.integration.test_console import chart_data, drifting_setup, slack_links
from tests.integration.test_policy_daemon import Stream
from tests.security.browser import chromium
from tests.support import (
    TOKEN,
    DaemonProcess,
    FakeSlack,
    create_topic,
    daemon_config_dict,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.broker, pytest.mark.browser]

BEARER = "console-test-bearer-token-7f3a"


def api(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return json.loads(response.read())


def test_from_the_slack_link_to_a_drawn_plot_and_a_silence(
    broker: EmbeddedBroker,
    tmp_path: Path,
    topic_name: str,
    slack: FakeSlack,
    processes: list[DaemonProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_topic(broker.bootstrap, topic_name)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    port = free_port()
    data = daemon_config_dict(
        broker.bootstrap,
        url,
        {"predictions": {"name": topic_name}},
        http={"listen": f"127.0.0.1:{port}", "token_env": "WK_HTTP_TOKEN"},
        **drifting_setup(tmp_path, url, slack),
    )
    config = write_config(tmp_path / "watchkeeper.yaml", data)
    monkeypatch.setenv("WK_SLACK", TOKEN)
    monkeypatch.setenv("WK_HTTP_TOKEN", BEARER)
    stream = Stream(broker.bootstrap, topic_name)
    stream.shift = 1.5
    stream.start()
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    processes.append(daemon)
    base = f"http://127.0.0.1:{port}"
    try:
        link = next(
            u for u in wait_until(lambda: slack_links(slack), timeout=120) if "/incidents/" in u
        )
        # a few more evaluations, so the plot has a line to draw
        wait_until(
            lambda: len(api(base, "/api/evaluations?rule=drift")["evaluations"]) >= 5, timeout=60
        )
        with chromium() as browser:
            context = browser.new_context(viewport={"width": 1280, "height": 1800})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "console",
                lambda m: (
                    errors.append(m.text)
                    if m.type == "error" and not m.text.startswith("Failed to load resource")
                    else None
                ),
            )
            failed: list[tuple[int, str]] = []
            page.on(
                "response",
                lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None,
            )
            page.goto(link, wait_until="load", timeout=60_000)
            page.wait_for_selector("#timeline-chart[data-drawn='1']", timeout=30_000)
            embedded = chart_data(page.content())
            # the page's own data first: with none, no plot is coming, and the last
            # evaluations and the daemon's log say why
            assert embedded["distributions"], (
                api(base, "/api/evaluations?rule=drift")["evaluations"][-3:],
                daemon.log_path.read_text(errors="replace")[-3000:],
            )
            page.wait_for_selector("#distribution-0[data-drawn='1']", timeout=30_000)
            values = [v for v in embedded["series"][0]["value"] if v is not None]
            assert len(values) >= 5
            # one marker per evaluation on the value trace (the first trace)
            points = page.locator(
                "#timeline-chart .scatterlayer .trace:first-child .points path"
            ).count()
            assert points == len(values)
            legend = page.locator("#timeline-chart .legendtext").all_text_contents()
            assert {"amount", "warn", "critical", "resolve"} <= set(legend)
            # each threshold is a drawn line, not only a legend entry
            lines = page.locator("#timeline-chart .scatterlayer .trace .js-line").count()
            assert lines >= 4
            bars = page.locator("#distribution-0 .barlayer .point").count()
            assert bars == 2 * 10  # reference and current on the reference's 10 bins
            page.screenshot(path=str(tmp_path / "incident.png"), full_page=True)
            if os.environ.get("WK_SCREENSHOTS"):  # the README's picture: make it again
                shutil.copy(tmp_path / "incident.png", os.environ["WK_SCREENSHOTS"])

            # the silence form: refused without the bearer token, accepted with it
            page.select_option("#silence-form select[name=duration]", "4h")
            page.fill("#silence-form input[name=author]", "on-call")
            page.fill("#silence-form input[name=comment]", "acknowledged")
            page.fill("#silence-form input[name=token]", "wrong")
            page.click("#silence-form button[type=submit]")
            page.wait_for_selector("#silence-result.error", timeout=10_000)
            assert "401" in page.inner_text("#silence-result")
            assert api(base, "/api/silences")["silences"] == []
            page.fill("#silence-form input[name=token]", BEARER)
            page.click("#silence-form button[type=submit]")
            page.wait_for_selector("#silence-result.ok", timeout=10_000)
            (silence,) = api(base, "/api/silences")["silences"]
            assert silence["matchers"] == {
                "model": "fraud",
                "policy": "fraud",
                "rule": "drift",
                "feature": "amount",
            }
            assert silence["created_by"] == "on-call" and silence["comment"] == "acknowledged"
            assert 3.9 * 3600 * 1000 < silence["ends_ms"] - silence["starts_ms"] <= 4 * 3600_000
            page.reload(wait_until="load")
            assert "Silenced by" in page.inner_text("body")
            page.screenshot(path=str(tmp_path / "incident-silenced.png"), full_page=True)

            # the model page from the incident's link: drift per feature drawn as a heatmap
            page.click("a[href='/models/fraud']")
            page.wait_for_selector("#heatmap-0[data-drawn='1']", timeout=30_000)
            assert page.url == f"{base}/models/fraud"
            assert page.locator("#heatmap-0 .hm").count() == 1  # Plotly's heatmap image
            page.screenshot(path=str(tmp_path / "model.png"), full_page=True)
            context.close()
        assert errors == [], errors  # no script error, no CSP violation
        assert failed == [(401, link + "/silence")]  # the wrong token, and nothing else
    finally:
        stream.stop.set()
        stream.join()
