"""Incident lines call the prediction what the policy calls it, ``prediction``.

The policy selects it with ``features: prediction``; the summary said
``penguin.__prediction__`` (the store's key) in every channel (trial, 2026-12-07).
"""

from __future__ import annotations

import pytest
from watchkeeper.detectors.base import Finding
from watchkeeper.detectors.reserved_names import PREDICTION, PREDICTION_CLASS
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.schema import Policy


def summaries(feature: str, metric: str = "js_distance") -> list[str]:
    policy = Policy.model_validate(
        {
            "model": "penguin",
            "schedule": {"every": "5m"},
            "rules": [
                {"name": "score-drift", "metric": metric, "features": "prediction", "critical": 0.2}
            ],
        }
    )
    engine = PolicyEngine(policy)
    out = []
    for i, value in enumerate([0.2388, 0.05]):
        found = Finding("penguin", metric, feature, value, "ok", 0, 1, 1000, 1000)
        _, events = engine.step({policy.rules[0].key: [found]}, i * 300_000)
        out += [e.incident.summary for e in events]
    return out


@pytest.mark.parametrize(
    ("feature", "name"), [(PREDICTION, "prediction"), (PREDICTION_CLASS, "prediction class")]
)
def test_the_prediction_is_named_as_the_policy_names_it(feature: str, name: str) -> None:
    opened, resolved = summaries(feature)
    assert opened == f"js_distance 0.2388 >= 0.2 on penguin.{name} (critical)"
    assert "__" not in opened and "__" not in resolved


def test_an_input_feature_keeps_its_name() -> None:
    opened, _ = summaries("body_mass_g", "psi")
    assert opened == "psi 0.2388 >= 0.2 on penguin.body_mass_g (critical)"
