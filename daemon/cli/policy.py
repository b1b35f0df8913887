"""``watchkeeper policy check | test | backtest`` and the ``status`` table."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchkeeper.daemon.cli.backtest import cmd_backtest, short_number, utc_minute
from watchkeeper.daemon.cli.common import cell, load_or_exit
from watchkeeper.daemon.config import Config
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.registry import METRICS
from watchkeeper.policies.durations import format_duration
from watchkeeper.policies.errors import WatchkeeperDocumentError
from watchkeeper.policies.loader import TEST_SUFFIXES, LoadedPolicy, load_all

if TYPE_CHECKING:  # the CLI imports these when a command runs: they are heavy
    from watchkeeper.daemon.notify.incidents import IncidentStore
    from watchkeeper.policies.schema import Policy

SIZES = (500, 5_000, 50_000, 500_000)


def _config(path: str | None) -> Config | None:
    return None if path is None else load_or_exit(path)


def _reference(loaded: LoadedPolicy, config: Config | None) -> ReferenceProfile | None:
    """The policy's reference: its file, or from the store when a config names one."""
    from watchkeeper.detectors.profile import ReferenceProfile

    stored = loaded.policy.stored_reference()
    if stored is None:
        assert loaded.policy.reference is not None  # a file
        return ReferenceProfile.load(loaded.directory / loaded.policy.reference)
    if config is None:
        return None
    from watchkeeper.daemon.store.store import Store

    try:
        with Store.open(config.store_url(), migrate=False) as store:
            return store.reference(loaded.policy.model, stored)
    except Exception:  # no store yet: the defaults below are printed instead
        return None


def _estimate_auto(rule: Any, profile: ReferenceProfile | None, alpha: float) -> str:
    """``threshold: auto`` of an estimated metric: the reference's value moved z(α)
    standard errors of the estimate to the bad side, at a few window sizes."""
    from watchkeeper.detectors.estimated_performance import ESTIMATED_METRICS
    from watchkeeper.policies.auto import estimate_auto_threshold

    head = f"{rule.metric} auto (α={alpha:.2e} per evaluation)"
    est = profile.estimation if profile is not None else None
    spec = ESTIMATED_METRICS[rule.metric]
    spread = est.spreads.get(spec.realised) if est is not None else None
    base = est.reference.get(spec.realised) if est is not None else None
    if spread is None or base is None:
        return f"{head} → from the reference's estimation (none readable here)"
    above = rule.bad_side() == "above"
    values = ", ".join(
        f"n={n:,}: {estimate_auto_threshold(d, alpha, above):.4g}"
        for n in SIZES
        for d in [{"reference": base, "band": {"standard_error": spread.standard_error(n, base)}}]
    )
    return f"{head}, reference {base:.4g} → {values}"


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
        if METRICS[rule.metric].scope == "estimate":
            alpha = policy.schedule.period_s() / rule.false_alarm_every
            lines.append(f"    {rule.key}: {_estimate_auto(rule, profile, alpha)}")
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


def _threshold_conflicts(
    policies: list[LoadedPolicy], config: Config | None, config_path: str | None
) -> list[str]:
    """Policies with estimate rules whose reference was built for another decision
    threshold than ``ingest.decision_threshold`` (the daemon refuses those estimates)."""
    from watchkeeper.daemon.ingest.references_in_force import threshold_conflict

    if config is None:
        return []
    out = []
    for loaded in policies:
        if not any(METRICS[r.metric].scope == "estimate" for r in loaded.policy.rules):
            continue
        try:
            profile = _reference(loaded, config)
        except (OSError, ValueError):
            continue  # an unreadable reference is reported where the daemon reads it
        why = (
            threshold_conflict(profile, config.ingest.decision_threshold, config_path or "")
            if profile is not None
            else None
        )
        if why is not None:
            out.append(f"{loaded.path}: reference: {why}")
    return out


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
    conflicts = _threshold_conflicts(result.policies, config, args.config)
    for line in conflicts:
        print(line, file=sys.stderr)
    count = sum(len(e) for e in result.errors.values()) + len(conflicts)
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


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from watchkeeper.daemon.http.status import status
    from watchkeeper.daemon.notify.incidents import IncidentStore
    from watchkeeper.daemon.store.store import Store

    config = _config(args.config)
    assert config is not None
    console = Console()
    result = load_all(config.policies.paths, set(config.alerts.channels), config.windows.size)
    policies = {p.policy.key: p.policy for p in result.policies}
    now_ms = int(time.time() * 1000)
    with Store.open(config.store_url(), migrate=False) as store:
        from watchkeeper.daemon.checks.reference_cache import ReferenceCache

        loaded = {p.policy.key: p for p in result.policies}
        references = ReferenceCache(store)
        doc = status(
            store,
            config,
            policies,
            now_ms,
            reference_of=lambda model: references.of_model(loaded, model),
        )
        _print_incidents(console, IncidentStore(store.engine), args.last, policies)
    _print_models(console, doc)
    from watchkeeper.daemon.cli.performance import print_performance

    print_performance(console, doc)
    _print_progress(console, doc)
    from watchkeeper.daemon.cli.skipped import print_skipped

    print_skipped(console, doc)
    if any(p.policy.shadow for p in result.policies):
        _print_shadow(console, config, policies, now_ms)
    if any(p.policy.compare for p in result.policies):
        _print_ab(console, config, policies)
    totals = doc["totals"]
    state = "ok" if result.ok else f"{sum(len(e) for e in result.errors.values())} error(s)"
    console.print(
        f"policies: {len(result.policies)} loaded, files {state}; stored events "
        f"{totals['events']:,}, late events {totals['late_events']:,} (not stored), "
        f"quarantined {totals['quarantined']:,}"
    )
    for errors in result.errors.values():
        for error in errors:
            line = cell(error)
            line.stylize("red")
            console.print(line)
    return 0


def _print_incidents(
    console: Any, incidents: IncidentStore, last: int, policies: Mapping[str, Policy]
) -> None:
    """The open incidents and the ``last`` evaluations, as tables (each incident's "now"
    line lists its members worst first on its rule's bad side)."""
    from rich.table import Table

    table = Table(title="open incidents")
    for column in ("severity", "since (UTC)", "policy", "rule", "summary"):
        table.add_column(column)
    from watchkeeper.daemon.store.incident_values import current_line, rule_bad_side

    for row in incidents.incidents("open"):
        summary, now = cell(row["summary"]), current_line(row, rule_bad_side(policies, row))
        if now:
            summary.append("\n")
            summary.append(cell(now))
        table.add_row(
            cell(row["severity"]),
            utc_minute(row["opened_ms"]),
            cell(row["policy"]),
            cell(row["rule"]),
            summary,
        )
    console.print(table)
    recent = Table(title="last evaluations")
    for column in ("at (UTC)", "policy", "rule", "feature", "value", "decision"):
        recent.add_column(column)
    for row in incidents.evaluations(limit=last):
        recent.add_row(
            utc_minute(row["at_ms"]),
            cell(row["policy"]),
            cell(row["rule"]),
            cell(row["feature"]),
            short_number(row["value"]),
            cell(row["decision"]),
        )
    console.print(recent)


def _print_shadow(console: Any, config: Config, policies: dict[str, Policy], now_ms: int) -> None:
    """The shadow candidates' table, read from the store."""
    from watchkeeper.daemon.cli.shadow import print_shadow
    from watchkeeper.daemon.shadow.checks import shadow_table
    from watchkeeper.daemon.shadow.store import ShadowStore
    from watchkeeper.daemon.store.store import Store

    with Store.open(config.store_url(), migrate=False) as store:
        body = shadow_table(
            ShadowStore(store.engine), policies, now_ms, int(config.windows.size * 1000)
        )
    print_shadow(console, body)


def _print_ab(console: Any, config: Config, policies: dict[str, Policy]) -> None:
    """The policies' A/B comparisons, read from the store."""
    from watchkeeper.daemon.checks.ab_status import ab_table
    from watchkeeper.daemon.checks.ab_store import ABStore
    from watchkeeper.daemon.cli.ab import print_ab
    from watchkeeper.daemon.store.store import Store

    with Store.open(config.store_url(), migrate=False) as store:
        print_ab(console, ab_table(ABStore(store.engine), policies))


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
