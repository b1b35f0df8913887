"""Shapley-value attributions of any vectorised model against a background sample.

The model is a callable ``predict(X) -> scores`` over a 2-D array (one score per row), so
it runs on an ONNX Runtime session as shadow evaluation holds it. The attribution of
feature i for row x is its interventional Shapley value (Lundberg & Lee 2017; Janzing,
Minorics & Blöbaum 2020 for "interventional") with the value of a coalition S

    v(S) = mean over background rows b of f(x_S, b_S̄)

— the features in S taken from x, the others from b — so v(∅) is the mean prediction on
the background (the *base value*) and v(all) = f(x). The attributions of a row sum to
f(x) − v(∅) exactly ("local accuracy"). For a linear model f = w·x + c they are
wᵢ (xᵢ − mean of bᵢ), which the unit tests check to floating-point tolerance.

Two estimators, chosen by ``method`` (``auto`` takes the cheaper one):

* ``exact``: all 2^d coalitions and the Shapley weights |S|!(d − |S| − 1)!/d! —
  (2^d − 2)·m model rows per explained row, for m background rows;
* ``permutation``: Monte-Carlo over feature orderings, each drawn with its reverse
  (antithetic sampling, as shap's PermutationExplainer: Mitchell, Cooper, Frank & Holmes,
  "Sampling permutations for Shapley value estimation", JMLR 2022). A permutation and
  its reverse cost 2(d − 1)·m model rows (the two endpoints are v(∅) and f(x), shared), so
  ``permutations`` orderings cost permutations·(d − 1)·m rows. Exact for any model with
  at most pairwise interactions (each pair of features is ordered both ways once), and
  unbiased otherwise.

Rows are explained in a few large ``predict`` calls (at most ``max_batch_rows`` rows
each), never one call per coalition. Orderings are drawn from a generator seeded with
(``seed``, the row's 64-bit key) when keys are given, so a replay, a replica and a second
model explained on the same rows use the same orderings — two identical models get
identical attributions, and differences between models are not sampling noise.

>>> w = np.array([2.0, -1.0, 0.5])
>>> background = np.array([[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]])
>>> explainer = ShapleyExplainer(lambda X: X @ w, background)
>>> explainer.explain(np.array([[3.0, 1.0, 1.0]])).round(6).tolist()
[[4.0, 0.0, 0.0]]
>>> explainer.method, explainer.model_rows_per_row()
('exact', 13)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

Array = np.ndarray[Any, Any]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]
Predict = Callable[[Array], Any]
Method = Literal["auto", "exact", "permutation"]
MAX_EXACT_FEATURES = 16
"""Beyond this the 2^d coalitions are too many for ``method="exact"``."""


class ShapleyExplainer:
    """Interventional Shapley values of ``predict`` against ``background``; see the module doc.

    ``permutations``: orderings per row for the permutation method (even: each with its
    reverse). ``seed``: with the rows' keys, fixes the orderings. ``max_batch_rows``:
    the largest ``predict`` call.
    """

    def __init__(
        self,
        predict: Predict,
        background: Array,
        *,
        method: Method = "auto",
        permutations: int = 10,
        seed: int = 0,
        max_batch_rows: int = 65_536,
    ) -> None:
        bg = np.asarray(background)
        if bg.ndim != 2 or bg.shape[0] == 0 or bg.shape[1] == 0:
            raise ValueError(
                f"the background is a non-empty [rows, features] array, not {bg.shape}"
            )
        if permutations < 2 or permutations % 2:
            raise ValueError("permutations is even and ≥ 2 (each ordering with its reverse)")
        if max_batch_rows < 1:
            raise ValueError("max_batch_rows ≥ 1")
        self.predict = predict
        self.background = bg
        self.permutations = permutations
        self.seed = seed
        self.max_batch_rows = max_batch_rows
        d = bg.shape[1]
        exact_cost = 2**d - 2 if d <= MAX_EXACT_FEATURES else math.inf
        if method == "auto":
            method = "exact" if exact_cost <= permutations * (d - 1) else "permutation"
        if method == "exact" and d > MAX_EXACT_FEATURES:
            raise ValueError(f"exact Shapley values need ≤ {MAX_EXACT_FEATURES} features, not {d}")
        if method not in ("exact", "permutation"):
            raise ValueError(f"unknown method {method!r}")
        self.method: Literal["exact", "permutation"] = method
        self._base: float | None = None

    @property
    def features(self) -> int:
        return int(self.background.shape[1])

    def model_rows_per_row(self) -> int:
        """Rows the model is run on to explain one row (its cost, besides f(x) itself)."""
        d, m = self.features, int(self.background.shape[0])
        if d == 1:
            return 1
        coalitions = 2**d - 2 if self.method == "exact" else self.permutations * (d - 1)
        return coalitions * m + 1

    def base_value(self) -> float:
        """v(∅): the mean prediction on the background."""
        if self._base is None:
            self._base = float(self._run(self.background).mean())
        return self._base

    # -- explaining ----------------------------------------------------------------------
    def explain(self, x: Array, keys: Array | None = None) -> FloatArray:
        """Attributions [rows, features] of the rows of ``x`` (``keys``: one uint64 each)."""
        x = np.asarray(x, dtype=self.background.dtype)
        if x.ndim != 2 or x.shape[1] != self.features:
            raise ValueError(f"rows to explain are [n, {self.features}], not {x.shape}")
        if keys is not None and len(keys) != len(x):
            raise ValueError("one key per row")
        n, d = x.shape
        out = np.zeros((n, d))
        if n == 0:
            return out
        fx = self._run(x)
        base = self.base_value()
        if d == 1:
            out[:, 0] = fx - base
            return out
        per_row = self.model_rows_per_row()
        chunk = max(1, self.max_batch_rows // per_row)
        rng = np.random.default_rng(self.seed) if keys is None else None
        for lo in range(0, n, chunk):
            part = slice(lo, min(n, lo + chunk))
            if self.method == "exact":
                out[part] = self._exact(x[part], fx[part], base)
            else:
                ranks = self._ranks(part, keys, rng)
                out[part] = self._permutation(x[part], fx[part], base, ranks)
        return out

    def _ranks(self, part: slice, keys: Array | None, rng: np.random.Generator | None) -> Array:
        """Position of each feature in each drawn ordering: [rows, orderings/2, features]."""
        pairs, d = self.permutations // 2, self.features
        if rng is not None:
            rows = part.stop - part.start
            orders = rng.random((rows, pairs, d)).argsort(axis=2)
        else:
            assert keys is not None
            orders = np.stack(
                [
                    np.random.default_rng([self.seed, int(k)]).random((pairs, d)).argsort(axis=1)
                    for k in np.asarray(keys, dtype=np.uint64)[part].tolist()
                ]
            )
        return orders.argsort(axis=2)  # the inverse permutation: rank of each feature

    def _permutation(self, x: Array, fx: FloatArray, base: float, ranks: Array) -> FloatArray:
        rows, pairs, d = ranks.shape
        j = np.arange(1, d)[None, None, :, None]
        r = ranks[:, :, None, :]
        forward = r < j  # the first j features of the ordering come from x
        backward = r >= j  # ... of its reverse: all but the first j
        masks = np.concatenate([forward, backward], axis=2).reshape(rows, -1, d)
        v = self._coalition_values(x, masks).reshape(rows, pairs, 2, d - 1)
        fx3 = np.broadcast_to(fx[:, None, None], (rows, pairs, 1))
        b3 = np.full((rows, pairs, 1), base)
        up = np.concatenate([b3, v[:, :, 0], fx3], axis=2)  # v(first k), k = 0 … d
        down = np.concatenate([fx3, v[:, :, 1], b3], axis=2)  # v(all but first k)
        gain_up = np.diff(up, axis=2)  # position k's feature joins: v(k+1) − v(k)
        gain_down = -np.diff(down, axis=2)  # it leaves the reverse's set
        both = np.take_along_axis(gain_up + gain_down, ranks, axis=2)
        result: FloatArray = both.sum(axis=1) / (2 * pairs)
        return result

    def _exact(self, x: Array, fx: FloatArray, base: float) -> FloatArray:
        rows, d = x.shape
        full = 2**d - 1
        codes = np.arange(1, full)
        bits = ((codes[:, None] >> np.arange(d)) & 1).astype(bool)
        masks = np.broadcast_to(bits[None], (rows, codes.size, d))
        v = np.empty((rows, full + 1))
        v[:, 0], v[:, full] = base, fx
        v[:, 1:full] = self._coalition_values(x, masks)
        sizes = np.array([int(c).bit_count() for c in range(full + 1)])
        weight = np.array(
            [math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d) for s in range(d)]
        )
        out = np.empty((rows, d))
        every = np.arange(full + 1)
        for i in range(d):
            without = every[(every >> i) & 1 == 0]
            gains = v[:, without | (1 << i)] - v[:, without]
            out[:, i] = gains @ weight[sizes[without]]
        return out

    def _coalition_values(self, x: Array, masks: Array) -> FloatArray:
        """v(S) for each row's coalitions ``masks`` [rows, coalitions, features]."""
        rows, count, d = masks.shape
        bg = self.background
        m = bg.shape[0]
        flat = masks.reshape(rows * count, d)
        owner = np.repeat(np.arange(rows), count)
        out = np.empty(rows * count)
        step = max(1, self.max_batch_rows // m)
        for lo in range(0, rows * count, step):
            sel = slice(lo, min(rows * count, lo + step))
            z = np.where(flat[sel, None, :], x[owner[sel], None, :], bg[None, :, :])
            out[sel] = self._run(z.reshape(-1, d)).reshape(-1, m).mean(axis=1)
        return out.reshape(rows, count)

    def _run(self, z: Array) -> FloatArray:
        y = np.asarray(self.predict(z), dtype=np.float64)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != (len(z),):
            raise ValueError(f"predict returned shape {y.shape} for {len(z)} rows: one score each")
        return y
