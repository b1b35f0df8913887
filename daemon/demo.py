"""``watchkeeper demo``: the whole product on one machine, on a timeline of faults.

It starts the embedded Kafka-protocol broker (unless ``--bootstrap`` names a cluster), a
synthetic model server for two models (:mod:`watchkeeper.daemon.synthetic`), reference
profiles built from their "training" data, an INT8 candidate of the fraud model made by
``watchkeeper compress``, and the daemon with the shipped example config and policies —
time-compressed (:mod:`watchkeeper.daemon.demo_timeline`). Then it injects drift, a
latency regression, a NaN burst and an accuracy drop one after another, and puts the
candidate in shadow; incidents print as the console channel renders them (as in Slack),
and a live view shows traffic, checks, incidents and the candidate. At the end it prints
which incidents each phase opened and resolved against what it should have.

Everything it starts stops through one exit stack, in reverse order, on ``--duration``,
Ctrl-C or SIGTERM. ``--workdir`` keeps the store, config, policies and models afterwards.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from rich.console import Console
from rich.live import Live
from watchkeeper.daemon.app import Daemon
from watchkeeper.daemon.broker import EmbeddedBroker, free_port
from watchkeeper.daemon.config import load_config
from watchkeeper.daemon.demo_timeline import (
    Phase,
    Scale,
    judge,
    outcome_dicts,
    phase_at,
    timeline,
    write_policies,
)
from watchkeeper.daemon.demo_view import LiveView
from watchkeeper.daemon.synthetic import Faults, FraudModel, SyntheticServer, paced

SHIPPED_POLICIES = Path(__file__).resolve().parent.parent / "policies" / "examples"


@dataclass(frozen=True)
class DemoOptions:
    config: Path
    duration: float | None
    """Seconds; None: the timeline's length; 0: until Ctrl-C."""
    bootstrap: str | None = None
    rate: float = 300.0
    phase_s: float = 20.0
    workdir: Path | None = None
    listen: str | None = None
    alertmanager: str | None = None


def create_topics(bootstrap: str, names: list[str], partitions: int = 3) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        for name in names:
            with suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


class Traffic:
    """The model server's producer: predictions now, each label ``label_delay_s`` later,
    with whatever :attr:`faults` the timeline sets."""

    def __init__(
        self, bootstrap: str, predictions: str, labels: str, rate: float, label_delay_s: float
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = (predictions, labels)
        self.rate = rate
        self.label_delay_ms = int(label_delay_s * 1000)
        self.faults = Faults()  # replaced whole by the timeline: a reference swap, no lock
        self.produced = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wk-demo-traffic")

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=20)
        server = SyntheticServer(bad_rate=0.01)
        waiting: collections.deque[tuple[int, list[bytes]]] = collections.deque()
        try:
            for n in paced(self.rate):
                if self._stop.is_set():
                    break
                now = int(time.time() * 1000)
                half = n // 2
                batch = server.batch(half, n - half, now, self.faults, self.label_delay_ms)
                for value in batch.predictions:
                    producer.send(self.topics[0], value)
                self.produced += len(batch.predictions)
                waiting.append((now + self.label_delay_ms, batch.labels))
                while waiting and waiting[0][0] <= now:
                    for value in waiting.popleft()[1]:
                        producer.send(self.topics[1], value)
        finally:
            producer.flush()
            producer.close()


def store_references(url: str, workdir: Path, rows: int = 20_000) -> Path:
    """Reference profiles of both models from their "training" data, into the store; the
    fraud profile also as a file (``watchkeeper compress`` calibrates on its sample)."""
    from watchkeeper.daemon.reference import build_reference
    from watchkeeper.daemon.store import Store

    server = SyntheticServer(seed=1)
    with Store.open(url) as store:
        for model in ("fraud", "churn"):
            path = workdir / f"{model}-train.parquet"
            server.training_frame(model, rows).to_parquet(path)
            label = "label" if model == "fraud" else None
            profile = build_reference(path, model, prediction="prediction", label=label)
            store.save_reference(profile)
            if model == "fraud":
                profile.save(workdir / "fraud-reference.json")
    return workdir / "fraud-reference.json"


def make_candidate(workdir: Path, reference: Path, console: Console) -> dict[str, Any]:
    """The FP32 fraud model as ONNX, compressed by ``watchkeeper compress`` (the CLI, as a
    user runs it); returns the policy ``shadow`` section the demo puts in force."""
    models = workdir / "models"
    fp32 = FraudModel().save_onnx(models / "fraud.fp32.onnx")
    command = [
        sys.executable,
        "-m",
        "watchkeeper.daemon",
        "compress",
        str(fp32),
        "--features",
        "amount,age",
        "--reference",
        str(reference),
        "--out",
        str(models),
        "--snippet-dir",
        str(workdir / "policies"),
    ]
    console.print(f"[bold]$ watchkeeper compress {fp32.name} --features amount,age …[/]")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    console.print(done.stdout.rstrip())
    snippet = models / "fraud.fp32.shadow.snippet.yaml"
    if done.returncode not in (0, 1) or not snippet.is_file():
        raise RuntimeError(f"watchkeeper compress failed: {done.stderr.strip()[-500:]}")
    section = dict(yaml.safe_load(snippet.read_text())["shadow"])
    chosen = [c for c in section["candidates"] if c["name"] == "int8-static"] or [
        c for c in section["candidates"] if c["name"].startswith("int8")
    ]
    if not chosen:
        raise RuntimeError("watchkeeper compress made no INT8 candidate")
    section["candidates"] = chosen[:1]
    return section


def demo_config(
    options: DemoOptions, workdir: Path, bootstrap: str, scale: Scale
) -> tuple[Path, list[str]]:
    """The shipped config with the demo's broker, store, ports and time scale; channels
    that would reach outside become console stand-ins. Returns the file and what changed."""
    doc = yaml.safe_load(options.config.read_text())
    kafka = doc["kafka"]
    kafka["bootstrap_servers"] = bootstrap
    # Tansu holds a group join for half the session timeout: Kafka's minimum, 6 s
    kafka["session_timeout"] = "6s"
    kafka["heartbeat_interval"] = "1s"
    doc["store"] = {"url": f"sqlite:///{workdir / 'watchkeeper.db'}"}
    doc["http"] = {"listen": options.listen or f"127.0.0.1:{free_port()}"}
    doc["ingest"]["flush_interval"] = f"{min(1.0, scale.window_size_s / 2):g}s"
    doc["windows"]["size"] = f"{scale.window_size_s:g}s"
    doc["reports"] = {"dir": str(workdir / "reports")}
    doc["policies"] = {"paths": [str(workdir / "policies")]}
    alerts = doc.setdefault("alerts", {})
    alerts["group_wait"] = f"{scale.window_size_s:g}s"
    alerts["group_interval"] = f"{scale.window_size_s:g}s"
    # candidates load only from allowed folders: the policy's own, and these
    shadow = doc.setdefault("shadow", {})
    shadow["model_dirs"] = [str(workdir / "models")]
    shadow["flush_interval"] = f"{scale.window_size_s:g}s"
    channels = alerts["channels"]
    notes = []
    stand_in = {"type": "console", "format": "line"}
    if os.environ.get("SLACK_BOT_TOKEN") and os.environ.get("SLACK_CHANNEL"):
        slack = {
            "type": "slack",
            "token_env": "SLACK_BOT_TOKEN",
            "channel": os.environ["SLACK_CHANNEL"],
        }
        if os.environ.get("SLACK_API_URL"):  # a Slack-compatible server (tests)
            slack["api_url"] = os.environ["SLACK_API_URL"]
        channels["oncall-slack"] = slack
        notes.append(f"oncall-slack → Slack channel {os.environ['SLACK_CHANNEL']}")
    else:
        channels["oncall-slack"] = stand_in
        notes.append("oncall-slack → console (set SLACK_BOT_TOKEN and SLACK_CHANNEL for Slack)")
    if options.alertmanager:
        channels["alertmanager"] = {"type": "alertmanager", "url": options.alertmanager}
        notes.append(f"alertmanager → {options.alertmanager}")
    else:
        channels["alertmanager"] = stand_in
        notes.append("alertmanager → console (--alertmanager URL for a real one)")
    channels["retrain"] = stand_in
    notes.append("retrain webhook → console")
    path = workdir / "watchkeeper.yaml"
    path.write_text(
        f"# {options.config} as the demo runs it (time-compressed)\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )
    return path, notes


def _wait_for_data(daemon: Daemon, scale: Scale, stop: threading.Event, timeout: float) -> bool:
    """Until the store holds a full look-back of both models (so no policy starts on an
    empty window and reports "no data")."""
    deadline = time.monotonic() + timeout
    need = 1.2 * scale.lookback_s
    while not stop.wait(0.5):
        store = daemon.store
        if store is not None and daemon.ingestor is not None and daemon.ingestor.ready.is_set():
            now = int(time.time() * 1000)
            spans = []
            for model in ("fraud", "churn"):
                counts = [s for s, n in store.event_counts(model, 0, now + 1) if n]
                spans.append((now - min(counts)) / 1000 if counts else 0.0)
            if min(spans) >= need:
                return True
        if time.monotonic() > deadline:
            return False
    return False


def _shadow_policy(workdir: Path, shadow: dict[str, Any], phase_s: float) -> None:
    """Put the candidate in shadow by editing the fraud policy; the daemon hot-reloads it."""
    path = workdir / "policies" / "fraud.yaml"
    doc = yaml.safe_load(path.read_text())
    shadow = dict(shadow)
    shadow["candidates"] = [
        dict(c, onnx=f"../models/{Path(c['onnx']).name}") for c in shadow["candidates"]
    ]
    shadow["baseline"] = "../models/fraud.fp32.onnx"
    shadow["sample_rate"] = 1.0
    shadow["promotion"] = {
        # the snippet's latency condition is left out: for a model this small INT8 saves
        # size, not time (README, "Shadow evaluation"); the demo promotes on size
        "when": [
            "shadow_agreement >= 0.99",
            "shadow_accuracy_delta >= -0.005",
            "shadow_size_ratio <= 0.5",
        ],
        # enough labelled rows that one or two disagreements do not decide
        "min_rows": int(100 * phase_s),
        "min_labelled_rows": int(80 * phase_s),
        "over": f"{1.5 * phase_s:g}s",
        "on_promote": ["console", "retrain"],
        "on_reject": ["console"],
    }
    doc["shadow"] = shadow
    path.write_text(
        "# the demo's fraud policy with the INT8 candidate in shadow\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )


def run_demo(options: DemoOptions) -> int:
    console = Console()
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ExitStack() as outer:
            if options.workdir is not None:
                workdir = options.workdir.resolve()
                workdir.mkdir(parents=True, exist_ok=True)
            else:
                workdir = Path(outer.enter_context(tempfile.TemporaryDirectory(prefix="wk-demo-")))
            record: dict[str, Any] = {"phase_s": options.phase_s, "phases": [], "t0_ms": None}
            with ExitStack() as stack:
                outcome, produced = _run(options, console, workdir, record, stop, stack)
            # everything has stopped (reverse order); the store holds the final state
            return _summary(console, workdir, options.phase_s, record, produced, outcome)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _run(
    options: DemoOptions,
    console: Console,
    workdir: Path,
    record: dict[str, Any],
    stop: threading.Event,
    stack: ExitStack,
) -> tuple[int, int]:
    scale = Scale(options.phase_s)
    phases = timeline(options.phase_s)
    bootstrap = options.bootstrap
    if bootstrap is None:
        broker = stack.enter_context(EmbeddedBroker(log_path=workdir / "broker.log"))
        bootstrap = broker.bootstrap
    base = load_config(options.config)
    topics = base.kafka.topics.by_role()
    create_topics(bootstrap, [t.name for t in topics.values()])
    console.print(f"[bold]watchkeeper demo[/] · broker {bootstrap} · work dir {workdir}")
    (workdir / "policies").mkdir(exist_ok=True)
    reference = store_references(f"sqlite:///{workdir / 'watchkeeper.db'}", workdir)
    shadow = make_candidate(workdir, reference, console)
    config_path, notes = demo_config(options, workdir, bootstrap, scale)
    config = load_config(config_path)
    console.print("channels: " + "; ".join(notes))
    console.print(
        f"time compressed: windows of {scale.window_size_s:g}s, policies look at the last "
        f"{scale.lookback_s:g}s every {scale.every_s:g}s; labels arrive "
        f"{scale.label_delay_s:g}s after their prediction"
    )

    daemon = Daemon(config)
    daemon_stop = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(daemon_stop,), name="wk-daemon")
    runner.start()
    stack.callback(runner.join)
    stack.callback(daemon_stop.set)
    traffic = stack.enter_context(
        Traffic(
            bootstrap,
            topics["predictions"].name,
            topics["labels"].name,
            options.rate,
            scale.label_delay_s,
        )
    )
    started = time.monotonic()
    view = LiveView(daemon, phases, started)
    outcome = 0
    with Live(view.frame(), console=console, refresh_per_second=2) as live:
        if not _wait_for_data(daemon, scale, stop, timeout=120):
            if not stop.is_set():
                console.print("[red]no events reached the store within 120 s[/]")
                outcome = 1
            return outcome, traffic.produced
        written = write_policies(SHIPPED_POLICIES, workdir / "policies", scale)
        view.t0 = time.monotonic()
        record["t0_ms"] = int(time.time() * 1000)
        console.print("policies in force: " + ", ".join(p.name for p in written))
        current: Phase | None = None
        while not stop.wait(0.25):
            t = time.monotonic() - view.t0
            if options.duration and time.monotonic() - started >= options.duration:
                break
            if options.duration is None and t >= phases[-1].settle_s:
                break
            if not runner.is_alive():
                console.print("[red]the daemon stopped unexpectedly; see the log above[/]")
                outcome = 1
                break
            phase = phase_at(phases, t)
            if phase is not current:
                current = phase
                if phase is not None:
                    console.print(f"[bold magenta]▶ {phase.name}[/]: {phase.title}")
                    record["phases"].append(phase.name)
                    if phase.shadow:
                        _shadow_policy(workdir, shadow, options.phase_s)
            injecting = phase is not None and t < phase.end_s
            traffic.faults = phase.faults if phase is not None and injecting else Faults()
            record["elapsed_s"] = t
            live.update(view.frame())
        live.update(view.frame())
    return outcome, traffic.produced


def _summary(
    console: Console,
    workdir: Path,
    phase_s: float,
    record: dict[str, Any],
    produced: int,
    outcome: int,
) -> int:
    """What each phase opened against what it should have, the candidate's decision and
    the event totals; also written to ``demo-result.json`` in the work dir."""
    from rich.table import Table
    from watchkeeper.daemon.incidents import IncidentStore
    from watchkeeper.daemon.shadow_store import ShadowStore
    from watchkeeper.daemon.store import Store

    phases = timeline(phase_s)
    done = [
        p
        for p in phases
        if p.name in record["phases"] and p.settle_s <= record.get("elapsed_s", 0) + 0.5
    ]
    with Store.open(f"sqlite:///{workdir / 'watchkeeper.db'}") as store:
        incidents = IncidentStore(store.engine).incidents(None, limit=1000)
        decisions = list(ShadowStore(store.engine).decisions().values())
        totals = store.totals()
    outcomes = judge(done, record["t0_ms"], incidents) if record["t0_ms"] else []
    table = Table(title="what the timeline injected and what watchkeeper made of it")
    for column in (
        "phase",
        "expected incidents",
        "opened",
        "first after",
        "resolved after end",
        "",
    ):
        table.add_column(column)
    for o in outcomes:
        table.add_row(
            o.phase,
            ", ".join(o.expected) or "none",
            ", ".join(o.opened) or "none",
            "—" if o.first_open_s is None else f"{o.first_open_s:.1f}s",
            "—" if o.last_resolve_s is None else f"{o.last_resolve_s:.1f}s",
            "[green]✓[/]"
            if o.ok
            else "[red]✗[/]" + (f" open: {', '.join(o.unresolved)}" if o.unresolved else ""),
        )
    console.print(table)
    for d in decisions:
        console.print(
            f"shadow decision for {d['policy']} / {d['candidate']}: [bold]{d['decision']}[/]"
        )
    console.print(
        f"events produced {produced:,} (1 % malformed on purpose) · stored {totals['events']:,}"
        f" · quarantined {totals['quarantined']:,}"
    )
    result = record | {
        "outcomes": outcome_dicts(outcomes),
        "decisions": decisions,
        "produced": produced,
        "totals": totals,
    }
    (workdir / "demo-result.json").write_text(json.dumps(result, indent=2, default=str))
    console.print("demo finished")
    return outcome
