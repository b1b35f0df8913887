"""``watchkeeper demo``: the daemon with the example config on an embedded broker, fed by a
synthetic model server, with a live view of what it has stored.

This is the streaming-core demo: events flowing, windows filling, bad records
quarantined. Drift detection, incidents and alerts join it as those parts land.
"""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from contextlib import ExitStack, suppress
from pathlib import Path

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from rich.console import Console
from rich.live import Live
from rich.table import Table
from watchkeeper.daemon.app import Daemon
from watchkeeper.daemon.broker import EmbeddedBroker, free_port
from watchkeeper.daemon.config import Config, HttpConfig, StoreConfig, load_config
from watchkeeper.daemon.synthetic import SyntheticServer, paced


def create_topics(bootstrap: str, names: list[str], partitions: int = 3) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        for name in names:
            with suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


def _produce(bootstrap: str, topic: str, rate: float, stop: threading.Event) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    server = SyntheticServer(bad_rate=0.01)
    try:
        for n in paced(rate):
            if stop.is_set():
                break
            now = int(time.time() * 1000)
            half = n // 2
            for value in server.encode(server.fraud(half, now) + server.churn(n - half, now)):
                producer.send(topic, value)
    finally:
        producer.flush()
        producer.close()


def _view(daemon: Daemon, started: float) -> Table:
    table = Table(title=f"watchkeeper demo — {time.monotonic() - started:.0f}s")
    for column in ("model", "version", "window start (UTC)", "events", "features"):
        table.add_column(column)
    store = daemon.store
    if store is None:
        return table
    for w in store.windows()[-8:]:
        s = w.summary
        table.add_row(
            s.model,
            s.version,
            time.strftime("%H:%M:%S", time.gmtime(s.start_ms / 1000)),
            str(w.events),
            ", ".join(sorted(s.features)),
        )
    totals = store.totals()
    table.caption = (
        f"stored events {totals['events']} · quarantined {totals['quarantined']}"
        f" · metrics on http://{daemon.http.address if daemon.http else '?'}/metrics"
    )
    return table


def store_references(url: str, workdir: Path, rows: int = 20_000) -> None:
    """Reference profiles of both synthetic models, from their "training" data."""
    import pandas as pd
    from watchkeeper.daemon.reference import build_reference
    from watchkeeper.daemon.store import Store

    server = SyntheticServer(seed=1)
    now = int(time.time() * 1000)
    with Store.open(url) as store:
        for model, events in (
            ("fraud", server.fraud(rows, now)),
            ("churn", server.churn(rows, now)),
        ):
            frame = pd.DataFrame([e["features"] for e in events])
            prediction = [e["prediction"] for e in events]
            frame["prediction"] = [p[1] if isinstance(p, list) else p for p in prediction]
            path = workdir / f"{model}-train.parquet"
            frame.to_parquet(path)
            store.save_reference(build_reference(path, model, prediction="prediction"))


def run_demo(config_path: Path, duration: float, bootstrap: str | None, rate: float) -> int:
    base = load_config(config_path)
    console = Console()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wk-demo-")))
        if bootstrap is None:
            broker = stack.enter_context(EmbeddedBroker(log_path=workdir / "broker.log"))
            bootstrap = broker.bootstrap
        topics = base.kafka.topics.by_role()
        create_topics(bootstrap, [t.name for t in topics.values()])
        kafka = base.kafka.model_copy(
            update={
                "bootstrap_servers": [bootstrap],
                "session_timeout": 6.0,
                "heartbeat_interval": 1.0,
            }
        )
        config: Config = base.model_copy(
            update={
                "kafka": kafka,
                "store": StoreConfig(url=f"sqlite:///{workdir / 'watchkeeper.db'}"),
                "http": HttpConfig(listen=f"127.0.0.1:{free_port()}"),
                "ingest": base.ingest.model_copy(update={"flush_interval": 1.0}),
            }
        )
        store_references(config.store_url(), workdir)
        daemon = Daemon(config)
        daemon_stop = threading.Event()
        runner = threading.Thread(target=daemon.run, args=(daemon_stop,), name="wk-daemon")
        runner.start()
        stack.callback(runner.join)
        stack.callback(daemon_stop.set)
        producer = threading.Thread(
            target=_produce,
            name="wk-demo-producer",
            args=(bootstrap, topics["predictions"].name, rate, stop),
        )
        producer.start()
        stack.callback(producer.join)
        stack.callback(stop.set)
        started = time.monotonic()
        console.print(f"[bold]watchkeeper demo[/] on {bootstrap}; Ctrl-C stops")
        with Live(_view(daemon, started), console=console, refresh_per_second=1) as live:
            while not stop.wait(1.0):
                if duration and time.monotonic() - started >= duration:
                    break
                if not runner.is_alive():
                    console.print("[red]the daemon stopped unexpectedly[/]")
                    return 1
                live.update(_view(daemon, started))
    console.print("demo finished")
    return 0
