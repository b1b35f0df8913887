"""``watchkeeper status``: the corrupt stored windows housekeeping set aside (from the
store, every replica's) and those its own reads skipped because a part is corrupt.

The command is its own process, so its counts are what *its* reads met (the status
document reads the last windows of models with an estimation); the running daemon's are
on ``GET /api/status`` (``skipped_windows``), its console and ``/metrics``.
"""

from __future__ import annotations

from typing import Any

from watchkeeper.daemon.cli.common import cell


def print_skipped(console: Any, doc: dict[str, Any]) -> None:
    """A table of the windows set aside per model and one of the most recently met corrupt
    parts, each if any; every stored string is shown as text (no rich markup, no control
    characters)."""
    from rich.table import Table

    skipped = doc.get("skipped_windows") or {}
    aside = skipped.get("set_aside") or {}
    if aside:
        table = Table(title="windows set aside: corrupt (table set_aside_windows, never deleted)")
        for column in ("model", "windows", "stored rows", "events"):
            table.add_column(column)
        for model, n in aside.items():
            table.add_row(cell(model), f"{n['windows']:,}", f"{n['rows']:,}", f"{n['events']:,}")
        console.print(table)
    recent = skipped.get("recent") or []
    if not recent:
        return
    reads = sum(skipped.get("reads", {}).values())
    table = Table(
        title=f"windows skipped: corrupt stored parts ({reads:,} read(s) of this command "
        "skipped them; the daemon's own: /api/status)"
    )
    for column in ("model", "version", "window (UTC)", "size", "part", "what", "problem"):
        table.add_column(column)
    for part in recent:
        table.add_row(
            cell(part["model"]),
            cell(part["version"]),
            cell(part["window_start"]),
            f"{part['window_size_ms'] // 1000:,}s",
            "base row" if part["part"] is None else str(part["part"]),
            cell(part["what"]),
            cell(part["problem"]),
        )
    console.print(table)
