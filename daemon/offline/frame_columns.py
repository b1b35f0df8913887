"""How the offline commands read a data frame's columns: numeric or not, as float64."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def is_numeric(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series))


def numeric_values(series: pd.Series) -> np.ndarray[Any, Any]:
    values: np.ndarray[Any, Any] = pd.to_numeric(series, errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    return values
