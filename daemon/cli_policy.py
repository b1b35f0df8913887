"""``watchkeeper policy check | test | backtest`` and the ``status`` table."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

from watchkeeper.daemon.cli_common import cell, load_or_exit
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


def backtest(
    config: Config, loaded: LoadedPolicy, start_ms: int, end_ms: int
) -> list[tuple[int, Any]]:
    """Replay a policy over stored history: (time, incident event) for each transition."""
    from watchkeeper.daemon.checks import ReferenceCache, findings_for
    from watchkeeper.daemon.store import Store
    from watchkeeper.daemon.windows import window_bounds
    from watchkeeper.policies.engine import PolicyEngine

    policy = loaded.policy
    engine = PolicyEngine(policy)
    period_ms = int(policy.schedule.period_s() * 1000)
    size_ms = int(config.windows.size * 1000)
    out: list[tuple[int, Any]] = []
    with Store.open(config.store_url(), migrate=False) as store:
        reference = ReferenceCache(store).get(loaded)
        at = start_ms
        while at <= end_ms:
            lo, hi = window_bounds(at, size_ms, int(policy.window * 1000))
            window = store.window_range(policy.model, lo, hi)
            if window is None or window.count < policy.min_samples:
                events = engine.no_data(at, None, window.count if window else 0)
            else:
                duration = max(1.0, (min(at, hi) - lo) / 1000)
                found = findings_for(policy, reference, window, duration, ())
                _, events = engine.step(found, at, reference.metrics if reference else {})
            out += [(at, e) for e in events]
            at += period_ms
    return out


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
    for loaded in result.policies:
        events = backtest(config, loaded, start_ms, end_ms)
        opened = sum(1 for _, e in events if e.kind == "opened")
        print(
            f"{loaded.policy.key}: {opened} incident(s) would have opened, "
            f"{len(events)} notification(s) in {args.since}"
        )
        for at, event in events:
            when = dt.datetime.fromtimestamp(at / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")
            print(
                f"  {when}  {event.kind:<12} {event.incident.severity:<8} {event.incident.summary}"
            )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from watchkeeper.daemon.incidents import IncidentStore
    from watchkeeper.daemon.store import Store

    config = _config(args.config)
    assert config is not None
    console = Console()
    with Store.open(config.store_url(), migrate=False) as store:
        totals = store.totals()
        incidents = IncidentStore(store.engine)
        table = Table(title="open incidents")
        for column in ("severity", "since (UTC)", "policy", "rule", "summary"):
            table.add_column(column)
        for row in incidents.incidents("open"):
            since = dt.datetime.fromtimestamp(row["opened_ms"] / 1000, dt.UTC)
            table.add_row(
                cell(row["severity"]),
                since.strftime("%m-%d %H:%M"),
                cell(row["policy"]),
                cell(row["rule"]),
                cell(row["summary"]),
            )
        console.print(table)
        recent = Table(title="last evaluations")
        for column in ("at (UTC)", "policy", "rule", "feature", "value", "decision"):
            recent.add_column(column)
        for row in incidents.evaluations(limit=args.last):
            at = dt.datetime.fromtimestamp(row["at_ms"] / 1000, dt.UTC).strftime("%H:%M:%S")
            value = "" if row["value"] is None else f"{row['value']:.4g}"
            recent.add_row(
                at,
                cell(row["policy"]),
                cell(row["rule"]),
                cell(row["feature"]),
                value,
                cell(row["decision"]),
            )
        console.print(recent)
    result = load_all(config.policies.paths, set(config.alerts.channels), config.windows.size)
    if any(p.policy.shadow for p in result.policies):
        import time

        from watchkeeper.daemon.cli_shadow import print_shadow
        from watchkeeper.daemon.promotion import shadow_table
        from watchkeeper.daemon.shadow_store import ShadowStore

        with Store.open(config.store_url(), migrate=False) as store:
            body = shadow_table(
                ShadowStore(store.engine),
                {p.policy.key: p.policy for p in result.policies},
                int(time.time() * 1000),
                int(config.windows.size * 1000),
            )
        print_shadow(console, body)
    state = "ok" if result.ok else f"{sum(len(e) for e in result.errors.values())} error(s)"
    console.print(
        f"policies: {len(result.policies)} loaded, files {state}; stored events "
        f"{totals['events']:,}, quarantined {totals['quarantined']:,}"
    )
    for errors in result.errors.values():
        for error in errors:
            line = cell(error)
            line.stylize("red")
            console.print(line)
    return 0


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
    back.add_argument("-c", "--config", default=default_config)
    back.set_defaults(func=cmd_backtest)

    status = sub.add_parser("status", help="open incidents, last evaluations, policy state")
    status.add_argument("-c", "--config", default=default_config)
    status.add_argument("--last", type=int, default=15, help="evaluations to list")
    status.set_defaults(func=cmd_status)
