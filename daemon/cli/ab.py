"""The A/B part of ``watchkeeper status``: per policy with ``compare``, the comparison in
force — each ``ab_*`` value with its always-valid interval and decision, then both
versions' columns side by side, merged since the experiment's start and over the policy
window (``/api/shadow``'s ``ab`` part, read from the store)."""

from __future__ import annotations

from typing import Any

from watchkeeper.daemon.cli.backtest import utc_minute
from watchkeeper.daemon.cli.common import cell

PERCENT = {"accuracy", "f1", "top_class_share"}


def _ci(d: dict[str, Any]) -> str:
    if "low" not in d:
        lo_hi = d.get("sketch_range")
        return f"sketches {lo_hi[0]:.3g}–{lo_hi[1]:.3g}" if lo_hi and None not in lo_hi else "—"
    level = f"{d.get('confidence', 0.95) * 100:g} %"
    return f"[{d['low']:+.4g}, {d['high']:+.4g}] {level}"


def _shown(name: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if name in ("events", "predictions", "labelled_rows"):
        return f"{int(value):,}"
    return f"{value:.4g}"


def print_ab(console: Any, table: dict[str, Any]) -> None:
    """The ``ab`` part of ``/api/shadow`` as tables."""
    from rich.table import Table

    for key, entry in table.items():
        if not entry["comparisons"]:
            console.print(
                cell(
                    f"A/B of {key}: no look yet (a pair comes into force once both "
                    "versions are seen)"
                )
            )
            continue
        c = entry["comparisons"][0]
        since = utc_minute(c["since_ms"])
        values = Table(
            title=cell(f"A/B of {entry['model']} ({key}): {c['pair']}, since {since} UTC")
        )
        for column in ("metric", "value", "interval", "decision", "n baseline", "n candidate"):
            values.add_column(column)
        for metric, d in c["values"].items():
            values.add_row(
                metric,
                _shown(metric, d.get("value")),
                _ci(d),
                cell(d.get("decision", "")),
                f"{int(d.get('n_baseline', 0)):,}",
                f"{int(d.get('n_candidate', 0)):,}",
            )
        for metric, why in c["unavailable"].items():
            values.add_row(metric, "—", "", cell(why[:60]), "", "")
        console.print(values)
        side = Table(title="side by side: merged since the start | the policy window")
        for column in (
            "",
            f"v {c['baseline']}",
            f"v {c['candidate']}",
            "window: baseline",
            "candidate",
        ):
            side.add_column(cell(column[:40]))
        merged, window = c["merged"], c["window"]
        for name in c["columns"]:
            row = [merged.get(r, {}).get(name) for r in ("baseline", "candidate")]
            row += [window.get(r, {}).get(name) for r in ("baseline", "candidate")]
            if all(v is None for v in row):
                continue
            side.add_row(name, *(cell(_shown(name, v)) for v in row))
        console.print(side)
        shift = window.get("population", {})
        if shift.get("warning"):
            console.print(cell(f"warning: {shift['warning']}"))
        elif shift.get("largest"):
            top = shift["largest"][0]
            console.print(
                cell(
                    f"inputs alike: the largest JS distance between the versions is "
                    f"{top['js']:.3f} ({top['feature']}; noise floor {top['noise_floor']:.3f})"
                )
            )
        decision = c.get("decision")
        if decision:
            reasons = "; ".join(decision.get("reasons", []))
            console.print(
                cell(f"A/B verdict: {decision['decision']}" + (f" ({reasons})" if reasons else ""))
            )
