"""Building a feature's (or the prediction's, or the label's) column for one model.

The column's kind is the registry's (declared, or fixed by the first value seen); values
of another type are reported as bad rows. A probability-vector prediction becomes two
columns: a score (P(class 1) for two classes, the top probability otherwise) and the
predicted class (the argmax index, as text). A class logged in its own field
(``prediction_class``) is a categorical column spelled as labels are (``1``, ``1.0`` and
``true`` all read ``"1"``), so it compares with the labels it is graded against.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from watchkeeper.daemon.ingest.fields import (
    MISSING,
    BadRows,
    absent_masks,
    category_column,
    numeric_column,
    object_array,
    type_name,
)
from watchkeeper.daemon.ingest.kinds import KindRegistry
from watchkeeper.detectors.column_batch import Column
from watchkeeper.detectors.performance import class_names


def _kind_of(value: Any) -> str | None:
    t = type(value)
    if t is str:
        return "categorical"
    if t in (int, float, bool):
        return "numeric"
    if t is list:
        return "proba"
    return None


def proba_columns(rows: Any, null: Any, missing: Any) -> tuple[Column, Column, Any]:
    """(score, class, matrix) of a probability matrix (records × classes; NaN rows where
    the vector is absent): P(class 1) for two classes, else the top probability; the
    class is the argmax index as text; the matrix itself (for multiclass estimates)."""
    absent = null | missing
    score = rows[:, 1] if rows.shape[1] == 2 else rows.max(axis=1)
    finite_rows = np.isfinite(rows).all(axis=1)
    cls = object_array([None] * len(rows))
    ok = finite_rows & ~absent
    cls[ok] = np.argmax(rows[ok], axis=1).astype(str).astype(object)
    score_col = Column("numeric", score, null, missing)
    class_col = Column("categorical", cls, null, missing | (~finite_rows & ~absent))
    return score_col, class_col, rows


class ColumnBuilder:
    """Columns of one batch, checked against and teaching the kind registry."""

    def __init__(self, kinds: KindRegistry, max_value_chars: int = 200) -> None:
        self.kinds = kinds
        self.max_value_chars = max_value_chars

    def _long_values(self, values: Any, field: str, bad: BadRows) -> None:
        """Flag category values past ``max_value_chars`` (checked on the distinct values)."""
        limit = self.max_value_chars
        long = {v for v in set(values.tolist()) if v is not None and len(v) > limit}
        if not long:
            return
        hits = np.fromiter((v in long for v in values), dtype=bool, count=len(values))
        for i in np.flatnonzero(hits).tolist():
            bad.setdefault(i, ("value_too_long", f"{field}: a value longer than {limit}"))

    def build(
        self,
        model: str,
        name: str,
        values: list[Any],
        field: str,
        bad: BadRows,
        allow_proba: bool,
    ) -> Column | tuple[Column, Column, Any] | None:
        types = set(map(type, values))
        kind = self.kinds.kind(model, name)
        if kind is None:
            first = next((v for v in values if v is not None and v is not MISSING), MISSING)
            kind = _kind_of(first)
            if kind == "proba" and not allow_proba:
                kind = None
            if kind is None:
                if first is not MISSING:
                    for i, v in enumerate(values):
                        if v is not None and v is not MISSING:
                            bad.setdefault(
                                i,
                                (
                                    "wrong_type",
                                    f"{field}: a {type_name(v)} "
                                    "is not a feature value (number or string)",
                                ),
                            )
                return None
            self.kinds.learn(model, name, kind)
        null, missing = absent_masks(values, types)
        if kind == "numeric":
            return Column("numeric", numeric_column(values, types, field, bad), null, missing)
        if kind == "categorical":
            column = category_column(values, types, field, bad)
            self._long_values(column, field, bad)
            return Column("categorical", column, null, missing)
        return self._proba(values, null, missing, field, bad)

    def _proba(
        self, values: list[Any], null: Any, missing: Any, field: str, bad: BadRows
    ) -> tuple[Column, Column, Any]:
        """A probability vector per record → (score column, class column, the matrix).

        The score is P(class 1) for two classes and the top probability otherwise; the
        class is the argmax index as text.
        """
        width = next((len(v) for v in values if type(v) is list), 0)
        rows = np.full((len(values), max(width, 1)), np.nan)
        for i, v in enumerate(values):
            if v is None or v is MISSING:
                continue
            if (
                type(v) is not list
                or len(v) != width
                or width == 0
                or not all(type(p) in (int, float) for p in v)
            ):
                bad.setdefault(
                    i, ("wrong_type", f"{field}: expected an array of {width} probabilities")
                )
                continue
            rows[i] = v
        return proba_columns(rows, null, missing)

    @staticmethod
    def classes(values: list[Any], field: str, bad: BadRows) -> Column:
        """The model's own decision per record (``prediction_class``): text, one spelling
        per class; a value that is not a string, number or boolean is a bad row."""
        types = set(map(type, values))
        null, missing = absent_masks(values, types)
        out = object_array([None] * len(values))
        for i, v in enumerate(values):
            if v is None or v is MISSING:
                continue
            if type(v) in (str, int, float, bool):
                out[i] = class_names([v])[0]
            else:
                bad.setdefault(
                    i,
                    (
                        "wrong_type",
                        f"{field}: expected a class (string or number), got {type_name(v)}",
                    ),
                )
        return Column("categorical", out, null, missing)

    # -- quarantine ---------------------------------------------------------------------
