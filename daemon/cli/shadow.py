"""``watchkeeper compress`` and the shadow comparison table of ``watchkeeper status``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from watchkeeper.daemon.config_shadow import ShadowConfig


def _calibration_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Feature rows from --rows (JSON lines or CSV), --reference (its sample), or the
    store's reference / recent windows (-c with --model)."""
    if args.rows:
        path = Path(args.rows)
        if path.suffix == ".csv":
            import pandas as pd

            frame = pd.read_csv(path)
            return [
                {k: (None if v != v else v) for k, v in row.items()}
                for row in frame.to_dict("records")
            ]
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [r.get("features", r) if isinstance(r, dict) else {} for r in rows]
    if args.reference:
        from watchkeeper.detectors.profile import ReferenceProfile

        return [dict(r.get("features", {})) for r in ReferenceProfile.load(args.reference).sample]
    if args.config and args.model_name:
        from watchkeeper.daemon.cli.common import open_store

        with open_store(args.config) as store:
            ref = store.reference(args.model_name, args.reference_name)
            if ref is not None and ref.sample:
                return [dict(r.get("features", {})) for r in ref.sample]
            window = store.window_range(args.model_name, 0, 2**62)
            if window is not None:
                return [dict(r.get("features", {})) for r in window.sample.rows]
    return []


def _mapping(args: argparse.Namespace, model: Path) -> tuple[Any, str, Any, Any]:
    """(inputs, task, outputs, how attributions are compared) from --policy or the flags."""
    from watchkeeper.daemon.shadow.compress import Explaining, infer_outputs
    from watchkeeper.policies.loader import load_policy
    from watchkeeper.policies.shadow import Inputs

    protected = tuple(p for p in (args.protected or "").split(",") if p)
    if args.policy:
        shadow = load_policy(args.policy, cross_check=False).policy.shadow
        if shadow is None:
            raise SystemExit(f"watchkeeper: {args.policy} has no shadow section")
        a = shadow.attributions
        how = Explaining(
            args.attribution_rows,
            a.background_rows,
            a.permutations,
            a.top_k,
            protected or shadow.protected,
        )
        inputs, task, outputs = shadow.inputs, str(shadow.task), shadow.outputs
    else:
        if not args.features:
            raise SystemExit(
                "watchkeeper: give --policy FILE (its shadow.inputs) or --features a,b,c"
            )
        task, outputs = infer_outputs(model)
        inputs = Inputs(features=tuple(args.features.split(",")), dtype=args.dtype)
        how = Explaining(args.attribution_rows, protected=protected)
    unknown = [p for p in how.protected if p not in inputs.features]
    if unknown:
        raise SystemExit(
            f"watchkeeper: protected features {unknown} are not inputs "
            f"({', '.join(inputs.features)})"
        )
    return inputs, task, outputs, how


def cmd_compress(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from watchkeeper.daemon.shadow.compress import VARIANTS, compress, snippet, table
    from watchkeeper.daemon.shadow.runtime import columns_from_rows, feature_matrix

    source = Path(args.model)
    if not source.is_file():
        print(f"watchkeeper: no model file at {source}", file=sys.stderr)
        return 2
    inputs, task, outputs, how = _mapping(args, source)
    rows = _calibration_rows(args)[: args.max_rows]
    if len(rows) < 10:
        print(
            "watchkeeper: need calibration rows: --rows FILE, --reference PROFILE, or "
            f"-c CONFIG --model NAME (found {len(rows)})",
            file=sys.stderr,
        )
        return 2
    x = feature_matrix(inputs, columns_from_rows(rows), len(rows))
    out_dir = Path(args.out or source.parent)
    variants = tuple(args.variants.split(",")) if args.variants else VARIANTS
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        print(f"watchkeeper: unknown variants {unknown} (known: {', '.join(VARIANTS)})")
        return 2
    settings = ShadowConfig(providers=tuple(args.providers.split(",")))
    results = compress(
        source, out_dir, x, inputs, task, outputs, settings, variants, explaining=how
    )
    rows_out = table(results)
    if args.json:
        print(json.dumps({"rows": len(rows), "variants": rows_out}, indent=2))
    else:
        view = Table(title=f"{source.name}: {len(rows)} calibration rows")
        for column in ("variant", "size", "size ×", "batch ms", "row ms", "latency ×", "agree"):
            view.add_column(column, justify="right" if column != "variant" else "left")

        def fmt(v: float | None, spec: str) -> str:
            return "—" if v is None else format(v, spec)

        for r in rows_out:
            agree = (
                fmt(r["agreement"], ".4f")
                if r["agreement"] is not None
                else (
                    f"Δ {fmt(r['mean_abs_diff'], '.2g')}" if r["mean_abs_diff"] is not None else "—"
                )
            )
            if r["error"]:
                view.add_row(r["variant"], "failed", r["error"][:60], "", "", "", "")
                continue
            view.add_row(
                r["variant"],
                f"{r['size_bytes']:,}",
                fmt(r["size_ratio"], ".2f"),
                fmt(r["batch_ms"], ".3f"),
                fmt(r["row_ms"], ".3f"),
                fmt(r["latency_ratio"], ".2f"),
                agree,
            )
        Console().print(view)
        if how.rows:
            Console().print(_attribution_table(rows_out, how))
        for r in rows_out:
            for note in r["notes"]:
                print(f"{r['variant']}: {note}")
    text = snippet(
        source, results, inputs, task, outputs, Path(args.snippet_dir or out_dir), how.protected
    )
    target = out_dir / f"{source.stem}.shadow.snippet.yaml"
    target.write_text(
        "# paste under the model's policy file (paths relative to the policy file's folder)\n"
        + text
    )
    print(f"policy snippet written to {target}", file=sys.stderr)
    return 0 if all(not r.error for r in results) else 1


def _attribution_table(rows_out: list[dict[str, Any]], how: Any) -> Any:
    """Explanation consistency of each variant with the FP32 model: the columns shadow
    evaluation names ``shadow_attribution_rank_corr``, ``…_topk_overlap`` and
    ``shadow_protected_attribution_delta``."""
    from rich.table import Table

    explained = next((r["attribution"].get("rows") for r in rows_out if r["attribution"]), 0)
    view = Table(
        title=f"attributions vs fp32 ({explained} rows, background {how.background_rows}, "
        f"protected: {', '.join(how.protected) or 'none'})"
    )
    for column in ("variant", "rank ρ", f"top-{how.top_k} overlap", "protected Δ share", "top"):
        view.add_column(column, justify="left" if column in ("variant", "top") else "right")
    for r in rows_out[1:]:
        if r["error"]:
            continue
        a = r["attribution"]
        moved = a.get("protected") or {}
        delta = r["protected_attribution_delta"]
        view.add_row(
            r["variant"],
            "—" if r["attribution_rank_corr"] is None else f"{r['attribution_rank_corr']:.3f}",
            "—"
            if r["attribution_topk_overlap"] is None
            else f"{r['attribution_topk_overlap']:.2f}",
            "—" if delta is None else f"{delta:.3f} ({moved['change']:+.3f} {moved['feature']})",
            ", ".join(a.get("candidate_top", [])[:3]),
        )
    return view


def print_shadow(console: Any, body: dict[str, Any]) -> None:
    """The ``/api/shadow`` table as ``watchkeeper status`` prints it."""
    from rich.table import Table

    for model, entry in body["models"].items():
        if not entry["candidates"]:
            # production's attributions only: no candidate table, the shift line alone
            shift = entry.get("attribution_shift")
            console.print(f"shadow of {model}: no candidates, production's attributions only")
            if shift:
                console.print(_shift_line(shift))
            continue
        view = Table(title=f"shadow candidates of {model} (last {entry['over_s'] / 3600:g} h)")
        for column in (
            "candidate",
            "state",
            "rows",
            "agree",
            "|Δ| mean",
            "acc Δ",
            "p99 ×",
            "attr ρ",
            "top-k",
            "prot Δ",
            "decision",
        ):
            view.add_column(column)
        for row in entry["candidates"]:
            c = row["comparison"]

            def f(name: str, spec: str = ".4g", c: dict[str, Any] = c) -> str:
                return format(c[name], spec) if name in c else "—"

            decision = row["decision"]["decision"] if row["decision"] else "pending"
            state = row["state"] + (f": {row['reason'][:40]}" if row["reason"] else "")
            view.add_row(
                row["candidate"],
                state,
                f("shadow_rows", ",.0f"),
                f("shadow_agreement", ".4f"),
                f("shadow_mean_abs_diff"),
                f("shadow_accuracy_delta", "+.4f"),
                f("shadow_latency_p99_ratio", ".2f"),
                f("shadow_attribution_rank_corr", ".3f"),
                f("shadow_attribution_topk_overlap", ".2f"),
                _protected(row, c),
                decision,
            )
        console.print(view)
        shift = entry.get("attribution_shift")
        if shift:
            console.print(_shift_line(shift))


def _shift_line(shift: dict[str, Any]) -> str:
    """``attribution_shift`` of production: its value with both sides' rows and top
    features, or why it has none."""
    if shift.get("value") is None:
        return f"attribution shift of production: — ({str(shift.get('reason', ''))[:80]})"
    top = ", ".join(str(f)[:16] for f in shift.get("reference_top", [])[:3])
    now = ", ".join(str(f)[:16] for f in shift.get("window_top", [])[:3])
    return (
        f"attribution shift of production: ρ {shift['value']:.3f} over "
        f"{shift.get('rows', 0):,} attributed rows vs {shift.get('reference_rows', 0):,} "
        f"reference rows (top: {top} → {now})"
    )


def _protected(row: dict[str, Any], c: dict[str, Any]) -> str:
    """The protected feature that moved most, with its signed change in share."""
    if "shadow_protected_attribution_delta" not in c:
        return "—"
    moved = (row.get("attribution") or {}).get("protected") or {}
    if "feature" not in moved:
        return format(c["shadow_protected_attribution_delta"], ".3f")
    return f"{moved['change']:+.3f} {str(moved['feature'])[:16]}"


def add_parsers(sub: Any, default_config: str) -> None:
    comp = sub.add_parser(
        "compress",
        help="make INT8 (dynamic, static) and FP16 candidates of an ONNX model and compare them",
    )
    comp.add_argument("model", help="the FP32 ONNX model")
    comp.add_argument("--policy", help="a policy file whose shadow section maps the inputs")
    comp.add_argument("--features", help="input features in order, comma-separated")
    comp.add_argument("--dtype", default="float32", choices=["float32", "float64", "int64"])
    comp.add_argument("--rows", help="calibration rows: JSON lines (or CSV) of features")
    comp.add_argument("--reference", help="a reference profile file: its sample rows")
    comp.add_argument("-c", "--config", help="with --model: rows from the store")
    comp.add_argument("--model", dest="model_name", help="model name in the store")
    comp.add_argument("--reference-name", default="default")
    comp.add_argument("--max-rows", type=int, default=2000)
    comp.add_argument("--out", help="output directory (default: next to the model)")
    comp.add_argument("--variants", help="comma-separated subset (default: all)")
    comp.add_argument("--providers", default="CPUExecutionProvider")
    comp.add_argument("--snippet-dir", help="paths in the snippet are relative to this folder")
    comp.add_argument("--json", action="store_true", help="print the table as JSON")
    comp.add_argument(
        "--protected",
        help="features whose share of attribution must not move (default: the "
        "policy's shadow.protected)",
    )
    comp.add_argument(
        "--attribution-rows",
        type=int,
        default=200,
        help="calibration rows explained for the attribution columns (0: none)",
    )
    comp.set_defaults(func=cmd_compress)
    del default_config  # compress needs no daemon config
