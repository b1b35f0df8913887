"""The console on the running daemon (real broker, SQLite store, slack-sdk against the
Slack-compatible server): the link in the Slack message opens the incident page, which
shows the rule's evaluations with their thresholds and the current against reference
distribution; the overview, model and quarantine pages render; the silence form needs
its CSRF token and its silence shows in ``/api/silences``."""

from __future__ import annotations

import html
import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from watchkeeper.daemon.demo.broker import EmbeddedBroker

from tests.integration.test_ingest import fetch, running
from tests.integration.test_policy_daemon import Stream, store_reference
from tests.support import TOKEN, FakeSlack, create_topic, make_config, produce, wait_until

pytestmark = pytest.mark.broker

POLICY = """\
model: fraud
reference: store:default
window: 5s
schedule: {every: 1s}
min_samples: 40
rules:
  - name: drift
    metric: psi
    features: [amount]
    warn: 0.1
    critical: 0.25
    resolve: 0.05
    actions: {warn: [oncall], critical: [oncall]}
"""


def drifting_setup(tmp_path: Path, url: str, slack: FakeSlack) -> dict[str, Any]:
    """The stored reference and policy folder, and the config sections of a daemon whose
    drift notifications go to the Slack-compatible server (``WK_SLACK`` holds its token)."""
    store_reference(url)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "fraud.yaml").write_text(POLICY)
    slack_channel = {"type": "slack", "token_env": "WK_SLACK", "channel": "#ml"}
    return {
        "windows": {"size": "5s", "allowed_lateness": "5s"},
        "policies": {"paths": [str(policies)]},
        "alerts": {
            "channels": {"oncall": {**slack_channel, "api_url": slack.api}},
            "group_wait": "0s",
        },
    }


def slack_links(slack: FakeSlack, about: str = "psi") -> list[str]:
    """The buttons' links of the Slack messages that mention ``about``: under load the
    stream can start slower than the no-data rule expects, and that incident's message,
    whose page has no feature chart, may come first."""
    urls = []
    for method, body in slack.calls:
        if method != "chat.postMessage" or about not in json.dumps(body):
            continue
        blocks = body.get("blocks")
        blocks = json.loads(blocks) if isinstance(blocks, str) else blocks or []
        for block in blocks:
            for element in block.get("elements", []):
                if element.get("type") == "button":
                    urls.append(element["url"])
    return urls


def chart_data(page: str) -> Any:
    match = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page)
    assert match is not None
    return json.loads(match.group(1))


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_slack_link_opens_the_incident_page_with_its_plot_and_the_form_silences_it(
    broker: EmbeddedBroker,
    tmp_path: Path,
    topic_name: str,
    slack: FakeSlack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_topic(broker.bootstrap, topic_name)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("WK_SLACK", TOKEN)
    sections = drifting_setup(tmp_path, url, slack)
    config = make_config(
        tmp_path, broker.bootstrap, url, {"predictions": {"name": topic_name}}, **sections
    )
    produce(broker.bootstrap, topic_name, [b"<script>alert(1)</script>"])
    stream = Stream(broker.bootstrap, topic_name)
    stream.shift = 1.5  # drifted from the start
    stream.start()
    try:
        with running(config) as daemon:
            assert daemon.http is not None
            base = f"http://{daemon.http.address}"
            links = wait_until(lambda: slack_links(slack), timeout=90)
            status_link = next(u for u in links if "/incidents/" in u)
            assert re.fullmatch(re.escape(base) + r"/incidents/[0-9a-f]{16}", status_link)

            with urllib.request.urlopen(status_link, timeout=10) as response:
                assert response.headers["Content-Type"].startswith("text/html")
                csp = response.headers["Content-Security-Policy"]
                page = response.read().decode()
            assert "script-src 'self'" in csp and "unsafe-eval" not in csp
            assert "frame-ancestors 'none'" in csp
            assert "fraud" in page and 'id="timeline-chart"' in page
            data = chart_data(page)
            (series,) = data["series"]
            assert series["feature"] == "amount"
            assert len(series["value"]) == len(series["x"]) >= 1
            assert set(series["warn"]) == {0.1} and set(series["critical"]) == {0.25}
            assert set(series["resolve"]) == {0.05}
            (dist,) = data["distributions"]
            assert len(dist["labels"]) == len(dist["reference"]) == len(dist["current"]) == 10
            assert sum(dist["reference"]) == pytest.approx(1.0)
            assert sum(dist["current"]) == pytest.approx(1.0)
            assert 'id="report-link"' in page  # the Evidently report of the window

            status, script = fetch(base + "/static/plotly.min.js")
            assert status == 200 and "Plotly" in script[:5000]
            assert fetch(base + "/static/../daemon.py")[0] == 404

            status, overview = fetch(base + "/")
            assert status == 200 and status_link.removeprefix(base) in overview
            status, model_page = fetch(base + "/models/fraud")
            assert status == 200
            (heatmap,) = chart_data(model_page)["heatmaps"]  # drift per feature over time
            assert heatmap["metric"] == "psi" and heatmap["y"] == ["amount"]
            assert len(heatmap["z"][0]) == len(heatmap["x"]) >= 1
            assert fetch(base + "/models/nobody")[0] == 404
            assert fetch(base + "/incidents/0000000000000000")[0] == 404
            assert fetch(base + "/incidents/not-a-fingerprint")[0] == 404
            status, quarantine = fetch(base + "/quarantine")
            assert status == 200
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in quarantine
            assert "<script>alert(1)" not in quarantine

            # the form: JSON with the page's CSRF token; without it, refused
            csrf = html.unescape(re.search(r'data-csrf="([^"]+)"', page).group(1))  # type: ignore[union-attr]
            target = status_link + "/silence"
            form = json.dumps({"duration": "1h", "author": "on-call", "comment": "looking"})
            json_type = {"Content-Type": "application/json"}
            assert post(target, form.encode(), json_type)[0] == 403
            assert post(target, form.encode(), {**json_type, "X-CSRF-Token": "1.x"})[0] == 403
            # the gate's rules hold for the form as for the API: no cross-site post
            for header in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
                refused = {**json_type, "X-CSRF-Token": csrf, **header}
                assert post(target, form.encode(), refused)[0] == 403
            plain = {"Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": csrf}
            assert post(target, b"duration=1h", plain)[0] == 415
            bad = json.dumps({"duration": "forever"}).encode()
            assert post(target, bad, {**json_type, "X-CSRF-Token": csrf})[0] == 400
            code, answer = post(target, form.encode(), {**json_type, "X-CSRF-Token": csrf})
            assert code == 201, answer
            assert answer["matchers"] == {
                "model": "fraud",
                "policy": "fraud",
                "rule": "drift",
                "feature": "amount",
            }
            _, body = fetch(base + "/api/silences")
            (silence,) = json.loads(body)["silences"]
            assert silence["matchers"] == answer["matchers"]
            assert silence["created_by"] == "on-call"
            assert "Silenced by" in fetch(status_link)[1]
            assert 'id="severity-history"' in page and "critical" in page
    finally:
        stream.stop.set()
        stream.join()
