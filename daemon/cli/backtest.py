"""``watchkeeper policy backtest``: a policy replayed over stored history on the daemon's
tick grid and evaluation path — every evaluation's value, thresholds and decision per
rule and feature, then the incident transitions (a table, or ``--format json``).

A policy's ``ab_*`` rules are evaluated as the daemon evaluates them
(:class:`~watchkeeper.daemon.checks.ab_checks.ABChecks`, the same looks over the stored
windows of both versions from the experiment's start), but the comparisons it would
record are kept in memory (:class:`~watchkeeper.daemon.checks.ab_store.ReplayABStore`):
a backtest writes nothing, and starts each experiment afresh from the stored windows."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from watchkeeper.daemon.config import Config
from watchkeeper.policies.durations import parse_duration
from watchkeeper.policies.loader import LoadedPolicy, load_all


@dataclass
class Backtest:
    """What a policy would have said over a stored span, tick by tick."""

    ticks: list[int] = field(default_factory=list)
    evaluations: list[Any] = field(default_factory=list)
    events: list[tuple[int, Any]] = field(default_factory=list)
    no_data: list[tuple[int, int]] = field(default_factory=list)
    """(tick, events seen) of the ticks whose windows held too little."""
    history_from: int | None = None
    """The first tick when it is later than the span asked: the one the daemon starts a new
    policy at (a full ``window`` of stored history), so earlier ticks are not replayed."""


def backtest(config: Config, loaded: LoadedPolicy, start_ms: int, end_ms: int) -> Backtest:
    """Replay a policy over stored history, on the daemon's tick grid and evaluation path
    (:func:`~watchkeeper.daemon.checks.assessment.assess`): every tick in [start, end]."""
    from watchkeeper.daemon.checks.ab_checks import ABChecks
    from watchkeeper.daemon.checks.ab_store import ReplayABStore
    from watchkeeper.daemon.checks.assessment import BASELINE_WINDOWS, assess
    from watchkeeper.daemon.checks.estimates import LabelledSpans
    from watchkeeper.daemon.checks.last_seen import LastSeen
    from watchkeeper.daemon.checks.reference_cache import ReferenceCache
    from watchkeeper.daemon.checks.segment_traffic import SegmentTraffic
    from watchkeeper.daemon.checks.ticks import Ticks
    from watchkeeper.daemon.store.store import Store
    from watchkeeper.policies.engine import PolicyEngine

    policy = loaded.policy
    engine = PolicyEngine(policy)
    grid = Ticks.of(policy.schedule)
    size_ms = int(config.windows.size * 1000)
    out = Backtest()
    with Store.open(config.store_url(), migrate=False) as store:
        references = ReferenceCache(store)
        cached: list[Any] = []

        def reference() -> Any:
            if not cached:
                cached.append(references.get(loaded))
            return cached[0]

        spans = LabelledSpans(config.ingest.label_ttl)  # as the daemon's checker keeps one
        traffic = SegmentTraffic(BASELINE_WINDOWS)  # and this
        last_seen = LastSeen()  # and this
        replay = ReplayABStore(store.engine)
        ab = ABChecks(  # as the daemon builds it (app.py), sending and recording nothing
            store,
            size_ms,
            config.ingest.label_ttl,
            lateness_s=config.windows.allowed_lateness,
            db=replay,
        )

        def extra(lo: int, hi: int) -> dict[str, Any]:
            return ab.findings(policy, lo, hi, reference)

        at = grid.at_or_after(start_ms)
        first = store.first_window(policy.model)
        if first is not None:
            # where the daemon starts a policy with no stored tick (checks/stepping.py
            # PolicyStepper._cursor): the first tick reading a full window of stored
            # history, or the latest when the history is younger. Earlier ticks read a
            # partial window or none, and the daemon never evaluates them: replaying them
            # reported incidents ("no data" before the data began) it never opened.
            period_ms = int(policy.schedule.period_s() * 1000)
            full = grid.at_or_after(first + int(policy.window * 1000))
            begin = min(full, grid.at_or_before(end_ms, period_ms))
            if begin > at:
                at = out.history_from = begin
        while at <= end_ms:
            replay.until_ms = at  # the versions seen by then, not those of later history
            found = assess(
                store, loaded, engine, reference, size_ms, at, extra, spans, traffic, last_seen
            )
            ab.describe(policy, engine, found.events, at)
            out.ticks.append(at)
            out.evaluations += found.evaluations
            out.events += [(at, e) for e in found.events]
            if not found.evaluations:
                out.no_data.append((at, found.seen))
            at = grid.after(at)
    return out


def _backtest_json(loaded: LoadedPolicy, result: Backtest) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "policy": loaded.policy.key,
        "model": loaded.policy.model,
        "ticks": len(result.ticks),
        "first_tick": result.ticks[0] if result.ticks else None,
        "last_tick": result.ticks[-1] if result.ticks else None,
        "history_from": result.history_from,
        "evaluations": [asdict(e) for e in result.evaluations],
        "no_data": [{"at_ms": at, "events_seen": n} for at, n in result.no_data],
        "transitions": [
            {
                "at_ms": at,
                "kind": e.kind,
                "severity": e.incident.severity,
                "rule": e.incident.rule,
                "feature": e.incident.feature,
                "summary": e.incident.summary,
            }
            for at, e in result.events
        ],
    }


def cmd_backtest(args: argparse.Namespace) -> int:
    from watchkeeper.daemon.cli.common import load_or_exit

    config = load_or_exit(args.config)
    result = load_all(args.paths, set(config.alerts.channels), config.windows.size)
    for errors in result.errors.values():
        for error in errors:
            print(error, file=sys.stderr)
    if not result.policies:
        return 1
    end_ms = _ms(args.until) if args.until else int(time.time() * 1000)
    start_ms = end_ms - int(parse_duration(args.since) * 1000)
    documents = []
    for loaded in result.policies:
        run = backtest(config, loaded, start_ms, end_ms)
        if args.format == "json":
            documents.append(_backtest_json(loaded, run))
            continue
        _print_backtest(loaded, run, args.since)
    if args.format == "json":
        print(json.dumps({"policies": documents}, indent=2))
    return 0


def _print_backtest(loaded: LoadedPolicy, run: Backtest, since: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    opened = sum(1 for _, e in run.events if e.kind == "opened")
    table = Table(title=f"{loaded.policy.key}: evaluations")
    for column in ("at (UTC)", "rule", "feature", "value", "warn", "critical", "decision", "state"):
        table.add_column(column)
    rows: list[tuple[int, int, tuple[str, ...]]] = [
        (
            e.at_ms,
            0,
            (
                utc_minute(e.at_ms),
                e.rule,
                e.feature or "",
                short_number(e.value),
                short_number(e.warn),
                short_number(e.critical),
                e.decision,
                e.state,
            ),
        )
        for e in run.evaluations
    ]
    min_samples = loaded.policy.min_samples
    rows += [
        (at, 1, (utc_minute(at), "", "", "", "", "", f"no data ({n} events < {min_samples})", ""))
        for at, n in run.no_data
    ]
    for _, _, row in sorted(rows, key=lambda r: (r[0], r[1])):
        table.add_row(*row)
    console.print(table)
    if run.history_from is not None:
        console.print(
            f"{loaded.policy.key}: from {utc_minute(run.history_from)} UTC, the first tick that "
            f"reads a full window of {loaded.policy.model}'s stored history (where the daemon "
            "starts a new policy)"
        )
    console.print(
        f"{loaded.policy.key}: {len(run.ticks)} tick(s), {len(run.evaluations)} evaluation(s); "
        f"{opened} incident(s) would have opened, {len(run.events)} notification(s) in {since}"
    )
    for at, event in run.events:
        console.print(
            f"  {utc_minute(at)}  {event.kind:<12} {event.incident.severity:<8} "
            f"{event.incident.summary}",
            markup=False,
            highlight=False,
        )


def utc_minute(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


def short_number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _ms(text: str) -> int:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int((when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp() * 1000)
