"""``watchkeeper compress``: candidate models from an FP32 ONNX model, measured offline.

Three variants, each written next to the others in the output directory:

* ``int8-dynamic``: ``onnxruntime.quantization.quantize_dynamic``, INT8 weights (7-bit
  range, safe on CPUs without VNNI), activations quantized at run time — no calibration
  data needed;
* ``int8-static``: ``quantize_static`` in QDQ format with INT8 weights and activations,
  calibrated (MinMax) on real feature rows (a reference profile's sample, a file, or the
  rows the daemon sampled into its windows);
* ``fp16``: ``onnxconverter_common.float16.convert_float_to_float16`` with float32 inputs
  and outputs kept. ONNX Runtime's CPU provider runs few float16 kernels (it casts around
  them), so on CPU its latency says nothing about a GPU's: it is reported only when a GPU
  provider is configured and available; size and agreement are reported everywhere.

For each: file size, batch and single-row latency (median of repeated runs on this
machine), agreement with the FP32 model on the calibration rows (classes for a
classifier, mean |score difference| for scores), and explanation consistency — the
same three columns shadow evaluation keeps (``shadow_attribution_rank_corr``,
``shadow_attribution_topk_overlap``, ``shadow_protected_attribution_delta``): both models'
interventional Shapley values (:mod:`watchkeeper.detectors.shapley`) of up to
``attribution_rows`` evenly spaced calibration rows, against a background of
``background_rows`` others, each row's orderings seeded by its position so the models
are explained alike. A variant that fails to convert is reported with its error; the
others go on. A policy snippet puts the variants in shadow.
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from watchkeeper.daemon.config_shadow import ShadowConfig
from watchkeeper.daemon.shadow.runtime import OnnxModel
from watchkeeper.detectors.attribution import AttributionComparison, AttributionSummary
from watchkeeper.detectors.shapley import ShapleyExplainer
from watchkeeper.policies.shadow import Inputs, Outputs

VARIANTS = ("int8-dynamic", "int8-static", "fp16")
GPU_PROVIDERS = {
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "ROCMExecutionProvider",
    "DmlExecutionProvider",
}


@dataclass
class Result:
    name: str
    path: Path | None
    size_bytes: int = 0
    batch_ms: float | None = None
    row_ms: float | None = None
    agreement: float | None = None
    mean_abs_diff: float | None = None
    error: str = ""
    notes: list[str] = field(default_factory=list)
    attribution: dict[str, float] = field(default_factory=dict)
    """The attribution metrics against the FP32 model (empty: not computed)."""
    attribution_details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Explaining:
    """How ``compress`` compares attributions (see the module docstring)."""

    rows: int = 200
    """Calibration rows explained (0: no attribution columns)."""
    background_rows: int = 50
    permutations: int = 10
    top_k: int = 5
    protected: tuple[str, ...] = ()


class _Attributions:
    """The FP32 model's attributions of the explained rows, and each variant's against it."""

    def __init__(self, reference: OnnxModel, rows: np.ndarray[Any, Any], how: Explaining) -> None:
        n = len(rows)
        self.how = how
        self.features = reference.inputs.features
        # explained rows and background rows are disjoint, both evenly spread
        background = min(how.background_rows, n // 2)
        take = min(how.rows, n - background) if background else 0
        explained = np.linspace(0, n - 1, take).round().astype(int)
        rest = np.setdiff1d(np.arange(n), explained)
        picks = rest[np.linspace(0, len(rest) - 1, background).round().astype(int)]
        self.x = rows[explained].astype(np.float64)
        self.background = rows[picks].astype(np.float64)
        self.keys = explained.astype(np.uint64)
        self.production = self._summary(reference) if take else None

    def _summary(self, model: OnnxModel) -> AttributionSummary:
        def predict(z: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            return model.scores(np.ascontiguousarray(z, dtype=model.dtype))

        explainer = ShapleyExplainer(predict, self.background, permutations=self.how.permutations)
        summary = AttributionSummary(self.features)
        summary.update(explainer.explain(self.x, self.keys))
        return summary

    def compare(self, model: OnnxModel, result: Result) -> None:
        if self.production is None:
            return
        candidate = self._summary(model)
        comparison = AttributionComparison(
            top_k=self.how.top_k, protected=self.how.protected, min_rows=1
        )
        outcome = comparison.shadow_metrics(self.production, candidate)
        result.attribution = dict(outcome.values)
        result.attribution_details = dict(outcome.details) | {
            "unavailable": dict(outcome.unavailable)
        }


def infer_outputs(path: Path) -> tuple[str, Outputs]:
    """(task, outputs) guessed from the model's outputs: an int64 / string output and a
    float matrix make a classifier (label, probabilities); otherwise the first output is
    a regression score."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = session.get_outputs()
    label = next((o.name for o in outs if o.type in ("tensor(int64)", "tensor(string)")), None)
    probs = next(
        (
            o.name
            for o in outs
            if (o.type == "tensor(float)" and len(o.shape) == 2) or o.type.startswith("seq(map")
        ),
        None,
    )
    if label is not None or probs is not None:
        return "classification", Outputs(label=label, probabilities=probs)
    return "regression", Outputs(score=outs[0].name)


def _without_noop_casts(model: Any) -> Any:
    """Drop Cast nodes that cast a tensor to its own type (skl2onnx emits one on float
    inputs): the float16 converter otherwise removes the cast and leaves a float32 input
    feeding a float16 MatMul, which ONNX Runtime refuses to load."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in [*graph.input, *graph.value_info, *graph.output]
    }
    types.update({i.name: i.data_type for i in graph.initializer})
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    kept = []
    for node in model.graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        same = node.op_type == "Cast" and node.domain == "" and types.get(node.input[0]) == to
        if same and node.output[0] not in outputs:
            rename[node.output[0]] = rename.get(node.input[0], node.input[0])
            continue
        kept.append(node)
    for node in kept:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model


def _convert(
    name: str, source: Path, target: Path, calibration: np.ndarray[Any, Any], input_name: str
) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    if name == "int8-dynamic":
        # 7-bit weights (reduce_range): without VNNI, ONNX Runtime's x86 U8S8 kernels add
        # pairs of u8*s8 products in int16 (vpmaddubsw), which saturates with full-range
        # weights (ORT quantization docs, "When and why do I need to try U8U8?" /
        # reduce_range). The candidate is run on the serving machine, not this one, so the
        # safe setting is used everywhere; measured here (AVX2, no VNNI) on the linear model
        # of tests/unit/test_shadow_attribution.py: protected-attribution change 0.023 with
        # 8-bit weights, 0.0024 with 7-bit.
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, reduce_range=True)
    elif name == "int8-static":

        class Reader(CalibrationDataReader):  # type: ignore[misc]
            def __init__(self) -> None:
                step = 64
                self._batches = iter(
                    [
                        {input_name: calibration[i : i + step]}
                        for i in range(0, len(calibration), step)
                    ]
                )

            def get_next(self) -> dict[str, Any] | None:
                return next(self._batches, None)

        quantize_static(
            str(source),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
        )
    else:
        import onnx
        from onnxconverter_common import float16

        model = _without_noop_casts(onnx.load(str(source)))
        onnx.save(float16.convert_float_to_float16(model, keep_io_types=True), str(target))


def _latency(model: OnnxModel, x: np.ndarray[Any, Any], repeats: int) -> tuple[float, float]:
    batch, row = [], []
    model.predict(x)  # warm-up
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict(x)
        batch.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        model.predict(x[:1])
        row.append((time.perf_counter() - started) * 1000)
    return statistics.median(batch), statistics.median(row)


def compress(
    source: Path,
    out_dir: Path,
    rows: np.ndarray[Any, Any],
    inputs: Inputs,
    task: str,
    outputs: Outputs,
    settings: ShadowConfig,
    variants: tuple[str, ...] = VARIANTS,
    batch_size: int = 256,
    repeats: int = 30,
    explaining: Explaining | None = None,
) -> list[Result]:
    """Write each variant into ``out_dir`` and measure it against ``source`` on ``rows``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    allowed = settings.model_copy(update={"model_dirs": (str(source.parent), str(out_dir))})
    reference = OnnxModel("offline", "fp32", source, inputs, outputs, task, allowed)
    x = rows[:batch_size]
    fp32 = Result("fp32", source, source.stat().st_size)
    fp32.batch_ms, fp32.row_ms = _latency(reference, x, repeats)
    expected = reference.predict(rows)
    attributions = _Attributions(reference, rows, explaining or Explaining())
    results = [fp32]
    gpu = bool(GPU_PROVIDERS & set(reference.providers))
    for name in variants:
        target = out_dir / f"{source.stem}.{name}.onnx"
        result = Result(name, target)
        try:
            # converters warn about what they change (weights truncated to float16's
            # range …): kept as notes, the agreement below measures their effect
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                _convert(name, source, target, rows, reference.input_name)
            for message in dict.fromkeys(str(w.message).split(" will ")[0] for w in caught):
                result.notes.append(f"converter: {message[:120]}")
            result.notes[3:] = (
                [f"… and {len(result.notes) - 3} more"] if len(result.notes) > 3 else []
            )
            model = OnnxModel("offline", name, target, inputs, outputs, task, allowed)
        except Exception as exc:  # one failed variant must not stop the rest
            result.error = f"{type(exc).__name__}: {exc}"[:300]
            result.path = None
            results.append(result)
            continue
        result.size_bytes = target.stat().st_size
        got = model.predict(rows)
        if expected.classes is not None and got.classes is not None:
            same = [a == b for a, b in zip(expected.classes, got.classes, strict=True)]
            result.agreement = float(np.mean(same))
        both = np.isfinite(expected.scores) & np.isfinite(got.scores)
        if both.any():
            result.mean_abs_diff = float(np.abs(expected.scores[both] - got.scores[both]).mean())
        try:
            attributions.compare(model, result)
        except Exception as exc:  # the other columns stand without this one
            result.notes.append(f"attributions not computed: {type(exc).__name__}: {exc}"[:160])
        if name == "fp16" and not gpu:
            result.notes.append("latency not measured: the CPU provider emulates float16")
        else:
            result.batch_ms, result.row_ms = _latency(model, x, repeats)
        results.append(result)
    return results


def snippet(
    source: Path,
    results: list[Result],
    inputs: Inputs,
    task: str,
    outputs: Outputs,
    relative_to: Path,
    protected: tuple[str, ...] = (),
) -> str:
    """A policy ``shadow`` section that puts the variants that converted in shadow."""

    def rel(path: Path) -> str:
        try:
            return str(path.resolve().relative_to(relative_to.resolve()))
        except ValueError:
            return str(path.resolve())

    section: dict[str, Any] = {
        "task": task,
        "inputs": inputs.model_dump(exclude_defaults=True),
        "outputs": outputs.model_dump(exclude_none=True, exclude_defaults=True),
        "baseline": rel(source),
        "sample_rate": 0.1,
        **({"protected": list(protected)} if protected else {}),
        "candidates": [
            {"name": r.name, "onnx": rel(r.path)}
            for r in results[1:]
            if r.path is not None and not r.error
        ],
        "promotion": {
            "when": (
                ["shadow_agreement >= 0.99", "shadow_accuracy_delta >= -0.005"]
                if task == "classification"
                else ["shadow_mean_abs_diff <= 0.01", "shadow_mae_delta <= 0.005"]
            )
            + ["shadow_latency_p99_ratio <= 0.7", "shadow_attribution_rank_corr >= 0.9"]
            + (["shadow_protected_attribution_delta <= 0.02"] if protected else []),
            "min_rows": 10000,
            "over": "24h",
            "on_promote": [],
            "on_reject": [],
        },
    }
    return str(yaml.safe_dump({"shadow": section}, sort_keys=False))


def table(results: list[Result]) -> list[dict[str, Any]]:
    """Rows of the printed comparison, ratios against the FP32 model."""
    base = results[0]
    out = []
    for r in results:
        ratio = None
        if r.batch_ms is not None and base.batch_ms:
            ratio = r.batch_ms / base.batch_ms
        out.append(
            {
                "variant": r.name,
                "file": str(r.path) if r.path else "",
                "size_bytes": r.size_bytes,
                "size_ratio": r.size_bytes / base.size_bytes if r.size_bytes else None,
                "batch_ms": r.batch_ms,
                "row_ms": r.row_ms,
                "latency_ratio": ratio,
                "agreement": r.agreement,
                "mean_abs_diff": r.mean_abs_diff,
                "error": r.error,
                "notes": r.notes,
                "attribution_rank_corr": r.attribution.get("shadow_attribution_rank_corr"),
                "attribution_topk_overlap": r.attribution.get("shadow_attribution_topk_overlap"),
                "protected_attribution_delta": r.attribution.get(
                    "shadow_protected_attribution_delta"
                ),
                "attribution": r.attribution_details,
            }
        )
    return out
