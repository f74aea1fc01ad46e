"""Which arrays feed which model inputs and outputs, and whether their shapes fit.

A model's inputs and outputs are the specs of its registry row, ``[{"name", "shape",
"dtype"}]`` with ``shape[0]`` None for the batch. The fit route and the predict and evaluate
routes resolve dataset array names and check shapes here, before any Keras code runs.
Pure: no Keras, no Flask; the callers choose which `ServiceError` a mismatch is.
"""

from __future__ import annotations

import numpy as np

from service.errors import MalformedRequest, ServiceError

# Input dtypes numpy parses and stores as they are; the others are fed as float32.
NUMPY_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "float16", "float32", "float64")


def numpy_dtype(dtype: str) -> str:
    """The numpy dtype an input of Keras dtype `dtype` is fed as."""
    return dtype if dtype in NUMPY_DTYPES or dtype == "bool" else "float32"


def format_shape(shape) -> str:
    """(None, 100), the way Keras prints shapes."""
    items = ["None" if dim is None else str(dim) for dim in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def fits(shape, expected) -> bool:
    """Whether an array of `shape` is a batch for a tensor of `expected` (None: any size)."""
    return len(shape) == len(expected) and shape[0] > 0 and all(
        want is None or want == got for want, got in zip(expected[1:], shape[1:], strict=True))


def shape_mismatch(spec: dict, shape, received: str, dtype: str | None = None) -> str:
    """A shape error the Keras way: what the input expects, what was received."""
    return (f"input '{spec['name']}' expects {format_shape(spec['shape'])} {spec['dtype']}, "
            f"{received} {format_shape(shape)}{' ' + dtype if dtype else ''}.")


def json_kind(value) -> str:
    """What a JSON value is, for messages: "an array", "a string", "null"..."""
    if value is None:
        return "null"
    kinds = {list: "an array", np.ndarray: "an array", dict: "an object", str: "a string",
             bool: "a boolean", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def check_names(given: dict, names: list[str], where: str, kind: str,
                error: type[ServiceError] = MalformedRequest) -> None:
    """Raise `error` unless the keys of `given` are exactly the model's input (output) names."""
    unknown = [key for key in given if key not in names]
    missing = [name for name in names if name not in given]
    if unknown or missing:
        problems = ([f"unknown {kind} {', '.join(repr(k) for k in unknown)}"] if unknown else []
                    ) + ([f"missing {kind} {', '.join(repr(m) for m in missing)}"]
                         if missing else [])
        raise error(f"{where}: {'; '.join(problems)}. The model's {kind}s are "
                    f"{', '.join(repr(n) for n in names)}.",
                    errors=[{"path": where, "message": "; ".join(problems)}])


def array_names(given, specs: list[dict], field_name: str, kind: str,
                error: type[ServiceError] = MalformedRequest) -> list[str]:
    """The dataset arrays feeding each model input (or output), in the model's order.

    `given` is a name (one input), a list in the model's order, or {input_name: array_name};
    by default `field_name` ("x"/"y") for one input/output, else the inputs'/outputs' own
    names. `kind` is "input" or "output".
    """
    names = [spec["name"] for spec in specs]
    if given is None:
        return [field_name] if len(names) == 1 else names
    if isinstance(given, str) and len(names) == 1:
        return [given]
    if isinstance(given, dict):
        check_names(given, names, field_name, kind, error)
        given = [given[name] for name in names]
    if (not isinstance(given, list) or len(given) != len(names)
            or not all(isinstance(item, str) for item in given)):
        raise error(
            f"'{field_name}' must name {len(names)} dataset array(s), one per model {kind} "
            f"({', '.join(names)}): a name, a list in that order, or {{{kind}_name: "
            f"array_name}}; received {json_kind(given)}.",
            errors=[{"path": field_name, "message": f"one array name per {kind}"}])
    return given


def check_dataset_arrays(dataset, names: dict[str, list[str]], inputs: list[dict],
                         error: type[ServiceError]) -> None:
    """Raise `error` unless `dataset` holds every named array and x's fit the model's inputs.

    Args:
        dataset: a registry row: its `id`, and `arrays` as {name: {"shape", "dtype"}}.
        names: {"x": [array per input], "y": [array per output]}, from `array_names`.
        inputs: the model's input specs, in the order of `names["x"]`.
    """
    for field_name, wanted in names.items():
        for array_name in wanted:
            if array_name not in dataset.arrays:
                raise error(
                    f"Dataset '{dataset.id}' has no array '{array_name}'; it has "
                    f"{', '.join(sorted(dataset.arrays))}.",
                    errors=[{"path": field_name, "message": f"no array '{array_name}'"}])
    for array_name, spec in zip(names["x"], inputs, strict=True):
        stored = dataset.arrays[array_name]
        if not fits(stored["shape"], spec["shape"]):
            message = shape_mismatch(spec, stored["shape"], f"dataset array '{array_name}' is",
                                     stored["dtype"])
            raise error(message, errors=[{"path": "x", "message": message}])
