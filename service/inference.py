"""Serving trained versions in the web worker: check inputs, load once, predict, evaluate.

Inputs are checked against the model's registry row (names, shapes, dtypes) before Keras
sees them, so a bad tensor is a 4xx that says what was expected, never a TensorFlow trace.

Each worker process keeps the versions it served last in a small LRU cache keyed by
(model id, version, sha256): versions are immutable, so a cached model is never stale, and
the checksum is verified once, when the file is loaded. Predict calls the model's forward
pass as one traced graph (about 1 ms) instead of `model.predict()` (about 100 ms a call).

Keras and TensorFlow are imported inside functions only, so importing this module, and
building the app, does not import TensorFlow; a worker's first predict pays for it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from service.config import Config
from service.datasets import array_from_json, open_arrays
from service.errors import (
    InvalidArray,
    InvalidSpec,
    LimitExceeded,
    MalformedRequest,
    ServiceError,
    WrongState,
)
from service.registry import ModelRegistry, VersionRegistry
from service.registry.tables import Model, Version
from service.storage import ArtifactStore, sha256_of

log = logging.getLogger(__name__)

MODEL_CACHE_SIZE = 8
# Rows per call of the traced forward pass: bounds the memory one large predict takes.
PREDICT_CHUNK_ROWS = 1024
# Input dtypes JSON numbers can be parsed into directly; the others are converted after.
_PARSED_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "float16", "float32", "float64")
INLINE_CAP = "KERAS_SERVICE_MAX_INLINE_ELEMENTS"


class ArtifactCorrupt(ServiceError):
    """A version's file is missing, altered or unreadable: the server's fault, not the client's."""

    status, title, slug = 500, "Artifact corrupt", "artifact-corrupt"


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str
    download_name: str


# -- the service: what the predict, evaluate and version routes do -------------------------

class InferenceService:
    def __init__(self, models: ModelRegistry, versions: VersionRegistry, datasets,
                 store: ArtifactStore, config: Config, cache: ModelCache | None = None):
        self.models = models
        self.versions = versions
        self.datasets = datasets
        self.store = store
        self.config = config
        self.cache = cache or ModelCache(MODEL_CACHE_SIZE)

    def list_versions(self, tenant_id: str, model_id: str) -> tuple[Model, list[Version]]:
        model = self.models.get(tenant_id, model_id)
        return model, self.versions.list(tenant_id, model.id)

    def get_version(self, tenant_id: str, model_id: str, number: int) -> Version:
        model = self.models.get(tenant_id, model_id)
        return self.versions.get(tenant_id, model.id, number)

    def artifact(self, tenant_id: str, model_id: str, number: int) -> Artifact:
        model = self.models.get(tenant_id, model_id)
        version = self.versions.get(tenant_id, model.id, number)
        path = self.store.version_path(model.id, version.number)
        if not path.is_file():
            raise _missing(model, version)
        return Artifact(path, version.sha256, f"{model.name}-v{version.number}.keras")

    def predict(self, tenant_id: str, model_id: str, request: dict) -> dict:
        model, version = self._resolve(tenant_id, model_id, request.get("version"))
        if "instances" in request:
            field_name, columns = "instances", columns_from_rows(request["instances"],
                                                                 model.inputs)
        else:
            field_name, columns = "inputs", columns_by_name(request["inputs"], model.inputs,
                                                            "inputs")
        arrays = checked_inputs(columns, model.inputs, self.config.max_inline_elements,
                                field_name)
        outputs = predict_arrays(self._load(model, version, for_evaluate=False), arrays)
        if len(outputs) == 1:
            predictions = outputs[0].tolist()
        else:
            predictions = {output["name"]: array.tolist()
                           for output, array in zip(model.outputs, outputs, strict=True)}
        return {"predictions": predictions, "model_version": version.number}

    def evaluate(self, tenant_id: str, model_id: str, request: dict) -> dict:
        model, version = self._resolve(tenant_id, model_id, request.get("version"))
        batch_size = request["batch_size"]
        if batch_size > self.config.max_batch_size:
            raise LimitExceeded(
                f"batch_size is {batch_size}, over the cap of {self.config.max_batch_size} "
                "(KERAS_SERVICE_MAX_BATCH_SIZE).",
                errors=[{"path": "batch_size", "message": f"at most {self.config.max_batch_size}"}])
        if "dataset" in request:
            x, y = self._dataset_arrays(tenant_id, model, request)
        else:
            x, y = self._inline_arrays(model, request)
        loaded = self._load(model, version, for_evaluate=True)
        metrics = evaluate_arrays(loaded, x, y, batch_size)
        return {**metrics, "model_version": version.number}

    # -- helpers -------------------------------------------------------------------------

    def _resolve(self, tenant_id: str, model_id: str, number: int | None) -> tuple[Model, Version]:
        model = self.models.get(tenant_id, model_id)
        number = number or model.version
        if number is None:
            raise WrongState(f"Model '{model.id}' has no trained version yet (it is "
                             f"{model.state}); fit it first (POST /models/{model.id}/fit), "
                             "then predict or evaluate.")
        return model, self.versions.get(tenant_id, model.id, number)

    def _load(self, model: Model, version: Version, *, for_evaluate: bool) -> LoadedModel:
        path = self.store.version_path(model.id, version.number)
        if not path.is_file():
            raise _missing(model, version)
        key = (model.id, version.number, version.sha256, for_evaluate)
        return self.cache.get(key, lambda: load_version(
            path, version.sha256, for_evaluate=for_evaluate,
            compile_spec=model.compile if for_evaluate else None,
            label=f"model '{model.id}' version {version.number}"))

    def _inline_arrays(self, model: Model, request: dict) -> tuple[list, list]:
        cap = self.config.max_inline_elements
        x = checked_inputs(columns_by_name(request["x"], model.inputs, "x"), model.inputs, cap,
                           "x")
        y_columns = columns_by_name(request["y"], model.outputs, "y", kind="output")
        y = [array_from_json(y_columns[output["name"]], name=_label("y", output, model.outputs),
                             max_elements=cap) for output in model.outputs]
        _check_total(x + y, cap)
        _check_rows(x, y, model)
        return x, y

    def _dataset_arrays(self, tenant_id: str, model: Model, request: dict) -> tuple[list, list]:
        dataset = self.datasets.get(tenant_id, request["dataset"])
        x_names = array_names(request.get("x"), model.inputs, "x", "input")
        y_names = array_names(request.get("y"), model.outputs, "y", "output")
        for field_name, names in (("x", x_names), ("y", y_names)):
            for array_name in names:
                if array_name not in dataset.arrays:
                    raise InvalidArray(
                        f"Dataset '{dataset.id}' has no array '{array_name}' (for {field_name}); "
                        f"it has {', '.join(sorted(dataset.arrays))}.",
                        errors=[{"path": field_name, "message": f"no array '{array_name}'"}])
        for array_name, spec in zip(x_names, model.inputs, strict=True):
            stored = dataset.arrays[array_name]
            if not _fits(stored["shape"], spec["shape"]):
                raise _shape_error(spec, stored["shape"], f"dataset array '{array_name}' is",
                                   stored["dtype"])
        arrays = open_arrays(self.store, dataset, list(dict.fromkeys(x_names + y_names)))
        return [arrays[name] for name in x_names], [arrays[name] for name in y_names]


def _missing(model: Model, version: Version) -> ArtifactCorrupt:
    log.error("the file of model %s version %s is missing", model.id, version.number)
    return ArtifactCorrupt(f"The file of model '{model.id}' version {version.number} is "
                           "missing from the artifact store; the error is logged.")


# -- input checks: JSON to arrays of the model's shapes, before Keras sees them ------------

def columns_from_rows(instances, specs: list[dict]) -> dict:
    """`instances` (one item per row) as {input name: JSON array}, the columns of the batch."""
    names = [spec["name"] for spec in specs]
    if not isinstance(instances, list):
        raise MalformedRequest(f"'instances' must be a JSON array with one item per row; "
                               f"received {_kind(instances)}.")
    if not instances:
        raise MalformedRequest("'instances' is empty; expected at least one row.")
    if not any(isinstance(row, dict) for row in instances):
        if len(names) > 1:
            raise MalformedRequest(
                f"The model has {len(names)} inputs ({', '.join(names)}); give each instance "
                "as an object {input_name: value}, or give 'inputs' as {input_name: array}.")
        return {names[0]: instances}
    for index, row in enumerate(instances):
        if not isinstance(row, dict):
            raise MalformedRequest(f"instances[{index}] is {_kind(row)}; the other rows are "
                                   "objects {input_name: value}. Use one form for every row.")
        _check_names(row, names, f"instances[{index}]", "input")
    return {name: [row[name] for row in instances] for name in names}


def columns_by_name(value, specs: list[dict], field_name: str, kind: str = "input") -> dict:
    """A columnar value (one array, or {name: array}) as {input or output name: JSON array}."""
    names = [spec["name"] for spec in specs]
    if isinstance(value, dict):
        _check_names(value, names, field_name, kind)
        return value
    if len(names) > 1:
        raise MalformedRequest(
            f"The model has {len(names)} {kind}s ({', '.join(names)}); give '{field_name}' as "
            f"an object {{{kind}_name: array}}; received {_kind(value)}.")
    return {names[0]: value}


def checked_inputs(columns: dict, specs: list[dict], max_elements: int,
                   field_name: str) -> list[np.ndarray]:
    """One array per model input, in the model's order, of the shape and dtype it expects."""
    arrays = []
    for spec in specs:
        label = _label(field_name, spec, specs)
        array = _parse(columns[spec["name"]], spec, label, max_elements)
        if not _fits(array.shape, spec["shape"]):
            raise _shape_error(spec, array.shape, "received")
        arrays.append(array)
    _check_total(arrays, max_elements)
    rows = {spec["name"]: array.shape[0] for spec, array in zip(specs, arrays, strict=True)}
    if len(set(rows.values())) > 1:
        raise InvalidArray("Every input must have the same number of rows; received "
                           + ", ".join(f"{name}: {count}" for name, count in rows.items()) + ".")
    return arrays


def array_names(given, specs: list[dict], field_name: str, kind: str) -> list[str]:
    """The dataset arrays feeding each model input (or output), in the model's order.

    `given` is a name (one input), a list in the model's order, or {input_name: array_name};
    by default "x"/"y" for one input/output, else the inputs'/outputs' own names.
    """
    names = [spec["name"] for spec in specs]
    if given is None:
        return [field_name] if len(names) == 1 else names
    if isinstance(given, str) and len(names) == 1:
        return [given]
    if isinstance(given, dict):
        _check_names(given, names, field_name, kind)
        given = [given[name] for name in names]
    if (not isinstance(given, list) or len(given) != len(names)
            or not all(isinstance(item, str) for item in given)):
        raise MalformedRequest(
            f"'{field_name}' must name {len(names)} dataset array(s), one per model {kind} "
            f"({', '.join(names)}): a name, a list in that order, or {{{kind}_name: "
            f"array_name}}; received {_kind(given)}.")
    return given


def _parse(value, spec: dict, label: str, max_elements: int) -> np.ndarray:
    dtype = spec["dtype"]
    if dtype == "string":
        raise InvalidSpec(f"{label} has dtype string; predict and evaluate take numeric "
                          "inputs only.")
    array = array_from_json(value, name=label, max_elements=max_elements,
                            dtype=dtype if dtype in _PARSED_DTYPES else None)
    if dtype == "bool":
        if not np.isin(array, (0, 1)).all():
            raise InvalidArray(f"Array '{label}' is bool: expected 0 and 1 only.")
        return array.astype(bool)
    return array


def _fits(shape, expected) -> bool:
    """Whether an array of `shape` is a batch for a tensor of `expected` (None: any size)."""
    return len(shape) == len(expected) and shape[0] > 0 and all(
        want is None or want == got for want, got in zip(expected[1:], shape[1:], strict=True))


def _shape_error(spec: dict, shape, received: str, dtype: str | None = None) -> InvalidArray:
    expected = tuple(spec["shape"])
    message = (f"input '{spec['name']}' expects {format_shape(expected)} {spec['dtype']}, "
               f"{received} {format_shape(shape)}{' ' + dtype if dtype else ''}.")
    if len(shape) == len(expected) - 1 and _fits((1, *shape), expected):
        message += " To send one instance, wrap it in a list: a batch of one."
    return InvalidArray(message, errors=[{"path": spec["name"], "message": message}])


def format_shape(shape) -> str:
    """(None, 100), the way Keras prints shapes."""
    items = ["None" if dim is None else str(dim) for dim in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _check_names(given: dict, names: list[str], where: str, kind: str) -> None:
    unknown = [key for key in given if key not in names]
    missing = [name for name in names if name not in given]
    if unknown or missing:
        problems = ([f"unknown {kind} {', '.join(repr(k) for k in unknown)}"] if unknown else []
                    ) + ([f"missing {kind} {', '.join(repr(m) for m in missing)}"]
                         if missing else [])
        raise MalformedRequest(f"{where}: {'; '.join(problems)}. The model's {kind}s are "
                               f"{', '.join(repr(n) for n in names)}.")


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


def _kind(value) -> str:
    if value is None:
        return "null"
    kinds = {list: "an array", dict: "an object", str: "a string", bool: "a boolean",
             int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


# -- the Keras side: a cache of loaded versions, the forward pass, evaluate -----------------

@dataclass
class LoadedModel:
    model: object  # keras.Model
    # Input arrays in the model's order -> output arrays in the model's order.
    forward: Callable[[list[np.ndarray]], list[np.ndarray]] | None
    # Evaluate updates the metrics' state in the model: one evaluate at a time per model.
    lock: threading.Lock = field(default_factory=threading.Lock)


class ModelCache:
    """A thread-safe LRU of loaded versions; concurrent requests for one version load it once."""

    def __init__(self, capacity: int = MODEL_CACHE_SIZE):
        self.capacity = capacity
        self._entries: OrderedDict[tuple, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple, threading.Lock] = {}

    def get(self, key: tuple, load: Callable[[], LoadedModel]) -> LoadedModel:
        entry = self._lookup(key)
        if entry is not None:
            return entry
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            entry = self._lookup(key)
            if entry is not None:
                return entry
            try:
                entry = load()
            except BaseException:
                with self._lock:
                    self._loading.pop(key, None)
                raise
            with self._lock:
                # Entry in before the loading lock goes: no thread can miss both and reload.
                self._entries[key] = entry
                self._loading.pop(key, None)
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
        return entry

    def keys(self) -> list[tuple]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _lookup(self, key: tuple) -> LoadedModel | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry


def load_version(path: Path, sha256: str, *, for_evaluate: bool, compile_spec: dict | None,
                 label: str) -> LoadedModel:
    """Load a version's `.keras` file in safe mode, once its checksum matches the registry's.

    For predict the model is loaded without its optimizer and its forward pass traced and
    warmed up; for evaluate it is loaded compiled (the file carries its compile settings,
    else `compile_spec`, the registry's).

    Raises:
        ArtifactCorrupt: the file does not match `sha256` or Keras cannot read it.
    """
    import keras

    actual = sha256_of(path)
    if actual != sha256:
        log.error("%s: %s has sha256 %s, the registry says %s", label, path, actual, sha256)
        raise ArtifactCorrupt(f"The file of {label} does not match its recorded checksum; "
                              "it will not be served. The error is logged.")
    try:
        model = keras.saving.load_model(path, compile=for_evaluate, safe_mode=True)
    except Exception:
        log.exception("%s: Keras could not load %s", label, path)
        raise ArtifactCorrupt(f"The file of {label} could not be loaded; the error is "
                              "logged.") from None
    if for_evaluate:
        if not getattr(model, "compiled", False):
            if compile_spec is None:
                raise WrongState(f"The {label} has no compile settings, so it cannot be "
                                 "evaluated; compile the model and fit it again.")
            from service.keras_ops.compilation import compile_arguments

            model.compile(**compile_arguments(compile_spec))
        return LoadedModel(model, None)
    loaded = LoadedModel(model, traced_forward(model))
    _warm_up(loaded, label)
    return loaded


def traced_forward(model) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """The model's inference call as one graph for any batch size, traced on first use."""
    import keras

    specs = model.inputs

    def call(*inputs):
        return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        call = tf.function(call, input_signature=[
            tf.TensorSpec(spec.shape, spec.dtype) for spec in specs])
        convert = [_converter(tf, spec.dtype) for spec in specs]
    else:
        convert = [lambda array: array for _ in specs]
    output_names = getattr(model, "output_names", None)

    def forward(arrays: list[np.ndarray]) -> list[np.ndarray]:
        outputs = call(*(c(array) for c, array in zip(convert, arrays, strict=True)))
        if isinstance(outputs, dict):
            outputs = [outputs[name] for name in output_names]
        elif not isinstance(outputs, list | tuple):
            outputs = [outputs]
        return [_jsonable(keras.ops.convert_to_numpy(output)) for output in outputs]

    return forward


def _converter(tf, dtype: str):
    # bfloat16 has no numpy parse of its own (it arrives as float32); the rest go in as they are.
    return lambda array: array if array.dtype.name == dtype else tf.cast(array, dtype)


def _jsonable(array: np.ndarray) -> np.ndarray:
    # float16/bfloat16 have no exact JSON form through tolist(); widen them.
    if array.dtype.kind == "V" or (array.dtype.kind == "f" and array.dtype.itemsize < 4):
        return array.astype(np.float32)
    return array


def _warm_up(loaded: LoadedModel, label: str) -> None:
    """Trace the forward pass now, so the first request does not pay for it."""
    zeros = [np.zeros((1, *(1 if dim is None else dim for dim in spec.shape[1:])),
                      dtype=_numpy_dtype(spec.dtype)) for spec in loaded.model.inputs]
    try:
        loaded.forward(zeros)
    except Exception:  # a model may refuse zeros (sizes below a kernel): trace on first use
        log.debug("%s: warm-up skipped", label, exc_info=True)


def _numpy_dtype(dtype: str) -> str:
    return dtype if dtype in _PARSED_DTYPES or dtype == "bool" else "float32"


def predict_arrays(loaded: LoadedModel, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs for `arrays` (a batch per input), in slices of PREDICT_CHUNK_ROWS rows."""
    rows = arrays[0].shape[0]
    if rows <= PREDICT_CHUNK_ROWS:
        return loaded.forward(arrays)
    chunks = [loaded.forward([array[start:start + PREDICT_CHUNK_ROWS] for array in arrays])
              for start in range(0, rows, PREDICT_CHUNK_ROWS)]
    return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]


def evaluate_arrays(loaded: LoadedModel, x: list, y: list, batch_size: int) -> dict:
    """Keras' `evaluate` as {"loss": ..., metric: ...}, reading the arrays batch by batch.

    The arrays may be memory-mapped: only one batch at a time is copied into memory.

    Raises:
        InvalidArray: Keras refused the arrays (e.g. targets of the wrong shape for the loss).
    """
    import keras

    from service.keras_ops.builder import keras_message

    model = loaded.model
    batches = _batches(keras, x, y, batch_size, [t.dtype for t in model.inputs],
                       [t.name for t in model.inputs], getattr(model, "output_names", None))
    errors: tuple[type[BaseException], ...] = (ValueError, TypeError)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        errors += (tf.errors.InvalidArgumentError,)
    try:
        with loaded.lock:
            result = model.evaluate(batches, return_dict=True, verbose=0)
    except errors as error:
        message = f"Keras could not evaluate the model on these arrays: {keras_message(error)}"
        raise InvalidArray(message, errors=[{"path": "y", "message": message}]) from None
    return {name: float(value) for name, value in result.items()}


def _batches(keras, x: list, y: list, batch_size: int, dtypes: list[str], input_names: list[str],
             output_names: list[str] | None):
    """A `PyDataset` of (x, y) batches sliced from the arrays, each cast to the input's dtype."""
    rows = len(x[0])

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return math.ceil(rows / batch_size)

        def __getitem__(self, index):
            part = slice(index * batch_size, (index + 1) * batch_size)
            inputs = [np.asarray(array[part], dtype=_numpy_dtype(dtype))
                      for array, dtype in zip(x, dtypes, strict=True)]
            targets = [np.asarray(array[part]) for array in y]
            return (inputs[0] if len(inputs) == 1 else dict(zip(input_names, inputs, strict=True)),
                    targets[0] if len(targets) == 1
                    else dict(zip(output_names, targets, strict=True)))

    return Batches()
