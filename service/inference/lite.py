"""Small batches on LiteRT: a hot version's one-row calls without TensorFlow's per-call cost.

Even called directly (runtime.DirectCall), a TensorFlow graph costs about 0.2-0.3 ms a call
in binding, executor and eager-tensor machinery: most of a one-row predict of a small model.
The same graph converted to a LiteRT flatbuffer runs in a LiteRT interpreter in about 7 µs.
So once a loaded version has answered `after_calls` small batches in a worker, that worker
converts it in a background thread, checks that LiteRT answers as TensorFlow does on probe
batches, and times both on batches of 1, 8 and 64 rows: LiteRT then serves batches up to
the largest of these sizes at which it was faster (for the lesson's MLP, 64 rows; for a
convolution over 64x64 images, one row), TensorFlow the rest. A version that does not convert
(an op LiteRT lacks, sizes past the batch left open, recurrent layers, a dtype it would
change, too many parameters), answers otherwise, or is slower even at one row is served by
TensorFlow as before, and the reason is logged.

An interpreter is not thread-safe and holds the sizes of its last call: each thread keeps
its own, resized when the number of rows changes (0.02-0.2 ms). Each uses LiteRT's default
XNNPACK kernels, which pack their own copy of the weights: hence LITE_MAX_PARAMS.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from service import metrics
from service.inference.calls import answer_alike, in_model_order, inference_call, zeros_for
from service.tensors import numpy_dtype

log = logging.getLogger(__name__)

# Batch sizes LiteRT and TensorFlow are timed on; LiteRT never serves more rows than the last.
TIMED_ROWS = (1, 8, 64)
LITE_MAX_ROWS = TIMED_ROWS[-1]
# The flatbuffer, and each thread's packed weights, are more copies of the weights: worth it
# for the small models whose calls are mostly overhead.
LITE_MAX_PARAMS = 2_000_000
# LiteRT's kernels add in another order than TensorFlow's: float32 answers differ by ~1e-7.
PARITY_RTOL, PARITY_ATOL = 1e-4, 1e-5

# How a try ends (the keras_service_lite_outcomes metric): LiteRT serves; it cannot hold the
# model; it answers otherwise; it is slower even at one row; the try raised; a served call
# failed and TensorFlow took over.
OUTCOMES = ("serving", "not_convertible", "answers_otherwise", "slower", "failed", "dropped")

Forward = Callable[[list[np.ndarray]], list[np.ndarray]]
# One conversion at a time in a process: each holds the graph, and MLIR, in memory.
_conversion_lock = threading.Lock()


class SmallBatchForward:
    """A version's forward pass: TensorFlow's, and LiteRT's for small batches once it is hot.

    Args:
        model: the loaded keras.Model.
        tensorflow: the traced TensorFlow forward pass (runtime.traced_forward).
        label: "model '…' version N", for the log.
        after_calls: small batches answered before the conversion starts; 0 converts now,
            in the calling thread.
        model_id: the model's id, for the metrics.
    """

    def __init__(self, model, tensorflow: Forward, label: str, after_calls: int,
                 model_id: str = ""):
        self.model = model
        self.tensorflow = tensorflow
        self.label = label
        self.model_id = model_id
        self.after_calls = after_calls
        self.lite: LiteForward | None = None
        self.lite_max_rows = 0  # set with `lite`: the most rows LiteRT was faster at
        self._small_calls = 0
        self._start_lock = threading.Lock()
        self._started = False
        if after_calls == 0:
            self._start(background=False)

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        rows = arrays[0].shape[0]
        if rows > LITE_MAX_ROWS:
            return self.tensorflow(arrays)
        lite = self.lite
        if lite is not None and rows <= self.lite_max_rows:
            try:
                return lite(arrays)
            except Exception:  # LiteRT refused this input: TensorFlow serves from now on
                log.exception("%s: LiteRT failed a call; TensorFlow serves it", self.label)
                self.lite = None
                metrics.lite_outcome(self.model_id, "dropped")
        elif lite is None and not self._started:
            self._small_calls += 1  # not exact under threads; only a threshold
            if self._small_calls >= self.after_calls:
                self._start(background=True)
        return self.tensorflow(arrays)

    def _start(self, background: bool) -> None:
        with self._start_lock:
            if self._started:
                return
            self._started = True
        if background:
            threading.Thread(target=self._convert, name="lite-conversion", daemon=True).start()
        else:
            self._convert()

    def _convert(self) -> None:
        outcome = "failed"
        try:
            outcome = self._try_lite()
        except Exception:  # never worse than TensorFlow alone
            log.exception("%s: LiteRT conversion failed; TensorFlow serves", self.label)
        metrics.lite_outcome(self.model_id, outcome)

    def _try_lite(self) -> str:
        started = time.monotonic()
        lite = converted(self.model, self.label)
        if lite is None:
            return "not_convertible"
        if not agrees(lite, self.tensorflow, self.model, self.label):
            return "answers_otherwise"
        max_rows = rows_where_faster(lite, self.tensorflow, self.model.inputs)
        if not max_rows:
            log.info("%s: LiteRT is slower than TensorFlow even at one row; TensorFlow "
                     "serves", self.label)
            return "slower"
        self.lite_max_rows, self.lite = max_rows, lite
        log.info("%s: LiteRT serves batches of up to %d row(s) (converted and timed in "
                 "%.1f s)", self.label, max_rows, time.monotonic() - started)
        return "serving"


class LiteForward:
    """A LiteRT flatbuffer with one input per model input and one output per model output,
    named input_<i> and output_<i> in the model's order, run by one interpreter per thread."""

    def __init__(self, flatbuffer: bytes, inputs: int, outputs: int):
        self.flatbuffer = flatbuffer
        self.inputs, self.outputs = inputs, outputs
        self._threads = threading.local()
        self.input_dtypes = [np.dtype(dtype) for dtype in self._interpreter()[1]]

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        interpreter, _, input_indexes, output_indexes = self._interpreter()
        rows = arrays[0].shape[0]
        if self._threads.rows != rows:
            for index, array in zip(input_indexes, arrays, strict=True):
                interpreter.resize_tensor_input(index, array.shape, strict=True)
            interpreter.allocate_tensors()
            self._threads.rows = rows
        for index, array in zip(input_indexes, arrays, strict=True):
            interpreter.set_tensor(index, array)
        interpreter.invoke()
        return [interpreter.get_tensor(index) for index in output_indexes]  # copies

    def _interpreter(self):
        held = getattr(self._threads, "held", None)
        if held is None:
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_content=self.flatbuffer, num_threads=1)
            signature = interpreter.get_signature_runner()
            inputs, outputs = signature.get_input_details(), signature.get_output_details()
            names = [f"input_{i}" for i in range(self.inputs)]
            held = (interpreter, [inputs[name]["dtype"] for name in names],
                    [inputs[name]["index"] for name in names],
                    [outputs[f"output_{i}"]["index"] for i in range(self.outputs)])
            self._threads.held, self._threads.rows = held, None
        return held


def converted(model, label: str) -> LiteForward | None:
    """The model's inference call as a `LiteForward`, or None (logged) where LiteRT cannot
    hold it as it is."""
    specs = model.inputs
    reason = _unsuitable(model, specs)
    if reason:
        log.info("%s: not converted to LiteRT: %s", label, reason)
        return None
    import tensorflow as tf

    call, output_names = inference_call(model), getattr(model, "output_names", None)

    def ordered(*inputs):
        outputs = in_model_order(call(*inputs), output_names)
        return {f"output_{i}": output for i, output in enumerate(outputs)}

    signature = [tf.TensorSpec(spec.shape, spec.dtype, name=f"input_{i}")
                 for i, spec in enumerate(specs)]
    concrete = tf.function(ordered, input_signature=signature).get_concrete_function()
    # The converter freezes the variables it finds on this object into the flatbuffer.
    holder = tf.Module()
    holder.variables_ = [variable.value for variable in model.variables]
    try:
        with _conversion_lock:
            flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions(
                [concrete], holder).convert()
    except Exception as error:  # ConverterError: an op LiteRT lacks, among others
        log.info("%s: not converted to LiteRT: %s", label, _converter_reason(error))
        return None
    lite = LiteForward(flatbuffer, len(specs), len(concrete.structured_outputs))
    expected = [np.dtype(numpy_dtype(spec.dtype)) for spec in specs]
    if lite.input_dtypes != expected:
        log.info("%s: not converted to LiteRT: it takes %s, the model %s", label,
                 lite.input_dtypes, expected)
        return None
    return lite


def _converter_reason(error: Exception) -> str:
    # The converter's first line starts with the source location of the failing op.
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return first.split("error: ", 1)[-1][:300]


def _unsuitable(model, specs) -> str | None:
    import keras

    if model.count_params() > LITE_MAX_PARAMS:
        return f"more than {LITE_MAX_PARAMS:,} parameters"
    # Their loops need TensorFlow's own ops in LiteRT (Flex): the converter refuses them.
    if any(isinstance(layer, keras.layers.RNN) for layer in model._flatten_layers()):
        return "recurrent layers"
    for spec in specs:
        if any(dim is None for dim in spec.shape[1:]):
            return f"input '{spec.name}' has sizes other than the batch left open"
        if spec.dtype in ("bfloat16", "float16") or numpy_dtype(spec.dtype) != spec.dtype:
            return f"input '{spec.name}' is {spec.dtype}"
    return None


def agrees(lite: LiteForward, tensorflow: Forward, model, label: str) -> bool:
    """Whether LiteRT answers as TensorFlow does on probe batches (zeros, and 3 seeded random
    rows), in shape, dtype and value within PARITY_RTOL/ATOL."""
    for probe in _probes(model.inputs):
        try:
            expected = tensorflow(probe)
        except Exception:  # the model refuses the probe: nothing to compare against
            continue
        if not answer_alike(lite(probe), expected, rtol=PARITY_RTOL, atol=PARITY_ATOL):
            log.warning("%s: LiteRT answers otherwise than TensorFlow; TensorFlow serves",
                        label)
            return False
    return True


def rows_where_faster(lite: LiteForward, tensorflow: Forward, specs) -> int:
    """The largest of TIMED_ROWS up to which LiteRT answered faster than TensorFlow (median
    of a few calls each), or 0 where it was slower at one row."""
    served = 0
    for rows in TIMED_ROWS:
        batch = _probe_batch(specs, rows, np.random.default_rng(rows))
        if median_seconds(lite, batch) >= median_seconds(tensorflow, batch):
            break
        served = rows
    return served


def median_seconds(forward: Forward, batch: list[np.ndarray], calls: int = 7) -> float:
    forward(batch)  # sizes set, caches warm
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        forward(batch)
        times.append(time.perf_counter() - started)
    return sorted(times)[calls // 2]


def _probes(specs) -> list[list[np.ndarray]]:
    return [zeros_for(specs), _probe_batch(specs, 3, np.random.default_rng(0))]


def _probe_batch(specs, rows: int, random: np.random.Generator) -> list[np.ndarray]:
    def sample(shape, dtype: np.dtype) -> np.ndarray:
        if dtype.kind == "f":
            return random.standard_normal(shape).astype(dtype)
        if dtype.kind == "b":
            return random.integers(0, 2, shape).astype(bool)
        return random.integers(0, 2, shape).astype(dtype)  # 0/1: valid ids for any Embedding

    return [sample((rows, *spec.shape[1:]), np.dtype(numpy_dtype(spec.dtype))) for spec in specs]
