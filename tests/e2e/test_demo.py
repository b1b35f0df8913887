"""``watchkeeper demo`` as a newcomer runs it, on a short timeline: every injected fault
opens exactly the incidents it should and they resolve when it ends, the INT8 candidate is
promoted, the alerts reach Slack (a Slack-compatible server) and the console, the report
link of the first incident opens, and nothing is left running afterwards."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from watchkeeper.daemon.demo.timeline import timeline
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.shadow.store import ShadowStore
from watchkeeper.daemon.store.store import Store

from tests.support import TOKEN, FakeSlack, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.broker]
PHASE_S = 12.0  # quiet phases leave room for slow resolution on a loaded machine


Process = tuple[int, int]
"""A process as (pid, start time in clock ticks since boot): a pid alone may be reused."""


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, from ``/proc/<pid>/stat`` (proc(5))."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return int(fields[1]), int(fields[19])  # ppid is field 4, starttime field 22


def _is_tansu(pid: int) -> bool:
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return b"tansu" in argv0.rsplit(b"/", 1)[-1]


def brokers_under(root: int) -> set[Process]:
    """The Tansu brokers among the descendants of ``root``: only what that process started,
    whatever other suites run brokers on the machine at the same time."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
    found: set[Process] = set()
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        stat = _stat(pid)
        if stat is not None and _is_tansu(pid):
            found.add((pid, stat[1]))
    return found


def alive(process: Process) -> bool:
    stat = _stat(process[0])
    return stat is not None and stat[1] == process[1]


class BrokerWatch:
    """Records, while the demo runs, every broker in its process tree (polled from a
    thread: once the demo exits, a leaked broker is re-parented and no longer its own)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: set[Process] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while _stat(self.root) is not None and not self._stop.is_set():
            self.seen |= brokers_under(self.root)
            self._stop.wait(0.25)

    def stop(self) -> set[Process]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.seen


def assert_no_broker_leaked(seen: set[Process]) -> None:
    """The demo started a broker (so the check proves something) and it is gone."""
    assert seen, "no broker was seen among the demo's processes"
    deadline = time.monotonic() + 10
    while any(alive(p) for p in seen) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in seen if alive(p)], seen


def fetch(url: str, within: float = 120.0) -> tuple[int, bytes]:
    """GET ``url``; a 503 with Retry-After (a report still being made on a loaded machine,
    daemon/http/reports.py) is asked again after it, until ``within`` seconds have gone."""
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(url, timeout=within) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            retry = exc.headers.get("Retry-After")
            if exc.code != 503 or retry is None or time.monotonic() > deadline:
                raise
            time.sleep(float(retry))


def test_the_demo_timeline_opens_and_resolves_each_expected_incident(
    tmp_path: Path, slack: FakeSlack
) -> None:
    workdir = tmp_path / "demo"
    env = os.environ | {
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_CHANNEL": "#ml-demo",
        "SLACK_API_URL": slack.api,
        "COLUMNS": "160",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "watchkeeper.daemon",
            "demo",
            "--phase",
            str(PHASE_S),
            "--workdir",
            str(workdir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    watch = BrokerWatch(process.pid)
    assert process.stdout is not None
    lines: list[str] = []
    report: dict[str, object] = {}

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            console = re.search(r"console: (http://[^/\s]+)/", line)
            if console:
                report["console"] = console.group(1)
            status = re.search(r"status: (http://[^/\s]+)/incidents/([0-9a-f]{16})", line)
            if status and "metrics" not in report:
                # the console, the API and /metrics are served while the demo runs
                base = status.group(1)
                with urllib.request.urlopen(base + "/metrics", timeout=30) as response:
                    report["metrics"] = response.read().decode()
                with urllib.request.urlopen(base + "/api/incidents", timeout=30) as response:
                    report["incidents"] = json.loads(response.read())
                page = f"{base}/incidents/{status.group(2)}"
                with urllib.request.urlopen(page, timeout=30) as response:
                    report["page"] = (response.status, response.read().decode())
            match = re.search(r"report: (http://\S+\.html)", line)
            if match and "status" not in report:
                # the report of the first drift incident, made on the first visit
                report["status"], body = fetch(match.group(1))
                report["body"] = body.decode("utf-8", "replace")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        code = process.wait(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=120)
        process.stdout.close()
    output = "".join(lines)
    assert code == 0, output[-4000:]
    assert "demo finished" in output

    # the store, read independently of the demo's own summary
    result = json.loads((workdir / "demo-result.json").read_text())
    t0 = result["t0_ms"]
    with Store.open(f"sqlite:///{workdir / 'watchkeeper.db'}", migrate=False) as store:
        incidents = IncidentStore(store.engine).incidents(None, limit=1000)
        decisions = list(ShadowStore(store.engine).decisions().values())
        totals = store.totals()
    for phase in timeline(PHASE_S):
        lo, hi = t0 + phase.start_s * 1000, t0 + phase.settle_s * 1000
        opened = [i for i in incidents if lo <= i["opened_ms"] < hi]
        assert {i["rule"] for i in opened} == set(phase.expects), (phase.name, opened)
        assert all(i["model"] == "fraud" for i in opened)
        for i in opened:
            assert i["opened_ms"] >= lo  # not before the fault began
            assert i["resolved_ms"] is not None, (phase.name, i)
            assert i["resolved_ms"] >= t0 + phase.end_s * 1000  # not while it still went on
            assert i["resolved_ms"] < hi  # within the quiet phase after it
    assert not [i for i in incidents if i["state"] == "open"]
    assert all(o["ok"] for o in result["outcomes"]), result["outcomes"]
    assert [(d["candidate"], d["decision"]) for d in decisions] == [("int8-static", "promote")]
    assert totals["events"] > 0 and totals["quarantined"] > 0  # 1 % malformed on purpose
    # what the broker acknowledged, counted once the traffic had stopped (counted before,
    # while it still ran, it missed its last tick: 45 records "over" in CI of 16ed597); the
    # demo stops the daemon once it has read all of it: each record is stored, late or
    # quarantined exactly once
    assert result["send_failures"] == 0
    sent = result["produced"] + result["labels_produced"]
    assert totals["events"] + totals["late_events"] + totals["quarantined"] == sent

    # the console printed each incident as Slack would show it, opened and resolved
    for rule in (
        "feature-drift",
        "latency",
        "nan-burst",
        "accuracy-drop",
        "estimated-accuracy-drop",
    ):
        assert re.search(rf"rule {rule} ·", output), rule
    assert output.count("🚀") >= 1  # the promotion, announced
    assert "watchkeeper_incident_open" in str(report.get("metrics"))
    assert isinstance(report.get("incidents"), dict) and "incidents" in report["incidents"]
    # the console address is printed, and a notification's link opens its incident page
    assert report.get("console"), output[-4000:]
    code_and_page = report.get("page")
    assert isinstance(code_and_page, tuple) and code_and_page[0] == 200
    assert 'id="timeline-chart"' in code_and_page[1]
    body = str(report.get("body", "")).lower()
    assert report.get("status") == 200 and "drifted columns" in body and "amount" in body

    # oncall-slack went to the Slack API: critical drift and NaN incidents, then resolved
    posts = [body for method, body in slack.calls if method == "chat.postMessage"]
    texts = " ".join(str(p.get("text", "")) for p in posts)
    assert posts and "psi" in texts and "nan_rate" in texts, texts[:2000]
    assert any(method == "chat.update" for method, _ in slack.calls)  # resolved in place
    # the estimate incident opened while labels were stopped; the late labels were put
    # beside it in its thread: "estimated accuracy 0.89, realised 0.88 (… labels …)"
    replies = [str(p.get("text", "")) for p in posts if p.get("thread_ts")]
    assert any("estimated accuracy" in r and "realised" in r for r in replies), replies[:20]
    assert TOKEN not in output
    assert TOKEN not in (workdir / "watchkeeper-demo.log").read_text()

    # nothing left running: the broker the demo started is gone
    assert_no_broker_leaked(watch.stop())


def test_ctrl_c_stops_the_demo_cleanly(tmp_path: Path) -> None:
    """``--duration 0`` runs until Ctrl-C; SIGINT then stops everything it started, in
    order, and the demo still prints its summary and exits 0."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "watchkeeper.daemon",
            "demo",
            "--duration",
            "0",
            "--phase",
            "10",
            "--workdir",
            str(tmp_path / "demo"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watch = BrokerWatch(process.pid)
    assert process.stdout is not None
    lines: list[str] = []
    console = None
    try:
        for line in process.stdout:
            lines.append(line)
            if found := re.search(r"console: (http://\S+?)/?$", line):
                console = found.group(1)
            if line.startswith("policies in force"):
                break  # the timeline has begun
        assert console is not None, "".join(lines)[-3000:]

        def checks_run() -> float:
            with urllib.request.urlopen(f"{console}/metrics", timeout=5) as r:
                text = r.read().decode()
            return sum(
                float(value)
                for value in re.findall(
                    r"^watchkeeper_policy_checks_total\{.*\} (\S+)$", text, re.M
                )
            )

        # everything is running once the daemon has ingested and checked a policy: the
        # interrupt lands mid-timeline, with every component started
        wait_until(lambda: checks_run() >= 1, timeout=60, describe=checks_run)
        process.send_signal(signal.SIGINT)
        lines += process.stdout.read().splitlines(keepends=True)
        code = process.wait(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    output = "".join(lines)
    assert code == 0, output[-3000:]
    assert "policies in force" in output and "demo finished" in output
    # the interrupt skips the wait for the daemon to read the rest (up to 30 s)
    assert "interrupted: the daemon stops without reading" in output, output[-3000:]
    assert_no_broker_leaked(watch.stop())
