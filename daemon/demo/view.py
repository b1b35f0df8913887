"""The demo's live terminal view: traffic, the timeline, metric values against their
thresholds, open incidents and the shadow candidate — all read from the running daemon's
store, as ``watchkeeper status`` would."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from watchkeeper.daemon.app import Daemon
from watchkeeper.daemon.demo.timeline import Phase, phase_at
from watchkeeper.daemon.shadow.checks import shadow_table

_STATE_STYLE = {"firing": "bold red", "pending": "yellow", "ok": "green", "resolving": "cyan"}


class LiveView:
    """Builds one frame per call; keeps the recent totals to show a rate."""

    def __init__(self, daemon: Daemon, phases: list[Phase], started: float) -> None:
        self.daemon = daemon
        self.phases = phases
        self.started = started
        self.t0: float | None = None
        self._totals: deque[tuple[float, int]] = deque(maxlen=10)

    def frame(self) -> RenderableType:
        parts: list[RenderableType] = [self._header()]
        store = self.daemon.store
        if store is None or self.daemon.incidents is None:
            return Group(*parts, Text("starting…"))
        try:
            parts += [self._traffic(), self._checks(), self._incidents(), *self._shadow()]
        except Exception as exc:  # the store mid-migration, a table not there yet
            parts.append(Text(f"(view unavailable: {type(exc).__name__})", style="dim"))
        return Group(*parts)

    def _header(self) -> RenderableType:
        now = time.monotonic()
        line = Text(f"watchkeeper demo · {now - self.started:5.0f}s · ", style="bold")
        if self.t0 is None:
            line.append("warming up: windows fill before the policies come into force")
            return line
        t = now - self.t0
        phase = phase_at(self.phases, t)
        if phase is None:
            line.append("timeline done — steady traffic (Ctrl-C stops)")
            return line
        injecting = t < phase.end_s and bool(phase.expects or phase.shadow)
        quiet = not (phase.expects or phase.shadow)  # the baseline
        label = (
            phase.title if injecting or quiet else f"quiet after {phase.name}: incidents resolve"
        )
        left = (phase.end_s if t < phase.end_s else phase.settle_s) - t
        line.append(f"{phase.name}: ", style="bold magenta" if injecting else "bold green")
        line.append(f"{label} ({left:.0f}s left)")
        return line

    def _traffic(self) -> RenderableType:
        daemon = self.daemon
        assert daemon.store is not None
        totals = daemon.store.totals()
        now = time.monotonic()
        self._totals.append((now, totals["events"]))
        first = self._totals[0]
        rate = (totals["events"] - first[1]) / (now - first[0]) if now > first[0] else 0.0
        url = f"http://{daemon.http.address}" if daemon.http else "?"
        table = Table.grid(padding=(0, 2))
        table.add_row(
            f"stored events [bold]{totals['events']:,}[/]",
            f"ingest [bold]{rate:,.0f}[/] ev/s",
            f"quarantined [bold]{totals['quarantined']:,}[/]",
            f"console {url}/ · metrics {url}/metrics",
        )
        return table

    def _checks(self) -> RenderableType:
        assert self.daemon.incidents is not None
        latest: dict[tuple[str, str, str], dict[str, Any]] = {}
        for row in self.daemon.incidents.evaluations(limit=400):
            latest.setdefault((row["model"], row["rule"], row["feature"] or ""), row)
        rows = sorted(
            latest.values(),
            key=lambda r: (r["state"] == "ok", r["model"] != "fraud", r["rule"], r["feature"]),
        )
        table = Table(title="latest checks", title_justify="left", expand=False)
        for column in ("model", "rule", "feature", "value", "warn", "critical", "state"):
            table.add_column(column, justify="right" if column in ("value", "warn") else "left")
        for r in rows[:14]:

            def num(v: float | None) -> str:
                return "—" if v is None else f"{v:.4g}"

            value = num(r["value"]) if r["decision"] not in ("insufficient_data", "error") else "…"
            state = r["state"]
            table.add_row(
                r["model"],
                r["rule"],
                r["feature"] or "",
                value,
                num(r["warn"]),
                num(r["critical"]),
                Text(state, style=_STATE_STYLE.get(state, "")),
            )
        if len(rows) > 14:
            table.caption = f"… and {len(rows) - 14} more below their thresholds"
        return table

    def _incidents(self) -> RenderableType:
        assert self.daemon.incidents is not None
        open_ = self.daemon.incidents.incidents("open", limit=10)
        if not open_:
            return Text("no open incidents", style="green")
        table = Table(title="open incidents", title_justify="left")
        for column in ("severity", "model", "rule", "summary", "page"):
            table.add_column(column)
        daemon = self.daemon
        url = f"http://{daemon.http.address}" if daemon.http else ""
        for i in open_:
            style = "bold red" if i["severity"] == "critical" else "yellow"
            page = f"{url}/incidents/{i['fingerprint']}"
            table.add_row(
                Text(i["severity"], style=style), i["model"], i["rule"], i["summary"], page
            )
        return table

    def _shadow(self) -> list[RenderableType]:
        daemon = self.daemon
        if daemon.shadow_store is None or daemon.scheduler is None:
            return []
        policies = {k: p.policy for k, p in daemon.scheduler.status.policies.items()}
        if not any(p.shadow for p in policies.values()):
            return []
        body = shadow_table(
            daemon.shadow_store,
            policies,
            int(time.time() * 1000),
            int(daemon.config.windows.size * 1000),
        )
        table = Table(title="shadow candidates", title_justify="left")
        for column in ("model", "candidate", "rows", "agreement", "acc Δ", "size ×", "decision"):
            table.add_column(column)
        for model, entry in body["models"].items():
            for row in entry["candidates"]:
                c = row["comparison"]

                def f(name: str, spec: str, c: dict[str, Any] = c) -> str:
                    return format(c[name], spec) if c.get(name) is not None else "—"

                decision = row["decision"]["decision"] if row["decision"] else "pending"
                table.add_row(
                    model,
                    row["candidate"],
                    f("shadow_rows", ",.0f"),
                    f("shadow_agreement", ".4f"),
                    f("shadow_accuracy_delta", "+.4f"),
                    f("shadow_size_ratio", ".2f"),
                    decision,
                )
        return [table]
