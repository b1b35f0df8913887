"""Codes for the distinct values of an object column, in order of first appearance.

A hash table in Arrow's C++ (``dictionary_encode``), not a sort of the strings
(``np.unique`` on text is ≈ 8× slower) and not pandas, which the daemon imports only for
reports (``tests/unit/test_layout.py``). Nulls (``None``) get code ``-1`` and are not
among the distinct values, as with ``pandas.factorize``. A column of mixed types (text
and numbers: Arrow refuses those) is coded by a dictionary instead, one Python step per
row: such a column is a data error, not the hot path.

>>> codes, distinct = factorize(np.array(["DE", "FR", None, "DE"], dtype=object))
>>> codes.tolist(), distinct
([0, 1, -1, 0], ['DE', 'FR'])
>>> factorize(np.array(["a", 1, "a"], dtype=object))[0].tolist()
[0, 1, 0]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

IndexArray = np.ndarray[Any, np.dtype[np.intp]]


def factorize(values: np.ndarray[Any, Any]) -> tuple[IndexArray, list[Any]]:
    """``(codes, distinct)``: ``distinct[codes[i]] == values[i]``, ``-1`` for a null."""
    try:
        encoded = pa.array(values).dictionary_encode()
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return _by_dict(values)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    return codes.astype(np.intp, copy=False), encoded.dictionary.to_pylist()


def _by_dict(values: np.ndarray[Any, Any]) -> tuple[IndexArray, list[Any]]:
    seen: dict[Any, int] = {}
    codes = np.fromiter(
        (-1 if v is None else seen.setdefault(v, len(seen)) for v in values.tolist()),
        dtype=np.intp,
        count=len(values),
    )
    return codes, list(seen)
