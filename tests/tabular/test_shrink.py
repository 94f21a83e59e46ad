"""`df_shrink` and `df_shrink_dtypes`: smaller column types, fastai's rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lamina.tabular.shrink import df_shrink, df_shrink_dtypes


def frame() -> pd.DataFrame:
    return pd.DataFrame({"small": [1, 2, 100], "wide": [-1, 0, 70_000], "count": np.array([0, 1, 2], np.int64),
                         "price": [0.5, 1.5, 2.0], "text": ["a", "b", "a"], "flag": [True, False, True],
                         "day": pd.to_datetime(["2020-01-01"] * 3), "gaps": [np.nan, np.nan, np.nan]})


def test_dtypes_follow_the_value_ranges():
    new = df_shrink_dtypes(frame())
    assert new == {"small": np.int8, "wide": np.int32, "count": np.int8, "price": np.float32, "text": "category"}
    unsigned = df_shrink_dtypes(frame(), int2uint=True, obj2cat=False, skip=["price"])
    assert unsigned == {"small": np.uint8, "wide": np.int32, "count": np.uint8}


def test_shrink_returns_a_smaller_copy_with_the_same_values():
    df = frame()
    small = df_shrink(df)
    assert small.small.dtype == np.int8 and isinstance(small.text.dtype, pd.CategoricalDtype)
    assert df.small.dtype == np.int64  # the input is not changed
    assert small.memory_usage(deep=True).sum() < df.memory_usage(deep=True).sum()
    pd.testing.assert_frame_equal(small.astype(df.dtypes.to_dict()), df)


def test_an_object_column_and_a_float16_column():
    df = pd.DataFrame({"o": pd.Series(["x", "y"], dtype=object), "h": np.array([1, 2], np.float16)})
    assert df_shrink_dtypes(df) == {"o": "category"}  # float16 is already smaller than float32


def test_not_a_dataframe():
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        df_shrink_dtypes([1, 2])
