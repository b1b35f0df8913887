"""The shipped Prometheus rules and Grafana dashboard, checked by the real tools."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry
from watchkeeper.daemon.checks.check_metrics import CheckMetrics
from watchkeeper.daemon.checks.scheduler import PolicyMetrics
from watchkeeper.daemon.demo.broker import free_port
from watchkeeper.daemon.http.server import HttpServer
from watchkeeper.daemon.ingest.metrics import IngestMetrics
from watchkeeper.daemon.notify.delivery import DeliveryMetrics
from watchkeeper.daemon.shadow.rows import ShadowMetrics
from watchkeeper.daemon.store.skipped_windows import SkippedWindows, SkippedWindowsCollector
from watchkeeper.policies.incident_model import Evaluation, Incident, IncidentEvent

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "watchkeeper-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "watchkeeper-dashboard.json"


def exported_names() -> set[str]:
    """Every series name the daemon's registries expose."""
    registry = CollectorRegistry()
    IngestMetrics(registry, ["t"])
    PolicyMetrics(registry)
    DeliveryMetrics(registry)
    CheckMetrics(registry)
    ShadowMetrics(registry)
    registry.register(SkippedWindowsCollector(SkippedWindows(), lambda: ()))
    names = set()
    for family in registry.collect():
        names.add(family.name)
        kinds = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
        for suffix in kinds.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def test_promtool_checks_and_unit_tests_the_rules(promtool: str) -> None:
    check = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 11 rules found" in check.stdout
    test = subprocess.run(
        [promtool, "test", "rules", str(ROOT / "tests" / "prometheus_rules.test.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert test.returncode == 0, test.stdout + test.stderr


def test_rules_and_dashboard_use_only_exported_metrics() -> None:
    names = exported_names()
    used = set(re.findall(r"\b(watchkeeper_[a-z0-9_]+)", RULES.read_text()))
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used |= {m for e in exprs for m in re.findall(r"\b(watchkeeper_[a-z0-9_]+)", e)}
    assert used and used <= names, sorted(used - names)
    titles = {p["title"] for p in dashboard["panels"]}
    for needed in (
        "Ingest rate (records/s)",
        "Consumer lag (records)",
        "PSI per feature",
        "Latency p50 / p95 / p99 (ms)",
        "Open incidents",
        "Shadow rows evaluated/s by candidate",
    ):
        assert needed in titles


def test_prometheus_scrapes_the_daemon_and_fires_a_shipped_rule(
    prometheus_binary: str, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    metrics = CheckMetrics(registry)
    incident = Incident(
        "fp",
        "fraud",
        "fraud",
        "feature-drift",
        "*",
        "psi",
        "critical",
        0,
        {"amount": 0.4},
        "1 feature drifted on fraud",
    )
    metrics.observe(
        [
            Evaluation(
                0,
                "fraud",
                "fraud",
                "feature-drift",
                "psi",
                "amount",
                0.4,
                0.1,
                0.25,
                None,
                "breach",
                "critical",
                "firing",
                1000,
            )
        ],
        [IncidentEvent("opened", incident, 0)],
    )
    server = HttpServer("127.0.0.1", 0, registry, lambda: (True, ""), lambda: (True, ""))
    server.start()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RULES}']\n"
        "scrape_configs:\n  - job_name: watchkeeper\n"
        f"    static_configs: [{{targets: ['{server.address}']}}]\n"
    )
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            prometheus_binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        firing: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/v1/alerts", timeout=2
                ) as resp:
                    data = json.loads(resp.read())
                firing = [
                    a
                    for a in data["data"]["alerts"]
                    if a["labels"]["alertname"] == "WatchkeeperIncidentOpen"
                    and a["state"] == "firing"
                ]
                if firing:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert firing, (tmp_path / "prometheus.log").read_text()[-2000:]
        labels = firing[0]["labels"]
        assert labels["model"] == "fraud" and labels["severity"] == "critical"  # type: ignore[index]
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/v1/query?query=watchkeeper_metric_value", timeout=5
        ) as resp:
            result = json.loads(resp.read())["data"]["result"]
        assert result[0]["metric"]["feature"] == "amount" and result[0]["value"][1] == "0.4"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        server.close()
