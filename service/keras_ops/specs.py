"""Model specs: structure checks, name filling, and the functional graph's checks.

Everything here is pure Python over JSON: a spec that passes `normalize_model_spec` has
only allow-listed layers with checked arguments, unique names, and (functional) a DAG whose
every input and layer reaches an output. Keras is only asked to build it afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from keras.src.utils.naming import to_snake_case

from service.errors import InvalidSpec, LimitExceeded
from service.keras_ops.arguments import (
    ArgumentError,
    Choice,
    Integer,
    ListOf,
    Nullable,
    did_you_mean,
    received,
)
from service.keras_ops.catalog import INPUT_DTYPES, LAYERS, NAME, check_layer

MAX_SPEC_DEPTH = 12
MAX_MODEL_IO = 64
MAX_REPORTED_PROBLEMS = 20
SHAPE = ListOf(Nullable(Integer(1, 1 << 20)), 1, 8)
INPUT_DTYPE = Choice(INPUT_DTYPES)
# First-layer spellings of the input shape in a sequential model, as in the Keras lesson.
SHAPE_KEYS = ("input_shape", "input_dim", "input_length")
# Layer types people try that are refused on purpose, and why.
REFUSED_TYPES = {
    "Lambda": "it runs arbitrary Python code",
    "TFSMLayer": "it loads a SavedModel from a path",
    "TorchModuleWrapper": "it wraps arbitrary PyTorch code",
    "JaxLayer": "it wraps arbitrary JAX code",
    "FlaxLayer": "it wraps arbitrary Flax code",
    "InputLayer": "inputs are given by 'input_shape' (sequential) or 'inputs' (functional)",
}


@dataclasses.dataclass
class ModelSpec:
    """A checked model spec, ready to build.

    Attributes:
        kind: "sequential" or "functional".
        normalized: the spec to store and return: names filled, values normalized.
        layers: per spec layer, the checked layer call `{"type", "name", ...arguments}`.
        inputs: the model inputs `{"name", "shape", "dtype"}`; for a sequential model at
            most one, and none when it gives no input shape (then it stays unbuilt).
        layer_inputs: functional: per layer, the names it is called on.
        outputs: names of the output layers.
        order: indices of `layers` in build (topological) order.
    """

    kind: str
    normalized: dict
    layers: list[dict]
    inputs: list[dict]
    layer_inputs: list[list[str]]
    outputs: list[str]
    order: list[int]

    def label(self, index: int) -> str:
        """How messages name a layer, e.g. "Layer 3 (Dense 'dense_1')"."""
        layer = self.layers[index]
        if self.kind == "functional":
            return f"Layer '{layer['name']}' ({layer['type']})"
        return f"Layer {index} ({layer['type']} '{layer['name']}')"


class _Problems:
    """Collects `{"path", "message"}` errors, raised together as one InvalidSpec."""

    def __init__(self):
        self.errors: list[dict] = []

    def add(self, path: str, message: str) -> None:
        message = message if message.endswith((".", "?")) else message + "."
        self.errors.append({"path": path, "message": message})

    def raise_if_any(self) -> None:
        if not self.errors:
            return
        first, more = self.errors[0]["message"], len(self.errors) - 1
        detail = first if not more else f"{first} (And {more} more problem(s), see 'errors'.)"
        raise InvalidSpec(detail, errors=self.errors[:MAX_REPORTED_PROBLEMS])


def _fail(path: str, message: str):
    problems = _Problems()
    problems.add(path, message)
    problems.raise_if_any()


def check_depth(value: Any, limit: int = MAX_SPEC_DEPTH) -> None:
    """Refuse JSON nested deeper than any valid spec needs (before anything recurses)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            _fail("", f"The spec is nested more than {limit} levels deep; no valid model "
                      "spec needs that.")
        children = node.values() if isinstance(node, dict) else (
            node if isinstance(node, list) else ())
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))


def _check_keys(spec: Mapping, allowed: tuple, what: str) -> None:
    for key in spec:
        if key not in allowed:
            _fail(str(key), f"{what} has no key '{key}'; it takes "
                            + ", ".join(allowed) + did_you_mean(key, list(allowed)))


def _layer_list(spec: Mapping, max_layers: int) -> list:
    layers = spec.get("layers", [])
    if not isinstance(layers, list):
        _fail("layers", f"'layers' expects a list of layer specs; received {received(layers)}")
    if len(layers) > max_layers:
        raise LimitExceeded(
            f"The model has {len(layers)} layers, over the cap of {max_layers} "
            "(KERAS_SERVICE_MAX_LAYERS).", errors=[{"path": "layers", "message": "too many"}])
    return layers


def _check_type(layer: Any, index: int, problems: _Problems) -> bool:
    path = f"layers[{index}]"
    if not isinstance(layer, dict):
        problems.add(path, f"Layer {index} expects a layer spec {{\"type\": ...}}; received "
                           f"{received(layer)}")
        return False
    kind = layer.get("type")
    if kind in LAYERS:
        return True
    if kind in REFUSED_TYPES:
        reason = f"'{kind}' is never accepted: {REFUSED_TYPES[kind]}"
    elif not isinstance(kind, str):
        reason = f"needs a 'type' naming a layer class; received {received(kind)}"
    else:
        reason = (f"'{kind}' is not an allow-listed layer type (GET /catalog lists them)"
                  + did_you_mean(kind, sorted(LAYERS)))
    problems.add(f"{path}.type", f"Layer {index}: {reason}")
    return False


def _collect_names(layer: dict, path: str, label: str, names: dict,
                   problems: _Problems) -> None:
    """Record explicit names of `layer` and its nested layers in `names` (name -> path)."""
    nested = layer.get("layer")
    if isinstance(nested, dict):
        _collect_names(nested, f"{path}.layer", f"{label}, nested 'layer'", names, problems)
    if "name" not in layer:
        return
    try:
        name = NAME.check(layer["name"])
    except ArgumentError as error:
        problems.add(f"{path}.name", f"{label}: 'name' {error.message}")
        return
    if name in names:
        problems.add(f"{path}.name", f"{label}: the name '{name}' is already used by "
                                     f"{names[name]}; names must be unique in a model")
    names[name] = path


class _Namer:
    """Keras-style default names ("dense", "dense_1", ...) counted per model, not per process."""

    def __init__(self, taken):
        self.taken = set(taken)
        self.counts: dict[str, int] = {}

    def fresh(self, base: str) -> str:
        while True:
            count = self.counts.get(base, 0)
            self.counts[base] = count + 1
            name = base if count == 0 else f"{base}_{count}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def fill(self, layer: dict) -> dict:
        """`layer` with a name filled in, nested layers first (as Keras constructs them)."""
        filled = dict(layer)
        if isinstance(filled.get("layer"), dict) and filled["layer"].get("type") in LAYERS:
            filled["layer"] = self.fill(filled["layer"])
        if "name" not in filled:
            filled["name"] = self.fresh(to_snake_case(filled["type"]))
        return filled


def _check_arguments(spec: ModelSpec, index: int, call: dict, path: str,
                     problems: _Problems) -> dict:
    normalized, found = check_layer(call)
    for argument, subpath, message in found:
        problems.add(f"{path}.{argument}{subpath}",
                     f"{spec.label(index)}: argument '{argument}{subpath}' {message}")
    return normalized


def normalize_model_spec(spec: Any, max_layers: int) -> ModelSpec:
    """Check a model spec completely, without Keras building anything.

    Args:
        spec: `{"type": "sequential", "layers": [...]}` or `{"type": "functional",
            "inputs": [...], "layers": [...], "outputs": [...]}`.
        max_layers: the layer cap (KERAS_SERVICE_MAX_LAYERS).

    Returns:
        The checked `ModelSpec`.

    Raises:
        InvalidSpec: with `errors` giving the path of every problem found.
        LimitExceeded: when the spec has more layers than `max_layers`.
    """
    if not isinstance(spec, dict):
        _fail("", f"A model spec is a JSON object; received {received(spec)}")
    check_depth(spec)
    kind = spec.get("type")
    if kind == "sequential":
        _check_keys(spec, ("type", "layers", "name"), "A sequential model spec")
    elif kind == "functional":
        _check_keys(spec, ("type", "inputs", "layers", "outputs", "name"),
                    "A functional model spec")
    else:
        _fail("type", "A model spec's 'type' expects \"sequential\" or \"functional\"; "
                      f"received {received(kind)}")
    raw_layers = _layer_list(spec, max_layers)

    problems = _Problems()
    typed = [_check_type(layer, i, problems) for i, layer in enumerate(raw_layers)]
    problems.raise_if_any()
    names: dict[str, str] = {}
    raw_inputs = spec.get("inputs", []) if kind == "functional" else []
    inputs = _check_model_inputs(raw_inputs, names, problems) if kind == "functional" else []
    for i, layer in enumerate(raw_layers):
        if typed[i]:
            _collect_names(layer, f"layers[{i}]", f"Layer {i} ({layer['type']})", names,
                           problems)
            if kind == "functional" and "name" not in layer:
                problems.add(f"layers[{i}].name",
                             f"Layer {i} ({layer['type']}): a functional layer needs a 'name' "
                             "that other layers and 'outputs' can refer to")
    problems.raise_if_any()
    namer = _Namer(names)
    filled = [namer.fill(layer) for layer in raw_layers]
    if kind == "sequential":
        return _sequential(spec, filled, namer, problems)
    return _functional(spec, filled, inputs, problems)


def _check_model_inputs(raw_inputs: Any, names: dict, problems: _Problems) -> list[dict]:
    if not isinstance(raw_inputs, list) or not 1 <= len(raw_inputs) <= MAX_MODEL_IO:
        _fail("inputs", f"'inputs' expects a list of 1 to {MAX_MODEL_IO} inputs "
                        f"{{\"name\", \"shape\", \"dtype\"?}}; received {received(raw_inputs)}")
    inputs = []
    for i, item in enumerate(raw_inputs):
        path = f"inputs[{i}]"
        if not isinstance(item, dict):
            problems.add(path, f"Input {i} expects {{\"name\", \"shape\", \"dtype\"?}}; "
                               f"received {received(item)}")
            continue
        unknown = [key for key in item if key not in ("name", "shape", "dtype")]
        for key in unknown:
            problems.add(f"{path}.{key}", f"Input {i} has no key '{key}'; it takes name, "
                                          "shape, dtype")
        checked = {}
        for key, descriptor in (("name", NAME), ("shape", SHAPE), ("dtype", INPUT_DTYPE)):
            if key not in item:
                if key == "dtype":
                    checked[key] = "float32"
                else:
                    problems.add(f"{path}.{key}", f"Input {i}: '{key}' is required")
                continue
            try:
                checked[key] = descriptor.check(item[key])
            except ArgumentError as error:
                problems.add(f"{path}.{key}{error.subpath}",
                             f"Input {i}: '{key}{error.subpath}' {error.message}")
        if "name" in checked:
            if checked["name"] in names:
                problems.add(f"{path}.name", f"Input {i}: the name '{checked['name']}' is used "
                                             "twice; names must be unique in a model")
            names[checked["name"]] = path
        inputs.append(checked)
    return inputs


def _input_shape(layer: dict, path: str, problems: _Problems) -> tuple[dict, list | None]:
    """Split a sequential first layer's input shape keys from its arguments."""
    own = LAYERS[layer["type"]].arguments
    given = {key: layer[key] for key in SHAPE_KEYS if key in layer and key not in own}
    accepted = [k for k in ("input_shape", "input_dim") if k not in own]
    if "input_dim" in own:
        accepted.append("input_length")  # Embedding: input_dim is the vocabulary size
    call = {k: v for k, v in layer.items() if k not in given}
    if not given:
        return call, None
    if len(given) > 1:
        problems.add(path, f"Layer 0: give one of {', '.join(given)}, not several")
        return call, None
    key, value = next(iter(given.items()))
    if key not in accepted:
        problems.add(f"{path}.{key}", f"Layer 0 ({layer['type']}): '{key}' is not accepted "
                                      f"here; give the input shape as {' or '.join(accepted)}")
        return call, None
    descriptor = SHAPE if key == "input_shape" else Integer(1, 1 << 20)
    try:
        checked = descriptor.check(value)
    except ArgumentError as error:
        problems.add(f"{path}.{key}{error.subpath}",
                     f"Layer 0 ({layer['type']}): '{key}{error.subpath}' {error.message}")
        return call, None
    return call, checked if key == "input_shape" else [checked]


def _sequential(spec: Mapping, layers: list[dict], namer: _Namer,
                problems: _Problems) -> ModelSpec:
    calls, shape = [], None
    for i, layer in enumerate(layers):
        if i == 0:
            call, shape = _input_shape(layer, "layers[0]", problems)
        else:
            call = dict(layer)
            for key in SHAPE_KEYS:
                if key in call and key not in LAYERS[call["type"]].arguments:
                    problems.add(f"layers[{i}].{key}",
                                 f"Layer {i} ({call['type']} '{call['name']}'): '{key}' is only "
                                 "accepted on the first layer of a sequential model")
                    del call[key]
        calls.append(call)
    inputs = [] if shape is None else [
        {"name": namer.fresh("input_layer"), "shape": shape, "dtype": "float32"}]
    model = ModelSpec("sequential", {}, calls, inputs, [], [], list(range(len(calls))))
    checked = [_check_arguments(model, i, call, f"layers[{i}]", problems)
               for i, call in enumerate(calls)]
    problems.raise_if_any()
    model.layers = checked
    model.outputs = [checked[-1]["name"]] if checked else []
    first_shape_keys = {k: layers[0][k] for k in SHAPE_KEYS
                        if layers and k in layers[0] and k not in checked[0]}
    normalized_layers = [dict(layer) for layer in checked]
    if normalized_layers:
        normalized_layers[0].update(first_shape_keys)
    model.normalized = {**({"name": spec["name"]} if "name" in spec else {}),
                        "type": "sequential", "layers": normalized_layers}
    return model


def _functional(spec: Mapping, layers: list[dict], inputs: list[dict],
                problems: _Problems) -> ModelSpec:
    calls, layer_inputs = [], []
    input_names = [item["name"] for item in inputs]
    producers = set(input_names) | {layer["name"] for layer in layers}
    for i, layer in enumerate(layers):
        call = {k: v for k, v in layer.items() if k != "inputs"}
        label = f"Layer '{layer['name']}' ({layer['type']})"
        for key in SHAPE_KEYS:
            if key in call and key not in LAYERS[call["type"]].arguments:
                problems.add(f"layers[{i}].{key}", f"{label}: '{key}' is only for sequential "
                             "models; a functional model declares its shapes in 'inputs'")
                del call[key]
        calls.append(call)
        layer_inputs.append(_check_layer_inputs(layer, i, label, producers, problems))
    model = ModelSpec("functional", {}, calls, inputs, layer_inputs, [], [])
    checked = [_check_arguments(model, i, call, f"layers[{i}]", problems)
               for i, call in enumerate(calls)]
    problems.raise_if_any()
    model.layers = checked
    model.outputs = _check_outputs(spec.get("outputs"), layers, input_names)
    model.order = _build_order(model)
    _check_reachability(model)
    normalized_layers = [{"type": call["type"], "name": call["name"],
                          "inputs": layer_inputs[i],
                          **{k: v for k, v in call.items() if k not in ("type", "name")}}
                         for i, call in enumerate(checked)]
    model.normalized = {**({"name": spec["name"]} if "name" in spec else {}),
                        "type": "functional", "inputs": inputs, "layers": normalized_layers,
                        "outputs": model.outputs}
    return model


def _check_layer_inputs(layer: dict, index: int, label: str, producers: set,
                        problems: _Problems) -> list[str]:
    path = f"layers[{index}].inputs"
    entry = LAYERS[layer["type"]]
    least, most = entry.input_count
    names = layer.get("inputs")
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        problems.add(path, f"{label}: 'inputs' expects a list of input or layer names; "
                           f"received {received(names)}")
        return []
    if not least <= len(names) <= most:
        count = str(least) if least == most else f"{least} to {most}"
        problems.add(path, f"{label}: takes {count} input(s); received {len(names)}")
    for j, name in enumerate(names):
        if name == layer["name"]:
            problems.add(f"{path}[{j}]", f"{label}: a layer cannot take its own output as input")
        elif name not in producers:
            problems.add(f"{path}[{j}]", f"{label}: input '{name}' names no model input or "
                                         "layer" + did_you_mean(name, sorted(producers)))
    return names


def _check_outputs(outputs: Any, layers: list[dict], input_names: list[str]) -> list[str]:
    layer_names = [layer["name"] for layer in layers]
    if isinstance(outputs, str):
        outputs = [outputs]
    if (not isinstance(outputs, list) or not 1 <= len(outputs) <= MAX_MODEL_IO
            or not all(isinstance(name, str) for name in outputs)):
        _fail("outputs", f"'outputs' expects a list of 1 to {MAX_MODEL_IO} layer names; "
                         f"received {received(outputs)}")
    problems = _Problems()
    for j, name in enumerate(outputs):
        if name in input_names:
            problems.add(f"outputs[{j}]", f"Output '{name}' names a model input; outputs "
                                          "must name layers")
        elif name not in layer_names:
            known = ", ".join(layer_names[:10]) + (", ..." if len(layer_names) > 10 else "")
            problems.add(f"outputs[{j}]", f"Output '{name}' names no layer (layers: {known})"
                                          + did_you_mean(name, layer_names))
        elif name in outputs[:j]:
            problems.add(f"outputs[{j}]", f"Output '{name}' is listed twice")
    problems.raise_if_any()
    return outputs


def _build_order(model: ModelSpec) -> list[int]:
    """Indices of the layers in an order where every layer follows its inputs (Kahn)."""
    index_of = {layer["name"]: i for i, layer in enumerate(model.layers)}
    waiting = [sum(1 for n in set(names) if n in index_of) for names in model.layer_inputs]
    consumers: dict[int, list[int]] = {}
    for i, names in enumerate(model.layer_inputs):
        for name in set(names):
            if name in index_of:
                consumers.setdefault(index_of[name], []).append(i)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    order = []
    while ready:
        current = ready.pop(0)
        order.append(current)
        for consumer in consumers.get(current, []):
            waiting[consumer] -= 1
            if waiting[consumer] == 0:
                ready.append(consumer)
    if len(order) < len(model.layers):
        stuck = [i for i in range(len(model.layers)) if i not in set(order)]
        cycle = ", ".join(f"'{model.layers[i]['name']}'" for i in stuck[:8])
        _fail(f"layers[{stuck[0]}].inputs",
              f"{model.label(stuck[0])}: the layers {cycle} form a cycle (or depend on one); "
              "a functional model must be a directed acyclic graph")
    return order


def _check_reachability(model: ModelSpec) -> None:
    """Every input and layer must lie on a path to some output."""
    index_of = {layer["name"]: i for i, layer in enumerate(model.layers)}
    reached, stack = set(), list(model.outputs)
    while stack:
        name = stack.pop()
        if name in reached:
            continue
        reached.add(name)
        if name in index_of:
            stack.extend(model.layer_inputs[index_of[name]])
    problems = _Problems()
    for i, item in enumerate(model.inputs):
        if item["name"] not in reached:
            problems.add(f"inputs[{i}]", f"Input '{item['name']}' is not used by any layer "
                                         "that leads to an output")
    for i, layer in enumerate(model.layers):
        if layer["name"] not in reached:
            problems.add(f"layers[{i}]", f"{model.label(i)}: does not lead to any output; "
                                         "remove it or list it in 'outputs'")
    problems.raise_if_any()
