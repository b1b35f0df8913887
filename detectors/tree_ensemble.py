"""Gradient-boosted trees as plain arrays: exported from scikit-learn, evaluated by numpy.

The loss model of direct loss estimation (:mod:`watchkeeper.detectors.loss_model`) is
fitted with scikit-learn's ``HistGradientBoostingRegressor`` at reference time, then
exported here to a JSON form (no pickle) and evaluated at ingest by :meth:`TreeEnsemble.
predict`, vectorised over rows *and* trees: every row walks every tree at once, one
level per numpy step, so the cost is O(depth) array operations per batch, never a
Python call per row. The daemon needs neither scikit-learn nor pickle to use it.

Routing follows scikit-learn's ``_predict_one_from_raw_data``
(``sklearn/ensemble/_hist_gradient_boosting/_predictor.pyx``) rule for rule:

* NaN goes to the side the split learnt for missing values (``missing_go_to_left``),
  also at a "split on NaNs" (threshold +inf: every value left, NaN right);
* numeric: left iff x ≤ threshold;
* categorical (integer codes): a negative code, or one the model never saw in training
  (``known_cat_bitsets``), is treated as missing; a code in the split's left set goes left;
  any other known code goes right.

The prediction is the baseline plus each tree's leaf value, added tree by tree in the
library's order (``_raw_predict`` / ``_predict_iterations``), so it equals the library's
``predict`` to the last bit (tested), and the identity link of the squared-error loss
leaves it unchanged.

>>> t = TreeEnsemble(baseline=1.0, roots=(0,), feature=(0, 0, 0), threshold=(0.5, 0, 0),
...                  missing_left=(False, False, False), left=(1, 0, 0), right=(2, 0, 0),
...                  leaf=(False, True, True), value=(0.0, -0.25, 0.25), categorical=(),
...                  known={})
>>> t.predict(np.array([[0.1], [0.9], [np.nan]])).tolist()
[0.75, 1.25, 1.25]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
CHUNK_ROWS = 4096  # rows per vectorised pass: bounds the rows × trees temporaries


@dataclass(frozen=True)
class TreeEnsemble:
    """All trees' nodes in flat arrays (global node indices); see the module docstring."""

    baseline: float
    roots: tuple[int, ...]
    feature: tuple[int, ...]
    threshold: tuple[float, ...]
    missing_left: tuple[bool, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    leaf: tuple[bool, ...]
    value: tuple[float, ...]
    categorical: tuple[tuple[int, tuple[int, ...]], ...]
    """Categorical splits: (node, codes that go left)."""
    known: dict[int, tuple[int, ...]]
    """Per categorical feature index: the codes seen in training."""

    def __post_init__(self) -> None:
        n = len(self.feature)
        fields = (self.threshold, self.missing_left, self.left, self.right, self.leaf)
        if any(len(f) != n for f in (*fields, self.value)):
            raise ValueError("every node array must have one entry per node")
        object.__setattr__(self, "_arrays", self._compile())

    def _compile(self) -> dict[str, Any]:
        n_nodes = len(self.feature)
        leaf = np.asarray(self.leaf, dtype=bool)
        own = np.arange(n_nodes, dtype=np.int64)
        # child[2·node + go_right]; a leaf points at itself, so finished rows stay put
        child = np.empty(2 * n_nodes, dtype=np.int64)
        child[0::2] = np.where(leaf, own, np.asarray(self.left, dtype=np.int64))
        child[1::2] = np.where(leaf, own, np.asarray(self.right, dtype=np.int64))
        cat_of = np.full(n_nodes, -1, dtype=np.int64)
        width = 1 + max(
            [max(codes, default=0) for _, codes in self.categorical]
            + [max(codes, default=0) for codes in self.known.values()]
            + [0]
        )
        # row c of `goes_left` / `known`: the tables of categorical split c
        goes_left = np.zeros((len(self.categorical), width), dtype=bool)
        known = np.zeros((len(self.categorical), width), dtype=bool)
        for c, (node, codes) in enumerate(self.categorical):
            cat_of[node] = c
            goes_left[c, list(codes)] = True
            known[c, list(self.known.get(self.feature[node], ()))] = True
        return {
            "roots": np.asarray(self.roots, dtype=np.int64),
            "feature": np.asarray(self.feature, dtype=np.int64),
            "threshold": np.asarray(self.threshold, dtype=np.float64),
            "missing_left": np.asarray(self.missing_left, dtype=bool),
            "value": np.asarray(self.value, dtype=np.float64),
            "leaf": leaf,
            "child": child,
            "depth": _depth(np.asarray(self.roots), child[0::2], child[1::2], leaf),
            "cat_of": cat_of,
            "goes_left": goes_left,
            "known": known,
            "width": width,
        }

    @property
    def trees(self) -> int:
        return len(self.roots)

    def predict(self, x: FloatArray) -> FloatArray:
        """Predictions for the rows of ``x`` (n × features, float64, NaN = missing)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError("x must be a 2-d array (rows × features)")
        out = np.empty(x.shape[0], dtype=np.float64)
        for lo in range(0, x.shape[0], CHUNK_ROWS):
            out[lo : lo + CHUNK_ROWS] = self._predict_chunk(x[lo : lo + CHUNK_ROWS])
        return out

    def _predict_chunk(self, x: FloatArray) -> FloatArray:
        a: dict[str, Any] = self._arrays  # type: ignore[attr-defined]
        n, width = x.shape
        trees = len(self.roots)
        # NaN is routed explicitly, never by substituting ±inf: a "split on NaNs" (all
        # values left, NaN right) has threshold +inf (sklearn grower.py, _fill_predictor_
        # arrays), where +inf > +inf would send NaN left; this was a bug (seed 596)
        flat = x.reshape(-1)
        feature = a["feature"]
        missing_left = a["missing_left"]
        # one entry per (row, tree) still walking; finished ones drop out each level
        final = np.tile(a["roots"], n)
        active = np.flatnonzero(~a["leaf"].take(final))
        node = final[active]
        row_offset = (active // trees) * width
        for _ in range(int(a["depth"])):
            if active.size == 0:
                break
            value = flat.take(row_offset + feature.take(node))
            go_right = value > a["threshold"].take(node)  # NaN compares False
            nan = np.isnan(value)
            if nan.any():
                go_right[nan] = ~missing_left.take(node[nan])
            if self.categorical:
                self._route_categorical(x, node, active // trees, go_right)
            node = a["child"].take(2 * node + go_right)
            done = a["leaf"].take(node)
            if done.any():
                final[active[done]] = node[done]
                keep = ~done
                active, node, row_offset = active[keep], node[keep], row_offset[keep]
        leaves = a["value"].take(final).reshape(n, trees)
        total = np.zeros(n, dtype=np.float64)
        total += self.baseline
        for t in range(trees):  # the library's order of additions, bit for bit
            total += leaves[:, t]
        return total

    def _route_categorical(self, x: FloatArray, node: Any, rows: Any, go_right: Any) -> None:
        """Categorical nodes: left set → left; a known code outside it → right; a NaN,
        negative or unknown code → the node's missing side (scikit-learn's rule)."""
        a: dict[str, Any] = self._arrays  # type: ignore[attr-defined]
        split = a["cat_of"].take(node)
        at = np.flatnonzero(split >= 0)
        if at.size == 0:
            return
        nodes, s = node[at], split[at]
        code = x[rows[at], a["feature"].take(nodes)]
        valid = np.isfinite(code) & (code >= 0) & (code < a["width"])
        c = np.where(valid, code, 0).astype(np.int64)
        seen = valid & a["known"][s, c]
        go_right[at] = ~np.where(seen, a["goes_left"][s, c], a["missing_left"].take(nodes))

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "roots": list(self.roots),
            "feature": list(self.feature),
            "threshold": [_finite(t) for t in self.threshold],
            "missing_left": [int(m) for m in self.missing_left],
            "left": list(self.left),
            "right": list(self.right),
            "leaf": [int(v) for v in self.leaf],
            "value": list(self.value),
            "categorical": [[node, list(codes)] for node, codes in self.categorical],
            "known": [[f, list(codes)] for f, codes in sorted(self.known.items())],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TreeEnsemble:
        return cls(
            baseline=float(d["baseline"]),
            roots=tuple(int(r) for r in d["roots"]),
            feature=tuple(int(f) for f in d["feature"]),
            threshold=tuple(math.inf if t is None else float(t) for t in d["threshold"]),
            missing_left=tuple(bool(m) for m in d["missing_left"]),
            left=tuple(int(v) for v in d["left"]),
            right=tuple(int(v) for v in d["right"]),
            leaf=tuple(bool(v) for v in d["leaf"]),
            value=tuple(float(v) for v in d["value"]),
            categorical=tuple(
                (int(n), tuple(int(c) for c in codes)) for n, codes in d["categorical"]
            ),
            known={int(f): tuple(int(c) for c in codes) for f, codes in d["known"]},
        )


def _finite(t: float) -> float | None:
    """JSON has no infinity: a never-taken +inf threshold is written as null."""
    return None if math.isinf(t) else t


def _depth(roots: Any, left: Any, right: Any, leaf: Any) -> int:
    """Levels below the deepest root-to-leaf path (the walk's number of steps)."""
    depth, level = 0, np.unique(roots)
    while level.size and not leaf[level].all():
        inner = level[~leaf[level]]
        level = np.unique(np.concatenate([left[inner], right[inner]]))
        depth += 1
    return depth


def _bits(bitset: Any) -> tuple[int, ...]:
    """Codes set in one of scikit-learn's 256-bit bitsets (eight uint32 words)."""
    words = np.asarray(bitset, dtype=np.uint64)
    return tuple(
        int(32 * w + b) for w in range(words.size) for b in range(32) if (int(words[w]) >> b) & 1
    )


def export_hist_gradient_boosting(model: Any) -> TreeEnsemble:
    """A fitted single-output ``HistGradientBoostingRegressor`` as a :class:`TreeEnsemble`
    over the model's *input* columns.

    With categorical features scikit-learn first runs a ``ColumnTransformer`` that puts
    the categorical columns first and ordinal-encodes their values (sorted categories,
    unknown → NaN); the nodes' feature indices and bitsets refer to that encoded matrix.
    The export maps them back: feature indices to input columns, ordinal codes to the
    input's category values (which must be non-negative integers, e.g. codes from
    :class:`watchkeeper.detectors.loss_model.FeatureEncoding`).

    Reads attributes private to scikit-learn (``_predictors``, ``_baseline_prediction``,
    ``_bin_mapper``, ``_preprocessor``), so the export is tested against ``predict`` for
    the pinned version (constraints.txt).
    """
    if int(model.n_trees_per_iteration_) != 1:
        raise ValueError("only single-output regressors can be exported")
    is_cat = model.is_categorical_
    n_features = int(model.n_features_in_)
    if is_cat is None:
        column = np.arange(n_features)
        raw_of: list[np.ndarray[Any, Any]] = []
    else:
        # the ColumnTransformer's output order: categorical columns, then the others
        column = np.concatenate([np.flatnonzero(is_cat), np.flatnonzero(~is_cat)])
        raw_of = [
            np.asarray(c) for c in model._preprocessor.named_transformers_["encoder"].categories_
        ]
        for cats in raw_of:
            cats = cats[~np.isnan(cats)]  # NaN is listed as a category; it stays missing
            if cats.size and (np.any(cats < 0) or np.any(cats != np.floor(cats))):
                raise ValueError("categorical inputs must be non-negative integer codes")
    known_bits, f_idx_map = model._bin_mapper.make_known_categories_bitsets()

    def raw(feature: int, codes: tuple[int, ...]) -> tuple[int, ...]:
        values = raw_of[feature]
        return tuple(sorted(int(values[c]) for c in codes if c < values.size and values[c] >= 0))

    known = {
        int(column[f]): raw(f, _bits(known_bits[int(f_idx_map[f])])) for f in range(len(raw_of))
    }
    roots: list[int] = []
    feature: list[int] = []
    threshold: list[float] = []
    missing_left: list[bool] = []
    left: list[int] = []
    right: list[int] = []
    leaf: list[bool] = []
    value: list[float] = []
    categorical: list[tuple[int, tuple[int, ...]]] = []
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        base = len(feature)
        roots.append(base)
        for i, node in enumerate(nodes):
            is_leaf = bool(node["is_leaf"])
            f = int(node["feature_idx"])
            feature.append(0 if is_leaf else int(column[f]))
            threshold.append(float(node["num_threshold"]))
            missing_left.append(bool(node["missing_go_to_left"]))
            left.append(base + int(node["left"]))
            right.append(base + int(node["right"]))
            leaf.append(is_leaf)
            value.append(float(node["value"]))
            if not is_leaf and node["is_categorical"]:
                bits = _bits(predictor.raw_left_cat_bitsets[int(node["bitset_idx"])])
                categorical.append((base + i, raw(f, bits)))
    return TreeEnsemble(
        baseline=float(np.asarray(model._baseline_prediction).reshape(-1)[0]),
        roots=tuple(roots),
        feature=tuple(feature),
        threshold=tuple(threshold),
        missing_left=tuple(missing_left),
        left=tuple(left),
        right=tuple(right),
        leaf=tuple(leaf),
        value=tuple(value),
        categorical=tuple(categorical),
        known=known,
    )
