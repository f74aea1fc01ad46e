"""Build checked specs into Keras models: stateless (for checks) or real (to compile and save).

A stateless build runs in ``keras.StatelessScope(initialize_variables=False)``: variables get
shapes but no memory, so shape errors and parameter counts come back for any size of model.
Only a model that passed the caps there is built for real.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from pathlib import Path
from typing import Any

import keras
from keras.src.backend.common import global_state

from service import storage
from service.errors import InvalidSpec, LimitExceeded
from service.keras_ops.catalog import LAYERS, make_layer
from service.keras_ops.compilation import compile_arguments, normalize_compile_spec
from service.keras_ops.specs import ModelSpec, normalize_model_spec
from service.limits import BuildLimits

MAX_KERAS_MESSAGE = 600


@dataclasses.dataclass
class BuiltModel:
    """A Keras model with, per spec layer, its Keras layer and output tensor(s) (or None)."""

    model: keras.Model
    layers: list[keras.layers.Layer]
    outputs: list[Any]
    built: bool


def keras_message(error: BaseException) -> str:
    """Keras' reason for `error`, as one short paragraph: never a traceback."""
    text = str(error) or type(error).__name__
    # Keras appends the call arguments (tensor reprs); the reason comes before them.
    text = re.split(r"\n\s*Arguments received by", text)[0]
    text = " ".join(text.split())
    return text if len(text) <= MAX_KERAS_MESSAGE else text[: MAX_KERAS_MESSAGE - 3] + "..."


def _invalid(spec: ModelSpec, index: int, what: str, error: BaseException) -> InvalidSpec:
    message = f"{spec.label(index)}: {what}: {keras_message(error)}"
    return InvalidSpec(message, errors=[{"path": f"layers[{index}]", "message": message}])


@contextlib.contextmanager
def stateless_build():
    """Build inside a StatelessScope, then drop the variables it left in Keras' global list.

    Stateless variables register in the global "uninitialized_variables" list to be
    initialized later; in a long-lived process that list would only grow, and a later
    `StatelessScope` exit or real build could try to initialize them.
    """
    registered = global_state.get_global_attribute("uninitialized_variables") or []
    before = len(registered)
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield
    finally:
        registered = global_state.get_global_attribute("uninitialized_variables")
        if registered:
            del registered[before:]


def _call(entry_inputs: str, layer, tensors: list):
    if entry_inputs == "one":
        return layer(tensors[0])
    if entry_inputs == "list":
        return layer(list(tensors))
    return layer(*tensors)


def build_model(spec: ModelSpec) -> BuiltModel:
    """Build the Keras model for a checked spec (in the caller's variable scope).

    Raises:
        InvalidSpec: naming the layer whose construction or call Keras refused.
    """
    layers = []
    for index, call in enumerate(spec.layers):
        try:
            layers.append(make_layer(call))
        except Exception as error:  # Keras raises many types; each is a client error here.
            raise _invalid(spec, index, "Keras refused the arguments", error) from None
    tensors: dict[str, Any] = {}
    for item in spec.inputs:
        shape = tuple(item["shape"])
        tensors[item["name"]] = keras.Input(shape=shape, dtype=item["dtype"], name=item["name"])
    outputs: list[Any] = [None] * len(layers)
    if spec.kind == "sequential":
        return _sequential(spec, layers, tensors, outputs)
    for index in spec.order:
        sources = [tensors[name] for name in spec.layer_inputs[index]]
        try:
            outputs[index] = _call(LAYERS[spec.layers[index]["type"]].inputs, layers[index],
                                   sources)
        except Exception as error:
            raise _invalid(spec, index, "Keras could not apply it to its inputs", error) from None
        tensors[spec.layers[index]["name"]] = outputs[index]
    model_inputs = [tensors[item["name"]] for item in spec.inputs]
    model_outputs = [tensors[name] for name in spec.outputs]
    try:
        model = keras.Model(
            inputs=model_inputs[0] if len(model_inputs) == 1 else model_inputs,
            outputs=model_outputs[0] if len(model_outputs) == 1 else model_outputs,
            name="functional")
    except Exception as error:
        message = f"Keras could not assemble the model: {keras_message(error)}"
        raise InvalidSpec(message, errors=[{"path": "", "message": message}]) from None
    return BuiltModel(model, layers, outputs, True)


def _sequential(spec: ModelSpec, layers: list, tensors: dict, outputs: list) -> BuiltModel:
    if not spec.inputs:
        return BuiltModel(keras.Sequential(layers, name="sequential"), layers, outputs, False)
    input_tensor = next(iter(tensors.values()))
    current = input_tensor
    # Calling each layer ourselves names the one that fails; Sequential then reuses them.
    for index, layer in enumerate(layers):
        try:
            current = outputs[index] = layer(current)
        except Exception as error:
            raise _invalid(spec, index, "Keras could not apply it to the previous output",
                           error) from None
    try:
        model = keras.Sequential([input_tensor, *layers], name="sequential")
    except Exception as error:
        message = f"Keras could not assemble the model: {keras_message(error)}"
        raise InvalidSpec(message, errors=[{"path": "", "message": message}]) from None
    return BuiltModel(model, layers, outputs, True)


def _check_params(built: BuiltModel, limits: BuildLimits) -> None:
    if not built.built:
        return
    params = built.model.count_params()
    if params > limits.max_params:
        raise LimitExceeded(
            f"The model has {params:,} parameters, over the cap of {limits.max_params:,} "
            "(KERAS_SERVICE_MAX_PARAMS).", errors=[{"path": "layers", "message": "too many "
                                                    "parameters"}])


def stateless_checked(model_spec: ModelSpec, limits: BuildLimits) -> BuiltModel:
    """Build a checked spec stateless (no weight memory); raise past the parameter cap."""
    with stateless_build():
        built = build_model(model_spec)
    _check_params(built, limits)
    return built


def _shape(tensor) -> Any:
    if tensor is None:
        return None
    if isinstance(tensor, list | tuple):
        return [_shape(t) for t in tensor]
    return list(tensor.shape)


def _summary_text(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda text, **_: lines.append(text))
    return "\n".join(lines)


def describe_model(spec: dict, limits: BuildLimits) -> dict:
    """Check and describe a model spec without allocating any weights.

    Args:
        spec: a sequential or functional model spec (see `service.keras_ops`).
        limits: the caps on layers and parameters.

    Returns:
        `{"spec", "built", "params", "summary", "inputs", "outputs", "layers"}`; params,
        summary and shapes are None when a sequential spec gives no input shape.

    Raises:
        InvalidSpec: the spec is not allowed or Keras cannot build it.
        LimitExceeded: past `limits`.

    Example:
        >>> describe_model({"type": "sequential", "layers": [
        ...     {"type": "Dense", "units": 10, "input_dim": 100}]}, BuildLimits())["params"]
        1010
    """
    model_spec = normalize_model_spec(spec, limits.max_layers)
    built = stateless_checked(model_spec, limits)
    model = built.model
    layers = []
    for index, (call, layer) in enumerate(zip(model_spec.layers, built.layers, strict=True)):
        layers.append({
            "index": index, "type": call["type"], "name": call["name"],
            "config": {k: v for k, v in call.items() if k not in ("type", "name")},
            "output_shape": _shape(built.outputs[index]),
            "params": layer.count_params() if built.built else None,
        })
    if built.built:
        inputs = [{"name": item["name"], "shape": [None, *item["shape"]],
                   "dtype": item["dtype"]} for item in model_spec.inputs]
        outputs = [{"name": name, "shape": _shape(built.outputs[index]),
                    "dtype": keras.backend.standardize_dtype(built.outputs[index].dtype)}
                   for name, index in _output_indices(model_spec)]
    else:
        inputs = []
        outputs = [{"name": name, "shape": None, "dtype": None}
                   for name, _ in _output_indices(model_spec)]
    return {
        "spec": model_spec.normalized,
        "built": built.built,
        "params": model.count_params() if built.built else None,
        "summary": _summary_text(model) if built.built else None,
        "inputs": inputs,
        "outputs": outputs,
        "layers": layers,
    }


def _output_indices(spec: ModelSpec) -> list[tuple[str, int]]:
    index_of = {call["name"]: i for i, call in enumerate(spec.layers)}
    return [(name, index_of[name]) for name in spec.outputs]


def save_compiled(spec: dict, compile_spec: dict, path: str, limits: BuildLimits,
                  weights_from: str | None = None) -> dict:
    """Check, build for real, compile and save a model as a `.keras` file, atomically.

    Weights are allocated only after a stateless build has passed the parameter cap; on
    any failure nothing is written at `path`.

    Args:
        spec: a model spec.
        compile_spec: `{"loss", "optimizer"?, "metrics"?, "loss_weights"?}`.
        path: where the `.keras` file goes.
        limits: the caps on layers and parameters.
        weights_from: a `.keras` file of the same architecture (a trained version) whose
            weights the compiled model keeps; recompiling never loses training.

    Returns:
        `{"compile": normalized compile spec, "sha256": hex digest, "bytes": file size}`.

    Raises:
        InvalidSpec: the spec or compile spec is not allowed or Keras refuses it.
        LimitExceeded: past `limits`.
    """
    model_spec = normalize_model_spec(spec, limits.max_layers)
    normalized_compile = normalize_compile_spec(compile_spec, model_spec.outputs)
    stateless_checked(model_spec, limits)
    model = build_model(model_spec).model
    if weights_from is not None:
        trained = keras.saving.load_model(weights_from, compile=False, safe_mode=True)
        model.set_weights(trained.get_weights())
    return {"compile": normalized_compile, **save_model(model, normalized_compile, path)}


def save_model(model: keras.Model, normalized_compile: dict | None, path: str) -> dict:
    """Compile `model` (unless `normalized_compile` is None), then save it at `path`
    atomically; return `{"sha256", "bytes"}` of the file.

    Raises:
        InvalidSpec: Keras refused the compile settings; nothing is written.
    """
    if normalized_compile is not None:
        try:
            model.compile(**compile_arguments(normalized_compile))
        except Exception as error:
            message = f"Keras could not compile the model: {keras_message(error)}"
            raise InvalidSpec(message, errors=[{"path": "", "message": message}]) from None
        if model.built:
            # An unbuilt optimizer saves 2 variables but builds more on load, and Keras warns
            # at every load; saving its (zero) slots keeps the file loadable without noise.
            model.optimizer.build(model.trainable_variables)
    final = Path(path)
    with storage.atomic_path(final) as temporary:
        model.save(temporary)
    return {"sha256": storage.sha256_of(final), "bytes": final.stat().st_size}
