"""The native predict route's bodies, read and written without marshmallow.

Predict is the route that must be fast: its body is read by simdjson straight into numpy
where it is a plain table of numbers (see `tables`), else by orjson, its three fields
checked by hand (what `schemas.inference.PredictSchema` documents), and the answer is
written by orjson straight from numpy arrays. Bodies may also be `.npy` or `.npz`
(see `binary`); `Accept` chooses the answer's form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

from service.errors import (
    InvalidRequest,
    MalformedRequest,
    NotAcceptable,
    UnsupportedMediaType,
)
from service.inference.binary import NPY, NPZ, npy_bytes, npy_columns, npz_bytes, npz_columns
from service.inference.inputs import columns_by_name, columns_from_rows, has_json_literals
from service.inference.tables import read_tables
from service.registry.tables import Model
from service.tensors import json_kind, numpy_dtype

JSON = "application/json"
ANSWER_TYPES = (JSON, NPY, NPZ)
FORMS = ("instances", "inputs")
FIELDS = (*FORMS, "version")


@dataclass(frozen=True)
class PredictRequest:
    form: str  # "instances", "inputs" (JSON), or NPY, NPZ (binary)
    # The JSON value of that field (float64 arrays where `read_tables` read it), or the
    # body's bytes.
    value: object
    version: int | None
    plain_numbers: bool = False
    body: bytes = b""  # the JSON body, read again by orjson where tables do not suit

    def columns(self, model: Model, max_elements: int) -> tuple[dict, str]:
        """({input name: JSON array or numpy array}, the field name for messages)."""
        value = self.value
        if self.form in FORMS and not _tables_suit(value, model.inputs, max_elements):
            value = _json_object(self.body)[self.form]
        if self.form == "instances":
            return columns_from_rows(value, model.inputs), "instances"
        if self.form == "inputs":
            return columns_by_name(value, model.inputs, "inputs"), "inputs"
        if self.form == NPY:
            return npy_columns(self.value, model.inputs), "body"
        return npz_columns(self.value, model.inputs, max_elements), "body"


def read_request(body: bytes, mimetype: str, query_version: str | None) -> PredictRequest:
    """The predict request in `body`, of Content-Type `mimetype`, checked for its form."""
    version = _query_version(query_version)
    if mimetype in (NPY, NPZ):
        if not body:
            raise MalformedRequest(f"The request has no body; expected a {mimetype} file.")
        return PredictRequest(mimetype, body, version)
    if mimetype != JSON and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(
            f"Expected Content-Type: {JSON}, {NPY} (one input) or {NPZ} (one member per "
            f"input); received '{mimetype or 'none'}'. With curl: --json '{{...}}', or "
            f"--data-binary @x.npy -H 'Content-Type: {NPY}'.")
    fields = read_tables(body, FORMS, ("version",))
    plain_numbers = fields is not None  # no true, false or null in a body of tables
    if fields is None:
        fields = _json_object(body)
        plain_numbers = not has_json_literals(body)
    unknown = [key for key in fields if key not in FIELDS]
    if unknown:
        raise InvalidRequest(f"{unknown[0]}: unknown field; predict takes 'instances' or "
                             "'inputs', and 'version'.",
                             errors=[{"path": key, "message": "Unknown field."}
                                     for key in unknown])
    given = [key for key in FORMS if key in fields]
    if len(given) != 1:
        message = ("expected exactly one of 'instances' (rows) or 'inputs' (columns); "
                   f"received {' and '.join(given) or 'neither'}")
        raise InvalidRequest(f"instances: {message}.",
                             errors=[{"path": "instances", "message": message}])
    if fields[given[0]] is None:
        raise InvalidRequest(f"{given[0]}: may not be null; expected a JSON array.",
                             errors=[{"path": given[0], "message": "Field may not be null."}])
    if "version" in fields:
        body_version = _version(fields["version"], "version")
        if version is not None and version != body_version:
            raise InvalidRequest(f"version: the body asks for {body_version}, the query for "
                                 f"{version}; give one.")
        version = body_version
    return PredictRequest(given[0], fields[given[0]], version, plain_numbers, body)


def answer(outputs: list[np.ndarray], model: Model, version: int,
           accept: str | None) -> tuple[bytes, str]:
    """(body, Content-Type) of the prediction, in the form `accept` chose (default JSON)."""
    names = [output["name"] for output in model.outputs]
    if accept == NPY:
        if len(outputs) > 1:
            raise NotAcceptable(f"The model has {len(outputs)} outputs ({', '.join(names)}); "
                                f"a .npy answer holds one. Ask for Accept: {NPZ}.")
        return npy_bytes(outputs[0]), NPY
    if accept == NPZ:
        return npz_bytes(dict(zip(names, outputs, strict=True))), NPZ
    predictions = (_contiguous(outputs[0]) if len(outputs) == 1 else
                   {name: _contiguous(o) for name, o in zip(names, outputs, strict=True)})
    return orjson.dumps({"predictions": predictions, "model_version": version},
                        option=orjson.OPT_SERIALIZE_NUMPY), JSON


def _tables_suit(value, specs: list[dict], max_elements: int) -> bool:
    """Whether `value` holds no tables, or tables that the careful path would take as they
    are: inputs of a float dtype, within its range, and at most `max_elements` numbers in
    all. Else orjson reads the body again, and the careful path says what is wrong."""
    values = value.values() if isinstance(value, dict) else [value]
    tables = [table for table in values if isinstance(table, np.ndarray)]
    if not tables:
        return True
    dtypes = [np.dtype(numpy_dtype(spec["dtype"])) for spec in specs]
    if any(dtype.kind != "f" for dtype in dtypes):
        return False
    largest = min(float(np.finfo(dtype).max) for dtype in dtypes)
    return (sum(table.size for table in tables) <= max_elements
            and all(table.max() <= largest and -table.min() <= largest for table in tables))


def _contiguous(array: np.ndarray) -> np.ndarray:
    # orjson writes C-contiguous arrays only; float32 as the shortest text that reads back
    # to the same float32 (0.14817812, not 0.14817811548709869).
    return np.ascontiguousarray(array)


def _json_object(body: bytes) -> dict:
    if not body:
        raise MalformedRequest(f"The request has no body; expected a JSON object, or a {NPY} "
                               f"or {NPZ} file.")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedRequest(f"The body is not valid JSON: {error}.") from None
    if not isinstance(value, dict):
        raise MalformedRequest(f"Expected a JSON object; received {json_kind(value)}.")
    # Not walked for KERAS_SERVICE_MAX_JSON_DEPTH (a third of a one-row request's time):
    # nothing here recurses, orjson stops at 1024 levels, and the arrays' rank is checked
    # against the model's inputs before anything else reads them.
    return value


def _query_version(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()):  # isdigit() alone takes '¹', which int() refuses
        raise InvalidRequest(f"query.version: expected a version number (1, 2, ...); "
                             f"received {raw!r}.",
                             errors=[{"path": "query.version", "message": "Not a valid integer."}])
    return _version(int(raw), "query.version")


def _version(value, path: str) -> int:
    if type(value) is not int or value < 1:
        raise InvalidRequest(f"{path}: expected a version number (an integer from 1); "
                             f"received {orjson.dumps(value).decode()}.",
                             errors=[{"path": path, "message": "expected an integer from 1"}])
    return value
