"""What ``watchkeeper demo`` sets up before its timeline runs: topics, the synthetic
model server's producer, reference profiles, the compressed candidate, the config (see
:mod:`watchkeeper.daemon.demo.run`)."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from rich.console import Console
from watchkeeper.daemon.demo.broker import free_port
from watchkeeper.daemon.demo.synthetic import Faults, FraudModel, SyntheticServer, paced
from watchkeeper.daemon.demo.timeline import Scale


def store_url(workdir: Path) -> str:
    """The demo's SQLite store, in its work dir."""
    return f"sqlite:///{workdir / 'watchkeeper.db'}"


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


@dataclass(frozen=True)
class Sent:
    """What the demo's traffic got onto the broker (:meth:`Traffic.sent`)."""

    predictions: int
    """Prediction records the broker acknowledged."""
    labels: int
    """Label records the broker acknowledged."""
    failed: int
    """Records the producer gave up on (after its retries): not counted above."""
    ends: dict[tuple[str, int], int]
    """Per (topic, partition), the offset after the last acknowledged record: where a
    consumer that read everything stands (Tansu's own end offsets can be short by a
    batch, shared/DESIGN.md)."""

    def unread(self, committed: dict[tuple[str, int], int]) -> int:
        """How many acknowledged records lie beyond the ``committed`` offsets."""
        return sum(max(0, end - committed.get(key, 0)) for key, end in self.ends.items())


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
        self.produced = 0  # predictions handed to the producer (the live view's count)
        self.labels_produced = 0  # labels handed to it (a held or still-delayed label is not)
        # what the broker acknowledged, from the producer's callbacks: on its I/O thread, or
        # on this one for a future already done, hence the lock
        self._acked: collections.Counter[str] = collections.Counter()
        self._ends: dict[tuple[str, int], int] = {}
        self._failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wk-demo-traffic")

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sent(self) -> Sent:
        """What the broker acknowledged, once the traffic has stopped (:meth:`__exit__`:
        the producer flushed and closed). Read while it runs, a count is already stale: the
        thread sends another tick every 0.1 s until it sees the stop — a summary that read
        the counters before stopping the traffic claimed a tick (45 records) too few."""
        if self._thread.is_alive():
            raise RuntimeError("the traffic is still running: its counts are not final yet")
        with self._lock:
            return Sent(
                self._acked[self.topics[0]],
                self._acked[self.topics[1]],
                self._failed,
                dict(self._ends),
            )

    def _on_ack(self, metadata: Any) -> None:
        key = (str(metadata.topic), int(metadata.partition))
        with self._lock:
            self._acked[key[0]] += 1
            self._ends[key] = max(self._ends.get(key, 0), int(metadata.offset) + 1)

    def _on_error(self, _exc: BaseException) -> None:
        with self._lock:
            self._failed += 1

    def _send(self, producer: KafkaProducer, topic: str, value: bytes) -> None:
        producer.send(topic, value).add_callback(self._on_ack).add_errback(self._on_error)

    def _run(self) -> None:
        # kafka-python 3 is idempotent by default (enable_idempotence, retries until
        # delivery_timeout_ms), and so is Tansu: its memory store (v0.6.0 DynoStore::produce)
        # answers a batch re-sent with an old sequence DuplicateSequenceNumber, which the
        # client takes as sent, so a retry is not stored twice. Read from the code, not
        # tested: tests/integration/test_demo_traffic.py finds no duplicate in the topics,
        # but forces no retry
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=20)
        server = SyntheticServer(bad_rate=0.01)
        waiting: collections.deque[tuple[int, list[bytes]]] = collections.deque()
        held: list[bytes] = []  # labels of a stopped labels stream, sent when it resumes
        try:
            for n in paced(self.rate):
                if self._stop.is_set():
                    break
                now = int(time.time() * 1000)
                half = n // 2
                batch = server.batch(half, n - half, now, self.faults, self.label_delay_ms)
                for value in batch.predictions:
                    self._send(producer, self.topics[0], value)
                self.produced += len(batch.predictions)
                if self.faults.labels_held:
                    held += batch.labels
                else:
                    for value in held:
                        self._send(producer, self.topics[1], value)
                    self.labels_produced += len(held)
                    held.clear()
                    waiting.append((now + self.label_delay_ms, batch.labels))
                while waiting and waiting[0][0] <= now:
                    due = waiting.popleft()[1]
                    for value in due:
                        self._send(producer, self.topics[1], value)
                    self.labels_produced += len(due)
        finally:
            producer.flush()
            producer.close()


def store_references(url: str, workdir: Path, rows: int = 20_000) -> Path:
    """Reference profiles of both models from their "training" data, into the store; the
    fraud profile also as a file (``watchkeeper compress`` calibrates on its sample)."""
    from watchkeeper.daemon.offline.reference import build_reference
    from watchkeeper.daemon.store.store import Store

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
    doc["store"] = {"url": store_url(workdir)}
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

    def stand_in() -> dict[str, str]:  # a fresh dict each: one shared would dump as YAML aliases
        return {"type": "console", "format": "line"}

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
        channels["oncall-slack"] = stand_in()
        notes.append("oncall-slack → console (set SLACK_BOT_TOKEN and SLACK_CHANNEL for Slack)")
    if options.alertmanager:
        channels["alertmanager"] = {"type": "alertmanager", "url": options.alertmanager}
        notes.append(f"alertmanager → {options.alertmanager}")
    else:
        channels["alertmanager"] = stand_in()
        notes.append("alertmanager → console (--alertmanager URL for a real one)")
    channels["retrain"] = stand_in()
    notes.append("retrain webhook → console")
    path = workdir / "watchkeeper.yaml"
    path.write_text(
        f"# {options.config} as the demo runs it (time-compressed)\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )
    return path, notes


def shadow_policy(workdir: Path, shadow: dict[str, Any], phase_s: float) -> None:
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
