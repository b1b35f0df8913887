"""Which kind (numeric / categorical) each feature of each model is.

A kind is declared in the config (``ingest.feature_kinds``) or fixed by the first value
seen, and then held: a feature that was numeric stays numeric, and a record that sends a
string for it is quarantined as ``wrong_type`` instead of silently starting a second
column. Learned kinds are committed with the window state so a restart keeps them.

The registry also bounds the number of features per model (``ingest.max_features``): a
producer that puts an identifier in a feature *name* would otherwise grow memory without
bound. Features past the bound are ignored and counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from watchkeeper.detectors.reserved_names import LABEL, PREDICTION

# the prediction may also be a probability vector: summarised as a score and a class
KINDS = ("numeric", "categorical", "proba")


class KindRegistry:
    """Kinds per (model, column name); see the module docstring."""

    def __init__(
        self, declared: Mapping[str, Mapping[str, str]] | None = None, max_features: int = 500
    ) -> None:
        self.max_features = max_features
        self._kinds: dict[tuple[str, str], str] = {}
        self._features_per_model: dict[str, int] = {}
        self._new: dict[tuple[str, str], str] = {}
        self._declared = {(m, f) for m, feats in (declared or {}).items() for f in feats}
        for model, feats in (declared or {}).items():
            for name, kind in feats.items():
                self._set(model, name, kind)

    def _set(self, model: str, name: str, kind: str) -> None:
        if (model, name) not in self._kinds and name not in (PREDICTION, LABEL):
            self._features_per_model[model] = self._features_per_model.get(model, 0) + 1
        self._kinds[(model, name)] = kind

    def kind(self, model: str, name: str) -> str | None:
        return self._kinds.get((model, name))

    def admit(self, model: str, names: list[str]) -> list[str]:
        """The ``names`` that may get a column: known ones, then new ones while room is left."""
        room = self.max_features - self._features_per_model.get(model, 0)
        out: list[str] = []
        for name in names:
            if (model, name) in self._kinds:
                out.append(name)
            elif room > 0:
                out.append(name)
                room -= 1
        return out

    def learn(self, model: str, name: str, kind: str) -> None:
        """Fix the kind of a column seen for the first time."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        if (model, name) in self._kinds:
            return
        self._set(model, name, kind)
        self._new[(model, name)] = kind

    def load(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Kinds stored by an earlier run; declared kinds win over stored ones."""
        for model, name, kind in rows:
            if (model, name) not in self._declared:
                self._set(model, name, kind)

    def pending(self) -> dict[tuple[str, str], str]:
        """Kinds learned since the last :meth:`committed`, to be stored with the next flush."""
        return dict(self._new)

    def committed(self, kinds: Iterable[tuple[str, str]]) -> None:
        for key in kinds:
            self._new.pop(key, None)
