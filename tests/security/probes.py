"""Raw-socket HTTP probes and process measurements for the security tier (and the console
pages of later issues): what an attacker sends, byte for byte, and what it costs the
daemon, read from /proc.

Nothing here trusts an HTTP client library: a library normalises exactly what these
probes need to get wrong on purpose (lengths, framing, pipelining, half-sent headers).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Exchange:
    """What came back on one connection: every response parsed, and whether the server
    closed the connection (EOF) before ``timeout``."""

    responses: list[RawResponse] = field(default_factory=list)
    closed: bool = False
    elapsed: float = 0.0
    leftover: bytes = b""

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]


def connect(address: tuple[str, int], timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _parse(data: bytes, no_body: bool = False) -> tuple[list[RawResponse], bytes]:
    out: list[RawResponse] = []
    while True:
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            return out, data
        head = data[:head_end].decode("latin-1").split("\r\n")
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            return out, data
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        rest = data[head_end + 4 :]
        if no_body:  # the answer to a HEAD: whatever its framing headers say, no body
            body = b""
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size_end = rest.find(b"\r\n")
                if size_end < 0:
                    return out, data
                size = int(rest[:size_end].split(b";")[0], 16)
                if len(rest) < size_end + 2 + size + 2:
                    return out, data
                body += rest[size_end + 2 : size_end + 2 + size]
                rest = rest[size_end + 2 + size + 2 :]
                if size == 0:
                    break
        else:
            length = int(headers.get("content-length", "0") or 0)
            if len(rest) < length:
                return out, data
            body, rest = rest[:length], rest[length:]
        out.append(RawResponse(int(parts[1]), headers, body))
        data = rest


def exchange(
    address: tuple[str, int],
    payload: bytes | list[bytes],
    timeout: float = 10.0,
    expect: int | None = None,
    head: bool = False,
) -> Exchange:
    """Send ``payload`` (a list is sent piece by piece) and read until the server closes
    the connection, ``expect`` responses arrived, or ``timeout`` passed."""
    started = time.monotonic()
    result = Exchange()
    data = b""
    with connect(address, timeout) as sock:
        pieces = payload if isinstance(payload, list) else [payload]
        try:
            for piece in pieces:
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed early (a 413 before the body): read what it said
        deadline = started + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                result.closed = True
                break
            if not chunk:
                result.closed = True
                break
            data += chunk
            parsed, _ = _parse(data, head)
            if expect is not None and len(parsed) >= expect:
                break
    result.responses, result.leftover = _parse(data, head)
    result.elapsed = time.monotonic() - started
    return result


def request_bytes(
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    host: str = "127.0.0.1",
    *,
    content_length: bool = True,
) -> bytes:
    """One HTTP/1.1 request, exactly as given (no normalisation)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    given = {k.lower() for k in (headers or {})}
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if content_length and body and "content-length" not in given:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def get(address: tuple[str, int], path: str, timeout: float = 10.0) -> RawResponse:
    """One GET on a fresh connection (Connection: close)."""
    answer = exchange(
        address,
        request_bytes("GET", path, {"Connection": "close"}),
        timeout=timeout,
        expect=1,
    )
    assert answer.responses, f"no response to GET {path} within {timeout}s"
    return answer.responses[0]


@contextlib.contextmanager
def half_sent(address: tuple[str, int], count: int, head: bytes) -> Iterator[list[socket.socket]]:
    """``count`` connections that each sent ``head`` (an unfinished request) and wait."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = connect(address)
            sock.sendall(head)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``timeout``; any response
    bytes it sends first (a 408) are read and dropped."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        sock.settimeout(remaining)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True


# -- the daemon's cost, from /proc -----------------------------------------------------------
def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (default: this one)."""
    with open(f"/proc/{pid or os.getpid()}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc status")


def thread_count(pid: int | None = None) -> int:
    return len(os.listdir(f"/proc/{pid or os.getpid()}/task"))


def open_fds(pid: int | None = None) -> int:
    return len(os.listdir(f"/proc/{pid or os.getpid()}/fd"))
