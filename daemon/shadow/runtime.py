"""ONNX models under evaluation: loading with limits, feature rows in, scores and classes out.

A model file loads only from an allowed directory (the policy file's own, or one of
``shadow.model_dirs``) and below ``shadow.max_model_bytes``: a policy file must not be a
way to make the daemon read arbitrary files. Loading runs the model once on a row of
zeros, so a wrong input name, width or output shape is found at load, not on traffic.

Outputs become a score per row (P(positive class) for two classes, the top probability
otherwise, or the regression value) and, for classifiers, a class name per row (the label
output as text, else the argmax index, as the decoder names classes of probability
vectors). Any failure raises :class:`CandidateError`, which disables the model.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from watchkeeper.daemon.config_shadow import ShadowConfig
from watchkeeper.daemon.errors import CandidateError
from watchkeeper.detectors.column_batch import Column
from watchkeeper.detectors.performance import class_names
from watchkeeper.policies.shadow import Inputs, Outputs

_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64}
_ONNX_TYPES = {"float32": "tensor(float)", "float64": "tensor(double)", "int64": "tensor(int64)"}


@dataclass(frozen=True)
class Prediction:
    scores: np.ndarray[Any, np.dtype[np.float64]]
    classes: list[str | None] | None


def resolve_model_path(file: str, policy_dir: Path, settings: ShadowConfig) -> Path:
    """The model file's real path, if it lies in an allowed directory and is small enough."""
    path = Path(file) if Path(file).is_absolute() else policy_dir / file
    real = path.resolve()
    allowed = [policy_dir.resolve(), *(Path(d).resolve() for d in settings.model_dirs)]
    if not any(real.is_relative_to(d) for d in allowed):
        where = ", ".join(str(d) for d in allowed)
        raise ValueError(f"{path} is outside the allowed model directories ({where})")
    if not real.is_file():
        raise ValueError(f"no model file at {path}")
    size = real.stat().st_size
    limit = settings.max_model_bytes
    if size > limit:
        raise ValueError(f"{path} is {size} bytes, more than shadow.max_model_bytes ({limit})")
    external = external_data_bytes(real, allowed)
    if size + external > limit:
        raise ValueError(
            f"{path} is {size} bytes with {external} bytes of external data, more than "
            f"shadow.max_model_bytes ({limit})"
        )
    return real


def _tensors(graph: Any) -> Any:
    """Every tensor of a graph and of its subgraphs (If / Loop / Scan bodies)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _tensors(sub)


def external_data_bytes(model_path: Path, allowed: list[Path]) -> int:
    """Bytes of external data the model refers to, each file inside ``allowed``.

    ONNX Runtime reads a tensor's external data from the ``location`` its entry names,
    relative to the model file; watchkeeper checks each one first: it must resolve
    (symlinks and ``..`` included) inside an allowed directory and exist, and what it
    adds counts against ``shadow.max_model_bytes`` (the referenced length, or the rest of
    the file from its offset). The model is parsed without its external data for this.
    """
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ValueError(
            f"cannot load {model_path.name}: not an ONNX model ({type(exc).__name__})"
        ) from None
    total = 0
    base = model_path.parent
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entry = {item.key: item.value for item in tensor.external_data}
        location = entry.get("location", "")
        if not location or Path(location).is_absolute():
            raise ValueError(f"{model_path.name}: external data must be a relative path")
        target = (base / location).resolve()
        if not any(target.is_relative_to(d) for d in allowed):
            raise ValueError(
                f"{model_path.name}: external data {location!r} is outside the allowed "
                "model directories"
            )
        if not target.is_file():
            raise ValueError(f"{model_path.name}: no external data file {location!r}")
        available = target.stat().st_size
        try:
            offset = int(entry.get("offset", "0"))
            length = int(entry["length"]) if "length" in entry else available - offset
        except ValueError:
            raise ValueError(f"{model_path.name}: bad external data offset / length") from None
        if offset < 0 or length < 0 or offset + length > available:
            raise ValueError(f"{model_path.name}: external data {location!r} is out of range")
        total += length
    return total


def parameter_count(path: Path) -> int:
    """Elements in the model's initializers (its weights)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(sum(int(np.prod(init.dims)) if init.dims else 1 for init in model.graph.initializer))


class OnnxModel:
    """One ONNX model with its input and output mapping; see the module docstring."""

    def __init__(
        self,
        model: str,
        name: str,
        path: Path,
        inputs: Inputs,
        outputs: Outputs,
        task: str,
        settings: ShadowConfig,
    ) -> None:
        import onnxruntime as ort

        self.model = model
        self.name = name
        self.path = path
        self.inputs = inputs
        self.outputs = outputs
        self.task = task
        self.dtype = _DTYPES[inputs.dtype]
        self.size_bytes = path.stat().st_size
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.intra_op_threads
        options.inter_op_num_threads = settings.inter_op_threads
        options.log_severity_level = 3  # errors only: ORT's warnings go to stderr otherwise
        available = set(ort.get_available_providers())
        providers = [p for p in settings.providers if p in available] or ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ORT raises its own Fail / InvalidGraph / … types
            raise self._error(f"cannot load {path.name}: {exc}") from None
        self.providers = tuple(self.session.get_providers())
        self.input_name = self._input_name()
        self._check_outputs()
        self.parameters = parameter_count(path)
        self.predict(np.zeros((1, len(inputs.features)), dtype=self.dtype))  # warm-up + check

    def _error(self, reason: str) -> CandidateError:
        return CandidateError(self.model, self.name, reason)

    def _input_name(self) -> str:
        declared = {i.name: i for i in self.session.get_inputs()}
        name = self.inputs.name
        if name is None:
            if len(declared) != 1:
                raise self._error(
                    f"the model has inputs {sorted(declared)}: name one in inputs.name"
                )
            name = next(iter(declared))
        if name not in declared:
            raise self._error(f"no input named '{name}' (the model has {sorted(declared)})")
        info = declared[name]
        if info.type != _ONNX_TYPES[self.inputs.dtype]:
            raise self._error(
                f"input '{name}' is {info.type}, but inputs.dtype is {self.inputs.dtype}"
            )
        shape = list(info.shape)
        width = shape[1] if len(shape) == 2 else None
        if len(shape) != 2 or (isinstance(width, int) and width != len(self.inputs.features)):
            raise self._error(
                f"input '{name}' has shape {shape}; inputs.features gives "
                f"[n, {len(self.inputs.features)}]"
            )
        return str(name)

    def _check_outputs(self) -> None:
        names = {o.name for o in self.session.get_outputs()}
        for field_name in ("label", "probabilities", "score"):
            wanted = getattr(self.outputs, field_name)
            if wanted is not None and wanted not in names:
                raise self._error(f"no output named '{wanted}' (the model has {sorted(names)})")

    # -- rows in --------------------------------------------------------------------------
    def matrix(self, features: dict[str, Column], n: int) -> np.ndarray[Any, Any]:
        """The input tensor for ``n`` rows: one column per ``inputs.features`` entry."""
        return feature_matrix(self.inputs, features, n)

    # -- outputs --------------------------------------------------------------------------
    def predict(self, x: np.ndarray[Any, Any]) -> Prediction:
        wanted = [self.outputs.label, self.outputs.probabilities, self.outputs.score]
        names = [n for n in wanted if n is not None]
        try:
            values = dict(zip(names, self.session.run(names, {self.input_name: x}), strict=True))
        except Exception as exc:  # ORT raises its own types for bad shapes, types, …
            raise self._error(f"inference failed: {type(exc).__name__}: {exc}") from None
        return self._decode(values, len(x), x)

    def scores(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Only the score per row (as :meth:`predict` gives it), from the one output that
        holds it: what attributions explain, thousands of rows per explained row, so no
        class names are decoded. NaN when the model has no score (a label output only)."""
        out = self.outputs
        name = out.score if out.score is not None else out.probabilities
        n = len(x)
        if name is None:
            return np.full(n, np.nan)
        try:
            (raw,) = self.session.run([name], {self.input_name: x})
        except Exception as exc:  # ORT raises its own types for bad shapes, types, …
            raise self._error(f"inference failed: {type(exc).__name__}: {exc}") from None
        if out.score is not None:
            values = np.asarray(raw)
            if values.size != n:
                raise self._error(f"score output has shape {values.shape}, expected [{n}]")
            return values.reshape(n).astype(np.float64)
        probs = _probabilities(raw)
        if probs.ndim != 2 or probs.shape[0] != n:
            raise self._error(f"probabilities have shape {probs.shape}, expected [{n}, k]")
        column = probs[:, out.positive_class] if probs.shape[1] == 2 else probs.max(axis=1)
        return np.asarray(column, dtype=np.float64)

    def _decode(self, values: dict[str, Any], n: int, x: np.ndarray[Any, Any]) -> Prediction:
        out = self.outputs
        scores = np.full(n, np.nan)
        classes: list[str | None] | None = None
        probs = None
        if out.probabilities is not None:
            probs = _probabilities(values[out.probabilities])
            if probs.ndim != 2 or probs.shape[0] != n:
                raise self._error(f"probabilities have shape {probs.shape}, expected [{n}, k]")
            if probs.shape[1] == 2:
                scores = probs[:, out.positive_class].astype(np.float64)
            else:
                scores = probs.max(axis=1).astype(np.float64)
        if out.score is not None:
            raw = np.asarray(values[out.score])
            if raw.size != n:
                raise self._error(f"score output has shape {raw.shape}, expected [{n}] or [{n}, 1]")
            scores = raw.reshape(n).astype(np.float64)
        if self.task == "classification":
            if out.label is not None:
                labels = np.asarray(values[out.label])
                if labels.shape[:1] != (n,) or labels.size != n:
                    raise self._error(f"label output has shape {labels.shape}, expected [{n}]")
                classes = list(class_names(labels.reshape(n)))
            elif probs is not None:
                classes = [str(i) for i in np.argmax(probs, axis=1).tolist()]
        finite_in = np.isfinite(x.astype(np.float64)).all(axis=1)
        bad = finite_in & ~np.isfinite(scores) & (out.score is not None or probs is not None)
        if bad.any():
            raise self._error(f"returned NaN or ±inf for {int(bad.sum())} of {n} finite rows")
        return Prediction(scores, classes)

    def timed(self, x: np.ndarray[Any, Any]) -> tuple[Prediction, float, float]:
        """Predictions of the batch, its latency, and one row's own latency (ms)."""
        started = time.perf_counter()
        prediction = self.predict(x)
        batch_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        self.predict(x[:1])
        row_ms = (time.perf_counter() - started) * 1000
        return prediction, batch_ms, row_ms

    def describe(self) -> dict[str, Any]:
        return {
            "file": os.fspath(self.path),
            "size_bytes": self.size_bytes,
            "parameters": self.parameters,
            "providers": list(self.providers),
            "input": self.input_name,
        }


def _probabilities(raw: Any) -> np.ndarray[Any, Any]:
    """A [n, k] matrix from a tensor or from a ZipMap output (a list of {class: p} maps)."""
    if isinstance(raw, list):
        if raw and isinstance(raw[0], dict):
            keys = sorted(raw[0])
            return np.array([[row[k] for k in keys] for row in raw], dtype=np.float64)
        return np.asarray(raw, dtype=np.float64)
    return np.asarray(raw)


def feature_matrix(spec: Inputs, features: dict[str, Column], n: int) -> np.ndarray[Any, Any]:
    """``n`` rows as the model's input tensor, columns in ``spec.features`` order.

    Categorical values are encoded per distinct value (``spec.encodings``, else
    ``spec.unknown``), never per row; null and absent values become ``spec.missing``
    (NaN by default).
    """
    missing = np.nan if spec.missing is None else spec.missing
    out = np.empty((n, len(spec.features)), dtype=np.float64)
    for j, name in enumerate(spec.features):
        column = features.get(name)
        if column is None:
            out[:, j] = missing
            continue
        absent = column.null | column.missing
        if column.kind == "numeric":
            out[:, j] = column.values
        else:
            values = np.where(absent, "", column.values).astype(str)
            uniq, inverse = np.unique(values, return_inverse=True)
            codes = spec.encodings.get(name, {})
            table = np.array([codes.get(u, spec.unknown) for u in uniq.tolist()])
            out[:, j] = table[inverse] if uniq.size else spec.unknown
        if absent.any():
            out[absent, j] = missing
    dtype = _DTYPES[spec.dtype]
    if dtype is np.int64:
        return np.nan_to_num(out, nan=float(missing)).astype(np.int64)
    return out.astype(dtype, copy=False)


def columns_from_rows(rows: list[dict[str, Any]]) -> dict[str, Column]:
    """Feature columns from row dicts (a reference sample, a JSON-lines file): numeric
    where every present value is a number, categorical otherwise."""
    names = sorted({k for r in rows for k in r})
    out: dict[str, Column] = {}
    n = len(rows)
    for name in names:
        values = [r.get(name) for r in rows]
        missing = np.array([name not in r for r in rows], dtype=bool)
        null = np.array([v is None for v in values], dtype=bool) & ~missing
        present = [v for v in values if v is not None]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
            arr = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
            out[name] = Column("numeric", arr, null, missing)
        else:
            obj = np.empty(n, dtype=object)
            obj[:] = [None if v is None else str(v) for v in values]
            out[name] = Column("categorical", obj, null, missing)
    return out
