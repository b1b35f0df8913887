"""``watchkeeper policy check | test | backtest`` and the ``status`` table."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchkeeper.daemon.cli_common import load_or_exit
from watchkeeper.daemon.config import Config
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.policies.durations import format_duration, parse_duration
from watchkeeper.policies.errors import WatchkeeperDocumentError
from watchkeeper.policies.loader import TEST_SUFFIXES, LoadedPolicy, load_all

SIZES = (500, 5_000, 50_000, 500_000)


def _config(path: str | None) -> Config | None:
    return None if path is None else load_or_exit(path)


def _reference(loaded: LoadedPolicy, config: Config | None) -> ReferenceProfile | None:
    """The policy's reference: its file, or from the store when a config names one."""
    from watchkeeper.detectors.profile import ReferenceProfile

    ref = loaded.policy.reference or "store:default"
    if not ref.startswith("store:"):
        return ReferenceProfile.load(loaded.directory / ref)
    if config is None:
        return None
    from watchkeeper.daemon.store import Store

    try:
        with Store.open(config.store_url(), migrate=False) as store:
            return store.reference(loaded.policy.model, ref.removeprefix("store:"))
    except Exception:  # no store yet: the defaults below are printed instead
        return None


def _auto_lines(loaded: LoadedPolicy, config: Config | None = None) -> list[str]:
    """The thresholds ``threshold: auto`` derives, at a few window sizes."""
    from watchkeeper.policies.auto import auto_threshold

    policy = loaded.policy
    ref_rows, bins, features = 0, 10, None
    if not any(r.threshold == "auto" for r in policy.rules):
        return []
    profile = _reference(loaded, config)
    if profile is not None:
        ref_rows = profile.rows
        features = len(profile.features)
        bins = max(
            (len(getattr(c, "edges", ())) + 1 for c in profile.features.values()), default=10
        )
    lines = []
    for rule in policy.rules:
        if rule.threshold != "auto":
            continue
        checked = features or 1
        alpha = policy.schedule.period_s() / rule.false_alarm_every / checked
        values = ", ".join(
            f"n={n:,}: {auto_threshold(rule.metric, n, ref_rows, bins, alpha):.4g}" for n in SIZES
        )
        lines.append(
            f"    {rule.key}: {rule.metric} auto (one false alarm per "
            f"{format_duration(rule.false_alarm_every)} over {checked} feature(s), "
            f"α={alpha:.2e} per evaluation) → {values}"
        )
    return lines


def cmd_check(args: argparse.Namespace) -> int:
    config = _config(args.config)
    channels = set(config.alerts.channels) if config else None
    size = config.windows.size if config else None
    missing = [p for p in args.paths if not Path(p).exists()]
    for path in missing:
        print(f"{path}: no such file or directory", file=sys.stderr)
    result = load_all([p for p in args.paths if Path(p).exists()], channels, size)
    for loaded in result.policies:
        policy = loaded.policy
        print(
            f"{loaded.path}: ok — {policy.key}: {len(policy.rules)} rule(s), window "
            f"{format_duration(policy.window)}, every "
            f"{format_duration(policy.schedule.period_s())}"
        )
        for line in _auto_lines(loaded, config):
            print(line)
    count = sum(len(e) for e in result.errors.values())
    for errors in result.errors.values():
        for error in errors:
            print(error, file=sys.stderr)
    if count or missing:
        print(
            f"{count + len(missing)} error(s) in {len(result.errors) + len(missing)} file(s)",
            file=sys.stderr,
        )
        return 1
    if not result.policies:
        print("no policy files found", file=sys.stderr)
        return 1
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from watchkeeper.policies.testing import run_file

    failed = passed = 0
    files: list[Path] = []
    for raw in args.paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.name.endswith(TEST_SUFFIXES))
        else:
            files.append(path)
    for path in files:
        try:
            results = run_file(path)
        except WatchkeeperDocumentError as exc:
            print(exc, file=sys.stderr)
            failed += 1
            continue
        for case in results:
            if case.ok:
                passed += 1
                print(f"PASS {path}: {case.name}")
            else:
                failed += 1
                print(f"FAIL {path}: {case.name}")
                for failure in case.failures:
                    print(f"    {failure}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


def _ms(text: str) -> int:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int((when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp() * 1000)


@dataclass
class Backtest:
    """What a policy would have said over a stored span, tick by tick."""

    ticks: list[int] = field(default_factory=list)
    evaluations: list[Any] = field(default_factory=list)
    events: list[tuple[int, Any]] = field(default_factory=list)
    no_data: list[tuple[int, int]] = field(default_factory=list)
    """(tick, events seen) of the ticks whose windows held too little."""


def backtest(config: Config, loaded: LoadedPolicy, start_ms: int, end_ms: int) -> Backtest:
    """Replay a policy over stored history, on the daemon's tick grid and evaluation path
    (:func:`~watchkeeper.daemon.checks.assess`): every tick in [start, end]."""
    from watchkeeper.daemon.checks import ReferenceCache, assess
    from watchkeeper.daemon.store import Store
    from watchkeeper.daemon.ticks import Ticks
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

        at = grid.at_or_after(start_ms)
        while at <= end_ms:
            found = assess(store, loaded, engine, reference, size_ms, at)
            out.ticks.append(at)
            out.evaluations += found.evaluations
            out.events += [(at, e) for e in found.events]
            if not found.evaluations:
                out.no_data.append((at, found.seen))
            at = grid.after(at)
    return out


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _backtest_json(loaded: LoadedPolicy, result: Backtest) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "policy": loaded.policy.key,
        "model": loaded.policy.model,
        "ticks": len(result.ticks),
        "first_tick": result.ticks[0] if result.ticks else None,
        "last_tick": result.ticks[-1] if result.ticks else None,
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
    config = _config(args.config)
    assert config is not None
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
                _when(e.at_ms),
                e.rule,
                e.feature or "",
                _number(e.value),
                _number(e.warn),
                _number(e.critical),
                e.decision,
                e.state,
            ),
        )
        for e in run.evaluations
    ]
    min_samples = loaded.policy.min_samples
    rows += [
        (at, 1, (_when(at), "", "", "", "", "", f"no data ({n} events < {min_samples})", ""))
        for at, n in run.no_data
    ]
    for _, _, row in sorted(rows, key=lambda r: (r[0], r[1])):
        table.add_row(*row)
    console.print(table)
    console.print(
        f"{loaded.policy.key}: {len(run.ticks)} tick(s), {len(run.evaluations)} evaluation(s); "
        f"{opened} incident(s) would have opened, {len(run.events)} notification(s) in {since}"
    )
    for at, event in run.events:
        console.print(
            f"  {_when(at)}  {event.kind:<12} {event.incident.severity:<8} "
            f"{event.incident.summary}",
            markup=False,
            highlight=False,
        )


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from watchkeeper.daemon.incidents import IncidentStore
    from watchkeeper.daemon.status import status
    from watchkeeper.daemon.store import Store

    config = _config(args.config)
    assert config is not None
    console = Console()
    result = load_all(config.policies.paths, set(config.alerts.channels), config.windows.size)
    policies = {p.policy.key: p.policy for p in result.policies}
    now_ms = int(time.time() * 1000)
    with Store.open(config.store_url(), migrate=False) as store:
        doc = status(store, config, policies, now_ms)
        incidents = IncidentStore(store.engine)
        table = Table(title="open incidents")
        for column in ("severity", "since (UTC)", "policy", "rule", "summary"):
            table.add_column(column)
        for row in incidents.incidents("open"):
            table.add_row(
                row["severity"],
                _when(row["opened_ms"]),
                row["policy"],
                row["rule"],
                row["summary"],
            )
        console.print(table)
        recent = Table(title="last evaluations")
        for column in ("at (UTC)", "policy", "rule", "feature", "value", "decision"):
            recent.add_column(column)
        for row in incidents.evaluations(limit=args.last):
            recent.add_row(
                _when(row["at_ms"]),
                row["policy"],
                row["rule"],
                row["feature"] or "",
                _number(row["value"]),
                row["decision"],
            )
        console.print(recent)
    _print_models(console, doc)
    _print_progress(console, doc)
    if any(p.policy.shadow for p in result.policies):
        from watchkeeper.daemon.cli_shadow import print_shadow
        from watchkeeper.daemon.promotion import shadow_table
        from watchkeeper.daemon.shadow_store import ShadowStore

        with Store.open(config.store_url(), migrate=False) as store:
            body = shadow_table(
                ShadowStore(store.engine),
                policies,
                now_ms,
                int(config.windows.size * 1000),
            )
        print_shadow(console, body)
    totals = doc["totals"]
    state = "ok" if result.ok else f"{sum(len(e) for e in result.errors.values())} error(s)"
    console.print(
        f"policies: {len(result.policies)} loaded, files {state}; stored events "
        f"{totals['events']:,}, late events {totals['late_events']:,} (not stored), "
        f"quarantined {totals['quarantined']:,}"
    )
    for errors in result.errors.values():
        for error in errors:
            console.print(f"[red]{error}[/]")
    return 0


def _print_models(console: Any, doc: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="models: stored, late, label joins, event time")
    for column in (
        "model",
        "stored events",
        "late",
        "labels joined",
        "expired (pred / label)",
        "waiting (pred / label)",
        "watermark (UTC): predictions",
        "labels",
    ):
        table.add_column(column)
    for model, m in doc["models"].items():
        streams = m.get("streams", {})

        def mark(role: str, streams: dict[str, Any] = streams) -> str:
            s = streams.get(role)
            if s is None:
                return ""
            if s["watermark"] is None:
                return "held" if s["held"] else f"idle (newest {s['newest'][:16]})"
            return str(s["watermark"])[:16].replace("T", " ") + (" idle" if s["idle"] else "")

        table.add_row(
            model,
            f"{m.get('events', 0):,}",
            f"{m.get('late_events', 0):,}",
            f"{m.get('joined', 0):,}",
            f"{m.get('expired_predictions', 0):,} / {m.get('expired_labels', 0):,}",
            f"{m.get('pending_predictions', 0):,} / {m.get('pending_labels', 0):,}",
            mark("predictions"),
            mark("labels"),
        )
    console.print(table)


def _print_progress(console: Any, doc: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="policies: evaluated up to (event time)")
    for column in ("policy", "model", "last tick (UTC)", "behind", "mode", "ticks due", "waiting"):
        table.add_column(column)
    for key, p in doc["policies"].items():
        behind = "" if p["behind_s"] is None else format_duration(round(p["behind_s"]))
        table.add_row(
            key,
            p["model"],
            (p["tick"] or "not started")[:16].replace("T", " "),
            behind,
            p["mode"],
            f"{p['ticks_due']:,}",
            p["waiting_for"] or "",
        )
    console.print(table)


def add_parsers(sub: Any, default_config: str) -> None:
    policy = sub.add_parser("policy", help="policy files: check, test, backtest")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser(
        "check",
        help="validate policy files; print every error "
        "and the thresholds derived for threshold: auto",
    )
    check.add_argument("paths", nargs="+")
    check.add_argument("-c", "--config", help="also check channel names and window sizes")
    check.set_defaults(func=cmd_check)
    test = policy_sub.add_parser("test", help="run policy unit tests (*.test.yaml)")
    test.add_argument("paths", nargs="+")
    test.set_defaults(func=cmd_test)
    back = policy_sub.add_parser("backtest", help="replay policies over stored windows")
    back.add_argument("paths", nargs="+")
    back.add_argument("--since", default="7d", help="how far back (e.g. 7d, 12h)")
    back.add_argument("--until", help="ISO-8601 end (default: now)")
    back.add_argument(
        "--format",
        choices=["table", "json"],
        default="table",
        help="table: every evaluation and the transitions; json: the same as one document",
    )
    back.add_argument("-c", "--config", default=default_config)
    back.set_defaults(func=cmd_backtest)

    status = sub.add_parser("status", help="open incidents, last evaluations, policy state")
    status.add_argument("-c", "--config", default=default_config)
    status.add_argument("--last", type=int, default=15, help="evaluations to list")
    status.set_defaults(func=cmd_status)
