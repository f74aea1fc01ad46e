"""Predict and evaluate requests to numpy arrays of the model's shapes, before Keras sees them.

Inputs are checked against the model's registry row (names, shapes, dtypes), so a bad
tensor is a 4xx that says what was expected, never a TensorFlow trace.
"""

from __future__ import annotations

import numpy as np

from service.datasets import array_from_json, open_arrays
from service.datasets.arrays import INLINE_CAP
from service.errors import InvalidArray, InvalidSpec, LimitExceeded, MalformedRequest
from service.registry.tables import Model
from service.storage import ArtifactStore
from service.tensors import (
    NUMPY_DTYPES,
    array_names,
    check_dataset_arrays,
    check_names,
    fits,
    json_kind,
    shape_mismatch,
)


def columns_from_rows(instances, specs: list[dict]) -> dict:
    """`instances` (one item per row) as {input name: JSON array}, the columns of the batch."""
    names = [spec["name"] for spec in specs]
    table = isinstance(instances, np.ndarray)  # rows of numbers only (tables.read_tables)
    if not (table or isinstance(instances, list)):
        raise MalformedRequest(f"'instances' must be a JSON array with one item per row; "
                               f"received {json_kind(instances)}.")
    if not len(instances):
        raise MalformedRequest("'instances' is empty; expected at least one row.")
    if table or not any(isinstance(row, dict) for row in instances):
        if len(names) > 1:
            raise MalformedRequest(
                f"The model has {len(names)} inputs ({', '.join(names)}); give each instance "
                "as an object {input_name: value}, or give 'inputs' as {input_name: array}.")
        return {names[0]: instances}
    for index, row in enumerate(instances):
        if not isinstance(row, dict):
            raise MalformedRequest(f"instances[{index}] is {json_kind(row)}; the other rows "
                                   "are objects {input_name: value}. Use one form for every "
                                   "row.")
        check_names(row, names, f"instances[{index}]", "input")
    return {name: [row[name] for row in instances] for name in names}


def columns_by_name(value, specs: list[dict], field_name: str, kind: str = "input") -> dict:
    """A columnar value (one array, or {name: array}) as {input or output name: JSON array}."""
    names = [spec["name"] for spec in specs]
    if isinstance(value, dict):
        check_names(value, names, field_name, kind)
        return value
    if len(names) > 1:
        raise MalformedRequest(
            f"The model has {len(names)} {kind}s ({', '.join(names)}); give '{field_name}' as "
            f"an object {{{kind}_name: array}}; received {json_kind(value)}.")
    return {names[0]: value}


def checked_inputs(columns: dict, specs: list[dict], max_elements: int,
                   field_name: str, plain_numbers: bool = False) -> list[np.ndarray]:
    """One array per model input, in the model's order, of the shape and dtype it expects.

    `plain_numbers`: the JSON these columns came from holds no true, false or null (see
    `has_json_literals`), so numpy may convert its lists directly.
    """
    arrays = []
    for spec in specs:
        label = _label(field_name, spec, specs)
        array = _parse(columns[spec["name"]], spec, label, max_elements, plain_numbers)
        if not fits(array.shape, spec["shape"]):
            raise _shape_error(spec, array.shape)
        arrays.append(array)
    _check_total(arrays, max_elements)
    rows = {spec["name"]: array.shape[0] for spec, array in zip(specs, arrays, strict=True)}
    if len(set(rows.values())) > 1:
        raise InvalidArray("Every input must have the same number of rows; received "
                           + ", ".join(f"{name}: {count}" for name, count in rows.items()) + ".")
    return arrays


def inline_arrays(model: Model, request: dict, max_elements: int) -> tuple[list, list]:
    """Evaluate's inline `x` and `y` as (inputs, targets), in the model's order."""
    x = checked_inputs(columns_by_name(request["x"], model.inputs, "x"), model.inputs,
                       max_elements, "x")
    y_columns = columns_by_name(request["y"], model.outputs, "y", kind="output")
    y = [array_from_json(y_columns[output["name"]], name=_label("y", output, model.outputs),
                         max_elements=max_elements) for output in model.outputs]
    _check_total(x + y, max_elements)
    _check_rows(x, y, model)
    return x, y


def dataset_arrays(store: ArtifactStore, dataset, model: Model,
                   request: dict) -> tuple[list, list]:
    """Evaluate's stored `dataset` as (inputs, targets), memory-mapped, in the model's order."""
    names = {"x": array_names(request.get("x"), model.inputs, "x", "input"),
             "y": array_names(request.get("y"), model.outputs, "y", "output")}
    check_dataset_arrays(dataset, names, model.inputs, InvalidArray)
    arrays = open_arrays(store, dataset, list(dict.fromkeys(names["x"] + names["y"])))
    return [arrays[name] for name in names["x"]], [arrays[name] for name in names["y"]]


def has_json_literals(body: bytes) -> bool:
    """Whether a JSON text may hold true, false or null (a string may match too).

    Found with memchr-speed searches for the first letter, so a megabyte of numbers costs
    microseconds: numpy would read a boolean among numbers as 1.0, so only a body without
    them may take numpy's direct conversion.
    """
    for first, literal in ((b"t", b"true"), (b"f", b"false"), (b"n", b"null")):
        at = body.find(first)
        while at != -1:
            if body.startswith(literal, at):
                return True
            at = body.find(first, at + 1)
    return False


def _parse(value, spec: dict, label: str, max_elements: int,
           plain_numbers: bool = False) -> np.ndarray:
    dtype = spec["dtype"]
    if dtype == "string":
        raise InvalidSpec(f"{label} has dtype string; predict and evaluate take numeric "
                          "inputs only.")
    if isinstance(value, np.ndarray):
        array = _binary_array(value, label, max_elements,
                              dtype if dtype in NUMPY_DTYPES else "float32")
    elif plain_numbers and (fast := _plain_floats(value, dtype, max_elements)) is not None:
        return fast
    else:
        array = array_from_json(value, name=label, max_elements=max_elements,
                                dtype=dtype if dtype in NUMPY_DTYPES else None)
    if dtype == "bool":
        if not np.isin(array, (0, 1)).all():
            raise InvalidArray(f"Array '{label}' is bool: expected 0 and 1 only.")
        return array.astype(bool)
    return array


def _plain_floats(value, dtype: str, max_elements: int) -> np.ndarray | None:
    """A list of numbers as a float array in one numpy call, or None for the careful path.

    The careful path (array_from_json) walks every value in Python to say where a ragged
    row, a string or an overflow is; here numpy converts in C, and anything it does not
    turn into a rectangular array of numbers within the dtype's range goes back there.
    """
    target = np.dtype(dtype if dtype in NUMPY_DTYPES else "float32")
    if target.kind != "f" or not isinstance(value, list):
        return None
    try:
        array = np.array(value)
    except (ValueError, TypeError, OverflowError):
        return None  # ragged, or a number numpy cannot hold
    if (array.dtype.kind not in "if" or array.ndim == 0 or array.size == 0
            or array.size > max_elements):
        return None
    if array.dtype.kind == "f" and (not np.isfinite(array).all()
                                    or np.abs(array).max() > np.finfo(target).max):
        return None
    return array.astype(target)


def _shape_error(spec: dict, shape) -> InvalidArray:
    message = shape_mismatch(spec, shape, "received")
    if len(shape) == len(spec["shape"]) - 1 and fits((1, *shape), spec["shape"]):
        message += " To send one instance, wrap it in a list: a batch of one."
    return InvalidArray(message, errors=[{"path": spec["name"], "message": message}])


def _binary_array(value: np.ndarray, label: str, max_elements: int, dtype: str) -> np.ndarray:
    """An array that arrived as binary (.npy, raw tensor bytes): the checks JSON gets."""
    if value.dtype.kind not in "biuf":
        raise InvalidArray(f"Array '{label}' has dtype {value.dtype}; expected a numeric "
                           f"array ({dtype}).")
    if value.ndim == 0 or value.size == 0:
        raise InvalidArray(f"Array '{label}' has shape {value.shape}; expected at least one "
                           "row.")
    if value.size > max_elements:
        _check_total([value], max_elements)
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise InvalidArray(f"Array '{label}' holds NaN or infinity; expected finite numbers.")
    return value.astype(dtype, copy=False)


def _check_total(arrays: list, max_elements: int) -> None:
    total = sum(array.size for array in arrays)
    if total > max_elements:
        raise LimitExceeded(f"The request holds {total:,} numbers; at most {max_elements:,} "
                            f"are accepted inline ({INLINE_CAP}).")


def _check_rows(x: list[np.ndarray], y: list[np.ndarray], model: Model) -> None:
    for output, array in zip(model.outputs, y, strict=True):
        if array.shape[0] != x[0].shape[0]:
            raise InvalidArray(f"{_label('y', output, model.outputs)} has {array.shape[0]} "
                               f"rows; x has {x[0].shape[0]}. Give one target per instance.")


def _label(field_name: str, spec: dict, specs: list[dict]) -> str:
    return field_name if len(specs) == 1 else f"{field_name}.{spec['name']}"
