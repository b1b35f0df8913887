"""Soak: the daemon under a sustained rate for a fixed time; RSS must stay flat, lag bounded.

Starts the embedded broker (or ``--bootstrap``), one ``watchkeeper run`` process (SQLite
store, or ``--store URL``) and a producer process holding ``--rate`` events/s of 20-feature
prediction events. Every ``--every`` seconds it prints produced and stored totals, the lag
between them, the daemon's RSS and the mean commit time over the interval (from
``/metrics``). At the end it judges:

* RSS flat: the last quarter's mean RSS is within ``--rss-slack`` (10 %) of the mean of the
  quarter after warm-up (the first quarter is warm-up: imports, first windows, caches);
* lag bounded: in the second half the lag never exceeds ``--rate`` × ``--max-lag-s`` events.

Exit status 1 when either fails. Run: ``make soak`` (10 minutes) or
``python tests/benchmarks/soak.py --duration 600 --rate 20000``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
import yaml

FEATURES = [f"f{i:02d}" for i in range(20)]


def producer_main(bootstrap: str, topic: str, rate: float, duration: float) -> None:
    import numpy as np
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1)
    rng = np.random.default_rng(3)
    sent = 0
    started = time.monotonic()
    tick = 0.1
    while (now := time.monotonic()) - started < duration:
        # at most 2,000 per round, so the produced count on disk is never far behind
        due = min(2_000, int(rate * (now - started)) - sent)
        if due > 0:
            values = np.round(rng.normal(size=(due, len(FEATURES))), 4).tolist()
            ts = int(time.time() * 1000)
            for row in values:
                producer.send(
                    topic,
                    orjson.dumps(
                        {
                            "model": "soak",
                            "model_version": "1",
                            "ts": ts,
                            "features": dict(zip(FEATURES, row, strict=True)),
                            "prediction": row[0],
                            "latency_ms": 5.0,
                        }
                    ),
                )
            sent += due
            Path(sys.argv[-1]).write_text(str(sent))
        if due < 2_000:
            time.sleep(tick)
    producer.flush()
    producer.close()
    Path(sys.argv[-1]).write_text(str(sent))


def rss_mb(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


def flush_stats(port: int) -> tuple[float, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("watchkeeper_flush_duration_seconds_sum "):
            total = float(line.split()[1])
        elif line.startswith("watchkeeper_flush_duration_seconds_count "):
            count = float(line.split()[1])
    return total, count


def stored(url: str) -> int:
    from watchkeeper.daemon.store.store import Store

    try:
        with Store.open(url, migrate=False) as store:
            return int(store.totals()["events"])
    except Exception:
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=20_000.0)
    parser.add_argument("--every", type=float, default=15.0)
    parser.add_argument("--bootstrap")
    parser.add_argument("--store")
    parser.add_argument("--rss-slack", type=float, default=0.10)
    parser.add_argument("--max-lag-s", type=float, default=15.0)
    args = parser.parse_args()
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from watchkeeper.daemon.demo.broker import EmbeddedBroker, free_port

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        broker = None
        bootstrap = args.bootstrap
        if bootstrap is None:
            broker = EmbeddedBroker(log_path=workdir / "broker.log").__enter__()
            bootstrap = broker.bootstrap
        topic = f"soak-{uuid.uuid4().hex[:6]}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(topic, 3, 1)])
        admin.close()
        url = args.store or f"sqlite:///{workdir / 'soak.db'}"
        port = free_port()
        config = {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "group_id": f"soak-{uuid.uuid4().hex[:6]}",
                "topics": {"predictions": {"name": topic}},
                "session_timeout": "6s",
                "heartbeat_interval": "1s",
            },
            "store": {"url": url},
            "http": {"listen": f"127.0.0.1:{port}"},
            "windows": {"size": "1m"},
        }
        (workdir / "soak.yaml").write_text(yaml.safe_dump(config))
        log = open(workdir / "daemon.log", "wb")  # noqa: SIM115
        daemon = subprocess.Popen(
            [sys.executable, "-m", "watchkeeper.daemon", "run", "-c", str(workdir / "soak.yaml")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        counter = workdir / "produced"
        counter.write_text("0")
        producer = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--produce",
                bootstrap,
                topic,
                str(args.rate),
                str(args.duration),
                str(counter),
            ]
        )
        samples: list[dict[str, float]] = []
        started = time.monotonic()
        last_flush = (0.0, 0.0)
        print("    t s   produced     stored        lag   RSS MB   commit ms")
        try:
            while time.monotonic() - started < args.duration:
                time.sleep(args.every)
                if daemon.poll() is not None:
                    print("the daemon exited", file=sys.stderr)
                    return 1
                produced = int(counter.read_text() or 0)
                have = stored(url)
                try:
                    flush = flush_stats(port)
                except OSError:
                    flush = last_flush
                n = flush[1] - last_flush[1]
                commit_ms = (flush[0] - last_flush[0]) / n * 1000 if n else float("nan")
                last_flush = flush
                sample = {
                    "t": time.monotonic() - started,
                    "produced": produced,
                    "stored": have,
                    "lag": produced - have,
                    "rss": rss_mb(daemon.pid),
                    "commit_ms": commit_ms,
                }
                samples.append(sample)
                print(
                    f"{sample['t']:7.0f} {produced:10,} {have:10,} {sample['lag']:10,.0f}"
                    f" {sample['rss']:8.1f} {commit_ms:11.1f}",
                    flush=True,
                )
        finally:
            producer.terminate()
            producer.wait()
            daemon.terminate()
            daemon.wait(timeout=60)
            log.close()
            if broker is not None:
                broker.__exit__(None, None, None)
    quarter = max(1, len(samples) // 4)
    settled = statistics.mean(s["rss"] for s in samples[quarter : 2 * quarter] or samples)
    final = statistics.mean(s["rss"] for s in samples[-quarter:])
    growth = (final - settled) / settled
    max_lag = max(s["lag"] for s in samples[len(samples) // 2 :])
    rate = samples[-1]["stored"] / samples[-1]["t"]
    rss_ok = growth <= args.rss_slack
    lag_ok = max_lag <= args.rate * args.max_lag_s
    print(f"sustained {rate:,.0f} events/s stored (asked {args.rate:,.0f})")
    print(
        f"RSS after warm-up {settled:.1f} MB → end {final:.1f} MB ({growth:+.1%}): "
        + ("flat" if rss_ok else "GROWING")
    )
    print(
        f"max lag in the second half {max_lag:,.0f} events: "
        + ("bounded" if lag_ok else "UNBOUNDED")
    )
    return 0 if rss_ok and lag_ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--produce":
        producer_main(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
        sys.exit(0)
    sys.exit(main())
