"""``watchkeeper status``: each model's recent windows, estimated beside realised."""

from __future__ import annotations

from typing import Any

SHOWN = ("accuracy", "roc_auc", "f1", "mae", "rmse")


def _cell(value: Any) -> str:
    return "" if value is None else f"{value:.3f}"


def print_performance(console: Any, doc: dict[str, Any]) -> None:
    """A table per model whose reference has an estimation (``performance`` in status)."""
    from rich.markup import escape
    from rich.table import Table

    for model, entry in doc.get("models", {}).items():
        rows = entry.get("performance")
        if not rows:
            continue
        table = Table(title=f"{escape(model)}: performance estimated (no labels) and realised")
        for column in ("window (UTC)", "metric", "estimated", "band", "realised", "rows / labels"):
            table.add_column(column)
        for row in rows:
            when = str(row["window_start"])[:16].replace("T", " ")
            for name, e in row["estimated"].items():
                if name.removeprefix("estimated_") not in SHOWN:
                    continue
                band = "" if e["lower"] is None else f"{e['lower']:.3f} – {e['upper']:.3f}"
                table.add_row(
                    when,
                    name.removeprefix("estimated_"),
                    _cell(e["value"]),
                    band,
                    _cell(e["realised"]),
                    f"{row['n_estimated']:,} / {row['n_labelled']:,}",
                )
                when = ""
        console.print(table)
