"""Keras' `config.json` of an uploaded `.keras` file, translated into a model spec.

The file is never given to Keras' deserializer: even with ``safe_mode=True`` it imports the
modules a config names, calls public `keras.config` functions given as a Lambda's function,
and allocates every layer's weights before any size check (CVE-2024-3660, CVE-2025-1550,
CVE-2025-8747, CVE-2025-9905, CVE-2025-9906, CVE-2025-12058, CVE-2026-1462). Instead the
config is read as plain JSON and translated, key by key, into the spec clients send to
`POST /models`; that spec then meets the same allow-list, caps and stateless build as any
other. Translation accepts only the shapes Keras writes for the catalogue's built-in
classes; every `module`, `registered_name` and function reference outside them is refused.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import keras
import numpy as np

from service.errors import InvalidSpec, LimitExceeded
from service.keras_ops.arguments import (
    ArgumentError,
    json_default,
    received,
    signature_defaults,
)
from service.keras_ops.catalog import LAYERS
from service.keras_ops.compilation import LOSS, METRIC, OPTIMIZER, normalize_compile_spec
from service.keras_ops.objects import ACTIVATION, CONSTRAINT, INITIALIZER, REGULARIZER
from service.keras_ops.specs import MAX_MODEL_IO

# The model headers Keras 3 writes for the two kinds of model a spec can describe.
MODEL_HEADERS = {
    ("keras", "Sequential", None): "sequential",
    ("keras.src.models.functional", "Functional", "Functional"): "functional",
}
MODEL_KEYS = frozenset({"module", "class_name", "config", "registered_name", "build_config",
                        "compile_config"})
OBJECT_KEYS = frozenset({"module", "class_name", "config", "registered_name"})
SHARED_OBJECT_KEYS = OBJECT_KEYS | {"shared_object_id"}
LAYER_KEYS = OBJECT_KEYS | {"build_config"}
GRAPH_LAYER_KEYS = LAYER_KEYS | {"name", "inbound_nodes"}
INPUT_LAYER_CONFIG = frozenset({"batch_shape", "dtype", "sparse", "ragged", "name", "optional"})
# Serialized objects, by module: the allow-list that decides which class names are accepted.
OBJECT_KINDS = {"keras.initializers": INITIALIZER, "keras.regularizers": REGULARIZER,
                "keras.constraints": CONSTRAINT}
COMPILE_KINDS = {"keras.losses": LOSS, "keras.optimizers": OPTIMIZER, "keras.metrics": METRIC}
# Keras writes built-in functions as {"class_name": "function", "config": "<name>"}; only
# these modules' functions are accepted, and then only as a name in their allow-list.
FUNCTION_KINDS = {"keras.activations": ACTIVATION, "keras.losses": LOSS,
                  "keras.metrics": METRIC}
# How Keras runs a compiled model, which the service decides: checked as values, not used.
COMPILE_RUNTIME = frozenset({"run_eagerly", "jit_compile", "steps_per_execution",
                             "auto_scale_loss"})
# The service computes in float32: a dtype of float32 is the default, written out.
FLOATX = "float32"
# Defaults of None that Keras writes out as what they stand for.
SPELLED_DEFAULTS = {"dtype": FLOATX, "activation": "linear"}
# Keys Keras writes in layer configs that no constructor takes, at the value every layer
# built here has; another value would change what the layer computes.
CONFIG_ONLY = {"zero_output_for_mask": False, "unroll": False, "rms_scaling": False,
               "seed": None, "data_format": "channels_last", "oov_method": "floormod"}
# Keys Keras derives from other arguments (a lookup's vocabulary size): rebuilt, not read.
DERIVED = {"vocabulary_size": int}
# Call arguments Keras records on a graph node: the rebuilt graph calls layers as every
# model built here does, so these are checked for shape and otherwise not used.
NODE_KWARGS = {"training": (True, False, None), "mask": (None,)}
_LAYER_DEFAULTS = signature_defaults(keras.layers.Layer.__init__)
CODE_HINT = ("a .keras file may hold only built-in Keras layers and objects from the "
             "allow-list (GET /catalog), never code")


class _NotAllowListed(Exception):
    """A compile setting that is a Keras built-in but not on the allow-list."""


@dataclasses.dataclass(frozen=True)
class ImportedConfig:
    """What a `.keras` file's config describes, as the service's own specs.

    Attributes:
        spec: a sequential or functional model spec, not yet checked.
        compile: a checked compile spec, or None (the model is imported uncompiled).
        name: the model's name in the file.
    """

    spec: dict
    compile: dict | None
    name: Any


def _refuse(path: str, message: str):
    message = f"config.json {path}: {message}"
    raise InvalidSpec(message, errors=[{"path": path, "message": message}])


def _mapping(value: Any, path: str, what: str) -> dict:
    if not isinstance(value, dict):
        _refuse(path, f"expected {what} (a JSON object); received {received(value)}")
    return value


def _keys(value: Any, allowed: frozenset, path: str, what: str) -> dict:
    _mapping(value, path, what)
    unknown = sorted(str(key) for key in value if key not in allowed)
    if unknown:
        _refuse(f"{path}.{unknown[0]}", f"{what} has no key '{unknown[0]}' in a file this "
                f"service accepts; it has only {', '.join(sorted(allowed))}")
    return value


def _is_default(value: Any, default: Any, key: str) -> bool:
    spelled = SPELLED_DEFAULTS.get("activation" if key.endswith("activation") else key)
    if default is None and spelled is not None and value == spelled:
        return True
    try:
        default = json_default(default)
    except TypeError:
        return False
    if isinstance(value, float) and isinstance(default, float):
        # Keras keeps hyperparameters as float32 variables: 0.01 comes back 0.00999999977.
        return bool(np.float32(value) == np.float32(default))
    return json.dumps(value, sort_keys=True) == json.dumps(default, sort_keys=True)


class _Translator:
    """Translates one config; `compile_mode` marks the compile settings' objects."""

    def __init__(self, max_layers: int):
        self.max_layers = max_layers

    # -- values ------------------------------------------------------------------------------

    def value(self, value: Any, path: str, compile_mode: bool = False) -> Any:
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, list):
            return [self.value(item, f"{path}[{i}]", compile_mode)
                    for i, item in enumerate(value)]
        if isinstance(value, dict) and "class_name" not in value and compile_mode:
            # Per-output losses and metrics: {output name: ...}.
            return {key: self.value(item, f"{path}.{key}", compile_mode)
                    for key, item in value.items()}
        return self.object(value, path, compile_mode)

    def object(self, value: Any, path: str, compile_mode: bool) -> Any:
        if isinstance(value, dict) and value.get("module") == "keras.layers":
            return self.layer(value, path, LAYER_KEYS)  # a wrapper's layer
        _keys(value, SHARED_OBJECT_KEYS, path, "a serialized Keras object")
        if not isinstance(value.get("shared_object_id", 0), int):
            _refuse(f"{path}.shared_object_id", "expected an integer")
        module, class_name = value.get("module"), value.get("class_name")
        registered, config = value.get("registered_name"), value.get("config")
        if class_name == "function" or registered == "function":
            return self.function(module, config, path)
        if registered is not None:
            _refuse(f"{path}.registered_name", f"names the registered (custom) object "
                    f"{received(registered)}; {CODE_HINT}")
        if module == "keras" and class_name == "DTypePolicy":
            return _keys(config, frozenset({"name"}), f"{path}.config", "a dtype policy")["name"]
        kind = OBJECT_KINDS.get(module) or (COMPILE_KINDS.get(module) if compile_mode else None)
        if kind is None:
            if compile_mode and isinstance(module, str) and module.startswith("keras."):
                raise _NotAllowListed(path)
            _refuse(f"{path}.module", f"names the module {received(module)}; {CODE_HINT}")
        try:
            canonical = kind.check(class_name)
        except ArgumentError:
            if compile_mode:
                raise _NotAllowListed(path) from None
            _refuse(f"{path}.class_name", f"{received(class_name)} is not an allow-listed "
                    f"{kind.kind} (GET /catalog lists them)")
        config = _mapping(config, f"{path}.config", "a config")
        defaults = signature_defaults(kind.table[canonical].cls.__init__)
        arguments = {}
        for key, raw in config.items():
            item = self.value(raw, f"{path}.config.{key}", compile_mode)
            # A loss's, metric's or optimizer's name only labels it in histories.
            if (compile_mode and key == "name") or (
                    key in defaults and _is_default(item, defaults[key], key)):
                continue
            arguments[key] = item
        return {"type": canonical, **arguments} if arguments else canonical

    def function(self, module: Any, name: Any, path: str) -> str:
        if module not in FUNCTION_KINDS or not isinstance(name, str):
            _refuse(path, f"refers to the function {received(module)}.{received(name)}; only "
                    "built-in activations, losses and metrics are accepted by name, and "
                    f"{CODE_HINT}")
        return name

    # -- layers ------------------------------------------------------------------------------

    def layer(self, item: Any, path: str, allowed: frozenset) -> dict:
        """One serialized layer as a layer call `{"type", **arguments}` (not yet checked)."""
        _keys(item, allowed, path, "a serialized layer")
        if item.get("module") != "keras.layers" or item.get("registered_name") is not None:
            _refuse(path, f"is a layer from module {received(item.get('module'))} "
                    f"(registered name {received(item.get('registered_name'))}); {CODE_HINT}")
        _check_build_config(item.get("build_config"), f"{path}.build_config")
        kind = item.get("class_name")
        if kind not in LAYERS:
            # The spec check refuses it, with the reason (Lambda, TFSMLayer, ...).
            return {"type": kind}
        config = _mapping(item.get("config"), f"{path}.config", "a layer config")
        defaults = {**CONFIG_ONLY, **_LAYER_DEFAULTS, **LAYERS[kind].defaults}
        call = {"type": kind}
        for key, raw in config.items():
            value = self.value(raw, f"{path}.config.{key}")
            if key in DERIVED and isinstance(value, DERIVED[key]):
                continue
            if key in defaults and key != "name" and _is_default(value, defaults[key], key):
                continue
            call[key] = value
        if kind == "Bidirectional":
            _mirrored_backward_layer(call, path)
        return call

    def input_layer(self, item: Any, path: str, allowed: frozenset) -> dict:
        """An InputLayer as a model input `{"name", "shape", "dtype"}` (not yet checked)."""
        _keys(item, allowed, path, "a serialized layer")
        config = _keys(item.get("config"), INPUT_LAYER_CONFIG, f"{path}.config",
                       "an InputLayer config")
        for flag in ("sparse", "ragged", "optional"):
            if config.get(flag, False) is not False:
                _refuse(f"{path}.config.{flag}", f"{flag} inputs are not supported; received "
                        f"{received(config.get(flag))}")
        shape = config.get("batch_shape")
        if not isinstance(shape, list) or not shape or shape[0] is not None:
            _refuse(f"{path}.config.batch_shape", "expected [null, ...dimensions] (any batch "
                    f"size); received {received(shape)}")
        return {"name": config.get("name"), "shape": shape[1:],
                "dtype": self.value(config.get("dtype", FLOATX), f"{path}.config.dtype")}

    # -- models ------------------------------------------------------------------------------

    def layer_list(self, config: dict, path: str) -> list:
        layers = config.get("layers")
        if not isinstance(layers, list) or not layers:
            _refuse(f"{path}.layers", f"expected a list of layers; received {received(layers)}")
        # Input layers are not counted by the layer cap; anything past both is refused unread.
        if len(layers) > self.max_layers + MAX_MODEL_IO:
            raise LimitExceeded(
                f"The file's model has {len(layers)} layers, over the cap of "
                f"{self.max_layers} (KERAS_SERVICE_MAX_LAYERS).",
                errors=[{"path": f"{path}.layers", "message": "too many"}])
        return layers

    def sequential(self, config: Any, path: str) -> dict:
        config = _keys(config, frozenset({"name", "trainable", "dtype", "layers",
                                          "build_input_shape"}), path, "a Sequential config")
        _check_model_defaults(self, config, path)
        layers = self.layer_list(config, path)
        if not isinstance(layers[0], dict) or layers[0].get("class_name") != "InputLayer":
            _refuse(f"{path}.layers[0]", "the model was saved without an input shape (no "
                    "InputLayer), so it has no weights to import; build it first")
        model_input = self.input_layer(layers[0], f"{path}.layers[0]", LAYER_KEYS)
        if model_input["dtype"] != FLOATX:
            _refuse(f"{path}.layers[0].config.dtype", "a sequential model's input is float32 "
                    f"here; received {received(model_input['dtype'])}. Save it as a "
                    "functional model (keras.Model(inputs, outputs)) to keep that dtype")
        calls = [self.layer(item, f"{path}.layers[{i}]", LAYER_KEYS)
                 for i, item in enumerate(layers[1:], start=1)]
        if not calls:
            _refuse(f"{path}.layers", "the model has no layers besides its input")
        calls[0]["input_shape"] = model_input["shape"]
        return {"type": "sequential", "layers": calls}

    def functional(self, config: Any, path: str) -> dict:
        config = _keys(config, frozenset({"name", "trainable", "layers", "input_layers",
                                          "output_layers"}), path, "a Functional config")
        _check_model_defaults(self, config, path)
        inputs, calls = {}, []
        for i, item in enumerate(self.layer_list(config, path)):
            where = f"{path}.layers[{i}]"
            if isinstance(item, dict) and item.get("class_name") == "InputLayer":
                model_input = self.input_layer(item, where, GRAPH_LAYER_KEYS)
                if item.get("inbound_nodes") != []:
                    _refuse(f"{where}.inbound_nodes", "an InputLayer takes no inputs")
                inputs[_graph_name(item, model_input["name"], where)] = model_input
                continue
            call = self.layer(item, where, GRAPH_LAYER_KEYS)
            call["name"] = _graph_name(item, call.get("name"), where)
            call["inputs"] = _node_inputs(item, call["type"], where)
            calls.append(call)
        ordered = [_history_name(entry, f"{path}.input_layers[{i}]")
                   for i, entry in enumerate(_history_list(config.get("input_layers"),
                                                           f"{path}.input_layers"))]
        if sorted(ordered) != sorted(inputs):
            _refuse(f"{path}.input_layers", f"expected the InputLayers {sorted(inputs)}; "
                    f"received {received(ordered)}")
        outputs = [_history_name(entry, f"{path}.output_layers[{i}]")
                   for i, entry in enumerate(_history_list(config.get("output_layers"),
                                                           f"{path}.output_layers"))]
        return {"type": "functional", "inputs": [inputs[name] for name in ordered],
                "layers": calls, "outputs": outputs}

    def compile(self, compile_config: Any, path: str) -> dict | None:
        """The compile settings as a compile spec, or None where they are not allow-listed."""
        if compile_config is None:
            return None
        allowed = frozenset({"optimizer", "loss", "loss_weights", "metrics",
                             "weighted_metrics", *COMPILE_RUNTIME})
        _keys(compile_config, allowed, path, "a compile config")
        try:
            settings = {key: self.value(value, f"{path}.{key}", compile_mode=True)
                        for key, value in compile_config.items()}
        except _NotAllowListed:
            return None
        if settings.get("weighted_metrics") is not None:
            return None
        return {key: settings[key] for key in ("loss", "optimizer", "metrics", "loss_weights")
                if settings.get(key) is not None}


def _check_model_defaults(translator: _Translator, config: dict, path: str) -> None:
    if config.get("trainable", True) is not True:
        _refuse(f"{path}.trainable", "a model frozen as a whole is not supported; freeze "
                "layers one by one (trainable: false on each)")
    if "dtype" in config and translator.value(config["dtype"], f"{path}.dtype") != FLOATX:
        _refuse(f"{path}.dtype", f"expected the float32 policy; received "
                f"{received(config['dtype'])}")


def _check_build_config(build_config: Any, path: str) -> None:
    """Keras' build config is never used (the model is rebuilt); it may hold only shapes."""
    if build_config is None:
        return
    _keys(build_config, frozenset({"input_shape", "shapes_dict"}), path, "a build config")
    stack = list(build_config.values())
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif node is not None and (not isinstance(node, int) or isinstance(node, bool)):
            _refuse(path, f"expected shapes (integers and nulls); received {received(node)}")


def _mirrored_backward_layer(call: dict, path: str) -> None:
    """Keras writes Bidirectional's 'layer' as "forward_<name>" beside its mirror,
    "backward_<name>" running the other way; only that mirror is accepted (a spec cannot
    give another), and 'layer' gets its own name back."""
    forward, backward = call.get("layer"), call.pop("backward_layer", None)
    name = forward.get("name") if isinstance(forward, dict) else None
    if not isinstance(name, str) or not name.startswith("forward_"):
        _refuse(f"{path}.config.layer.config.name", "expected the forward layer Keras names "
                f"\"forward_<name>\"; received {received(name)}")
    base = name[len("forward_"):]
    mirror = {**forward, "name": f"backward_{base}"}
    if mirror.pop("go_backwards", False) is False:
        mirror["go_backwards"] = True
    if backward != mirror:
        _refuse(f"{path}.config.backward_layer", "only the mirror of 'layer' that Keras "
                "derives is accepted as the backward layer")
    call["layer"] = {**forward, "name": base}


def _graph_name(item: dict, config_name: Any, path: str) -> Any:
    if item.get("name") != config_name:
        _refuse(f"{path}.name", f"the layer is called {received(item.get('name'))} in the "
                f"graph and {received(config_name)} in its config")
    return config_name


def _history_list(entries: Any, path: str) -> list:
    # One input or output may be written as a single [name, 0, 0].
    if isinstance(entries, list) and entries and isinstance(entries[0], str):
        entries = [entries]
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_MODEL_IO:
        _refuse(path, f"expected a list of 1 to {MAX_MODEL_IO} [layer name, 0, 0]; received "
                f"{received(entries)}")
    return entries


def _history_name(entry: Any, path: str) -> str:
    if (not isinstance(entry, list) or len(entry) != 3 or not isinstance(entry[0], str)
            or entry[1:] != [0, 0]):
        _refuse(path, "expected [layer name, 0, 0] (layers applied once, one output each); "
                f"received {received(entry)}")
    return entry[0]


def _tensor_name(tensor: Any, path: str) -> str:
    tensor = _keys(tensor, frozenset({"class_name", "config"}), path, "a tensor")
    config = _keys(tensor.get("config"), frozenset({"shape", "dtype", "keras_history"}),
                   f"{path}.config", "a tensor")
    if tensor.get("class_name") != "__keras_tensor__":
        _refuse(f"{path}.class_name", f"expected a tensor; received "
                f"{received(tensor.get('class_name'))}")
    return _history_name(config.get("keras_history"), f"{path}.config.keras_history")


def _node_inputs(item: dict, kind: Any, path: str) -> list[str]:
    """The names of the layers whose outputs a layer takes, from its one inbound node."""
    nodes = item.get("inbound_nodes")
    if not isinstance(nodes, list) or len(nodes) != 1:
        _refuse(f"{path}.inbound_nodes", "expected a layer applied exactly once; received "
                f"{len(nodes) if isinstance(nodes, list) else received(nodes)} application(s)")
    node = _keys(nodes[0], frozenset({"args", "kwargs"}), f"{path}.inbound_nodes[0]", "a node")
    args, where = node.get("args"), f"{path}.inbound_nodes[0].args"
    kwargs = node.get("kwargs") or {}
    if not isinstance(kwargs, dict) or any(
            key not in NODE_KWARGS or not any(value is v for v in NODE_KWARGS[key])
            for key, value in kwargs.items()):
        _refuse(f"{path}.inbound_nodes[0].kwargs", "expected no call arguments but training "
                f"(true, false or null) and mask (null); received {received(kwargs)}")
    if kind not in LAYERS:
        return []
    if LAYERS[kind].inputs == "list":
        if not isinstance(args, list) or len(args) != 1 or not isinstance(args[0], list):
            _refuse(where, f"expected [[tensors]]; received {received(args)}")
        args, where = args[0], f"{where}[0]"
    if not isinstance(args, list) or not 1 <= len(args) <= MAX_MODEL_IO:
        _refuse(where, f"expected a list of tensors; received {received(args)}")
    if LAYERS[kind].inputs == "one" and len(args) != 1:
        _refuse(where, f"expected one tensor; received {len(args)}")
    return [_tensor_name(tensor, f"{where}[{i}]") for i, tensor in enumerate(args)]


def translate_config(config: Any, max_layers: int) -> ImportedConfig:
    """Translate a `.keras` file's parsed `config.json` into the service's specs.

    Args:
        config: the parsed JSON (already bounded in size and depth).
        max_layers: the layer cap (KERAS_SERVICE_MAX_LAYERS).

    Returns:
        The model spec (to check with `normalize_model_spec`), the compile spec or None, and
        the model's name in the file.

    Raises:
        InvalidSpec: the config is not one Keras writes for allow-listed built-ins.
        LimitExceeded: far more layers than the cap.
    """
    translator = _Translator(max_layers)
    top = _keys(config, MODEL_KEYS, "", "a serialized model")
    header = (top.get("module"), top.get("class_name"), top.get("registered_name"))
    kind = MODEL_HEADERS.get(header)
    if kind is None:
        _refuse("class_name", f"expected a Sequential or Functional model of Keras 3; received "
                f"module {received(header[0])}, class {received(header[1])}, registered name "
                f"{received(header[2])}")
    _check_build_config(top.get("build_config"), "build_config")
    model_config = top.get("config")
    spec = (translator.sequential(model_config, "config") if kind == "sequential"
            else translator.functional(model_config, "config"))
    compile_spec = translator.compile(top.get("compile_config"), "compile_config")
    name = model_config.get("name")
    return ImportedConfig(spec, compile_spec, name)


def checked_compile(compile_spec: dict | None, output_names: list[str]) -> dict | None:
    """`compile_spec` normalized against the allow-list, or None when it does not fit it."""
    if compile_spec is None or "loss" not in compile_spec:
        return None
    try:
        return normalize_compile_spec(compile_spec, output_names)
    except InvalidSpec:
        return None
