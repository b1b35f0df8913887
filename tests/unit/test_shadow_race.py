"""The shadow worker disabling a candidate while the ingestion thread counts dropped rows.

``_count_dropped`` (ingestion thread, queue full) iterates a model's sampling rates under
the evaluator's lock; ``_fail`` (worker thread, a candidate's inference failed) removes the
candidate's rate. Before the fix ``_fail`` removed it outside the lock, and the ingestion
thread's iteration raised ``RuntimeError: dictionary changed size during iteration`` — which
ends ``Ingestor.run``. The test interleaves the two threads deterministically: the worker is
started from inside the ingestion thread's loop and the loop goes on only once the worker
has reached the lock (an event, not a sleep).
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from watchkeeper.daemon.config_shadow import ShadowConfig
from watchkeeper.daemon.shadow import evaluator as evaluator_module
from watchkeeper.daemon.shadow.evaluator import ShadowEvaluator
from watchkeeper.daemon.shadow.rows import Rows
from watchkeeper.daemon.shadow.setup import ModelSetup
from watchkeeper.daemon.shadow.store import ShadowStore
from watchkeeper.daemon.store.store import Store
from watchkeeper.policies.shadow import Shadow

SIZE_MS = 60_000


class _WatchedLock:
    """A real lock that says when a thread other than its owner starts waiting on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.owner: int | None = None
        self.contended = threading.Event()

    def __enter__(self) -> None:
        if self.owner is not None and self.owner != threading.get_ident():
            self.contended.set()
        self._lock.acquire()
        self.owner = threading.get_ident()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.owner = None
        self._lock.release()


def _rows(n: int) -> Rows:
    ts = np.arange(n, dtype=np.int64) * 1_000
    return Rows(
        "fraud",
        "predictions",
        0,
        n,
        ts,
        np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15),
        {},
        np.zeros(n),
        None,
        None,
        None,
    )


def test_a_candidate_failing_while_drops_are_counted_does_not_break_ingestion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    try:
        evaluator = ShadowEvaluator(
            ShadowConfig(), ShadowStore(store.engine), "g", SIZE_MS, CollectorRegistry()
        )
        spec = Shadow.model_validate(
            {
                "task": "regression",
                "inputs": {"features": ["x"]},
                "outputs": {"score": "y"},
                "sample_rate": 1.0,
                "candidates": [{"name": "a", "onnx": "a.onnx"}, {"name": "b", "onnx": "b.onnx"}],
            }
        )
        candidates: dict[str, Any] = {"a": object(), "b": object()}
        setup = ModelSetup("p", spec, candidates, None, 1.0, {"a": 1.0, "b": 1.0})
        evaluator._models = {"fraud": setup}
        lock = _WatchedLock()
        evaluator._lock = lock  # type: ignore[assignment]
        rows = _rows(10)
        worker: list[threading.Thread] = []
        real_mask = evaluator_module.sample_mask

        def mask_then_fail(keys: np.ndarray[Any, Any], rate: float) -> np.ndarray[Any, Any]:
            if not worker:  # first rate: the worker disables candidate "b" meanwhile
                thread = threading.Thread(
                    target=evaluator._fail,
                    args=(setup, rows, "b", np.arange(len(rows.ts_ms)), "inference failed"),
                )
                worker.append(thread)
                thread.start()
                assert lock.contended.wait(30), "the worker never reached the lock"
            return real_mask(keys, rate)

        monkeypatch.setattr(evaluator_module, "sample_mask", mask_then_fail)
        evaluator._count_dropped(rows)  # raised RuntimeError before the fix
        worker[0].join(30)
        assert not worker[0].is_alive()
        assert set(setup.rates) == {"a"}
        assert set(setup.candidates) == {"a"}
        counted = dict.fromkeys(("a", "b"), 0)
        errors = 0
        for (_, name, _), stats in evaluator._stats.items():
            counted[name] += stats.dropped
            errors += stats.errors
        # both candidates' drops are counted (the rates seen when counting began), and the
        # failed candidate's rows as errors: nothing lost, nothing counted twice
        assert counted == {"a": 10, "b": 10}
        assert errors == 10
    finally:
        store.close()
