"""Outputs with NaN or infinity, written as TensorFlow Serving and Triton write them.

Both write a non-finite float as the bare token `NaN`, `Infinity` or `-Infinity` (rapidjson's
kWriteNanAndInfFlag), which their clients read back (Python's json, tritonclient's rapidjson).
orjson writes such a float as `null`, which those clients read as None, or as NaN whatever
the sign of an infinity. So /v1 and /v2 hand such an output to orjson as lists whose
non-finite items are pre-written fragments. Finite outputs, nearly all, go through untouched.
"""

from __future__ import annotations

import numpy as np
import orjson

_NAN, _INFINITY, _MINUS_INFINITY = (orjson.Fragment(token)
                                    for token in (b"NaN", b"Infinity", b"-Infinity"))


def with_non_finite_tokens(array: np.ndarray) -> np.ndarray | list:
    """`array` itself where it holds only finite numbers, else nested lists of its numpy
    scalars (written by orjson as the finite path writes them) and the tokens."""
    if array.dtype.kind != "f" or np.isfinite(array).all():
        return array
    return _nested(array)


def _nested(array: np.ndarray):
    if array.ndim == 0:
        return _item(array[()])
    if array.ndim == 1:
        return [_item(value) for value in array]
    return [_nested(row) for row in array]


def _item(value: np.floating):
    if np.isnan(value):
        return _NAN
    if np.isinf(value):
        return _MINUS_INFINITY if value < 0 else _INFINITY
    return value
