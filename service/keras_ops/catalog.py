"""The layer allow-list: which Keras layers a spec may use, and how each argument is checked.

Argument descriptors are shared by argument name (``units``, ``kernel_size``, ``padding``,
``*_initializer``, ...), with per-layer overrides where the meaning differs. Argument names
and defaults come from each Keras class's ``__init__`` signature, so the catalogue follows
Keras; a signature argument with no descriptor is simply not exposed.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Mapping
from typing import Any

import keras

from service.keras_ops.arguments import (
    AXIS,
    FORBIDDEN_KEYS,
    FORBIDDEN_MESSAGE,
    SEED,
    AnyOf,
    ArgumentError,
    Boolean,
    Choice,
    Descriptor,
    Integer,
    ListOf,
    Nullable,
    Number,
    Spatial,
    Text,
    check_arguments,
    describe_arguments,
    did_you_mean,
    received,
    signature_defaults,
)
from service.keras_ops.objects import ACTIVATION, CONSTRAINT, INITIALIZER, REGULARIZER

NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_.-]{0,63}"
NAME = Text(NAME_PATTERN, "a name of 1 to 64 letters, digits, '_', '.' or '-', "
                          "starting with a letter")
LAYER_DTYPES = ("float16", "bfloat16", "float32", "float64", "mixed_float16",
                "mixed_bfloat16", "int32", "int64")
INPUT_DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32",
                "int64", "uint8", "bool", "string")

# Arguments every layer takes through **kwargs of keras.layers.Layer.
BASE_ARGUMENTS: dict[str, Descriptor] = {
    "name": NAME, "trainable": Boolean(), "dtype": Nullable(Choice(LAYER_DTYPES))}
_BASE_DEFAULTS = {"name": None, "trainable": True, "dtype": None}

# Signature arguments deliberately never exposed, and why (a test holds every Keras
# signature argument to either a descriptor or an entry here).
NOT_EXPOSED = {
    "lora_rank": "LoRA is a fine-tuning device, not part of a model spec",
    "lora_alpha": "LoRA is a fine-tuning device, not part of a model spec",
    "quantization_config": "quantization takes objects, not JSON",
    "gptq_unpacked_column_size": "quantization internals",
    "weights": "initial weights are arrays, not spec arguments",
    "backward_layer": "a second layer object; the backward layer is derived from 'layer'",
    "use_cudnn": "a device choice the server makes",
    "flash_attention": "a device choice the server makes",
    "sliding_window": "an attention-kernel option",
    "noise_shape": "needs symbolic batch sizes",
    "stateful": "needs a fixed batch size and state handling the service does not offer",
    "unroll": "unrolling long sequences builds unbounded graphs",
    "synchronized": "distributed training is the server's choice",
    "renorm_clipping": "a dict of tensors-to-be; renorm works without it",
    "sparse": "sparse outputs cannot be served as JSON",
    "ragged": "ragged outputs cannot be served as JSON",
    "encoding": "text is always UTF-8",
    "idf_weights": "only meaningful with adapt(); not a spec argument",
    "vocabulary_dtype": "follows the input dtype",
    "oov_method": "an internal hashing choice",
    "mask_value": "Hashing's mask_value mixes types; Masking exposes its own",
    "name": "exposed as a base argument",
    "dtype": "exposed as a base argument",
}

_SIZE = Spatial(1, 1024)
_RATE = Number(0, 1, exclusive_maximum=True)
_FACTOR = AnyOf((Number(-1, 1), ListOf(Number(-1, 1), 2, 2)))
_BIG = 1e9
_VALUES = AnyOf((Number(-_BIG, _BIG), ListOf(Number(-_BIG, _BIG), 1, 65536, as_tuple=False)))
_TOKEN = Text(r"[^\x00]{0,256}", "a string of at most 256 characters")
_DIMENSION = Integer(1, 65536)

SHARED_ARGUMENTS: dict[str, Descriptor] = {
    "units": _DIMENSION,
    "filters": Integer(1, 16384),
    "kernel_size": _SIZE, "strides": _SIZE, "dilation_rate": _SIZE, "pool_size": _SIZE,
    "size": _SIZE,
    "padding": Choice(("valid", "same")),
    "output_padding": Nullable(Spatial(0, 1024)),
    "cropping": Spatial(0, 1024, pairs=True),
    "data_format": Nullable(Choice(("channels_last", "channels_first"))),
    "groups": Integer(1, 16384),
    "depth_multiplier": Integer(1, 1024),
    "rate": _RATE, "dropout": _RATE, "recurrent_dropout": _RATE,
    "seed": SEED,
    "axis": AXIS,
    "epsilon": Number(0, 1, exclusive_minimum=True),
    "momentum": Number(0, 1), "renorm_momentum": Number(0, 1),
    "input_dim": Integer(1, 1 << 24),
    "output_dim": _DIMENSION,
    "n": _DIMENSION,
    "target_shape": ListOf(Integer(-1, 1 << 20), 1, 8),
    "dims": ListOf(Integer(1, 8), 1, 8),
    "mask_value": Number(-_BIG, _BIG),
    "num_heads": Integer(1, 256), "num_query_heads": Integer(1, 256),
    "num_key_value_heads": Integer(1, 256),
    "key_dim": Integer(1, 4096), "value_dim": Nullable(Integer(1, 4096)),
    "head_dim": Integer(1, 4096),
    "attention_axes": Nullable(AXIS),
    "score_mode": Choice(("dot", "concat")),
    "merge_mode": Nullable(Choice(("sum", "mul", "concat", "ave"))),
    "axes": AnyOf((Integer(-8, 8), ListOf(Integer(-8, 8), 2, 2))),
    "stddev": Number(0, 1e3), "l1": Number(0, 1e3), "l2": Number(0, 1e3),
    "offset": Number(-1e6, 1e6),
    "height": Integer(1, 8192), "width": Integer(1, 8192),
    "interpolation": Choice(("nearest", "bilinear", "bicubic", "area", "lanczos3", "lanczos5")),
    "fill_mode": Choice(("reflect", "wrap", "constant", "nearest", "crop")),
    "fill_value": Number(-1e6, 1e6),
    "mode": Choice(("horizontal", "vertical", "horizontal_and_vertical")),
    "factor": _FACTOR, "height_factor": _FACTOR, "width_factor": Nullable(_FACTOR),
    "value_range": ListOf(Number(-1e6, 1e6), 2, 2),
    "mean": Nullable(_VALUES), "variance": Nullable(_VALUES),
    "num_tokens": Nullable(Integer(1, 1 << 20)),
    "output_mode": Choice(("int", "one_hot", "multi_hot", "count", "tf_idf")),
    "num_bins": Nullable(Integer(1, 1 << 24)),
    "salt": Nullable(Integer(0, 2**31 - 1)),
    "bin_boundaries": Nullable(ListOf(Number(-1e12, 1e12), 1, 10_000, as_tuple=False)),
    "max_tokens": Nullable(Integer(1, 1 << 20)),
    "num_oov_indices": Integer(0, 1024),
    "output_sequence_length": Nullable(Integer(1, 1 << 16)),
    "ngrams": Nullable(Integer(1, 5)),
    "standardize": Nullable(Choice(("lower_and_strip_punctuation", "lower",
                                    "strip_punctuation"))),
    "split": Nullable(Choice(("whitespace", "character"))),
    "max_value": Nullable(Number(0, _BIG)),
    "negative_slope": Number(0, 1e3), "threshold": Number(-_BIG, _BIG),
    "alpha": Number(-1e3, 1e3),
    "shared_axes": Nullable(ListOf(Integer(1, 8), 1, 8)),
    "equation": Text(r"[a-zA-Z.]{1,16},[a-zA-Z.]{1,16}->[a-zA-Z.]{1,16}",
                     "an einsum equation such as 'ab,bc->ac'"),
    "output_shape": Nullable(AnyOf((_DIMENSION, ListOf(Nullable(_DIMENSION), 1, 8)))),
    "bias_axes": Nullable(Text(r"[a-zA-Z]{1,16}", "einsum output letters such as 'c'")),
    **{flag: Boolean() for flag in (
        "use_bias", "center", "scale", "keepdims", "return_sequences", "return_state",
        "go_backwards", "unit_forget_bias", "reset_after", "mask_zero", "use_scale",
        "normalize", "invert", "crop_to_aspect_ratio", "pad_to_aspect_ratio", "antialias",
        "use_gate", "renorm", "pad_to_max_tokens")},
}


def shared_descriptor(name: str) -> Descriptor | None:
    """The descriptor an argument name has in every layer, or None (not exposed)."""
    if name in SHARED_ARGUMENTS:
        return SHARED_ARGUMENTS[name]
    if name.endswith("_initializer"):
        return INITIALIZER
    if name.endswith("_regularizer"):
        return Nullable(REGULARIZER)
    if name.endswith("_constraint"):
        return Nullable(CONSTRAINT)
    if name.endswith("activation"):
        return Nullable(ACTIVATION)
    return None


@dataclasses.dataclass(frozen=True)
class NestedLayer(Descriptor):
    """A wrapper's `layer` argument: a nested layer spec from the same allow-list."""

    allowed: tuple[str, ...]

    @property
    def expectation(self) -> str:
        return "a layer spec {\"type\": ...} of type " + ", ".join(self.allowed)

    def check(self, value):
        if not isinstance(value, dict):
            raise self.refuse(value)
        kind = value.get("type")
        if kind not in self.allowed:
            raise ArgumentError(f"expects a layer of type {', '.join(self.allowed)}; received "
                                f"{received(kind)}" + did_you_mean(kind, list(self.allowed)),
                                ".type")
        normalized, problems = check_layer(value)
        if problems:
            argument, subpath, message = problems[0]
            raise ArgumentError(message, f".{argument}{subpath}")
        return normalized

    def to_keras(self, value):
        return make_layer(value)

    def describe(self):
        return {"type": "layer", "allowed": list(self.allowed)}


@dataclasses.dataclass(frozen=True)
class LayerEntry:
    """One allow-listed layer type.

    Attributes:
        type: the Keras class name, as clients write it.
        category: a heading for the catalogue.
        example: a minimal working use, `{"inputs": [shape, ...], "arguments": {...}}`
            (optionally `"dtype"`), shown in the catalogue and built by the tests.
        rank: spatial dimensions, for kernel_size-like arguments.
        inputs: "one" (called on one tensor), "list" (on a list of tensors: merges,
            Attention) or "many" (positional tensors: query, value, key).
        input_count: how many inputs it takes, (least, most).
        overrides: argument name to descriptor where the shared one does not fit; None hides.
    """

    type: str
    category: str
    example: Mapping[str, Any]
    rank: int = 1
    inputs: str = "one"
    input_count: tuple[int, int] = (1, 1)
    overrides: Mapping[str, Descriptor | None] = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def cls(self) -> type:
        return getattr(keras.layers, self.type)

    @functools.cached_property
    def defaults(self) -> dict[str, Any]:
        return signature_defaults(self.cls.__init__)

    @functools.cached_property
    def arguments(self) -> dict[str, Descriptor]:
        """Argument name to descriptor, for every argument a client may give."""
        accepted = {}
        for name in self.defaults:
            if name in BASE_ARGUMENTS:
                continue
            descriptor = (self.overrides[name] if name in self.overrides
                          else shared_descriptor(name))
            if isinstance(descriptor, Spatial):
                descriptor = descriptor.for_rank(self.rank)
            elif isinstance(descriptor, Nullable) and isinstance(descriptor.inner, Spatial):
                # Pooling strides, transposed convolutions' output_padding: per rank too.
                descriptor = Nullable(descriptor.inner.for_rank(self.rank))
            if descriptor is not None:
                accepted[name] = descriptor
        return {**accepted, **BASE_ARGUMENTS}

    def document(self) -> dict:
        doc = (self.cls.__doc__ or "").strip().splitlines()
        return {
            "category": self.category,
            "description": doc[0].strip() if doc else "",
            "arguments": describe_arguments(self.arguments, {**_BASE_DEFAULTS, **self.defaults}),
            "inputs": self.inputs,
            "input_count": {"minimum": self.input_count[0], "maximum": self.input_count[1]},
            "example": dict(self.example),
        }


def _example(shapes, dtype=None, **arguments) -> dict:
    example = {"inputs": shapes, "arguments": arguments}
    return {**example, "dtype": dtype} if dtype else example


def _entries() -> list[LayerEntry]:
    one, seq, img, vol = [[8]], [[6, 3]], [[8, 8, 3]], [[4, 4, 4, 1]]
    causal = {"padding": Choice(("valid", "same", "causal"))}
    pool_strides = {"strides": Nullable(_SIZE)}
    zero_padding = {"padding": Spatial(0, 1024, pairs=True)}
    recurrent = ("LSTM", "GRU", "SimpleRNN", "ConvLSTM1D", "ConvLSTM2D")
    entries = [
        LayerEntry("Dense", "core", _example(one, units=4)),
        LayerEntry("EinsumDense", "core", _example(one, equation="ab,bc->ac", output_shape=4)),
        LayerEntry("Activation", "core", _example(one, activation="relu")),
        LayerEntry("Dropout", "core", _example(one, rate=0.5)),
        LayerEntry("Flatten", "core", _example([[2, 3]])),
        LayerEntry("Reshape", "core", _example([[6]], target_shape=[3, 2])),
        LayerEntry("Permute", "core", _example([[2, 3]], dims=[2, 1])),
        LayerEntry("RepeatVector", "core", _example(one, n=3)),
        LayerEntry("Identity", "core", _example(one)),
        LayerEntry("Masking", "core", _example(seq)),
        LayerEntry("Embedding", "core", _example([[5]], input_dim=10, output_dim=4)),
        LayerEntry("Conv1D", "convolution", _example(seq, filters=2, kernel_size=3),
                   overrides=causal),
        LayerEntry("Conv2D", "convolution", _example(img, filters=2, kernel_size=3), rank=2),
        LayerEntry("Conv3D", "convolution", _example(vol, filters=2, kernel_size=3), rank=3),
        LayerEntry("Conv1DTranspose", "convolution", _example(seq, filters=2, kernel_size=3)),
        LayerEntry("Conv2DTranspose", "convolution", _example(img, filters=2, kernel_size=3),
                   rank=2),
        LayerEntry("Conv3DTranspose", "convolution", _example(vol, filters=2, kernel_size=3),
                   rank=3),
        LayerEntry("SeparableConv1D", "convolution", _example(seq, filters=2, kernel_size=3)),
        LayerEntry("SeparableConv2D", "convolution", _example(img, filters=2, kernel_size=3),
                   rank=2),
        LayerEntry("DepthwiseConv1D", "convolution", _example(seq, kernel_size=3)),
        LayerEntry("DepthwiseConv2D", "convolution", _example(img, kernel_size=3), rank=2),
    ]
    for pool in ("MaxPooling", "AveragePooling"):
        for rank, shape in ((1, seq), (2, img), (3, vol)):
            entries.append(LayerEntry(f"{pool}{rank}D", "pooling", _example(shape, pool_size=2),
                                      rank=rank, overrides=pool_strides))
    for pool in ("GlobalMaxPooling", "GlobalAveragePooling"):
        for rank, shape in ((1, seq), (2, img), (3, vol)):
            entries.append(LayerEntry(f"{pool}{rank}D", "pooling", _example(shape), rank=rank))
    entries += [
        LayerEntry("LSTM", "recurrent", _example(seq, units=4)),
        LayerEntry("GRU", "recurrent", _example(seq, units=4)),
        LayerEntry("SimpleRNN", "recurrent", _example(seq, units=4)),
        LayerEntry("ConvLSTM1D", "recurrent", _example([[3, 6, 2]], filters=2, kernel_size=3)),
        LayerEntry("ConvLSTM2D", "recurrent", _example([[2, 6, 6, 1]], filters=2,
                                                       kernel_size=3), rank=2),
        LayerEntry("Bidirectional", "recurrent",
                   _example(seq, layer={"type": "LSTM", "units": 4}),
                   overrides={"layer": NestedLayer(recurrent)}),
        LayerEntry("BatchNormalization", "normalization", _example(one)),
        LayerEntry("LayerNormalization", "normalization", _example(one)),
        LayerEntry("GroupNormalization", "normalization", _example(one, groups=2)),
        LayerEntry("UnitNormalization", "normalization", _example(one)),
        LayerEntry("RMSNormalization", "normalization", _example(one)),
    ]
    for merge in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
                  "Concatenate", "Dot"):
        most = 2 if merge in ("Subtract", "Dot") else 64
        arguments = {"axes": 1} if merge == "Dot" else {}
        entries.append(LayerEntry(merge, "merging", _example([[4], [4]], **arguments),
                                  inputs="list", input_count=(2, most)))
    pair = [[5, 8], [5, 8]]
    entries += [
        LayerEntry("MultiHeadAttention", "attention", _example(pair, num_heads=2, key_dim=4),
                   inputs="many", input_count=(2, 3)),
        LayerEntry("GroupQueryAttention", "attention", _example(
            pair, head_dim=4, num_query_heads=2, num_key_value_heads=1),
            inputs="many", input_count=(2, 3)),
        LayerEntry("Attention", "attention", _example(pair), inputs="list", input_count=(2, 3)),
        LayerEntry("AdditiveAttention", "attention", _example(pair), inputs="list",
                   input_count=(2, 3)),
        LayerEntry("SpatialDropout1D", "regularization", _example(seq, rate=0.2)),
        LayerEntry("SpatialDropout2D", "regularization", _example(img, rate=0.2), rank=2),
        LayerEntry("SpatialDropout3D", "regularization", _example(vol, rate=0.2), rank=3),
        LayerEntry("GaussianNoise", "regularization", _example(one, stddev=0.1)),
        LayerEntry("GaussianDropout", "regularization", _example(one, rate=0.1)),
        LayerEntry("AlphaDropout", "regularization", _example(one, rate=0.1)),
        LayerEntry("ActivityRegularization", "regularization", _example(one, l1=0.01)),
    ]
    for rank, shape in ((1, seq), (2, img), (3, vol)):
        entries += [
            LayerEntry(f"Cropping{rank}D", "reshaping", _example(shape, cropping=1), rank=rank),
            LayerEntry(f"ZeroPadding{rank}D", "reshaping", _example(shape), rank=rank,
                       overrides=zero_padding),
            LayerEntry(f"UpSampling{rank}D", "reshaping", _example(shape), rank=rank),
        ]
    entries += [
        LayerEntry("Rescaling", "preprocessing", _example(img, scale=1 / 255),
                   overrides={"scale": Number(-1e6, 1e6)}),
        LayerEntry("Resizing", "preprocessing", _example(img, height=4, width=4)),
        LayerEntry("CenterCrop", "preprocessing", _example(img, height=4, width=4)),
        LayerEntry("RandomFlip", "preprocessing", _example(img)),
        LayerEntry("RandomRotation", "preprocessing", _example(img, factor=0.1)),
        LayerEntry("RandomZoom", "preprocessing", _example(img, height_factor=0.1)),
        LayerEntry("RandomTranslation", "preprocessing",
                   _example(img, height_factor=0.1, width_factor=0.1)),
        LayerEntry("RandomContrast", "preprocessing", _example(img, factor=0.2)),
        LayerEntry("RandomBrightness", "preprocessing", _example(img, factor=0.2)),
        LayerEntry("Normalization", "preprocessing",
                   _example([[3]], mean=[0.0, 1.0, 2.0], variance=[1.0, 1.0, 4.0]),
                   overrides={"axis": Nullable(AXIS)}),
        LayerEntry("CategoryEncoding", "preprocessing", _example([[3]], "int32", num_tokens=5)),
        LayerEntry("Hashing", "preprocessing", _example([[3]], "int32", num_bins=4),
                   overrides={"mask_value": None}),
        LayerEntry("Discretization", "preprocessing", _example([[3]], bin_boundaries=[0.0, 1.0])),
        # Vocabularies are inline lists only: a string there would be read as a file path.
        LayerEntry("StringLookup", "preprocessing", _example([[3]], "string",
                                                              vocabulary=["a", "b"]),
                   overrides={"vocabulary": Nullable(ListOf(_TOKEN, 1, 100_000, False)),
                              "mask_token": Nullable(_TOKEN), "oov_token": _TOKEN}),
        LayerEntry("IntegerLookup", "preprocessing", _example([[3]], "int64",
                                                               vocabulary=[1, 2, 3]),
                   overrides={"vocabulary": Nullable(ListOf(Integer(0, 2**31 - 1), 1,
                                                            100_000, False)),
                              "mask_token": Nullable(Integer(-1, 2**31 - 1)),
                              "oov_token": Integer(-1, 2**31 - 1)}),
        LayerEntry("TextVectorization", "preprocessing",
                   _example([[1]], "string", vocabulary=["a", "b"], output_sequence_length=4),
                   overrides={"vocabulary": Nullable(ListOf(_TOKEN, 1, 100_000, False))}),
        LayerEntry("ReLU", "activation", _example(one)),
        LayerEntry("LeakyReLU", "activation", _example(one)),
        LayerEntry("PReLU", "activation", _example(one)),
        LayerEntry("ELU", "activation", _example(one)),
        LayerEntry("Softmax", "activation", _example(one)),
    ]
    wrappable = tuple(e.type for e in entries if e.inputs == "one") + ("Bidirectional",)
    entries.append(LayerEntry("TimeDistributed", "recurrent",
                              _example(seq, layer={"type": "Dense", "units": 4}),
                              overrides={"layer": NestedLayer(
                                  tuple(t for t in wrappable if t != "TimeDistributed"))}))
    return entries


LAYERS: dict[str, LayerEntry] = {entry.type: entry for entry in _entries()}


def check_layer(spec: Mapping) -> tuple[dict, list]:
    """Check one layer call `{"type": ..., **arguments}` against the allow-list.

    Model-level keys (functional `inputs`, sequential input shapes) must be removed first.

    Returns:
        `(normalized, problems)` as `check_arguments` does; the type is checked by the caller.
    """
    entry = LAYERS[spec["type"]]
    arguments = {k: v for k, v in spec.items() if k != "type"}
    forbidden = [(key, "", FORBIDDEN_MESSAGE) for key in arguments if key in FORBIDDEN_KEYS]
    if forbidden:
        return {"type": entry.type}, forbidden
    normalized, problems = check_arguments(arguments, entry.arguments)
    for name, default in entry.defaults.items():
        if default is inspect.Parameter.empty and name not in arguments and name in entry.arguments:
            problems.append((name, "", "is required"))
    return {"type": entry.type, **normalized}, problems


def make_layer(spec: Mapping) -> keras.layers.Layer:
    """Construct the Keras layer for a spec that `check_layer` accepted."""
    entry = LAYERS[spec["type"]]
    arguments = {name: entry.arguments[name].to_keras(value)
                 for name, value in spec.items() if name != "type"}
    return entry.cls(**arguments)


def layer_document() -> dict:
    """The catalogue's "layers" section."""
    return {name: entry.document() for name, entry in LAYERS.items()}
