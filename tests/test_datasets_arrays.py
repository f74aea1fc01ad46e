"""The pure numpy side of datasets: `array_from_json` (shared with evaluate and predict) and
the `.npy` checks, without Flask."""

from __future__ import annotations

import io

import numpy as np
import pytest

from service.datasets import array_from_json
from service.datasets.npy import read_npy_header
from service.errors import InvalidArray, LimitExceeded
from tests.hostile import npy_header

NESTED_100 = [1]
for _ in range(99):
    NESTED_100 = [NESTED_100]


@pytest.mark.parametrize(("value", "dtype", "expected"), [
    ([[1, 2], [3, 4]], None, np.array([[1, 2], [3, 4]], np.int64)),
    ([[1, 2], [3, 4.5]], None, np.array([[1, 2], [3, 4.5]], np.float32)),
    ([1, 2.0], "int16", np.array([1, 2], np.int16)),
    ([255, 0], "uint8", np.array([255, 0], np.uint8)),
    ([1e300], "float64", np.array([1e300])),
    ([[[0.5]]], np.float16, np.array([[[0.5]]], np.float16)),
    ([-(2**63), 2**63 - 1], None, np.array([-(2**63), 2**63 - 1], np.int64)),
])
def test_array_from_json_converts_exactly(value, dtype, expected):
    array = array_from_json(value, name="x", max_elements=100, dtype=dtype)
    assert array.dtype == expected.dtype and np.array_equal(array, expected)
    assert array.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize(("value", "dtype", "mentions"), [
    ([[1, 2, 3, 4, 5]] * 3 + [[1, 2, 3, 4]], None,
     "'x' is ragged: row 3 has 4 element(s), row 0 has 5"),
    ([[[1, 2], [3]]], None, "element [0][1] has 1 element(s), element [0][0] has 2"),
    ([float("nan")], None, "finite"),
    ([float("inf")], "float64", "finite"),
    ([256], "uint8", "outside the uint8 range [0, 255]"),
    ([-1], "uint64", "outside the uint64 range"),
    ([70000.0], "float16", "outside the float16 range"),
    ([10**400], "float64", "too large for any float dtype"),
    ([1], "bool", "dtypes.x"),
    ([1], "bfloat16", "dtypes.x"),
    ("abc", None, "must be a JSON array"),
    (NESTED_100, None, "nested deeper than 32 levels"),  # numpy stops at 64, with a ValueError
])
def test_array_from_json_refuses_with_the_place_and_the_reason(value, dtype, mentions):
    with pytest.raises(InvalidArray) as caught:
        array_from_json(value, name="x", max_elements=100, dtype=dtype)
    assert mentions in caught.value.detail


def test_array_from_json_names_the_element_cap():
    with pytest.raises(LimitExceeded, match="KERAS_SERVICE_MAX_INLINE_ELEMENTS"):
        array_from_json([[0] * 10] * 11, name="x", max_elements=100)


def test_npy_header_is_read_without_the_data():
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((3, 4), np.int32))
    size = len(buffer.getvalue())
    buffer.seek(0)
    header = read_npy_header(buffer, name="x", file_bytes=size)
    assert header.shape == (3, 4) and header.dtype == np.int32
    assert header.data_offset + header.data_bytes == size
    assert buffer.tell() == header.data_offset


@pytest.mark.parametrize("shape", [(-1, -100), (4, -1)])
def test_npy_header_with_a_negative_dimension_is_refused(shape):
    # Two negative sizes multiply to a positive one that the data may fill exactly.
    data = npy_header(shape) + bytes(400)
    with pytest.raises(InvalidArray, match="negative dimension"):
        read_npy_header(io.BytesIO(data), name="x", file_bytes=len(data))
