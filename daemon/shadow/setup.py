"""Each model's shadow evaluation set-up, loaded afresh on every policy load and reload:
its policy's shadow section, the candidates' ONNX sessions, the production baseline and
the sampling rates, and the explainers of its attributions (:mod:`explain`) over a
background from its reference's sample. A candidate that cannot be loaded is disabled
(recorded, with its reason) and the others go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from watchkeeper.daemon.config_shadow import ShadowConfig
from watchkeeper.daemon.errors import CandidateError
from watchkeeper.daemon.shadow.explain import Explainers, explainers_for
from watchkeeper.daemon.shadow.runtime import OnnxModel, Prediction, resolve_model_path
from watchkeeper.daemon.shadow.store import ShadowStore
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.errors import WatchkeeperError
from watchkeeper.policies.loader import LoadedPolicy
from watchkeeper.policies.shadow import Shadow

log = logging.getLogger(__name__)
Array = np.ndarray[Any, Any]

Record = Callable[[str, str, str, str, Any, int], None]
"""(model, candidate, state, reason, info, at ms): a candidate's state, to the store."""
Disable = Callable[[str, str, str, int], None]
"""(model, candidate, reason, at ms): a candidate that cannot be used."""
Sample = Callable[[LoadedPolicy], list[dict[str, Any]]]
"""The rows of the policy's reference sample (``[]``: none, or it cannot be read)."""


@dataclass
class ModelSetup:
    """One model's evaluation set-up: its policy's shadow section and loaded sessions.

    ``candidates`` and ``rates`` shrink when a candidate fails at run time; the evaluator
    changes them under its lock (the ingestion thread reads ``rates``)."""

    policy: str
    spec: Shadow
    candidates: dict[str, OnnxModel]
    baseline: OnnxModel | None
    max_rate: float
    rates: dict[str, float]
    explainers: Explainers | None = None
    """None: the policy asks for no attributions."""

    def production_only(self) -> bool:
        """No candidates in the policy, production explained: rows are sampled at
        ``attributions.sample_rate`` for ``attribution_shift`` alone."""
        return self.spec.production_only() and self.explainers is not None

    def run_baseline(self, x: Array) -> tuple[Prediction, float, float] | None:
        """Production's own model file on the rows ``x`` (None: there is none); one that
        fails is dropped, logged, and latency compares with the logged latency after."""
        if self.baseline is None:
            return None
        try:
            return self.baseline.timed(x)
        except CandidateError as exc:
            log.error("model %s: production baseline failed, dropped: %s", self.baseline.model, exc)
            self.baseline = None
            return None


def load_setups(
    policies: Mapping[str, LoadedPolicy],
    settings: ShadowConfig,
    record: Record,
    disable: Disable,
    now_ms: int,
    sample: Sample | None = None,
) -> dict[str, ModelSetup]:
    """The set-up of every model whose policy has a shadow section (the first policy wins
    when two name the same model)."""
    models: dict[str, ModelSetup] = {}
    for loaded in policies.values():
        spec = loaded.policy.shadow
        if spec is None or not settings.enabled:
            continue
        model = loaded.policy.model
        if model in models:
            log.error("model %s has shadow sections in two policies; using the first", model)
            continue
        candidates = _candidates(loaded, spec, settings, record, disable, now_ms)
        rates = {c.name: spec.rate_of(c) for c in spec.candidates if c.name in candidates}
        baseline = _baseline(loaded, spec, settings)
        explainers = None
        # without candidates (production_only) only production is explained
        if spec.attributions.enabled and (candidates or spec.production_only()):
            rows = sample(loaded) if sample is not None and baseline is not None else []
            explainers = explainers_for(spec, baseline, candidates, rows)
            if explainers is not None:
                _record_attributions(loaded, explainers, candidates, record, now_ms)
        models[model] = ModelSetup(
            loaded.policy.key,
            spec,
            candidates,
            baseline,
            spec.attributions.sample_rate
            if spec.production_only()
            else max(rates.values(), default=0.0),
            rates,
            explainers,
        )
    return models


def _candidates(
    loaded: LoadedPolicy,
    spec: Shadow,
    settings: ShadowConfig,
    record: Record,
    disable: Disable,
    now_ms: int,
) -> dict[str, OnnxModel]:
    model = loaded.policy.model
    candidates: dict[str, OnnxModel] = {}
    for c in spec.candidates:
        try:
            path = resolve_model_path(c.onnx, loaded.directory, settings)
            candidates[c.name] = OnnxModel(
                model,
                c.name,
                path,
                spec.inputs_of(c),
                spec.outputs_of(c),
                spec.task,
                settings,
            )
        except (CandidateError, ValueError, OSError) as exc:
            reason = exc.reason if isinstance(exc, CandidateError) else str(exc)
            disable(model, c.name, reason, now_ms)
            continue
        record(model, c.name, "active", "", candidates[c.name].describe(), now_ms)
    return candidates


def _record_attributions(
    loaded: LoadedPolicy,
    explainers: Explainers,
    candidates: dict[str, OnnxModel],
    record: Record,
    now_ms: int,
) -> None:
    """Each candidate's info says whether its attributions run, and if not why
    (``/api/shadow`` shows it beside the attribution metrics)."""
    for name, model in candidates.items():
        why = explainers.unexplained.get(name) or ("" if explainers.waiting else explainers.reason)
        info = model.describe() | {
            "attributions": why or f"on, background from the {explainers.source or 'live rows'}"
        }
        record(loaded.policy.model, name, "active", "", info, now_ms)


def _baseline(loaded: LoadedPolicy, spec: Shadow, settings: ShadowConfig) -> OnnxModel | None:
    if not spec.baseline:
        return None
    try:
        path = resolve_model_path(spec.baseline, loaded.directory, settings)
        return OnnxModel(
            loaded.policy.model,
            "baseline",
            path,
            spec.inputs,
            spec.outputs,
            spec.task,
            settings,
        )
    except (CandidateError, ValueError, OSError) as exc:
        # without it latency compares with production's logged latency
        log.error("model %s: production baseline unusable: %s", loaded.policy.model, exc)
        return None


def reference_sample(store: ShadowStore, loaded: LoadedPolicy) -> list[dict[str, Any]]:
    """The policy's reference sample: attributions' background (``[]``: none, logged)."""
    ref = loaded.policy.reference or "store:default"
    try:
        if ref.startswith("store:"):
            return store.reference_sample(loaded.policy.model, ref.removeprefix("store:"))
        path = Path(ref) if Path(ref).is_absolute() else loaded.directory / ref
        return [dict(r) for r in ReferenceProfile.load(path).sample]
    except (WatchkeeperError, OSError, ValueError) as exc:
        if isinstance(exc, WatchkeeperError) and not exc.retriable:
            raise
        log.error("policy %s: no reference sample for attributions: %s", loaded.path, exc)
        return []
