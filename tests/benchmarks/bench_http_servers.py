"""uvicorn against Hypercorn on the probes of issue 15, with raw sockets, on one small
Starlette app: how each server treats bad lengths, a huge request head, 300 half-sent
requests, a slow body, an idle keep-alive connection and a crowd of 100 clients.

    .venv/bin/python tests/benchmarks/bench_http_servers.py [uvicorn|hypercorn]

The figures chose the daemon's server (README, "The server and its limits").
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.security.probes import (
    closed_by_server,
    connect,
    exchange,
    half_sent,
    request_bytes,
    rss_bytes,
    thread_count,
)

APP = """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

async def root(request):
    body = await request.body()
    return PlainTextResponse(f"ok {len(body)}")

app = Starlette(routes=[Route("/", root, methods=["GET", "POST"])])
"""


def measure(server: str) -> None:
    from watchkeeper.daemon.demo.broker import free_port

    folder = Path(tempfile.mkdtemp())
    (folder / "bench_app.py").write_text(APP)
    port = free_port()
    if server == "uvicorn":
        argv = [sys.executable, "-m", "uvicorn", "bench_app:app", "--port", str(port)]
        argv += ["--log-level", "critical", "--http", "httptools"]
    else:
        argv = [sys.executable, "-m", "hypercorn", "bench_app:app"]
        argv += ["--bind", f"127.0.0.1:{port}", "--log-level", "critical"]
    proc = subprocess.Popen(argv, cwd=folder, stderr=subprocess.DEVNULL)
    address = ("127.0.0.1", port)
    try:
        for _ in range(100):
            try:
                socket.create_connection(address, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        pid = proc.pid
        print(f"{server}: idle RSS {rss_bytes(pid) >> 20} MB, {thread_count(pid)} threads")
        for length in ("-1", "abc"):
            r = exchange(address, request_bytes("POST", "/", {"Content-Length": length}) + b"x", 5)
            print(f"  Content-Length {length}: {r.statuses} closed={r.closed}")
        both = {"Content-Length": "5", "Transfer-Encoding": "chunked"}
        r = exchange(address, request_bytes("POST", "/", both, b"0\r\n\r\n"), 5)
        print(f"  Content-Length + chunked: {r.statuses} closed={r.closed}")
        big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
        r = exchange(address, big, 5)
        print(f"  1 MiB header: {r.statuses} closed={r.closed}")
        started = time.monotonic()
        with half_sent(address, 300, b"GET / HTTP/1.1\r\nHost: x\r\nX-a: b\r\n") as socks:
            time.sleep(1)
            print(f"  300 half-sent: RSS {rss_bytes(pid) >> 20} MB, {thread_count(pid)} threads")
            open_ = list(socks)
            deadline = time.monotonic() + 30
            while open_ and time.monotonic() < deadline:
                open_ = [s for s in open_ if not closed_by_server(s, 0.01)]
                time.sleep(0.2)
            waited = time.monotonic() - started
            print(f"  closed by the server after {waited:.1f}s: {300 - len(open_)}/300")
        slow = request_bytes("POST", "/", {"Content-Length": "100"}, content_length=False)
        r = exchange(address, slow + b"abc", 20)
        print(f"  slow body (3 of 100 bytes): {r.statuses} closed={r.closed} in {r.elapsed:.0f}s")
        with connect(address) as sock:
            sock.sendall(request_bytes("GET", "/"))
            sock.recv(65536)
            started = time.monotonic()
            print(
                f"  idle keep-alive closed: {closed_by_server(sock, 30)} "
                f"after {time.monotonic() - started:.1f}s"
            )
        latencies: list[float] = []
        lock = threading.Lock()

        def client() -> None:
            for _ in range(20):
                t = time.monotonic()
                a = exchange(address, request_bytes("GET", "/", {"Connection": "close"}), 30, 1)
                with lock:
                    latencies.append(time.monotonic() - t if a.responses else 99.0)

        workers = [threading.Thread(target=client) for _ in range(100)]
        started = time.monotonic()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        latencies.sort()
        rate = len(latencies) / (time.monotonic() - started)
        p99 = latencies[int(len(latencies) * 0.99)]
        print(
            f"  100 clients x 20: {rate:.0f} req/s, p50 {latencies[len(latencies) // 2] * 1000:.0f}"
            f" ms, p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
        )
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    for name in sys.argv[1:] or ["uvicorn", "hypercorn"]:
        measure(name)
