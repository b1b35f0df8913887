"""kafka-python 3.0.12 leaves the socket of a refused connect to the garbage collector;
the suite's fix (conftest ``kafka_python_closes_failed_connects``) closes it. Each side in
a fresh interpreter, so the warning is the collector's and no other test's. When a
kafka-python release closes it itself, the first assertion fails: drop the fix then."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import gc, socket, sys, warnings
from kafka.net.inet import create_connection
from kafka.net.selector import NetworkSelector

if sys.argv[1] == "fixed":
    from tests import conftest

    fix = conftest.kafka_python_closes_failed_connects.__wrapped__()
    next(fix)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
port = listener.getsockname()[1]
listener.close()  # nothing listens there now: the connect is refused
net = NetworkSelector()
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    try:
        net.run(create_connection, net, "127.0.0.1", port)
    except Exception as exc:
        print("refused:", type(exc).__name__)
    gc.collect()
net.close()
print("unclosed:", sum(issubclass(w.category, ResourceWarning) for w in seen))
"""


def run(side: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, side],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout


def test_a_refused_connect_leaves_its_socket_to_the_collector_unless_fixed() -> None:
    installed = run("installed")
    assert "refused: KafkaConnectionError" in installed
    assert "unclosed: 1" in installed, installed
    fixed = run("fixed")
    assert "refused: KafkaConnectionError" in fixed
    assert "unclosed: 0" in fixed, fixed
