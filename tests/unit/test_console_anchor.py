"""The incident page's distributions come from the windows behind the last value on its
plot: an evaluation that measured nothing (too few samples, no data yet) is passed over."""

from __future__ import annotations

from typing import Any

from watchkeeper.daemon.http.console import Console, ConsoleSources
from watchkeeper.policies.schema import Policy

SIZE_MS = 5_000
POLICY = Policy.model_validate(
    {
        "model": "fraud",
        "reference": "store:default",
        "window": "10s",
        "schedule": {"every": "1s"},
        "rules": [{"name": "drift", "metric": "psi", "features": ["amount"], "critical": 0.25}],
    }
)


class AskedQueries:
    """Records the window range each distributions read asks for."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int]] = []

    def distributions(
        self, reference: Any, model: str, features: list[str], start: int, end: int
    ) -> list[Any]:
        self.asked.append((start, end))
        return []


def column_view(timeline: list[dict[str, Any]]) -> tuple[int, int]:
    queries = AskedQueries()
    sources = ConsoleSources(
        queries=queries,  # type: ignore[arg-type]
        policies=lambda: {"fraud": POLICY},
        reference_of=lambda _key: None,
        status=dict,
        shadow=dict,
        silences=list,
        add_silence=lambda m, d, by, note: 0,
        window_size_ms=SIZE_MS,
        csrf_key=b"k" * 32,
        token_required=False,
    )
    incident = {"metric": "psi", "policy": "fraud", "model": "fraud", "updated_ms": 999_000}
    Console(sources)._column_view(incident, POLICY, timeline, ["amount"])
    (asked,) = queries.asked
    return asked


def test_the_last_measured_evaluation_anchors_the_distributions() -> None:
    timeline = [
        {"at_ms": 99_000, "value": 0.4},
        {"at_ms": 100_000, "value": 0.5},
        {"at_ms": 102_000, "value": None},  # too few samples in its windows
        {"at_ms": 103_000, "value": None},
    ]
    assert column_view(timeline) == (90_000, 100_000)  # the windows the 100 s value read


def test_without_a_measured_evaluation_the_newest_one_or_the_incident_anchors() -> None:
    assert column_view([{"at_ms": 103_000, "value": None}]) == (90_000, 105_000)
    assert column_view([]) == (985_000, 1_000_000)
