"""Replica scaling: 1, 2 and 3 daemons on one 6-partition topic and one PostgreSQL store.

1. starts the embedded Tansu broker (or uses ``--bootstrap``) and produces ``--events``
   prediction events with 20 numeric features into a topic of 6 partitions;
2. for k = 1, 2, 3: starts k ``watchkeeper run`` processes with one new group id and a
   fresh PostgreSQL database, and times from the first stored event until the store holds
   every event; reads each process's CPU time from /proc;
3. prints events/s per k, the scaling against k = 1, and the CPU cost per event, from
   which it models the rate on a machine with more cores (each replica then gets a core:
   rate ≈ k / CPU-seconds-per-event, until the store or the broker saturates).

This machine has 2 cores shared by the broker, PostgreSQL and the replicas: more replicas
than cores only add rebalancing and contention, and the table says so honestly.
Run: ``make bench`` or ``python tests/benchmarks/bench_replicas.py [--events N]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import produce

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def stored(url: str) -> int:
    from watchkeeper.daemon.store.store import Store

    try:
        with Store.open(url, migrate=False) as store:
            return int(store.totals()["events"])
    except Exception:
        return 0  # not migrated yet


def run(bootstrap: str, topic: str, n: int, k: int, workdir: Path) -> dict[str, float]:
    name = f"wk_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    group = f"bench-{uuid.uuid4().hex[:8]}"
    procs = []
    try:
        for i in range(k):
            config = {
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "group_id": group,
                    "topics": {"predictions": {"name": topic}},
                    "session_timeout": "6s",
                    "heartbeat_interval": "1s",
                },
                "store": {"url": url},
                "http": {"listen": "127.0.0.1:0"},
                "ingest": {"flush_interval": "1s"},
            }
            path = workdir / f"{group}-{i}.yaml"
            path.write_text(yaml.safe_dump(config))
            log = open(workdir / f"{group}-{i}.log", "wb")  # noqa: SIM115
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "watchkeeper.daemon", "run", "-c", str(path)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        first = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            count = stored(url)
            if count and first is None:
                first = time.monotonic()
                cpu_start = sum(cpu_seconds(p.pid) for p in procs)
            if count >= n:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"k={k}: only {stored(url)} of {n} stored")
        assert first is not None
        elapsed = time.monotonic() - first
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu_start
        assert stored(url) == n, "events counted twice"
        return {"k": k, "seconds": elapsed, "rate": n / elapsed, "cpu_per_event_us": cpu / n * 1e6}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=600_000)
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from watchkeeper.daemon.demo.broker import EmbeddedBroker

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        broker = None
        bootstrap = args.bootstrap
        if bootstrap is None:
            broker = EmbeddedBroker(log_path=workdir / "broker.log").__enter__()
            bootstrap = broker.bootstrap
        try:
            topic = f"bench-replicas-{uuid.uuid4().hex[:6]}"
            admin = KafkaAdminClient(bootstrap_servers=bootstrap)
            admin.create_topics([NewTopic(topic, 6, 1)])
            admin.close()
            produce(bootstrap, topic, args.events)
            results = [run(bootstrap, topic, args.events, k, workdir) for k in (1, 2, 3)]
        finally:
            if broker is not None:
                broker.__exit__(None, None, None)
    base = results[0]["rate"]
    cores = os.cpu_count() or 1
    print(f"replicas on one 6-partition topic, {args.events:,} events, {cores} cores")
    print("| replicas | events/s | × one replica | CPU µs per event |")
    print("| --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['k']:.0f} | {r['rate']:,.0f} | {r['rate'] / base:.2f} "
            f"| {r['cpu_per_event_us']:.1f} |"
        )
    per_event = results[0]["cpu_per_event_us"] / 1e6
    print(
        f"model: one replica per core ≈ {1 / per_event:,.0f} events/s each; "
        f"k cores ≈ k × that until the store or the broker saturates"
    )


if __name__ == "__main__":
    main()
