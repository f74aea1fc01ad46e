"""Arrays from JSON: shape, types and ranges checked before numpy sees a value.

Used for inline datasets (`POST /datasets` with a JSON body) and for inline inputs of
evaluate and predict. JSON gives nested lists of Python numbers; numpy would turn a ragged
list or a stray string into an object array, so everything is checked first and every
refusal says which array, where, what was expected and what was received.
"""

from __future__ import annotations

import re

import numpy as np

from service.errors import InvalidArray, LimitExceeded

ARRAY_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
ARRAY_NAME_RULE = ("1-64 letters, digits or '_', not starting with a digit "
                   "(it becomes the file name <name>.npy)")
# What a dataset may hold on disk, and what a JSON array may be converted to.
STORED_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                 "uint64", "float16", "float32", "float64")
JSON_DTYPES = tuple(name for name in STORED_DTYPES if name != "bool")
DEFAULT_FLOAT = np.dtype("float32")
DEFAULT_INTEGER = np.dtype("int64")
INLINE_CAP = "KERAS_SERVICE_MAX_INLINE_ELEMENTS"
# Keras tensors have far fewer dimensions; numpy refuses more than 64.
MAX_RANK = 32


def check_array_name(name) -> str:
    """`name` if it is a safe array name (it becomes a file name), else an InvalidArray."""
    if not isinstance(name, str) or not ARRAY_NAME_PATTERN.fullmatch(name):
        raise InvalidArray(f"Array name {name!r} is not accepted: expected {ARRAY_NAME_RULE}.",
                           errors=[{"path": str(name), "message": f"expected {ARRAY_NAME_RULE}"}])
    return name


def json_dtype(value, *, name: str) -> np.dtype:
    """The numpy dtype a client chose for array `name` ("float64", ...), checked."""
    if value not in JSON_DTYPES:
        raise InvalidArray(f"dtypes.{name}: expected one of {', '.join(JSON_DTYPES)}; "
                           f"received {value!r}.",
                           errors=[{"path": f"dtypes.{name}",
                                    "message": f"expected one of {', '.join(JSON_DTYPES)}"}])
    return np.dtype(value)


def array_from_json(value, *, name: str, max_elements: int, dtype=None) -> np.ndarray:
    """Convert a parsed JSON value (nested lists of numbers) to a C-contiguous numpy array.

    Args:
        value: nested lists, every row of one level the same length, numbers at the leaves.
        name: the array's name, used in error messages.
        max_elements: the most numbers accepted (`LimitExceeded`, 422, beyond).
        dtype: a name from `JSON_DTYPES` or a numpy dtype. By default integers-only arrays
            become int64 and arrays with any fractional number float32.

    Returns:
        The array. Raises `InvalidArray` (422) for a scalar, an empty or ragged list, a
        string, boolean, null or object among the numbers, a non-finite number, or a number
        outside the dtype's range.

    Example:

    >>> array_from_json([[1, 2], [3, 4.5]], name="x", max_elements=100).dtype
    dtype('float32')
    """
    target = None if dtype is None else json_dtype(_dtype_name(dtype), name=name)
    shape, numbers = _shape_and_leaves(value, name, max_elements)
    kinds = set(map(type, numbers))
    if not kinds <= {int, float}:
        raise _not_a_number(numbers, shape, name)
    if target is None:
        target = DEFAULT_FLOAT if float in kinds else DEFAULT_INTEGER
    if target.kind == "f":
        array = _floats(numbers, shape, name, target)
    else:
        array = _integers(numbers, shape, name, target, has_floats=float in kinds)
    return array.reshape(shape)


def _shape_and_leaves(value, name: str, max_elements: int) -> tuple[tuple[int, ...], list]:
    """Walk the lists level by level (no recursion): the shape, and the leaves in C order."""
    if not isinstance(value, list):
        example = f" Send [{value}] for one value." if type(value) in (int, float) else ""
        raise InvalidArray(f"Array '{name}' must be a JSON array (a list of rows); received "
                           f"{_describe(value)}.{example}")
    shape: list[int] = []
    level = [value]
    while isinstance(level[0], list):
        if len(shape) == MAX_RANK:
            raise InvalidArray(f"Array '{name}' is nested deeper than {MAX_RANK} levels; "
                               f"expected at most {MAX_RANK} dimensions.")
        length = len(level[0])
        for index, item in enumerate(level):
            if not isinstance(item, list) or len(item) != length:
                found = (f"has {len(item)} element(s)" if isinstance(item, list)
                         else f"is {_describe(item)}")
                raise InvalidArray(
                    f"Array '{name}' is ragged: {_where(index, shape)} {found}, "
                    f"{_where(0, shape)} has {length}. Every row must have the same length.")
        if length == 0:
            raise InvalidArray(f"Array '{name}' is empty: {_where(0, shape)} has no elements; "
                               "expected at least one row of at least one number.")
        if len(level) * length > max_elements:
            raise LimitExceeded(
                f"Array '{name}' holds at least {len(level) * length:,} numbers; at most "
                f"{max_elements:,} are accepted inline ({INLINE_CAP}). Upload larger arrays "
                "as .npy or .npz files (multipart/form-data).")
        shape.append(length)
        level = [child for item in level for child in item]
    return tuple(shape), level


def _not_a_number(numbers: list, shape: tuple, name: str) -> InvalidArray:
    index, bad = next((i, v) for i, v in enumerate(numbers) if type(v) not in (int, float))
    where = _where(index, shape)
    if isinstance(bad, list):
        return InvalidArray(f"Array '{name}' is ragged: {where} is a list where "
                            f"{_where(0, shape)} is a number.")
    hint = {bool: " (send 0 and 1 for booleans)", type(None): " (missing values are not "
            "accepted; fill or drop them)"}.get(type(bad), "")
    return InvalidArray(f"Array '{name}' holds {_describe(bad)} at {where}; expected numbers "
                        f"only{hint}.")


def _floats(numbers: list, shape: tuple, name: str, target: np.dtype) -> np.ndarray:
    try:
        array = np.array(numbers, dtype=np.float64)
    except OverflowError:
        index = next(i for i, v in enumerate(numbers) if _overflows_float(v))
        raise InvalidArray(f"Array '{name}' holds an integer at {_where(index, shape)} too "
                           "large for any float dtype.") from None
    finite = np.isfinite(array)
    if not finite.all():
        index = int(np.argmin(finite))
        raise InvalidArray(f"Array '{name}' holds {array[index]} at {_where(index, shape)}; "
                           "expected finite numbers.")
    limit = float(np.finfo(target).max)
    outside = np.abs(array) > limit
    if outside.any():
        index = int(np.argmax(outside))
        raise InvalidArray(
            f"Array '{name}' holds {numbers[index]!r} at {_where(index, shape)}, outside the "
            f"{target.name} range (±{limit:.7g}). Choose a wider type with "
            f'"dtypes": {{"{name}": "float64"}}, or scale the data.')
    return array.astype(target)


def _integers(numbers: list, shape: tuple, name: str, target: np.dtype,
              has_floats: bool) -> np.ndarray:
    if has_floats:
        fractional = next((i for i, v in enumerate(numbers)
                           if isinstance(v, float) and not v.is_integer()), None)
        if fractional is not None:
            raise InvalidArray(f"Array '{name}' holds {numbers[fractional]!r} at "
                               f"{_where(fractional, shape)}; dtype {target.name} expects "
                               "integers.")
        numbers = [int(v) for v in numbers]
    info = np.iinfo(target)
    try:
        return np.array(numbers, dtype=target)
    except OverflowError:
        index = next(i for i, v in enumerate(numbers) if not info.min <= v <= info.max)
        hint = (f' Choose another type with "dtypes": {{"{name}": "float64"}}.'
                if target == DEFAULT_INTEGER else "")
        raise InvalidArray(f"Array '{name}' holds {numbers[index]} at "
                           f"{_where(index, shape)}, outside the {target.name} range "
                           f"[{info.min}, {info.max}].{hint}") from None


def _dtype_name(dtype) -> str:
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype)


def _overflows_float(value) -> bool:
    try:
        float(value)
    except OverflowError:
        return True
    return False


def _where(index: int, shape) -> str:
    """Where the `index`-th item of a level of lists with `shape` above it is, for humans."""
    if not shape:
        return "the array"
    position = np.unravel_index(index, tuple(shape))
    if len(position) == 1:
        return f"row {int(position[0])}"
    return "element " + "".join(f"[{int(i)}]" for i in position)


def _describe(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:20] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return type(value).__name__
