"""The Open Inference Protocol (KServe v2) without Flask: metadata, readiness, infer.

An infer body is a JSON object, or, with Triton's binary tensor data extension, a JSON
header of `Inference-Header-Content-Length` bytes followed by raw little-endian tensors in
the order of the header's inputs (each with `parameters.binary_data_size`). Answers are
built the same way. Decoded tensors go to `InferenceService.infer`, the one prediction path,
which checks names' shapes and values against the model; here only the wire format is
checked: datatypes, data length against the shape, byte counts against the body.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

import numpy as np
import orjson
from marshmallow import ValidationError

from schemas.oip import DATATYPES, OipInferRequestSchema
from service.datasets.arrays import MAX_RANK
from service.errors import MalformedRequest
from service.inference import InferenceService
from service.inference.non_finite import with_non_finite_tokens
from service.openapi import API_TITLE, API_VERSION
from service.tensors import check_names, json_kind, numpy_dtype

HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "keras"
NUMPY_OF = {name: np.dtype("bool" if name == "BOOL" else name.lower().replace("fp", "float"))
            for name in DATATYPES}
DATATYPE_OF = {dtype: name for name, dtype in NUMPY_OF.items()}
request_schema = OipInferRequestSchema()


@dataclass(frozen=True)
class InferRequest:
    id: str
    inputs: dict[str, np.ndarray]
    # (name, answer as binary) per requested output; None: every output, binary by default.
    outputs: list[tuple[str, bool]] | None
    binary_default: bool


@dataclass(frozen=True)
class Answer:
    body: bytes
    header_length: int | None  # set when binary tensors follow the JSON

    @property
    def content_type(self) -> str:
        return "application/json" if self.header_length is None else "application/octet-stream"


# -- the protocol, over InferenceService -----------------------------------------------------

def server_metadata() -> dict:
    return {"name": API_TITLE, "version": API_VERSION, "extensions": EXTENSIONS}


def model_metadata(inference: InferenceService, tenant_id: str, name: str,
                   version: str | None) -> dict:
    model = inference.models.get_by_name(tenant_id, name)
    if version is not None:
        inference.get_version(tenant_id, model.id, parse_version(version))
    _, versions = inference.list_versions(tenant_id, model.id)
    return {"name": model.name, "versions": [str(v.number) for v in versions],
            "platform": PLATFORM,
            "inputs": [_metadata_tensor(spec) for spec in model.inputs],
            "outputs": [_metadata_tensor(spec) for spec in model.outputs]}


def model_ready(inference: InferenceService, tenant_id: str, name: str,
                version: str | None) -> tuple[bool, str | None]:
    """(ready, why not): ready once the model has a trained version (404: unknown model)."""
    model = inference.models.get_by_name(tenant_id, name)
    if version is not None:
        inference.get_version(tenant_id, model.id, parse_version(version))
    elif model.version is None:
        return False, f"Model '{name}' has no trained version yet (it is {model.state})."
    return True, None


def infer(inference: InferenceService, tenant_id: str, name: str, version: str | None,
          body: bytes, header_length: str | None) -> Answer:
    model, row = inference.resolve_named(tenant_id, name,
                                         None if version is None else parse_version(version))
    request = parse_request(body, header_length)
    check_names(request.inputs, [spec["name"] for spec in model.inputs], "inputs", "input")
    for spec in model.inputs:
        _check_datatype(spec, request.inputs[spec["name"]], name)
    arrays = inference.infer(model, row, request.inputs, "inputs")
    named = {spec["name"]: array for spec, array in zip(model.outputs, arrays, strict=True)}
    wanted = request.outputs or [(output, request.binary_default) for output in named]
    unknown = [output for output, _ in wanted if output not in named]
    if unknown:
        raise MalformedRequest(f"outputs: unknown output {', '.join(map(repr, unknown))}; the "
                               f"model's outputs are {', '.join(map(repr, named))}.")
    return encode_answer(model.name, row.number, request.id,
                         [(output, named[output], binary) for output, binary in wanted])


def parse_version(version: str) -> int:
    # isdigit() alone takes '¹', which int() refuses.
    if not (version.isascii() and version.isdigit()) or int(version) < 1:
        raise MalformedRequest(f"A model version is a positive integer; received '{version}'.")
    return int(version)


# -- the codec ---------------------------------------------------------------------------------

def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """An infer body (JSON, or JSON then binary tensors) as named numpy arrays."""
    header, binary = split_body(body, header_length)
    try:
        document = orjson.loads(header)
    except orjson.JSONDecodeError as error:
        hint = "" if header_length else (f" Binary tensors need the {HEADER_LENGTH} header.")
        raise MalformedRequest(f"The inference request is not valid JSON: {error}.{hint}") \
            from None
    if not isinstance(document, dict):
        raise MalformedRequest(f"Expected a JSON object; received {json_kind(document)}.")
    try:
        fields = request_schema.load(document)
    except ValidationError as error:
        raise MalformedRequest("; ".join(_messages(error.messages))) from None
    inputs, offset = {}, 0
    for index, tensor in enumerate(fields["inputs"]):
        if tensor["name"] in inputs:
            raise MalformedRequest(f"inputs[{index}]: input '{tensor['name']}' is given twice.")
        array, used = decode_tensor(tensor, binary[offset:], f"inputs[{index}]")
        inputs[tensor["name"]], offset = array, offset + used
    if offset != len(binary):
        raise MalformedRequest(f"The body holds {len(binary)} bytes after the JSON header; the "
                               f"inputs' binary_data_size add up to {offset}.")
    parameters = fields.get("parameters", {})
    return InferRequest(id=fields.get("id") or str(uuid.uuid4()), inputs=inputs,
                        outputs=_requested_outputs(fields.get("outputs"), parameters),
                        binary_default=_flag(parameters, "binary_data_output", "parameters"))


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """(JSON header, the binary tensors after it)."""
    if header_length is None:
        return body, memoryview(b"")
    digits = header_length.strip()
    if not (digits.isascii() and digits.isdigit()) or not 0 < int(digits) <= len(body):
        raise MalformedRequest(f"{HEADER_LENGTH} must be the byte length of the JSON header, "
                               f"between 1 and the body's {len(body)} bytes; received "
                               f"'{header_length}'.")
    length = int(header_length)
    return body[:length], memoryview(body)[length:]


def decode_tensor(tensor: dict, binary: memoryview, where: str) -> tuple[np.ndarray, int]:
    """(the array, bytes of `binary` it used) for one request input."""
    label = f"{where} ('{tensor['name']}')"
    dtype, shape = _dtype(tensor["datatype"], label), tuple(tensor["shape"])
    if len(shape) > MAX_RANK:
        raise MalformedRequest(f"{label}: shape has {len(shape)} dimensions; at most "
                               f"{MAX_RANK}.")
    size = math.prod(shape)
    parameters = tensor.get("parameters", {})
    if "shared_memory_region" in parameters:
        raise MalformedRequest(f"{label}: the shared-memory extension is not supported; send "
                               "the data as JSON or as binary tensor data.")
    if "binary_data_size" in parameters:
        if "data" in tensor:
            raise MalformedRequest(f"{label}: give either 'data' or "
                                   "parameters.binary_data_size, not both.")
        return _from_bytes(parameters["binary_data_size"], binary, dtype, shape, size, label)
    if "data" not in tensor:
        raise MalformedRequest(f"{label}: no 'data' and no parameters.binary_data_size.")
    return _from_json(tensor["data"], dtype, shape, size, label), 0


def encode_answer(model_name: str, version: int, request_id: str,
                  outputs: list[tuple[str, np.ndarray, bool]]) -> Answer:
    """The infer answer: JSON, or JSON then the binary outputs in the same order."""
    described, chunks = [], []
    for name, array, binary in outputs:
        if array.dtype not in DATATYPE_OF:  # bfloat16 and the like: not in the protocol
            array = array.astype("float32")
        entry = {"name": name, "shape": list(array.shape), "datatype": DATATYPE_OF[array.dtype]}
        if binary:
            chunks.append(np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes())
            entry["parameters"] = {"binary_data_size": len(chunks[-1])}
        else:
            entry["data"] = with_non_finite_tokens(np.ascontiguousarray(array).ravel())
        described.append(entry)
    header = orjson.dumps({"model_name": model_name, "model_version": str(version),
                           "id": request_id, "outputs": described},
                          option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return Answer(header, None)
    return Answer(b"".join([header, *chunks]), len(header))


def _from_bytes(declared, binary: memoryview, dtype: np.dtype, shape: tuple, size: int,
                label: str) -> tuple[np.ndarray, int]:
    expected = size * dtype.itemsize
    if type(declared) is not int or declared != expected:
        raise MalformedRequest(f"{label}: binary_data_size is {declared!r}; shape "
                               f"{list(shape)} of {DATATYPE_OF[dtype]} takes {expected} bytes.")
    if declared > len(binary):
        raise MalformedRequest(f"{label}: binary_data_size is {declared}, but only "
                               f"{len(binary)} bytes remain in the body.")
    raw = np.frombuffer(binary[:declared], dtype=_wire(dtype))
    return _checked_bools(raw, dtype, label).reshape(shape), declared


def _from_json(data, dtype: np.dtype, shape: tuple, size: int, label: str) -> np.ndarray:
    leaves = _leaves(data, shape, label)
    if len(leaves) != size:
        raise MalformedRequest(f"{label}: data holds {len(leaves)} element(s); shape "
                               f"{list(shape)} takes {size}.")
    kinds = set(map(type, leaves))
    allowed = {bool} if dtype.kind == "b" else {int} if dtype.kind in "iu" else {int, float}
    if not kinds <= allowed:
        odd = next(leaf for leaf in leaves if type(leaf) not in allowed)
        raise MalformedRequest(f"{label}: {DATATYPE_OF[dtype]} data holds "
                               f"{json_kind(odd)} ({odd!r}); expected "
                               f"{'true or false' if dtype.kind == 'b' else 'numbers'} only.")
    try:
        with np.errstate(over="raise"):
            return np.array(leaves, dtype=dtype).reshape(shape)
    except (OverflowError, FloatingPointError):
        raise MalformedRequest(f"{label}: a value is out of the range of "
                               f"{DATATYPE_OF[dtype]}.") from None


def _leaves(data, shape: tuple, label: str) -> list:
    """The elements in row-major order, from flat data or data nested exactly as `shape`."""
    if not isinstance(data, list):
        raise MalformedRequest(f"{label}: data must be a JSON array; received "
                               f"{json_kind(data)}.")
    if not any(isinstance(item, list) for item in data):
        return data
    level = [data]
    for depth, size in enumerate(shape):
        for item in level:
            if not isinstance(item, list) or len(item) != size:
                found = f"{len(item)} items" if isinstance(item, list) else json_kind(item)
                raise MalformedRequest(
                    f"{label}: nested data does not follow shape {list(shape)}: found {found} "
                    f"at depth {depth}, expected {size} items. Give it flat or nested as the "
                    "shape.")
        level = [child for item in level for child in item]
    return level


def _dtype(datatype: str, label: str) -> np.dtype:
    if datatype == "BYTES":
        raise MalformedRequest(f"{label}: datatype BYTES is not supported: this service "
                               "serves numeric models only; send one of "
                               f"{', '.join(DATATYPES)}.")
    if datatype not in NUMPY_OF:
        raise MalformedRequest(f"{label}: unknown datatype '{datatype}'; expected one of "
                               f"{', '.join(DATATYPES)}.")
    return NUMPY_OF[datatype]


def _wire(dtype: np.dtype) -> np.dtype:
    # BOOL travels as one byte per element; read it as bytes to refuse values other than 0/1.
    return np.dtype("u1") if dtype.kind == "b" else dtype.newbyteorder("<")


def _checked_bools(raw: np.ndarray, dtype: np.dtype, label: str) -> np.ndarray:
    if dtype.kind != "b":
        return raw
    if raw.size and raw.max() > 1:
        raise MalformedRequest(f"{label}: BOOL bytes must be 0 or 1; received {raw.max()}.")
    return raw.view(bool)


def _check_datatype(spec: dict, array: np.ndarray, model_name: str) -> None:
    """Refuse a datatype that does not convert to the input's without loss (FP64 to FP32)."""
    target = np.dtype(numpy_dtype(spec["dtype"]))
    if not np.can_cast(array.dtype, target, casting="safe"):
        raise MalformedRequest(
            f"input '{spec['name']}' of model '{model_name}' is "
            f"{DATATYPE_OF.get(target, str(target))}; received {DATATYPE_OF[array.dtype]}, "
            "which does not convert to it without loss. GET /v2/models/"
            f"{model_name} gives each input's datatype.")


def _requested_outputs(outputs, parameters: dict) -> list[tuple[str, bool]] | None:
    if not outputs:
        return None
    default = _flag(parameters, "binary_data_output", "parameters")
    names = [output["name"] for output in outputs]
    if len(set(names)) != len(names):
        raise MalformedRequest(f"outputs: an output is requested twice: {names}.")
    return [(output["name"], _flag(output.get("parameters", {}), "binary_data",
                                   f"outputs[{index}].parameters", default))
            for index, output in enumerate(outputs)]


def _flag(parameters: dict, key: str, where: str, default: bool = False) -> bool:
    value = parameters.get(key, default)
    if type(value) is not bool:
        raise MalformedRequest(f"{where}.{key} must be true or false; received {value!r}.")
    return value


def _metadata_tensor(spec: dict) -> dict:
    dtype = "string" if spec["dtype"] == "string" else numpy_dtype(spec["dtype"] or "float32")
    return {"name": spec["name"],
            "datatype": "BYTES" if dtype == "string" else DATATYPE_OF[np.dtype(dtype)],
            "shape": [-1 if dim is None else dim for dim in spec["shape"] or []]}


def _messages(messages, path: str = "") -> list[str]:
    """marshmallow's nested messages as ["inputs.0.shape: Missing data ..."]."""
    if isinstance(messages, dict):
        return [line for key, value in messages.items()
                for line in _messages(value, f"{path}.{key}" if path else str(key))]
    return [f"{path}: {message}" for message in messages]
