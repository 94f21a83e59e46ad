"""Plain forms: how `save_pickle` writes pandas DataFrames and Series, torch tensors (and, registered by their
modules, lamina objects such as `TabularPandas`) so that `load_pickle`, which rebuilds only plain data, reads them
back. A tensor is kept as its dtype's name and its values (on the CPU, without its autograd history).

An object of a registered type is written as ``{"__lamina_form__": tag, "data": ...}``, where ``data`` holds
only containers, numbers, strings and numpy arrays; `load_pickle` finds the tag in this module's table and calls
the builder registered under it. Nothing read from the file names a module or a class: a tag that is not in the
table is an error. A pandas column is kept as its numpy values, a categorical one as codes and categories, and
one of pandas' own dtypes (``string``, ``Int64``, ``boolean`` ...) as Python values and the dtype's name.

Example:
    >>> save_pickle('xs.pkl', xs)          # the book's chapter 9: a DataFrame of processed columns
    >>> xs = load_pickle('xs.pkl')         # the same DataFrame, without unpickling any pandas class
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from .foundation import L

__all__ = ["register_form", "to_plain", "from_plain", "FORM_KEY"]

FORM_KEY = "__lamina_form__"
_ENCODERS: dict[type, tuple[str, Callable[[Any], Any]]] = {}
_BUILDERS: dict[str, Callable[[Any], Any]] = {}
_PLAIN_SCALARS = (str, int, float, bool, bytes, type(None))
# pandas' own dtypes a column may be rebuilt with: only these names are passed to pandas from a file
_EXTENSION_DTYPES = frozenset({"Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float32",
                               "Float64", "boolean", "string", "str"})


def register_form(cls: type, tag: str, encode: Callable[[Any], Any], build: Callable[[Any], Any]) -> None:
    """Write objects of exactly ``cls`` as ``encode(obj)`` (plain data) under ``tag``; read them with ``build``."""
    _ENCODERS[cls] = (tag, encode)
    _BUILDERS[tag] = build


def to_plain(obj: Any) -> Any:
    """``obj`` with every object of a registered type (in lists, tuples and dicts too) in its plain form."""
    form = _ENCODERS.get(type(obj))
    if form is not None:
        return {FORM_KEY: form[0], "data": to_plain(form[1](obj))}
    if type(obj) in (list, tuple, L):
        return type(obj)(to_plain(o) for o in obj)
    if type(obj) in (dict, OrderedDict):
        return type(obj)((k, to_plain(v)) for k, v in obj.items())
    return obj


def from_plain(obj: Any, name: str = "the file") -> Any:
    """The objects `to_plain` wrote, rebuilt by the builders registered under their tags."""
    if type(obj) is dict and FORM_KEY in obj:
        tag = obj[FORM_KEY]
        build = _BUILDERS.get(tag) if isinstance(tag, str) else None
        if build is None:
            hint = " (import lamina.tabular.all first)" if tag == "TabularPandas" else ""
            raise ValueError(f"{name} holds an object of kind {tag!r} that this process cannot rebuild{hint}; "
                             f"the kinds it knows: {sorted(_BUILDERS)}")
        return build(from_plain(obj["data"], name))
    if type(obj) in (list, tuple, L):
        return type(obj)(from_plain(o, name) for o in obj)
    if type(obj) in (dict, OrderedDict):
        return type(obj)((k, from_plain(v, name)) for k, v in obj.items())
    return obj


# --- pandas ----------------------------------------------------------------------------------------------

def _plain_objects(values: np.ndarray, what: str) -> np.ndarray:
    """Object values with pandas' missing markers as None, checked to be plain Python values."""
    out = np.array([None if v is pd.NA or v is pd.NaT else v for v in values], dtype=object)
    bad = next((v for v in out if not isinstance(v, (*_PLAIN_SCALARS, np.generic))), None)
    if bad is not None:
        hint = ".dt.tz_convert(None) for times with a time zone" if isinstance(bad, pd.Timestamp) else \
            ".astype(str), or .astype(float)"
        raise TypeError(f"save_pickle cannot write {what}: it holds {bad!r} ({type(bad).__name__}), and a pickle "
                        f"that load_pickle reads holds only text, numbers and arrays. Convert it first: {hint}")
    return out


def _encode_values(s: pd.Series | pd.Index, what: str) -> dict[str, Any]:
    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return {"kind": "categorical", "codes": np.asarray(s.cat.codes if isinstance(s, pd.Series) else s.codes),
                "categories": _encode_values(dtype.categories, f"the categories of {what}"),
                "ordered": bool(dtype.ordered)}
    numpy_objects = isinstance(dtype, np.dtype) and dtype.kind == "O"
    if isinstance(dtype, np.dtype) and not numpy_objects:
        return {"kind": "numpy", "values": s.to_numpy()}
    if not numpy_objects and str(dtype) not in _EXTENSION_DTYPES:
        raise TypeError(f"save_pickle cannot write {what}: its dtype {dtype} is not one load_pickle rebuilds "
                        f"(numpy's, categories, or {sorted(_EXTENSION_DTYPES)}). Convert it first, e.g. "
                        ".dt.tz_convert(None) for times with a time zone, or .astype(str)")
    kind = "numpy" if numpy_objects else "extension"
    return {"kind": kind, "values": _plain_objects(s.to_numpy(dtype=object), what), "dtype": str(dtype)}


def _build_values(form: dict[str, Any]) -> Any:
    kind = form.get("kind")
    if kind == "categorical":
        categories = pd.Index(_build_values(form["categories"]))
        return pd.Categorical.from_codes(np.asarray(form["codes"]), categories=categories,
                                         ordered=bool(form["ordered"]))
    values = form.get("values")
    if kind not in ("numpy", "extension") or not isinstance(values, np.ndarray):
        raise ValueError(f"A column's plain form is damaged (kind {kind!r}, values of type {type(values).__name__})")
    if kind == "extension":
        if form.get("dtype") not in _EXTENSION_DTYPES:
            raise ValueError(f"A column's plain form names the dtype {form.get('dtype')!r}, not one of "
                             f"{sorted(_EXTENSION_DTYPES)}")
        return pd.array(list(values), dtype=form["dtype"])
    return values


def _encode_index(index: pd.Index) -> dict[str, Any]:
    if isinstance(index, pd.MultiIndex):
        raise TypeError("save_pickle writes a DataFrame whose index and columns have one level: call "
                        ".reset_index() first (or flatten the column names)")
    if isinstance(index, pd.RangeIndex):
        return {"range": (index.start, index.stop, index.step), "name": index.name}
    return {"values": _encode_values(index, "the index"), "name": index.name}


def _build_index(form: dict[str, Any]) -> pd.Index:
    if "range" in form:
        return pd.RangeIndex(*form["range"], name=form["name"])
    return pd.Index(_build_values(form["values"]), name=form["name"])


def _encode_frame(df: pd.DataFrame) -> dict[str, Any]:
    return {"index": _encode_index(df.index), "names": _encode_index(df.columns),
            "columns": [_encode_values(df.iloc[:, i], f"column {c!r}") for i, c in enumerate(df.columns)]}


def _build_frame(data: dict[str, Any]) -> pd.DataFrame:
    index = _build_index(data["index"])
    columns = {i: pd.Series(_build_values(c), index=index) for i, c in enumerate(data["columns"])}
    df = pd.DataFrame(columns, index=index)
    df.columns = _build_index(data["names"])
    return df


def _encode_series(s: pd.Series) -> dict[str, Any]:
    return {"index": _encode_index(s.index), "name": s.name, "values": _encode_values(s, f"Series {s.name!r}")}


def _build_series(data: dict[str, Any]) -> pd.Series:
    return pd.Series(_build_values(data["values"]), index=_build_index(data["index"]), name=data["name"])


register_form(pd.DataFrame, "DataFrame", _encode_frame, _build_frame)
register_form(pd.Series, "Series", _encode_series, _build_series)


# --- tensors ---------------------------------------------------------------------------------------------

_TENSOR_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64", "complex64", "complex128", "uint8", "int8",
                            "int16", "int32", "int64", "bool"})


def _encode_tensor(t: torch.Tensor) -> dict[str, Any]:
    """A tensor as its dtype's name and its values in a numpy array (on the CPU, out of any graph)."""
    dtype = str(t.dtype).removeprefix("torch.")
    if dtype not in _TENSOR_DTYPES:
        raise TypeError(f"save_pickle cannot write a tensor of dtype {t.dtype}: convert it first (e.g. .float())")
    values = t.detach().cpu()
    return {"dtype": dtype, "values": (values.float() if dtype == "bfloat16" else values).numpy()}


def _build_tensor(data: dict[str, Any]) -> torch.Tensor:
    dtype, values = data.get("dtype"), data.get("values")
    if dtype not in _TENSOR_DTYPES or not isinstance(values, np.ndarray):
        raise ValueError(f"A tensor's plain form is damaged (dtype {dtype!r}, values of type {type(values).__name__})")
    return torch.from_numpy(np.array(values)).to(getattr(torch, dtype))


register_form(torch.Tensor, "Tensor", _encode_tensor, _build_tensor)
