"""Which names a record may bring in: bounds on models, versions and the length of names.

Every name in an event becomes something the daemon keeps: a model name a window key, a
Prometheus label value and a store row; a version a window key; a feature name a column.
They come from whatever the serving code logs, so they are bounded here, once per batch
on the batch's *distinct* names (never a Python call per record):

==================  ===================================================================
``too_many_models``  the record's model is new and ``ingest.max_models`` models are known
``too_many_versions`` its version is new and its model has ``ingest.max_versions``
``name_too_long``    a model, version, request id or feature name longer than
                     ``ingest.max_name_chars``
``empty_name``       an empty model name
``reserved_name``    a feature named ``__prediction__`` or ``__label__`` (the names the
                     daemon keeps the prediction and the label under)
==================  ===================================================================

A record beyond a bound is quarantined with its reason and counted, never a new series.
Known models and versions are those already admitted (seeded from the kinds and windows
in the store at start, so a restart does not reshuffle who is in).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from watchkeeper.daemon.ingest.fields import BadRows
from watchkeeper.detectors.reserved_names import LABEL, PREDICTION

RESERVED = frozenset({PREDICTION, LABEL})
REASONS = ("too_many_models", "too_many_versions", "name_too_long", "empty_name", "reserved_name")


class Admission:
    """The bounds of one daemon (module docstring); shared by the topics' decoders."""

    def __init__(
        self,
        max_models: int = 200,
        max_versions: int = 50,
        max_name_chars: int = 200,
        known: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.max_models = max_models
        self.max_versions = max_versions
        self.max_name_chars = max_name_chars
        self._versions: dict[str, set[str]] = {}
        for model, version in known:
            self._versions.setdefault(model, set()).add(version)

    @property
    def models(self) -> int:
        return len(self._versions)

    def _mark(self, values: Any, wrong: set[Any], bad: BadRows, reason: str, detail: str) -> None:
        """Flag the rows whose value is in ``wrong`` (one pass, C-level membership)."""
        if not wrong:
            return
        hits = np.fromiter((v in wrong for v in values), dtype=bool, count=len(values))
        for i in np.flatnonzero(hits).tolist():
            bad.setdefault(i, (reason, detail.format(str(values[i])[:60])))

    def check(self, models: Any, versions: Any, request_ids: Any, bad: BadRows) -> None:
        """Mark the rows of a batch whose model, version or request id breaks a bound."""
        limit = self.max_name_chars
        distinct_models = {m for m in set(models.tolist()) if m is not None}
        empty = {m for m in distinct_models if m == ""}
        self._mark(models, empty, bad, "empty_name", "an empty model name")
        long_models = {m for m in distinct_models if len(m) > limit}
        self._mark(models, long_models, bad, "name_too_long", f"model longer than {limit}: {{}}…")
        distinct_versions = {v for v in set(versions.tolist()) if v is not None}
        long_versions = {v for v in distinct_versions if len(v) > limit}
        self._mark(
            versions, long_versions, bad, "name_too_long", f"version longer than {limit}: {{}}…"
        )
        if request_ids is not None:
            long_ids = {r for r in set(request_ids.tolist()) if r is not None and len(r) > limit}
            self._mark(
                request_ids,
                long_ids,
                bad,
                "name_too_long",
                f"request_id longer than {limit}: {{}}…",
            )
        fresh = sorted(distinct_models - set(self._versions) - long_models - {""})
        room = self.max_models - len(self._versions)
        refused = set(fresh[max(room, 0) :])
        for model in fresh[: max(room, 0)]:
            self._versions[model] = set()
        self._mark(
            models,
            refused,
            bad,
            "too_many_models",
            f"a new model beyond ingest.max_models ({self.max_models}): {{}}",
        )
        if not distinct_versions and not any(m in self._versions for m in distinct_models):
            return
        pairs = {
            (m, v)
            for m, v in set(zip(models.tolist(), versions.tolist(), strict=True))
            if m in self._versions and v is not None and v not in long_versions
        }
        too_many: set[tuple[str, str]] = set()
        for model, version in sorted(pairs):
            known = self._versions[model]
            if version in known:
                continue
            if len(known) < self.max_versions:
                known.add(version)
            else:
                too_many.add((model, version))
        if too_many:
            keys = list(zip(models.tolist(), versions.tolist(), strict=True))
            hits = np.fromiter((k in too_many for k in keys), dtype=bool, count=len(keys))
            for i in np.flatnonzero(hits).tolist():
                bad.setdefault(
                    i,
                    (
                        "too_many_versions",
                        f"a new version of {str(models[i])[:60]} beyond ingest.max_versions "
                        f"({self.max_versions}): {str(versions[i])[:60]}",
                    ),
                )

    def bad_feature_names(self, names: Iterable[str]) -> dict[str, tuple[str, str]]:
        """Feature names a record may not carry, with the reason for each."""
        out: dict[str, tuple[str, str]] = {}
        for name in names:
            if name in RESERVED:
                out[name] = ("reserved_name", f"a feature may not be named {name}")
            elif len(name) > self.max_name_chars:
                out[name] = (
                    "name_too_long",
                    f"feature name longer than {self.max_name_chars}: {name[:60]}…",
                )
            elif not name:
                out[name] = ("empty_name", "a feature with an empty name")
        return out
