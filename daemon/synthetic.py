"""A synthetic model server's event stream, for the demo and the benchmarks.

Two models: ``fraud`` (a classifier logging a probability vector) and ``churn`` (a
regressor logging a score), with numeric and categorical features, latency, and labels
that arrive later on their own topic. Deterministic for a given seed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import orjson

COUNTRIES = ["DE", "FR", "US", "GB", "NL", "ES", "IT", "PL"]
PLANS = ["basic", "plus", "pro"]


@dataclass
class Event:
    topic_role: str
    value: bytes


class SyntheticServer:
    """Yields JSON events as a model server would log them."""

    def __init__(self, seed: int = 7, bad_rate: float = 0.0) -> None:
        self.rng = np.random.default_rng(seed)
        self.bad_rate = bad_rate
        self.counter = 0

    def fraud(self, n: int, ts_ms: int, shift: float = 0.0) -> list[dict[str, object]]:
        rng = self.rng
        amount = rng.lognormal(3.0 + shift, 1.0, n)
        age = rng.normal(40, 12, n).clip(18, 90)
        country = rng.choice(COUNTRIES, n, p=[0.3, 0.2, 0.2, 0.1, 0.08, 0.06, 0.04, 0.02])
        p1 = 1 / (1 + np.exp(-(np.log(amount) - 4.5)))
        latency = rng.gamma(4.0, 5.0, n)
        out = []
        for i in range(n):
            self.counter += 1
            out.append(
                {
                    "model": "fraud",
                    "model_version": "3",
                    "request_id": f"f{self.counter}",
                    "ts": ts_ms,
                    "features": {
                        "amount": round(float(amount[i]), 2),
                        "age": round(float(age[i]), 1),
                        "country": str(country[i]),
                    },
                    "prediction": [round(1 - float(p1[i]), 4), round(float(p1[i]), 4)],
                    "latency_ms": round(float(latency[i]), 2),
                }
            )
        return out

    def churn(self, n: int, ts_ms: int) -> list[dict[str, object]]:
        rng = self.rng
        tenure = rng.exponential(24, n)
        spend = rng.normal(50, 15, n)
        plan = rng.choice(PLANS, n)
        score = 1 / (1 + np.exp(tenure / 12 - 1))
        out = []
        for i in range(n):
            self.counter += 1
            out.append(
                {
                    "model": "churn",
                    "model_version": "1",
                    "request_id": f"c{self.counter}",
                    "ts": ts_ms,
                    "features": {
                        "tenure": round(float(tenure[i]), 1),
                        "spend": round(float(spend[i]), 2),
                        "plan": str(plan[i]),
                    },
                    "prediction": round(float(score[i]), 4),
                    "latency_ms": round(float(rng.gamma(2, 4)), 2),
                }
            )
        return out

    def encode(self, events: list[dict[str, object]]) -> list[bytes]:
        values = [orjson.dumps(e) for e in events]
        if self.bad_rate:
            bad = self.rng.random(len(values)) < self.bad_rate
            for i in np.flatnonzero(bad).tolist():
                values[i] = [b"{not json", b'{"model": "fraud"}', b"[1, 2]"][i % 3]
        return values


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
