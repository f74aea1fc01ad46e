"""TensorFlow Serving's REST protocol (/v1) on top of the one prediction path. No Flask here.

The shapes follow TF Serving's REST API document and its handler (`http_rest_api_handler.cc`,
`get_model_status_impl.cc`, `json_tensor.cc`): int64 numbers such as versions are strings,
as proto3's JSON mapping writes them; versions are listed newest first; errors carry TF
Serving's own messages, because clients written for it match on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.errors import MalformedRequest, NotFound, WrongState
from service.inference import InferenceService
from service.inference.inputs import columns_by_name, columns_from_rows
from service.inference.non_finite import with_non_finite_tokens
from service.registry.labels import LabelRegistry
from service.registry.tables import Model, Version
from service.registry.versions import MAX_VERSION
from service.tensors import json_kind

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
# Keras' dtype names to TensorFlow's DataType enum, as TF Serving writes them.
DATA_TYPES = {
    "float16": "DT_HALF", "bfloat16": "DT_BFLOAT16", "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE", "int8": "DT_INT8", "int16": "DT_INT16", "int32": "DT_INT32",
    "int64": "DT_INT64", "uint8": "DT_UINT8", "uint16": "DT_UINT16", "uint32": "DT_UINT32",
    "uint64": "DT_UINT64", "bool": "DT_BOOL", "string": "DT_STRING",
}
MAX_INT64 = 2**63 - 1


@dataclass(frozen=True)
class Address:
    """What a /v1 URL names: a model, and at most one of a version number or a label."""

    name: str
    version: int | None = None
    label: str | None = None


class TFServing:
    def __init__(self, inference: InferenceService, labels: LabelRegistry):
        self.inference = inference
        self.labels = labels

    def status(self, tenant_id: str, address: Address) -> dict:
        """GetModelStatusResponse: every version for a bare name, else the one addressed."""
        model, version = self._resolve(tenant_id, address, _status_missing)
        if address.version is None and address.label is None:
            _, versions = self.inference.list_versions(tenant_id, model.id)
            numbers = sorted((item.number for item in versions), reverse=True)
        else:
            numbers = [version.number]
        return {"model_version_status": [version_status(number) for number in numbers]}

    def metadata(self, tenant_id: str, address: Address) -> dict:
        """GetModelMetadataResponse with the one signature a Keras model exports."""
        model, version = self._resolve(tenant_id, address, _servable_missing)
        return {
            "model_spec": {"name": model.name, "signature_name": "",
                           "version": str(version.number)},
            "metadata": {"signature_def": {"signature_def": {
                DEFAULT_SIGNATURE: signature_def(model)}}},
        }

    def predict(self, tenant_id: str, address: Address, body: dict, *,
                plain_numbers: bool = False) -> dict:
        """`instances` -> `predictions` (rows) or `inputs` -> `outputs` (columns).

        Args:
            body: the request's JSON object.
            plain_numbers: the JSON holds no true, false or null (see `infer`).

        Returns:
            The answer, its tensors as numpy arrays: write it with orjson's
            OPT_SERIALIZE_NUMPY.
        """
        model, version = self._resolve(tenant_id, address, _servable_missing)
        check_signature(body.get("signature_name", ""))
        rows, columns, field_name = request_columns(body, model.inputs)
        outputs = self.inference.infer(model, version, columns, field_name,
                                       plain_numbers=plain_numbers)
        return response_body(rows, outputs, model.outputs)

    def classify_or_regress(self, tenant_id: str, address: Address, method: str):
        """Refuse as TF Serving does: a Keras model exports a predict signature only."""
        self._resolve(tenant_id, address, _servable_missing)
        raise MalformedRequest(
            f"Expected {'classification' if method == 'classify' else 'regression'} "
            f"signature method_name to be tensorflow/serving/{method}. Was: {PREDICT_METHOD}. "
            "Use :predict.")

    def _resolve(self, tenant_id: str, address: Address, missing) -> tuple[Model, Version]:
        number = address.version
        if address.label is not None:
            number = self.labels.version_by_model_name(tenant_id, address.name, address.label)
            if number is None:
                self._model_exists(tenant_id, address, missing)  # else 404, as for no label
                raise MalformedRequest(f"Unrecognized servable version label: {address.label}")
        elif number is not None and number > MAX_INT64:
            raise MalformedRequest(f"Failed to convert version: {number} to numeric.")
        if number is not None and not 1 <= number <= MAX_VERSION:
            # Version 0 would read as "the latest" below; no version outside this range exists.
            raise NotFound(missing(address.name, number))
        try:
            return self.inference.resolve_named(tenant_id, address.name, number)
        except NotFound:
            raise NotFound(missing(address.name, number)) from None
        except WrongState:
            raise NotFound(f"{missing(address.name, number)}. Model '{address.name}' has no "
                           "trained version yet.") from None

    def _model_exists(self, tenant_id: str, address: Address, missing) -> None:
        try:
            self.inference.metadata.model_named(tenant_id, address.name)
        except NotFound:
            raise NotFound(missing(address.name, None)) from None


def _status_missing(name: str, number: int | None) -> str:
    if number is None:
        return f"Could not find any versions of model {name}"
    return f"Could not find version {number} of model {name}"


def _servable_missing(name: str, number: int | None) -> str:
    request = f"Latest({name})" if number is None else f"Specific({name}, {number})"
    return f"Servable not found for request: {request}"


def version_status(number: int) -> dict:
    # Every recorded version can be loaded on demand by any worker: AVAILABLE.
    return {"version": str(number), "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}


def signature_def(model: Model) -> dict:
    """The `serving_default` SignatureDef Keras' export would write for this model."""
    return {
        "inputs": {spec["name"]: tensor_info(spec, f"serving_default_{spec['name']}:0")
                   for spec in model.inputs},
        "outputs": {spec["name"]: tensor_info(spec, f"StatefulPartitionedCall:{index}")
                    for index, spec in enumerate(model.outputs)},
        "method_name": PREDICT_METHOD,
        "defaults": {},
    }


def tensor_info(spec: dict, tensor_name: str) -> dict:
    shape = spec.get("shape")
    dims = [{"size": str(-1 if size is None else size), "name": ""} for size in shape or ()]
    return {"dtype": DATA_TYPES.get(spec.get("dtype") or "", "DT_INVALID"),
            "tensor_shape": {"dim": dims, "unknown_rank": shape is None},
            "name": tensor_name}


def check_signature(name) -> None:
    if not isinstance(name, str):
        raise MalformedRequest("'signature_name' key must be a string value; received "
                               f"{json_kind(name)}.")
    if name not in ("", DEFAULT_SIGNATURE):
        raise MalformedRequest(f'Serving signature name: "{name}" not found in signature def '
                               f'(this model has "{DEFAULT_SIGNATURE}" only)')


def request_columns(body: dict, specs: list[dict]) -> tuple[bool, dict, str]:
    """(row format?, {input name: JSON array}, the request's field) of a predict body."""
    if "instances" in body and "inputs" in body:
        raise MalformedRequest("Not formatted correctly: expecting only one of 'inputs' or "
                               "'instances' keys to exist; received both.")
    if "instances" in body:
        instances = body["instances"]
        if isinstance(instances, list):
            for index, row in enumerate(instances):
                _refuse_base64(row, f"instances[{index}]", specs)
        return True, columns_from_rows(instances, specs), "instances"
    if "inputs" in body:
        _refuse_base64(body["inputs"], "inputs", specs)
        return False, columns_by_name(body["inputs"], specs, "inputs"), "inputs"
    raise MalformedRequest("Missing 'inputs' or 'instances' key")


def _refuse_base64(value, where: str, specs: list[dict]) -> None:
    """TF Serving decodes {"b64": ...} for string tensors only; these models take numbers."""
    named = value.items() if isinstance(value, dict) and not _is_base64(value) else ()
    for key, item in [(None, value), *named]:
        if _is_base64(item):
            place = where if key is None else f"{where}.{key}"
            dtypes = ", ".join(f"'{spec['name']}' is {spec['dtype']}" for spec in specs)
            raise MalformedRequest(
                f"{place} is a {{\"b64\": ...}} object, which TF Serving decodes only for "
                f"string (DT_STRING) inputs; this model's inputs are numeric ({dtypes}). "
                "Send the numbers as JSON arrays.")


def _is_base64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def response_body(rows: bool, outputs: list[np.ndarray], specs: list[dict]) -> dict:
    """The answer in the request's format; several outputs are keyed by output name."""
    key = "predictions" if rows else "outputs"
    # orjson writes C-contiguous arrays only (and their rows are C-contiguous too).
    outputs = [with_non_finite_tokens(np.ascontiguousarray(array)) for array in outputs]
    if len(outputs) == 1:
        return {key: outputs[0]}
    names = [spec["name"] for spec in specs]
    if not rows:
        return {key: dict(zip(names, outputs, strict=True))}
    # Row format: one object per instance, {output name: that instance's value}.
    return {key: [dict(zip(names, row, strict=True)) for row in zip(*outputs, strict=True)]}
