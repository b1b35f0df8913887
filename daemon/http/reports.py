"""Drift reports kept on disk and served by the daemon, so an alert can link to one.

A report costs seconds of CPU and megabytes of disk, so nobody but the daemon decides
which ones exist:

* **Names are minted and signed.** The name of a report link carries the window and an
  HMAC-SHA256 (truncated to 128 bits) of model, reference and window under a key the
  store generates for itself (``Store.secret``), shared by the replicas of a group and
  never written to a file. A visit to a name without a valid signature is a 404 and
  costs nothing; a GET never makes a report for a range written by hand.
* **One at a time, bounded.** Reports are made by one worker thread from a queue of at
  most ``reports.queue``; a visit beyond it, or one whose report is not ready within
  ``reports.wait``, is answered 503 with ``Retry-After``. The same name asked twice is
  made once.
* **A bounded folder.** After each report the folder is pruned: reports older than
  ``reports.max_age``, then the oldest beyond ``reports.max_bytes``, each deletion
  logged. A pruned report is made again on its next visit (the link stays valid).
* **Served sandboxed.** Evidently's reports need inline script; they are served with
  ``Content-Security-Policy: sandbox allow-scripts`` (no ``allow-same-origin``), so even
  a value that escaped escaping runs in an opaque origin that cannot reach ``/api`` or
  ``/-/reload`` with the daemon's origin, and with no network access (``connect-src
  'none'``). Every string entering the HTML is made inert first
  (:func:`~watchkeeper.daemon.offline.drift.inert_text`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from watchkeeper.daemon.http.routes import Request, Response, Route
from watchkeeper.daemon.store.store import Store
from watchkeeper.errors import WatchkeeperError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,400}\.html$")
_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_SIG_HEX = 32
REPORT_CSP = (
    "sandbox allow-scripts allow-popups; default-src 'none'; "
    "script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; connect-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)
KEY_NAME = "report-links"


class ReportNotPossibleError(WatchkeeperError, ValueError):
    """The report cannot be made from what the store holds (no windows, no reference)."""

    retriable = False


class ReportsBusyError(WatchkeeperError, RuntimeError):
    """The queue of reports to make is full, or the report was not ready in time."""

    retriable = True

    def __init__(self, message: str, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(message)


def _part(text: str) -> str:
    """A name part: the text itself when it is plain, else ``b64-`` and its base64url."""
    if _PLAIN.match(text) and not text.startswith("b64-"):
        return text
    return "b64-" + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unpart(part: str) -> str | None:
    if not part.startswith("b64-"):
        return part
    raw = part[4:]
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, ValueError):
        return None


@dataclass(frozen=True)
class ReportKey:
    model: str
    reference: str
    start_ms: int
    end_ms: int


@dataclass
class _Job:
    key: ReportKey
    name: str
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class ReportSigner:
    """Mints and checks report names (see the module docstring)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _signature(self, k: ReportKey) -> str:
        message = f"{k.model}\0{k.reference}\0{k.start_ms}\0{k.end_ms}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:_SIG_HEX]

    def name(self, model: str, start_ms: int, end_ms: int, reference: str = "default") -> str:
        k = ReportKey(model, reference, int(start_ms), int(end_ms))
        parts = (_part(model), _part(reference), str(k.start_ms), str(k.end_ms))
        return "~".join((*parts, self._signature(k))) + ".html"

    def key(self, name: str) -> ReportKey | None:
        """The window a name was minted for; None when the daemon did not mint it."""
        if not _NAME.match(name):
            return None
        parts = name.removesuffix(".html").split("~")
        if len(parts) != 5 or not parts[2].isdigit() or not parts[3].isdigit():
            return None
        if len(parts[2]) > 16 or len(parts[3]) > 16:
            return None
        model, reference = _unpart(parts[0]), _unpart(parts[1])
        if model is None or reference is None:
            return None
        k = ReportKey(model, reference, int(parts[2]), int(parts[3]))
        if not hmac.compare_digest(self._signature(k), parts[4]):
            return None
        return k


class Reports:
    """Makes Evidently drift reports of stored windows and finds them again by name."""

    def __init__(
        self,
        store: Store,
        directory: Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        max_age_s: float = 7 * 86400.0,
        queue_size: int = 4,
        wait_s: float = 20.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.wait_s = wait_s
        self.clock = clock
        self.signer = ReportSigner(store.secret(KEY_NAME))
        self.made = 0
        """Reports made since start (tests wait on it, never on time)."""
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_size)
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._closed = False

    # -- names ----------------------------------------------------------------------------
    def name_for(self, model: str, start_ms: int, end_ms: int, reference: str = "default") -> str:
        """The signed name of a window's report: links can be made before the report."""
        return self.signer.name(model, start_ms, end_ms, reference)

    def path(self, name: str) -> Path | None:
        """The file of a report by name; None for unknown, unsafe or unsigned names."""
        if self.signer.key(name) is None:
            return None
        path = self.directory / name
        return path if path.is_file() else None

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.glob("*.html"))

    # -- making -----------------------------------------------------------------------------
    def _check(self, k: ReportKey) -> None:
        """Cheap checks before a report is queued: the store can make it."""
        if self.store.reference(k.model, k.reference) is None:
            raise ReportNotPossibleError(f"no stored reference {k.model}/{k.reference}")
        if not self.store.event_counts(k.model, k.start_ms, k.end_ms):
            raise ReportNotPossibleError(f"no stored windows of {k.model} in that range")

    def request(self, name: str) -> _Job:
        """Queue the report a minted name names (once); raises when the queue is full."""
        k = self.signer.key(name)
        if k is None:
            raise ReportNotPossibleError("not a report name this daemon made")
        with self._lock:
            job = self._jobs.get(name)
            if job is not None:
                return job
            if self._closed:
                raise ReportsBusyError("shutting down", 5)
            job = _Job(k, name)
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise ReportsBusyError("reports are being made; try again", 5) from None
            self._jobs[name] = job
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="wk-reports")
                self._worker.start()
        return job

    def make(self, model: str, start_ms: int, end_ms: int, reference: str = "default") -> str:
        """The report's name, waiting (up to ``wait_s``) for it to be made if it is not."""
        name = self.name_for(model, start_ms, end_ms, reference)
        self.ensure(name)
        return name

    def ensure(self, name: str) -> Path:
        """The file of a minted report, made now (in the worker) if it does not exist."""
        existing = self.path(name)
        if existing is not None:
            return existing
        k = self.signer.key(name)
        if k is None:
            raise ReportNotPossibleError("not a report name this daemon made")
        self._check(k)
        job = self.request(name)
        if not job.done.wait(self.wait_s):
            raise ReportsBusyError("the report is being made; try again", 5)
        if job.error is not None:
            raise ReportNotPossibleError(job.error)
        made = self.path(name)
        if made is None:
            raise ReportNotPossibleError("the report was pruned before it was served")
        return made

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._make(job)
            except Exception as exc:  # one failed report never stops the worker
                log.exception("report %s failed", job.name)
                job.error = f"the report could not be made ({type(exc).__name__})"
            finally:
                with self._lock:
                    self._jobs.pop(job.name, None)
                job.done.set()

    def _make(self, job: _Job) -> None:
        k = job.key
        path = self.directory / job.name
        if path.exists():
            return
        profile = self.store.reference(k.model, k.reference)
        window = self.store.window_range(k.model, k.start_ms, k.end_ms)
        if profile is None or window is None:
            job.error = f"no stored reference or windows of {k.model} for that range"
            return
        # pandas and Evidently only when a report is made, not at the daemon's start
        from watchkeeper.daemon.offline.drift import drift_report

        try:
            drift_report(profile, window, path)
        except ValueError as exc:
            job.error = str(exc)
            return
        self.made += 1
        self.prune()

    def prune(self) -> list[str]:
        """Delete reports past ``max_age_s``, then the oldest beyond ``max_bytes``."""
        if not self.directory.is_dir():
            return []
        now = self.clock()
        files = []
        for p in self.directory.glob("*.html"):
            try:
                st = p.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, p))
        files.sort()
        removed: list[str] = []
        total = sum(size for _, size, _ in files)
        for mtime, size, p in files:
            if now - mtime <= self.max_age_s and total <= self.max_bytes:
                continue
            try:
                p.unlink()
            except OSError:
                continue
            total -= size
            removed.append(p.name)
        if removed:
            log.info(
                "pruned %d report(s) (older than %.0fs or beyond %d bytes): %s",
                len(removed),
                self.max_age_s,
                self.max_bytes,
                ", ".join(removed[:5]) + (" …" if len(removed) > 5 else ""),
            )
        return removed

    def close(self) -> None:
        with self._lock:
            self._closed = True
            worker = self._worker
        if worker is not None:
            # jobs still queued are dropped: their waiters get 503 and the link stays valid
            while True:
                try:
                    dropped = self._queue.get_nowait()
                except queue.Empty:
                    break
                if dropped is not None:
                    dropped.error = "shutting down"
                    dropped.done.set()
            self._queue.put(None)
            worker.join(timeout=60)


def _busy(exc: ReportsBusyError) -> Response:
    return Response(
        503,
        Response.of_json(503, {"error": str(exc)}).body,
        headers={"Retry-After": str(exc.retry_after)},
    )


def report_routes(reports: Reports) -> list[Route]:
    """``GET /reports/`` (names), ``GET /reports/<name>`` and ``POST /api/reports``."""

    def listing(_request: Request) -> Response:
        return Response.of_json(200, {"reports": [f"/reports/{n}" for n in reports.names()]})

    def serve(request: Request) -> Response:
        name = request.path.removeprefix("/reports/")
        if not name:
            return listing(request)
        try:
            path = reports.ensure(name)  # a link from an alert: made on first visit
        except ReportNotPossibleError:
            return Response.of_json(404, {"error": "no such report"})
        except ReportsBusyError as exc:
            return _busy(exc)
        headers = {"Content-Security-Policy": REPORT_CSP, "X-Frame-Options": "DENY"}
        return Response(200, path.read_bytes(), "text/html; charset=utf-8", headers)

    def create(request: Request) -> Response:
        try:
            body = request.json()
            model = str(body["model"])
            start_ms, end_ms = int(body["start_ms"]), int(body["end_ms"])
            reference = str(body.get("reference", "default"))
            if not model or len(model) > 200 or len(reference) > 200:
                raise ValueError("model and reference are 1 to 200 characters")
            if not (0 <= start_ms < end_ms < 2**53):
                raise ValueError("0 ≤ start_ms < end_ms < 2^53")
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
            return Response.of_json(
                400,
                {
                    "error": "expected JSON with model, start_ms, end_ms (and reference): "
                    f"{str(exc)[:200]}"
                },
            )
        try:
            name = reports.make(model, start_ms, end_ms, reference)
        except ReportNotPossibleError as exc:
            return Response.of_json(404, {"error": str(exc)})
        except ReportsBusyError as exc:
            return _busy(exc)
        return Response.of_json(201, {"url": f"/reports/{name}"})

    return [Route("GET", "/reports/", serve, prefix=True), Route("POST", "/api/reports", create)]
