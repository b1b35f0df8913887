"""``watchkeeper reference``, ``drift`` and ``report``: the detectors from the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from watchkeeper.daemon.cli.common import open_store
from watchkeeper.daemon.errors import DataFileError
from watchkeeper.detectors.segments import DEFAULT_TOP_K, MAX_TOP_K
from watchkeeper.policies.errors import WatchkeeperDocumentError


def _ms(text: str) -> int:
    """Epoch ms from an ISO-8601 time (``2026-11-21T10:00Z``) or a number of ms."""
    if text.isascii() and text.isdigit() and len(text) <= 16:
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DataFileError(
            f"{text[:40]!r} is not a time: give ISO-8601 (2026-11-21T10:00Z) or epoch ms"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def load_profile(path: str) -> Any:
    """A reference profile file, or a one-line :class:`DataFileError`."""
    from watchkeeper.detectors.profile import ReferenceProfile

    try:
        return ReferenceProfile.load(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DataFileError(f"{path}: not a reference profile: {detail}") from None


def _class_scores(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    out: dict[str, str] = {}
    for pair in pairs:
        klass, sep, column = pair.partition("=")
        if not (sep and klass and column):
            raise DataFileError(f"--class-score {pair[:60]!r}: give CLASS=COLUMN")
        out[klass] = column
    return out


def cmd_reference_build(args: argparse.Namespace) -> int:
    from rich.progress import Progress
    from watchkeeper.daemon.offline.data_files import count_rows
    from watchkeeper.daemon.offline.estimation_check import self_check
    from watchkeeper.daemon.offline.reference import build_reference, utc_now_iso
    from watchkeeper.detectors.profile import profile_from_window

    notes: list[str] = []
    warnings: list[str] = []  # on stderr: a script reading stdout still sees them
    if args.from_store:
        if not (args.start and args.end):
            print("--from-store needs --start and --end", file=sys.stderr)
            return 2
        with open_store(args.config) as store:
            start, end = _ms(args.start), _ms(args.end)
            window = store.window_range(args.model, start, end, args.version)
            if window is None:
                print(f"no stored windows of {args.model} in that range", file=sys.stderr)
                return 1
            profile = profile_from_window(
                window, args.bins, f"store:{args.start}/{args.end}", utc_now_iso()
            )
            notes.append(
                "no estimation: stored windows keep no raw rows to calibrate on "
                "(build from a file with --label and --prediction for estimates)"
            )
    else:
        rows = count_rows(args.source)
        with Progress(transient=True) as bar:
            passes = 4 if args.segments else 2
            task = bar.add_task(f"profiling {args.source}", total=passes * rows if rows else None)
            profile = build_reference(
                args.source,
                args.model,
                features=args.features,
                exclude=args.exclude,
                prediction=args.prediction,
                label=args.label,
                bins=args.bins,
                progress=lambda n: bar.advance(task, n),
                prediction_class=args.prediction_class,
                threshold=args.threshold,
                class_scores=_class_scores(args.class_score),
                notes=notes,
                segments=args.segments,
                segment_top_k=args.segment_top_k,
                check=self_check,
                warnings=warnings,
            )
    for note in notes:
        print(note)
    for warning in warnings:
        print(warning, file=sys.stderr)
    if args.into_store:
        with open_store(args.config) as store:
            store.save_reference(profile, args.name)
        print(f"stored reference {args.model}/{args.name} ({profile.rows} rows)")
    if args.output:
        profile.save(args.output)
        print(f"wrote {args.output}: {len(profile.features)} features, {profile.rows} rows")
    if not (args.into_store or args.output):
        print("nothing written: give -o FILE and/or --into-store", file=sys.stderr)
        return 2
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    from rich.console import Console
    from watchkeeper.daemon.offline.batch_performance import (
        is_performance,
        judged,
        performance_metrics,
        render_performance,
    )
    from watchkeeper.daemon.offline.drift import (
        drift_findings,
        offline_rules,
        policy_findings,
        render_table,
        summarize_file,
    )
    from watchkeeper.daemon.offline.unjudged import (
        counts_line,
        no_offline_rules,
        not_judged_lines,
        nothing_judged,
    )
    from watchkeeper.detectors.registry import DEFAULT_DRIFT_METRICS

    loaded = None
    if args.policy:
        from watchkeeper.policies.loader import load_policy

        try:
            loaded = load_policy(args.policy)
        except WatchkeeperDocumentError as exc:
            print(exc, file=sys.stderr)
            return 2
    if loaded is not None and not offline_rules(loaded.policy):
        print(no_offline_rules(loaded.path, loaded.policy), file=sys.stderr)
        return 2
    path = args.reference or _policy_reference(loaded)
    if path is None:
        return 2
    reference = load_profile(path)
    window = summarize_file(
        args.current,
        reference,
        args.prediction,
        label=args.label,
        prediction_class=args.prediction_class,
    )
    if loaded is not None:
        results = policy_findings(loaded.policy, reference, window)
    else:
        # by default the drift set, and the realised / estimated performance the batch allows
        metrics = args.metrics or [
            *DEFAULT_DRIFT_METRICS,
            *performance_metrics(reference, window),
        ]
        results = drift_findings(reference, window, metrics, min_samples=args.min_samples)
    critical = [f for f, s in results if s == "critical"]
    if args.format == "json":
        print(
            json.dumps(
                {
                    "critical": len(critical),
                    "warnings": sum(s == "warn" for _, s in results),
                    "not_judged": sum(s == "n/a" for _, s in results),
                    "rows": window.count,
                    "findings": [dict(f.to_dict(), severity=s) for f, s in results],
                },
                indent=1,
            )
        )
    else:
        console = Console()
        drift = [r for r in results if not is_performance(r[0])]
        performance = [r for r in results if is_performance(r[0])]
        if drift:
            console.print(render_table(drift, console.width))
        if performance:
            console.print(render_performance(performance))
        for line in [*not_judged_lines(results), counts_line(results, window.count)]:
            console.print(line, markup=False, highlight=False)
    if not judged(results):
        # README "Offline check": a gate never passes on nothing — every metric
        # insufficient_data (a batch under min_samples), or a value no threshold applies
        # to (a relative rule against a reference without that metric), is not a pass
        print(nothing_judged(results, window.count, args.current), file=sys.stderr)
        return 2
    return 1 if critical else 0


def _policy_reference(loaded: Any) -> str | None:
    """The profile file ``--policy`` names, resolved as the daemon resolves it (relative to
    the policy file); None, with the reason printed, when there is none to read."""
    if loaded is None:
        print("watchkeeper drift: give --reference FILE (or --policy naming one)", file=sys.stderr)
        return None
    stored = loaded.policy.stored_reference()
    if stored is not None:
        print(
            f"watchkeeper drift: {loaded.path} scores against the stored reference "
            f"'{stored}'; give --reference FILE (a profile, e.g. from `reference build -o`)",
            file=sys.stderr,
        )
        return None
    ref = Path(loaded.policy.reference)
    return str(ref if ref.is_absolute() else loaded.directory / ref)


def _report_reference(args: argparse.Namespace, config: Any, store: Any) -> Any:
    """The reference a report compares with: ``--reference FILE``, ``--reference-name``
    (stored), else the one the model's policy names (a profile file or ``store:NAME``),
    else the stored ``default``; a :class:`DataFileError` naming what was tried."""
    from watchkeeper.policies.loader import load_all
    from watchkeeper.policies.schema import DEFAULT_STORED_REFERENCE

    if args.reference:
        return load_profile(args.reference)
    if args.reference_name is not None:
        name, tried = args.reference_name, f"--reference-name {args.reference_name}"
    else:
        result = load_all(config.policies.paths)
        mine = [p for p in result.policies if p.policy.model == args.model]
        policy = mine[0] if mine else None
        name = policy.policy.stored_reference() if policy is not None else None
        if policy is not None and name is None:
            assert policy.policy.reference is not None  # a profile file
            return load_profile(str(policy.directory / policy.policy.reference))
        name = name or DEFAULT_STORED_REFERENCE
        tried = f"policy {policy.policy.key}'s reference" if policy else "no policy of the model"
    stored = store.reference(args.model, name)
    if stored is None:
        raise DataFileError(
            f"no stored reference {args.model}/{name} ({tried}): give --reference FILE "
            "or store one (watchkeeper reference build --into-store)"
        )
    return stored


def cmd_report(args: argparse.Namespace) -> int:
    from watchkeeper.daemon.cli.common import load_or_exit
    from watchkeeper.daemon.offline.drift import drift_report
    from watchkeeper.daemon.store.store import Store

    config = load_or_exit(args.config)
    with Store.open(config.store_url()) as store:
        reference = _report_reference(args, config, store)
        start, _, end = args.window.partition("/")
        start_ms = _ms(start)
        end_ms = _ms(end) if end else start_ms + 1
        window = store.window_range(args.model, start_ms, end_ms)
    if window is None:
        print(f"no stored windows of {args.model} starting in that range", file=sys.stderr)
        return 2
    path = drift_report(reference, window, Path(args.output))
    print(f"wrote {path}")
    return 0


def add_parsers(sub: Any, default_config: str) -> None:
    _add_reference_parser(sub, default_config)
    _add_drift_parser(sub)
    _add_report_parser(sub, default_config)


def _add_reference_parser(sub: Any, default_config: str) -> None:
    ref = sub.add_parser("reference", help="reference profiles")
    ref_sub = ref.add_subparsers(dest="reference_command", required=True)
    build = ref_sub.add_parser(
        "build", help="profile a training / validation file or a stored window range"
    )
    build.add_argument("--model", required=True)
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", help="a .csv, .tsv or .parquet file")
    source.add_argument(
        "--from-store", action="store_true", help="the stored windows between --start and --end"
    )
    build.add_argument("--start", help="ISO-8601 time or epoch ms (with --from-store)")
    build.add_argument("--end", help="ISO-8601 time or epoch ms (with --from-store)")
    build.add_argument("--version", help="only this model version (with --from-store)")
    build.add_argument("--features", type=lambda s: s.split(","), help="a,b,c (default: all)")
    build.add_argument(
        "--exclude",
        type=lambda s: s.split(","),
        default=[],
        help="columns that are not features (ids, timestamps)",
    )
    build.add_argument("--prediction", help="the prediction column")
    build.add_argument(
        "--prediction-class",
        help="the model's own decision, when it logs one beside the score "
        "(accuracy-type reference metrics grade it)",
    )
    build.add_argument("--label", help="the label column (gives reference metrics)")
    build.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="binary models: the decision threshold on the score (the daemon's "
        "ingest.decision_threshold); the estimates' calibrator cuts there",
    )
    build.add_argument(
        "--class-score",
        action="append",
        metavar="CLASS=COLUMN",
        help="multiclass models: each class's score column (repeat per class), for estimates",
    )
    build.add_argument("--bins", type=int, default=10)
    build.add_argument(
        "--segments",
        type=lambda s: s.split(","),
        default=[],
        help="country,channel: a profile per segment of these features (a file source; "
        "stored windows carry the segments they kept)",
    )
    build.add_argument(
        "--segment-top-k",
        type=int,
        default=DEFAULT_TOP_K,
        help=f"segments of each feature: its K most frequent values, the rest as "
        f"(other) (default {DEFAULT_TOP_K}, at most {MAX_TOP_K})",
    )
    build.add_argument("-o", "--output", help="write the profile to this JSON file")
    build.add_argument("--into-store", action="store_true", help="keep it in the store")
    build.add_argument("--name", default="default", help="its name in the store")
    build.add_argument("-c", "--config", default=default_config)
    build.set_defaults(func=cmd_reference_build)


def _add_drift_parser(sub: Any) -> None:
    drift = sub.add_parser(
        "drift",
        help="score a batch file against a reference; exit 1 when a critical threshold is "
        "crossed, 2 when no metric could be judged (or on a bad file)",
    )
    drift.add_argument(
        "--reference",
        help="a reference profile JSON file (default with --policy: the policy's reference file)",
    )
    drift.add_argument("--current", required=True, help="a .csv, .tsv or .parquet file")
    drift.add_argument(
        "--prediction",
        help="the prediction column of the batch: its drift is scored, and it gives the "
        "estimated_* metrics (default for those: the reference's prediction column)",
    )
    drift.add_argument(
        "--prediction-class",
        help="the model's decision column of the batch, scored with --prediction "
        "(default: the reference's, when the batch has it)",
    )
    drift.add_argument(
        "--label",
        help="the label column of the batch: gives the realised metrics "
        "(default: the reference's label column, when the batch has it)",
    )
    drift.add_argument(
        "--metrics",
        type=lambda s: s.split(","),
        help="psi,ks,… (default: the drift and data-quality set)",
    )
    drift.add_argument("--min-samples", type=int, default=100)
    drift.add_argument(
        "--policy",
        help="judge with this policy file's rules and thresholds instead of the defaults",
    )
    drift.add_argument("--format", choices=["table", "json"], default="table")
    drift.set_defaults(func=cmd_drift)


def _add_report_parser(sub: Any, default_config: str) -> None:
    report = sub.add_parser("report", help="an Evidently HTML drift report of stored windows")
    report.add_argument("--model", required=True)
    report.add_argument("--window", required=True, help="START[/END]: ISO-8601 or epoch ms")
    report.add_argument(
        "--reference",
        help="a profile file (default: the reference the model's policy names, else the "
        "stored default)",
    )
    report.add_argument("--reference-name", help="a stored reference of the model, by name")
    report.add_argument("-o", "--output", default="drift-report.html")
    report.add_argument("-c", "--config", default=default_config)
    report.set_defaults(func=cmd_report)
