"""Arrow arrays as numpy arrays and Python strings, without pyarrow's pandas bridge.

pyarrow's ``Array.to_numpy`` (and ``np.asarray`` of an array) converts through
``ConvertArrayToPandas`` whatever the type, zero-copy or not, and that C++ path imports
pandas the first time it runs (pyarrow 26: ~0.2 s and ~45 MB of RSS in a process that
had numpy and pyarrow already; measured 2026-12-07 with ``/proc/self/statm``). The
daemon's ingest needs none of pandas, so the columnar decoder reads the arrays here
instead: a number column's values buffer through ``np.frombuffer`` (then copied, as
``to_numpy(writable=True)`` copied), text through ``to_pylist``. Both give exactly the
values ``to_numpy`` gave (float64 bits, the same ``str`` objects' text, ``None`` for
null); tests/unit/test_arrow_arrays.py checks them against ``to_numpy``.

>>> import pyarrow as pa
>>> numbers(pa.array([1, 2**53 + 1, -3])).tolist()
[1.0, 9007199254740992.0, -3.0]
>>> texts(pa.array(["a", "b", "a"]), few=True).tolist()
['a', 'b', 'a']
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from watchkeeper.daemon.ingest.fields import object_array

# the primitive Arrow types read straight from their values buffer, and their numpy dtype
_PRIMITIVE: dict[pa.DataType, np.dtype[Any]] = {
    pa.float64(): np.dtype(np.float64),
    pa.int64(): np.dtype(np.int64),
    pa.int32(): np.dtype(np.int32),
    pa.int16(): np.dtype(np.int16),
    pa.int8(): np.dtype(np.int8),
}


def whole(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``arr`` as one array: a table's column is a ChunkedArray, which has no ``buffers()``
    or ``dictionary``; its chunks are combined (a copy only when there are several)."""
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def primitive(arr: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, Any]:
    """A writable numpy copy of a primitive array's values (``to_numpy(zero_copy_only=False,
    writable=True)``'s result); an array with nulls or of another type goes through
    ``to_numpy`` itself (never on the columnar path's clean batches)."""
    arr = whole(arr)
    dtype = _PRIMITIVE.get(arr.type)
    if dtype is None or arr.null_count:
        return arr.to_numpy(zero_copy_only=False, writable=True)  # type: ignore[no-any-return]
    data = arr.buffers()[1]
    n = len(arr)
    if data is None or n == 0:
        return np.zeros(n, dtype=dtype)
    view: np.ndarray[Any, Any] = np.frombuffer(
        memoryview(data), dtype=dtype, count=n, offset=arr.offset * dtype.itemsize
    )
    return view.copy()


def numbers(arr: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, Any]:
    """The column as float64; unsafe cast: an int64 past 2**53 rounds to the nearest
    double, as Python's ``float(int)`` does."""
    return primitive(whole(arr).cast(pa.float64(), safe=False))


def texts(arr: pa.Array | pa.ChunkedArray, few: bool = False) -> np.ndarray[Any, Any] | None:
    """An object array of the column's strings (an int64 column, an identifier logged as a
    number: its decimal text). ``few``: a column of few distinct values (model, version):
    each distinct string is made once and shared by its rows. None: a column of another
    type (not text)."""
    arr = whole(arr)
    if pa.types.is_int64(arr.type):
        arr = arr.cast(pa.string())
    if not pa.types.is_string(arr.type):
        return None
    if few:
        encoded = arr.dictionary_encode()
        distinct = object_array(encoded.dictionary.to_pylist())
        return distinct[primitive(encoded.indices)]  # type: ignore[no-any-return]
    return object_array(arr.to_pylist())
