"""Allow-lists of the small objects layers take: activations, initializers, regularizers,
constraints.

A client names one as a string (``"he_normal"``) or as ``{"type": "random_normal",
"stddev": 0.05}``. Instances are constructed here from the allow-listed classes; Keras'
`deserialize`/`get` never sees a client dict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import keras

from service.keras_ops.arguments import (
    AXIS,
    FORBIDDEN_KEYS,
    FORBIDDEN_MESSAGE,
    SEED,
    ArgumentError,
    Choice,
    Descriptor,
    Number,
    check_arguments,
    describe_arguments,
    did_you_mean,
    received,
    signature_defaults,
)


@dataclasses.dataclass(frozen=True)
class ObjectEntry:
    """One allow-listed object: its Keras class (None for activations, passed by name)."""

    cls: type | None
    arguments: Mapping[str, Descriptor] = dataclasses.field(default_factory=dict)

    def describe(self) -> dict:
        defaults = signature_defaults(self.cls.__init__) if self.cls else {}
        return {"arguments": describe_arguments(self.arguments, defaults)}


@dataclasses.dataclass(frozen=True)
class ObjectArgument(Descriptor):
    """An argument naming an object of one kind, as a string or a `{"type": ...}` dict."""

    kind: str
    table: Mapping[str, ObjectEntry]
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Name instances after their type: Keras' default names count per process ("adam_17").
    fixed_name: bool = False

    @property
    def expectation(self) -> str:
        return f"the name of an allow-listed {self.kind} or {{\"type\": name, ...arguments}}"

    def _canonical(self, name, value) -> str:
        canonical = name if name in self.table else self.aliases.get(name)
        if canonical is None or not isinstance(name, str):
            some = ", ".join(list(self.table)[:8])
            raise ArgumentError(
                f"expects the name of an allow-listed {self.kind} ({some}, ...; GET /catalog "
                f"lists all); received {received(value)}" + did_you_mean(name, sorted(self.table)))
        return canonical

    def check(self, value):
        if isinstance(value, str):
            return self._canonical(value, value)
        if not isinstance(value, dict):
            raise self.refuse(value)
        for key in value:
            if key in FORBIDDEN_KEYS:
                raise ArgumentError(FORBIDDEN_MESSAGE, f".{key}")
        if "type" not in value:
            raise ArgumentError(f"needs a 'type' naming the {self.kind}", ".type")
        try:
            canonical = self._canonical(value["type"], value["type"])
        except ArgumentError as error:
            raise error.within(".type") from None
        arguments = {k: v for k, v in value.items() if k != "type"}
        normalized, problems = check_arguments(arguments, self.table[canonical].arguments)
        if problems:
            name, subpath, message = problems[0]
            raise ArgumentError(message, f".{name}{subpath}")
        return {"type": canonical, **normalized} if normalized else canonical

    def to_keras(self, value):
        name, arguments = (value, {}) if isinstance(value, str) else (
            value["type"], {k: v for k, v in value.items() if k != "type"})
        entry = self.table[name]
        if entry.cls is None:
            return name
        accepted = entry.arguments
        keywords = {k: accepted[k].to_keras(v) for k, v in arguments.items()}
        if self.fixed_name:
            keywords["name"] = name
        return entry.cls(**keywords)

    def describe(self):
        return {"type": self.kind}

    def document(self) -> dict:
        """The catalogue section for this kind: name to its arguments."""
        return {name: entry.describe() for name, entry in self.table.items()}


def _camel_aliases(table: Mapping[str, ObjectEntry]) -> dict[str, str]:
    # Keras accepts both spellings ("he_normal", "HeNormal"); so do we, normalized to snake.
    return {entry.cls.__name__: name for name, entry in table.items() if entry.cls}


_ACTIVATION_NAMES = (
    "linear", "relu", "relu6", "sigmoid", "softmax", "softplus", "softsign", "tanh", "selu",
    "elu", "exponential", "gelu", "hard_sigmoid", "hard_silu", "hard_swish", "leaky_relu",
    "log_softmax", "log_sigmoid", "mish", "silu", "swish", "celu", "glu", "sparse_plus",
    "squareplus", "hard_tanh", "tanh_shrink", "soft_shrink", "hard_shrink", "sparse_sigmoid",
    "sparsemax",
)
ACTIVATION = ObjectArgument(
    "activation",
    {name: ObjectEntry(None) for name in _ACTIVATION_NAMES if hasattr(keras.activations, name)})

_MEAN = Number(-1e3, 1e3)
_STDDEV = Number(0, 1e3, exclusive_minimum=True)
_GAIN = Number(0, 1e3, exclusive_minimum=True)
_SEEDED = {"seed": SEED}
_INITIALIZERS = {
    "zeros": ObjectEntry(keras.initializers.Zeros),
    "ones": ObjectEntry(keras.initializers.Ones),
    "constant": ObjectEntry(keras.initializers.Constant, {"value": Number(-1e6, 1e6)}),
    "random_normal": ObjectEntry(keras.initializers.RandomNormal,
                                 {"mean": _MEAN, "stddev": _STDDEV, **_SEEDED}),
    "truncated_normal": ObjectEntry(keras.initializers.TruncatedNormal,
                                    {"mean": _MEAN, "stddev": _STDDEV, **_SEEDED}),
    "random_uniform": ObjectEntry(keras.initializers.RandomUniform,
                                  {"minval": _MEAN, "maxval": _MEAN, **_SEEDED}),
    "glorot_uniform": ObjectEntry(keras.initializers.GlorotUniform, _SEEDED),
    "glorot_normal": ObjectEntry(keras.initializers.GlorotNormal, _SEEDED),
    "he_uniform": ObjectEntry(keras.initializers.HeUniform, _SEEDED),
    "he_normal": ObjectEntry(keras.initializers.HeNormal, _SEEDED),
    "lecun_uniform": ObjectEntry(keras.initializers.LecunUniform, _SEEDED),
    "lecun_normal": ObjectEntry(keras.initializers.LecunNormal, _SEEDED),
    "orthogonal": ObjectEntry(keras.initializers.Orthogonal, {"gain": _GAIN, **_SEEDED}),
    "identity": ObjectEntry(keras.initializers.Identity, {"gain": _GAIN}),
    "variance_scaling": ObjectEntry(keras.initializers.VarianceScaling, {
        "scale": _GAIN, "mode": Choice(("fan_in", "fan_out", "fan_avg")),
        "distribution": Choice(("truncated_normal", "untruncated_normal", "uniform")),
        **_SEEDED}),
}
INITIALIZER = ObjectArgument(
    "initializer", _INITIALIZERS,
    {**_camel_aliases(_INITIALIZERS), "uniform": "random_uniform", "normal": "random_normal"})

_FACTOR = Number(0, 1e3)
_REGULARIZERS = {
    "l1": ObjectEntry(keras.regularizers.L1, {"l1": _FACTOR}),
    "l2": ObjectEntry(keras.regularizers.L2, {"l2": _FACTOR}),
    "l1_l2": ObjectEntry(keras.regularizers.L1L2, {"l1": _FACTOR, "l2": _FACTOR}),
    "orthogonal_regularizer": ObjectEntry(keras.regularizers.OrthogonalRegularizer, {
        "factor": _FACTOR, "mode": Choice(("rows", "columns"))}),
}
REGULARIZER = ObjectArgument("regularizer", _REGULARIZERS, _camel_aliases(_REGULARIZERS))

_NORM = Number(0, 1e6, exclusive_minimum=True)
_CONSTRAINTS = {
    "max_norm": ObjectEntry(keras.constraints.MaxNorm, {"max_value": _NORM, "axis": AXIS}),
    "min_max_norm": ObjectEntry(keras.constraints.MinMaxNorm, {
        "min_value": Number(0, 1e6), "max_value": _NORM, "rate": Number(0, 1), "axis": AXIS}),
    "non_neg": ObjectEntry(keras.constraints.NonNeg),
    "unit_norm": ObjectEntry(keras.constraints.UnitNorm, {"axis": AXIS}),
}
CONSTRAINT = ObjectArgument("constraint", _CONSTRAINTS, _camel_aliases(_CONSTRAINTS))
