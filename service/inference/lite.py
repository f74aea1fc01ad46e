"""Small batches on LiteRT: a hot version's one-row calls without TensorFlow's per-call cost.

Even called directly (runtime.DirectCall), a TensorFlow graph costs about 0.3 ms a call in
binding, executor and eager-tensor machinery: most of a one-row predict of a small model.
The same graph converted to a LiteRT flatbuffer runs in a LiteRT interpreter in about 7 µs.
So once a loaded version has answered `after_calls` small batches in a worker, that worker
converts it in a background thread, checks that LiteRT answers as TensorFlow does on probe
inputs, and from then on runs batches of up to LITE_MAX_ROWS rows on LiteRT; larger batches
stay on TensorFlow, whose kernels use every core. A version that does not convert (an op
LiteRT lacks, dynamic sizes past the batch, a dtype it would change, too many parameters)
or answers otherwise is served by TensorFlow as before, and the reason is logged.

An interpreter is not thread-safe and holds the sizes of its last call: each thread keeps
its own, resized when the number of rows changes (about 15 µs). LiteRT's default delegate
(XNNPACK) is left out: it repacks the weights in every interpreter and makes resizes cost
~10x more, for no gain at these sizes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from service.tensors import numpy_dtype

log = logging.getLogger(__name__)

# Rows up to which LiteRT serves a call: past this, TensorFlow's multi-threaded kernels win.
LITE_MAX_ROWS = 64
# Conversion holds the whole graph in memory twice, and the flatbuffer is a second copy of
# the weights per loaded version: worth it for the small models whose calls are overhead.
LITE_MAX_PARAMS = 4_000_000
# LiteRT's kernels add in another order than TensorFlow's: float32 answers differ by ~1e-7.
PARITY_RTOL, PARITY_ATOL = 1e-4, 1e-5

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
    """

    def __init__(self, model, tensorflow: Forward, label: str, after_calls: int):
        self.model = model
        self.tensorflow = tensorflow
        self.label = label
        self.after_calls = after_calls
        self.lite: LiteForward | None = None
        self._small_calls = 0
        self._start_lock = threading.Lock()
        self._started = False
        if after_calls == 0:
            self._start(background=False)

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if arrays[0].shape[0] > LITE_MAX_ROWS:
            return self.tensorflow(arrays)
        lite = self.lite
        if lite is not None:
            try:
                return lite(arrays)
            except Exception:  # LiteRT refused this input: TensorFlow serves from now on
                log.exception("%s: LiteRT failed a call; TensorFlow serves it", self.label)
                self.lite = None
        elif not self._started:
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
        try:
            started = time.monotonic()
            lite = converted(self.model, self.label)
            if lite is not None and agrees(lite, self.tensorflow, self.model, self.label):
                self.lite = lite
                log.info("%s: batches of up to %d rows run on LiteRT (converted in %.1f s)",
                         self.label, LITE_MAX_ROWS, time.monotonic() - started)
        except Exception:  # never worse than TensorFlow alone
            log.exception("%s: LiteRT conversion failed; TensorFlow serves", self.label)


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
            from ai_edge_litert.interpreter import Interpreter, OpResolverType

            interpreter = Interpreter(
                model_content=self.flatbuffer, num_threads=1,
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
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

    output_names = getattr(model, "output_names", None)

    def ordered(*inputs):
        outputs = model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)
        if isinstance(outputs, dict):
            outputs = [outputs[name] for name in output_names]
        elif not isinstance(outputs, list | tuple):
            outputs = [outputs]
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
        answers = lite(probe)
        if len(answers) != len(expected) or not all(
                a.shape == b.shape and a.dtype == b.dtype
                and np.allclose(a, b, rtol=PARITY_RTOL, atol=PARITY_ATOL, equal_nan=True)
                for a, b in zip(answers, expected, strict=True)):
            log.warning("%s: LiteRT answers otherwise than TensorFlow; TensorFlow serves",
                        label)
            return False
    return True


def _probes(specs) -> list[list[np.ndarray]]:
    random = np.random.default_rng(0)

    def batch(rows: int, fill: Callable) -> list[np.ndarray]:
        return [fill((rows, *spec.shape[1:]), np.dtype(numpy_dtype(spec.dtype)))
                for spec in specs]

    def sample(shape, dtype):
        if dtype.kind == "f":
            return random.standard_normal(shape).astype(dtype)
        if dtype.kind == "b":
            return random.integers(0, 2, shape).astype(bool)
        return random.integers(0, 2, shape).astype(dtype)  # 0/1: valid ids for any Embedding

    return [batch(1, np.zeros), batch(3, sample)]
