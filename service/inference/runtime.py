"""The Keras side of serving: a cache of loaded versions, the forward pass, evaluate.

Each worker process keeps the versions it served last in a small LRU cache keyed by
(model id, version, sha256): versions are immutable, so a cached model is never stale, and
the checksum is verified once, when the file is loaded. Predict calls the model's forward
pass as one traced graph (about 1 ms) instead of `model.predict()` (about 100 ms a call), and
once a version is hot, its small batches on LiteRT (inference/lite.py).

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

from service import metrics
from service.errors import ArtifactCorrupt, InvalidArray, WrongState
from service.inference.batching import Batcher, BatchPolicy
from service.inference.calls import answer_alike, in_model_order, inference_call, zeros_for
from service.inference.lite import SmallBatchForward
from service.storage import sha256_of
from service.tensors import numpy_dtype

log = logging.getLogger(__name__)

MODEL_CACHE_SIZE = 8
# Rows per call of the traced forward pass: bounds the memory one large predict takes.
PREDICT_CHUNK_ROWS = 1024


@dataclass
class LoadedModel:
    model: object  # keras.Model
    # Input arrays in the model's order -> output arrays in the model's order.
    forward: Callable[[list[np.ndarray]], list[np.ndarray]] | None
    # Evaluate updates the metrics' state in the model: one evaluate at a time per model.
    lock: threading.Lock = field(default_factory=threading.Lock)
    # The dynamic batcher of this version, made on the first batched request.
    batcher: Batcher | None = None

    def batcher_for(self, policy: BatchPolicy, label: str,
                    run: Callable[[list[np.ndarray]], list[np.ndarray]]) -> Batcher:
        """This version's batcher under `policy`, running batches with `run`.

        A new batcher replaces the old one when the policy changed; the old one answers
        what it holds, then its thread ends idle.
        """
        with self.lock:
            if self.batcher is None or self.batcher.policy != policy:
                self.batcher = Batcher(run, policy, label)
            return self.batcher


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
            metrics.cache_hit(key[0])  # keys start with the model id
            return entry
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            entry = self._lookup(key)
            if entry is not None:
                metrics.cache_hit(key[0])  # another thread loaded it
                return entry
            try:
                entry = metrics.timed_load(key[0], load)
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

    def model_ids(self) -> set[str]:
        with self._lock:
            return {key[0] for key in self._entries}

    def drop_models(self, model_ids: set[str]) -> None:
        """Forget every loaded version of these models (deleted ones)."""
        with self._lock:
            for key in [key for key in self._entries if key[0] in model_ids]:
                del self._entries[key]

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
                 label: str, lite_after_calls: int | None = None,
                 model_id: str = "") -> LoadedModel:
    """Load a version's `.keras` file in safe mode, once its checksum matches the registry's.

    For predict the model is loaded without its optimizer and its forward pass traced and
    warmed up, to move small batches onto LiteRT after `lite_after_calls` of them (None:
    never; see inference/lite.py); for evaluate it is loaded compiled (the file carries its
    compile settings, else `compile_spec`, the registry's).

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
    forward = traced_forward(model, label)
    if lite_after_calls is not None:
        forward = SmallBatchForward(model, forward, label, lite_after_calls, model_id)
    return LoadedModel(model, forward)


def traced_forward(model, label: str) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """The model's inference call as one graph for any batch size, traced and warmed up here,
    so the first request does not pay for either."""
    import keras

    specs = model.inputs
    zeros = zeros_for(specs)
    call = inference_call(model)
    to_numpy = keras.ops.convert_to_numpy
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # The concrete function of the one signature: calling it skips tf.function's
        # dispatch (about a third of a one-row call).
        concrete = tf.function(call, input_signature=[
            tf.TensorSpec(spec.shape, spec.dtype) for spec in specs]).get_concrete_function()
        dtypes = [spec.dtype for spec in specs]

        def public_call(*arrays: np.ndarray):
            return concrete(*(cast_for(tf, array, dtype)
                              for array, dtype in zip(arrays, dtypes, strict=True)))

        call = checked_direct_call(tf, concrete, public_call, dtypes, zeros, label) or public_call
        eager_tensor = type(tf.constant(0))

        def to_numpy(output):
            # Keras' convert_to_numpy first walks its argument for symbolic tensors.
            return (output.numpy() if type(output) is eager_tensor
                    else keras.ops.convert_to_numpy(output))
    output_names = getattr(model, "output_names", None)

    def forward(arrays: list[np.ndarray]) -> list[np.ndarray]:
        outputs = in_model_order(call(*arrays), output_names)
        return [_jsonable(to_numpy(output)) for output in outputs]

    _warm_up(forward, zeros, label)
    return forward


def cast_for(tf, array: np.ndarray, dtype: str):
    """`array` as the input of `dtype` takes it: bfloat16 has no numpy parse of its own (it
    arrives as float32); the others go in as they are."""
    return array if array.dtype.name == dtype else tf.cast(array, dtype)


def checked_direct_call(tf, concrete, public_call: Callable, dtypes: list[str],
                        zeros: list[np.ndarray], label: str) -> DirectCall | None:
    """The fastest `DirectCall` of `concrete` that answers as `public_call` does on `zeros`.

    One in the calling thread first, then one on the usual executor (graphs with low-level
    control flow, such as RNNs, need that one); None when neither does, or when the model
    refuses zeros (there is nothing to compare then): the public call serves.
    """
    try:
        expected = [t.numpy() for t in tf.nest.flatten(public_call(*zeros))]
    except Exception:
        log.debug("%s: no call on zeros; the public call serves", label, exc_info=True)
        return None
    for executor in DirectCall.EXECUTORS:
        try:
            direct = DirectCall(tf, concrete, dtypes, executor)
            answers = [t.numpy() for t in tf.nest.flatten(direct(*zeros))]
        except (AttributeError, ImportError, TypeError):  # other internals: not worth retrying
            log.warning("%s: TensorFlow's internals are not those expected; the public "
                        "call serves", label, exc_info=True)
            return None
        except tf.errors.OpError as error:  # this executor cannot run this graph
            log.info("%s: no direct call on executor %r: %s", label, executor,
                     error.message.splitlines()[0] if error.message else error)
            continue
        if answer_alike(answers, expected, rtol=1e-5, atol=1e-6):
            return direct
        log.warning("%s: the direct call on executor %r answered otherwise", label, executor)
    return None


class DirectCall:
    """A concrete function called the way its public call ends up calling it, minus the rest.

    The public call binds its arguments to the signature in Python (structure, casts) and
    runs the graph on the inter-op thread pool: for a small model that costs more than the
    model (about two thirds of a one-row call of the lesson's MLP, plus a handoff to another
    thread that a busy machine makes slower still). Here the arrays, already checked against
    the signature (`inputs.checked_inputs`), become tensors directly, and with
    SINGLE_THREADED_EXECUTOR the graph runs in the calling thread (kernels such as a large
    MatMul still use the intra-op pool). These are TensorFlow internals: construction fails
    with AttributeError or ImportError where they differ, and `checked_direct_call` compares
    the answers with the public call's before one is used.
    """

    EXECUTORS = ("SINGLE_THREADED_EXECUTOR", "")  # "": TensorFlow's default executor

    def __init__(self, tf, concrete, dtypes: list[str], executor: str):
        from tensorflow.python import pywrap_tfe
        from tensorflow.python.eager import context
        from tensorflow.python.framework import ops

        self.tf = tf
        self.concrete = concrete  # referenced: when it goes, TensorFlow unregisters `name`
        function = concrete._inference_function
        self.name = function.name
        self.pack = function.function_type.pack_output
        self.outputs = len(function.function_type.flat_outputs)
        self.captured = list(concrete.captured_inputs)
        self.eager = context.context()
        self.executor = executor
        self.attrs = ("executor_type", executor, "config_proto",
                      self.eager.function_call_options.config_proto_serialized)
        self.dtypes = [(dtype, tf.as_dtype(dtype).as_datatype_enum) for dtype in dtypes]
        self.execute, self.tensor = pywrap_tfe.TFE_Py_Execute, ops.EagerTensor

    def __call__(self, *arrays: np.ndarray):
        eager, device = self.eager, self.eager.device_name
        inputs = [self.tensor(array, device, kind) if array.dtype.name == dtype
                  else cast_for(self.tf, array, dtype)
                  for array, (dtype, kind) in zip(arrays, self.dtypes, strict=True)]
        return self.pack(self.execute(eager._handle, device, self.name, inputs + self.captured,
                                      self.attrs, self.outputs))


def _jsonable(array: np.ndarray) -> np.ndarray:
    # float16/bfloat16 have no exact JSON form through tolist(); widen them.
    if array.dtype.kind == "V" or (array.dtype.kind == "f" and array.dtype.itemsize < 4):
        return array.astype(np.float32)
    return array


def _warm_up(forward: Callable, zeros: list[np.ndarray], label: str) -> None:
    try:
        forward(zeros)
    except Exception:  # a model may refuse zeros (sizes below a kernel): warm on first use
        log.debug("%s: warm-up skipped", label, exc_info=True)


def predict_arrays(loaded: LoadedModel, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs for `arrays` (a batch per input), in slices of PREDICT_CHUNK_ROWS rows.

    Raises:
        InvalidArray: TensorFlow refused the arrays, which passed the signature's checks:
            e.g. an image smaller than a kernel, where the model takes any image size.
    """
    try:
        rows = arrays[0].shape[0]
        if rows <= PREDICT_CHUNK_ROWS:
            return loaded.forward(arrays)
        chunks = [loaded.forward([array[start:start + PREDICT_CHUNK_ROWS] for array in arrays])
                  for start in range(0, rows, PREDICT_CHUNK_ROWS)]
        return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]
    except Exception as error:
        if type(error).__name__ != "InvalidArgumentError":  # TensorFlow's, without importing it
            raise
        message = f"The model cannot compute on this input: {op_error_reason(error)}"
        raise InvalidArray(message) from None


# Lines of a TensorFlow op error that locate it in the graph or the Python source: never
# for a client, who needs only the reason.
_OP_ERROR_NOISE = ("File ", "Graph execution error", "Detected at node", "defined at",
                   "[[{{node", "[Op:")


def op_error_reason(error: BaseException) -> str:
    """The reason a TensorFlow op gave, without node names, source lines or a traceback."""
    lines = [line.strip() for line in str(getattr(error, "message", error)).splitlines()]
    reasons = [line for line in lines if line and not line.startswith(_OP_ERROR_NOISE)]
    reason = reasons[-1] if reasons else "TensorFlow refused it"
    return reason.split(" [[{{node")[0].split(" [Op:")[0][:500]


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
            inputs = [np.asarray(array[part], dtype=numpy_dtype(dtype))
                      for array, dtype in zip(x, dtypes, strict=True)]
            targets = [np.asarray(array[part]) for array in y]
            return (inputs[0] if len(inputs) == 1 else dict(zip(input_names, inputs, strict=True)),
                    targets[0] if len(targets) == 1
                    else dict(zip(output_names, targets, strict=True)))

    return Batches()
