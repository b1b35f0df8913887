"""Drift reports kept on disk and served by the daemon, so an alert can link to one."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from watchkeeper.daemon.http import Request, Response, Route
from watchkeeper.daemon.offline import drift_report
from watchkeeper.daemon.store import Store

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,200}\.html$")


class ReportNotPossibleError(ValueError):
    """The report cannot be made from what the store holds (no windows, no reference)."""

    retriable = False


class Reports:
    """Makes Evidently drift reports of stored windows and finds them again by name."""

    def __init__(self, store: Store, directory: Path) -> None:
        self.store = store
        self.directory = directory
        self._lock = threading.Lock()  # Evidently is not known to be thread-safe

    @staticmethod
    def name_for(model: str, start_ms: int, end_ms: int, reference: str) -> str:
        """A stable name for the report of a window: links can be made before the report."""
        model_part = re.sub(r"[^A-Za-z0-9_.-]", "_", model)
        reference_part = re.sub(r"[^A-Za-z0-9_.-]", "_", reference)
        return f"{model_part}~{reference_part}~{start_ms}~{end_ms}.html"

    def make_named(self, name: str) -> str | None:
        """Make the report a link names (``name_for``'s form), if the store allows it."""
        parts = name.removesuffix(".html").split("~")
        if len(parts) != 4 or not parts[2].isdigit() or not parts[3].isdigit():
            return None
        try:
            return self.make(parts[0], int(parts[2]), int(parts[3]), parts[1])
        except ReportNotPossibleError:
            return None

    def make(self, model: str, start_ms: int, end_ms: int, reference: str = "default") -> str:
        """The report's file name, creating the report if it does not exist yet."""
        name = self.name_for(model, start_ms, end_ms, reference)
        path = self.directory / name
        if path.exists():
            return name
        profile = self.store.reference(model, reference)
        if profile is None:
            raise ReportNotPossibleError(f"no stored reference {model}/{reference}")
        window = self.store.window_range(model, start_ms, end_ms)
        if window is None:
            raise ReportNotPossibleError(f"no stored windows of {model} in that range")
        with self._lock:
            try:
                drift_report(profile, window, path)
            except ValueError as exc:
                raise ReportNotPossibleError(str(exc)) from exc
        return name

    def path(self, name: str) -> Path | None:
        """The file of a report by name; None for unknown or unsafe names."""
        if not _NAME.match(name):
            return None
        path = self.directory / name
        return path if path.is_file() else None

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.glob("*.html"))


def report_routes(reports: Reports) -> list[Route]:
    """``GET /reports/`` (names), ``GET /reports/<name>`` and ``POST /api/reports``."""

    def listing(_request: Request) -> Response:
        return Response.of_json(200, {"reports": [f"/reports/{n}" for n in reports.names()]})

    def serve(request: Request) -> Response:
        name = request.path.removeprefix("/reports/")
        if not name:
            return listing(request)
        path = reports.path(name)
        if path is None and _NAME.match(name) and reports.make_named(name):
            path = reports.path(name)  # a link from an alert: made on first visit
        if path is None:
            return Response.of_json(404, {"error": "no such report"})
        return Response(200, path.read_bytes(), "text/html; charset=utf-8")

    def create(request: Request) -> Response:
        try:
            body = request.json()
            model = str(body["model"])
            start_ms, end_ms = int(body["start_ms"]), int(body["end_ms"])
            reference = str(body.get("reference", "default"))
        except (ValueError, KeyError, TypeError) as exc:
            return Response.of_json(
                400, {"error": f"expected JSON with model, start_ms, end_ms (and reference): {exc}"}
            )
        try:
            name = reports.make(model, start_ms, end_ms, reference)
        except ReportNotPossibleError as exc:
            return Response.of_json(404, {"error": str(exc)})
        return Response.of_json(201, {"url": f"/reports/{name}"})

    return [Route("GET", "/reports/", serve, prefix=True), Route("POST", "/api/reports", create)]
