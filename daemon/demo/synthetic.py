"""A synthetic model server, for the demo: two models, their events, and faults to inject.

``fraud`` is a classifier — a small MLP over ``log1p(amount, age)`` that also exists as an
FP32 ONNX file (:meth:`FraudModel.save_onnx`), so the demo can compress it and shadow-
evaluate the INT8 copy against the very predictions this server logs. Its labels arrive
later on their own topic: the truth the model approximates, with a small noise share.
``churn`` is a regressor logging a score, with no labels. Both log latency and a
categorical feature. Deterministic for a given seed.

:class:`Faults` are what the demo's timeline injects: a shifted feature (drift), slower
answers (latency), NaN for a feature (a broken feature pipeline the model silently
imputes: a silent failure), and labels that disagree with the model (an accuracy drop).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

COUNTRIES = ["DE", "FR", "US", "GB", "NL", "ES", "IT", "PL"]
COUNTRY_P = [0.3, 0.2, 0.2, 0.1, 0.08, 0.06, 0.04, 0.02]
PLANS = ["basic", "plus", "pro"]
LABEL_NOISE = 0.001
"""Share of labels that disagree with the truth in normal times (reference ≈ 0.999). Kept
small because the demo's windows are small: at ~600 labelled rows per evaluation, a 0.5 %
noise share makes a one-point accuracy drop a once-a-run accident (Poisson tail), which
would open an incident no fault caused."""
BOUNDARY_SHARPNESS = 80.0
"""The truth is P(fraud) = σ(80 · (2·(log1p(amount) − 4.5))): certain away from the
boundary, a coin near it. It adds ~0.23 % label noise to ordinary traffic (the reference
sees it too), and ~13 % errors to amounts concentrated at the boundary."""
BOUNDARY_AMOUNT = (4.49, 0.03)
"""log-mean and log-sd of the amounts of an ``unsure`` phase: right at the boundary."""
AGE_MEAN = 40.0
"""What the fraud model imputes for a missing age, as a server with a default would."""

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Faults:
    """What is wrong right now; the defaults are a healthy system."""

    amount_shift: float = 0.0
    """Added to the mean of log(amount): feature drift on ``fraud.amount``."""
    latency_factor: float = 1.0
    """``fraud``'s latency multiplied: a latency regression."""
    nan_share: float = 0.0
    """Share of ``fraud.age`` values sent as NaN, imputed by the model: a silent failure."""
    label_flip: float = 0.0
    """Extra share of ``fraud`` labels flipped: the world changed, accuracy drops."""
    unsure: bool = False
    """``fraud``'s amounts moved to its decision boundary, where the truth itself is
    uncertain: a covariate shift that costs accuracy with P(y | x) unchanged."""
    labels_held: bool = False
    """``fraud``'s labels held back (a stopped labels stream), sent when it ends."""


class FraudModel:
    """log1p(amount, age) → 128 → 128 → 2-class softmax, with fixed weights.

    The hidden layers are random; the output layer is fitted (least squares) so the fraud
    logit follows ``2·(log1p(amount) − 4.5)``: about 7 % of ordinary traffic scores as
    fraud. Age is an input the fit learnt to (nearly) ignore, so a model that imputes a
    missing age answers as before: a NaN burst is silent in accuracy too. The numpy
    forward pass is the same float32 arithmetic as the ONNX graph, so the logged
    predictions are the FP32 model's outputs.
    """

    def __init__(self, seed: int = 3, hidden: int = 128) -> None:
        rng = np.random.default_rng(seed)
        # standardise log1p(inputs) inside the first layer (its weights absorb mean / sd)
        mu = np.array([3.0, 3.7], dtype=np.float32)
        sd = np.array([1.0, 0.3], dtype=np.float32)
        w1 = rng.normal(0, 1, (2, hidden)).astype(np.float32)
        b1 = rng.normal(0, 0.5, hidden).astype(np.float32)
        self.w1 = (w1 / sd[:, None]).astype(np.float32)
        self.b1 = (b1 - (mu / sd) @ w1).astype(np.float32)
        self.w2 = (rng.normal(0, 1, (hidden, hidden)) / np.sqrt(hidden)).astype(np.float32)
        self.b2 = rng.normal(0, 0.1, hidden).astype(np.float32)
        amount = rng.lognormal(3.0, 1.3, 20_000)
        age = rng.normal(40, 12, 20_000).clip(18, 90)
        h2 = self._hidden(np.column_stack([amount, age]).astype(np.float32))
        target = 2.0 * (np.log1p(amount) - 4.5)
        design = np.column_stack([h2, np.ones(len(h2))])
        coef = np.linalg.lstsq(design, target, rcond=None)[0]
        self.w3 = np.zeros((hidden, 2), dtype=np.float32)
        self.w3[:, 1] = coef[:-1]
        self.b3 = np.array([0.0, coef[-1]], dtype=np.float32)

    def _hidden(self, x: Array) -> Array:
        h1: Array = np.maximum(np.log1p(x) @ self.w1 + self.b1, 0)
        h2: Array = np.maximum(h1 @ self.w2 + self.b2, 0)
        return h2

    def predict_proba(self, amount: Array, age: Array) -> Array:
        x = np.column_stack([amount, np.where(np.isnan(age), AGE_MEAN, age)]).astype(np.float32)
        logits = self._hidden(x) @ self.w3 + self.b3
        logits = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]

    def save_onnx(self, path: Path) -> Path:
        """The same network as an FP32 ONNX file: input ``X`` [n, 2] (amount, age),
        outputs ``label`` (int64) and ``probabilities`` [n, 2]."""
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        inits = [
            numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one"),
            *(
                numpy_helper.from_array(getattr(self, n), n)
                for n in ("w1", "b1", "w2", "b2", "w3", "b3")
            ),
        ]
        nodes = [
            helper.make_node("Add", ["X", "one"], ["x1"]),
            helper.make_node("Log", ["x1"], ["lx"]),
            helper.make_node("MatMul", ["lx", "w1"], ["m1"]),
            helper.make_node("Add", ["m1", "b1"], ["a1"]),
            helper.make_node("Relu", ["a1"], ["h1"]),
            helper.make_node("MatMul", ["h1", "w2"], ["m2"]),
            helper.make_node("Add", ["m2", "b2"], ["a2"]),
            helper.make_node("Relu", ["a2"], ["h2"]),
            helper.make_node("MatMul", ["h2", "w3"], ["m3"]),
            helper.make_node("Add", ["m3", "b3"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ]
        graph = helper.make_graph(
            nodes,
            "fraud",
            [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
            [
                helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]),
            ],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8  # readable by every onnxruntime the package allows
        onnx.checker.check_model(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))
        return path


@dataclass
class Batch:
    """One tick of traffic: prediction events now, label events later."""

    predictions: list[bytes]
    labels: list[bytes]


class SyntheticServer:
    """Makes the events a model server would log; see the module docstring."""

    def __init__(self, seed: int = 7, bad_rate: float = 0.0) -> None:
        self.rng = np.random.default_rng(seed)
        self.bad_rate = bad_rate
        self.counter = 0
        self.fraud_model = FraudModel()

    def _ids(self, prefix: str, n: int) -> list[str]:
        start = self.counter
        self.counter += n
        return [f"{prefix}{i}" for i in range(start + 1, start + n + 1)]

    def fraud_columns(self, n: int, faults: Faults = Faults()) -> dict[str, Array]:
        """Features, predictions, labels and latency of ``n`` fraud requests, as arrays."""
        rng = self.rng
        if faults.unsure:
            amount = rng.lognormal(*BOUNDARY_AMOUNT, n).round(2)
        else:
            amount = rng.lognormal(3.0 + faults.amount_shift, 1.0, n).round(2)
        age = rng.normal(40, 12, n).clip(18, 90).round(1)
        # the truth the model approximates: certain away from its boundary, not on it
        logit = BOUNDARY_SHARPNESS * 2.0 * (np.log1p(amount) - 4.5)
        truth = (rng.random(n) < 1 / (1 + np.exp(-np.clip(logit, -50, 50)))).astype(np.int64)
        if faults.nan_share:
            age[rng.random(n) < faults.nan_share] = np.nan
        country = rng.choice(COUNTRIES, n, p=COUNTRY_P)
        proba = self.fraud_model.predict_proba(amount, age)
        flip = rng.random(n) < LABEL_NOISE + faults.label_flip
        return {
            "amount": amount,
            "age": age,
            "country": country,
            "proba": proba,
            "label": np.where(flip, 1 - truth, truth),
            "latency": (rng.gamma(4.0, 5.0, n) * faults.latency_factor).round(2),
        }

    def churn_columns(self, n: int) -> dict[str, Array]:
        rng = self.rng
        tenure = rng.exponential(24, n).round(1)
        return {
            "tenure": tenure,
            "spend": rng.normal(50, 15, n).round(2),
            "plan": rng.choice(PLANS, n),
            "score": (1 / (1 + np.exp(tenure / 12 - 1))).round(4),
            "latency": rng.gamma(2, 4, n).round(2),
        }

    def batch(
        self,
        n_fraud: int,
        n_churn: int,
        ts_ms: int,
        faults: Faults = Faults(),
        label_delay_ms: int = 0,
    ) -> Batch:
        """``n_fraud`` + ``n_churn`` prediction events at ``ts_ms``, and the fraud labels,
        stamped ``label_delay_ms`` later (the caller sends them then)."""
        f = self.fraud_columns(n_fraud, faults)
        ids = self._ids("f", n_fraud)
        events: list[dict[str, Any]] = []
        labels: list[bytes] = []
        proba = f["proba"].round(4).tolist()
        for i in range(n_fraud):
            age = float(f["age"][i])
            events.append(
                {
                    "model": "fraud",
                    "model_version": "3",
                    "request_id": ids[i],
                    "ts": ts_ms,
                    "features": {
                        "amount": float(f["amount"][i]),
                        "age": age,
                        "country": str(f["country"][i]),
                    },
                    "prediction": proba[i],
                    "latency_ms": float(f["latency"][i]),
                }
            )
            labels.append(
                orjson.dumps(
                    {
                        "model": "fraud",
                        "request_id": ids[i],
                        "ts": ts_ms + label_delay_ms,
                        "label": int(f["label"][i]),
                    }
                )
            )
        c = self.churn_columns(n_churn)
        for i, request_id in enumerate(self._ids("c", n_churn)):
            events.append(
                {
                    "model": "churn",
                    "model_version": "1",
                    "request_id": request_id,
                    "ts": ts_ms,
                    "features": {
                        "tenure": float(c["tenure"][i]),
                        "spend": float(c["spend"][i]),
                        "plan": str(c["plan"][i]),
                    },
                    "prediction": float(c["score"][i]),
                    "latency_ms": float(c["latency"][i]),
                }
            )
        return Batch(self.encode(events), labels)

    def encode(self, events: list[dict[str, Any]]) -> list[bytes]:
        # orjson writes NaN as null; a Python model server's json.dumps writes NaN, which
        # is what a NaN burst looks like on the wire (the decoder reads both)
        values = [json.dumps(e).encode() if _has_nan(e) else orjson.dumps(e) for e in events]
        if self.bad_rate:
            bad = self.rng.random(len(values)) < self.bad_rate
            for i in np.flatnonzero(bad).tolist():
                values[i] = [b"{not json", b'{"model": "fraud"}', b"[1, 2]"][i % 3]
        return values

    def training_frame(self, model: str, rows: int) -> Any:
        """The model's "training data": features, prediction (and label), as a DataFrame."""
        import pandas as pd

        if model == "fraud":
            f = self.fraud_columns(rows)
            return pd.DataFrame(
                {
                    "amount": f["amount"],
                    "age": f["age"],
                    "country": f["country"],
                    "prediction": f["proba"][:, 1],
                    "label": f["label"],
                }
            )
        c = self.churn_columns(rows)
        return pd.DataFrame(
            {
                "tenure": c["tenure"],
                "spend": c["spend"],
                "plan": c["plan"],
                "prediction": c["score"],
            }
        )


def _has_nan(event: dict[str, Any]) -> bool:
    features = event.get("features")
    return isinstance(features, dict) and any(
        isinstance(v, float) and v != v for v in features.values()
    )


def paced(rate_per_s: float, tick_s: float = 0.1) -> Iterator[int]:
    """Yields how many events to send each tick to hold ``rate_per_s``."""
    carry = 0.0
    next_tick = time.monotonic()
    while True:
        carry += rate_per_s * tick_s
        n = int(carry)
        carry -= n
        yield n
        next_tick += tick_s
        time.sleep(max(0.0, next_tick - time.monotonic()))
