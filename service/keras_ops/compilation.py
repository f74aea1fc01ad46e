"""Compile specs: allow-listed losses, optimizers and metrics, checked and constructed.

``{"loss": ..., "optimizer": ..., "metrics"?: [...] | {output: [...]},
"loss_weights"?: [...] | {output: weight}}``. A loss is a name, ``{"type": name, ...}``, or
for several outputs ``{"<output name>": loss, ...}`` (told apart by having no "type").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

from service.errors import InvalidSpec
from service.keras_ops.arguments import (
    ArgumentError,
    Boolean,
    Choice,
    Descriptor,
    Integer,
    Nullable,
    Number,
    did_you_mean,
    received,
    signature_defaults,
)
from service.keras_ops.objects import ObjectArgument, ObjectEntry

MAX_METRICS = 32
COMPILE_KEYS = ("loss", "optimizer", "metrics", "loss_weights")
DEFAULT_OPTIMIZER = "rmsprop"  # Keras' own default for compile()

_UNIT = Number(0, 1)
_BELOW_ONE = Number(0, 1, exclusive_maximum=True)
_SMALL_POSITIVE = Number(0, 1, exclusive_minimum=True)
_CLIP = Nullable(Number(0, 1e6, exclusive_minimum=True))
_COEFFICIENT = Number(0, 1e3)

# Argument name to descriptor, shared by every class of a kind; a class exposes the names
# its signature has.
_LOSS_ARGUMENTS: dict[str, Descriptor] = {
    "from_logits": Boolean(), "label_smoothing": _UNIT, "axis": Integer(-8, 8),
    "reduction": Choice(("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight")),
    "ignore_class": Nullable(Integer(-1, 1 << 20)), "delta": Number(0, 1e6, True),
    "alpha": _UNIT, "beta": _UNIT, "gamma": Number(0, 10), "apply_class_balancing": Boolean(),
}
_OPTIMIZER_ARGUMENTS: dict[str, Descriptor] = {
    "learning_rate": Number(0, 10, exclusive_minimum=True),
    "beta_1": _BELOW_ONE, "beta_2": _BELOW_ONE, "epsilon": _SMALL_POSITIVE,
    "epsilon_1": _SMALL_POSITIVE, "epsilon_2": _SMALL_POSITIVE,
    "amsgrad": Boolean(), "weight_decay": Nullable(_UNIT),
    "clipnorm": _CLIP, "clipvalue": _CLIP, "global_clipnorm": _CLIP,
    "use_ema": Boolean(), "ema_momentum": _UNIT, "momentum": _UNIT, "nesterov": Boolean(),
    "rho": _UNIT, "centered": Boolean(), "initial_accumulator_value": _COEFFICIENT,
    "learning_rate_power": Number(-10, 0), "l1_regularization_strength": _COEFFICIENT,
    "l2_regularization_strength": _COEFFICIENT,
    "l2_shrinkage_regularization_strength": _COEFFICIENT, "beta": _COEFFICIENT,
    "gradient_accumulation_steps": Nullable(Integer(1, 1024)),
    "beta_2_decay": Number(-10, 0), "clip_threshold": Number(0, 1e6, True),
    "relative_step": Boolean(),
}
_METRIC_ARGUMENTS: dict[str, Descriptor] = {
    "k": Integer(1, 1000), "num_thresholds": Integer(2, 10_000),
    "curve": Choice(("ROC", "PR")), "multi_label": Boolean(), "from_logits": Boolean(),
    "thresholds": Nullable(_UNIT), "top_k": Nullable(Integer(1, 1000)),
    "class_id": Nullable(Integer(0, 1 << 20)), "threshold": Nullable(_UNIT),
    "label_smoothing": _UNIT, "average": Nullable(Choice(("micro", "macro", "weighted"))),
}


def _entry(cls: type, shared: Mapping[str, Descriptor]) -> ObjectEntry:
    """An entry exposing the arguments of `cls`'s signature that have a descriptor."""
    return ObjectEntry(cls, {name: shared[name] for name in signature_defaults(cls.__init__)
                             if name in shared})


def _table(module, names: Mapping[str, str], shared: Mapping[str, Descriptor]) -> dict:
    return {name: _entry(getattr(module, cls), shared) for name, cls in names.items()}


def _aliases(table: Mapping[str, ObjectEntry], extra: Mapping[str, str]) -> dict[str, str]:
    return {**{entry.cls.__name__: name for name, entry in table.items() if entry.cls}, **extra}


_LOSSES = _table(keras.losses, {
    "binary_crossentropy": "BinaryCrossentropy",
    "binary_focal_crossentropy": "BinaryFocalCrossentropy",
    "categorical_crossentropy": "CategoricalCrossentropy",
    "categorical_focal_crossentropy": "CategoricalFocalCrossentropy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "mean_squared_error": "MeanSquaredError", "mean_absolute_error": "MeanAbsoluteError",
    "mean_absolute_percentage_error": "MeanAbsolutePercentageError",
    "mean_squared_logarithmic_error": "MeanSquaredLogarithmicError",
    "huber": "Huber", "log_cosh": "LogCosh", "kl_divergence": "KLDivergence",
    "poisson": "Poisson", "hinge": "Hinge", "squared_hinge": "SquaredHinge",
    "categorical_hinge": "CategoricalHinge", "cosine_similarity": "CosineSimilarity",
    "dice": "Dice", "tversky": "Tversky",
}, _LOSS_ARGUMENTS)
_SHORT_NAMES = {"mse": "mean_squared_error", "mae": "mean_absolute_error",
                "mape": "mean_absolute_percentage_error",
                "msle": "mean_squared_logarithmic_error"}
LOSS = ObjectArgument("loss", _LOSSES, _aliases(_LOSSES, {
    **_SHORT_NAMES, "huber_loss": "huber", "logcosh": "log_cosh", "kld": "kl_divergence",
    "kullback_leibler_divergence": "kl_divergence"}))

_OPTIMIZERS = _table(keras.optimizers, {
    "sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop",
    "adagrad": "Adagrad", "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "Nadam",
    "ftrl": "Ftrl", "lion": "Lion", "lamb": "Lamb", "adafactor": "Adafactor",
}, _OPTIMIZER_ARGUMENTS)
OPTIMIZER = ObjectArgument("optimizer", _OPTIMIZERS, _aliases(_OPTIMIZERS, {}), fixed_name=True)

_METRICS = {
    # Keras picks binary, categorical or sparse accuracy from the loss and output shape.
    "accuracy": ObjectEntry(None),
    **_table(keras.metrics, {
        "binary_accuracy": "BinaryAccuracy", "categorical_accuracy": "CategoricalAccuracy",
        "sparse_categorical_accuracy": "SparseCategoricalAccuracy",
        "top_k_categorical_accuracy": "TopKCategoricalAccuracy",
        "sparse_top_k_categorical_accuracy": "SparseTopKCategoricalAccuracy",
        "auc": "AUC", "precision": "Precision", "recall": "Recall",
        "f1_score": "F1Score", "r2_score": "R2Score",
        "mean_absolute_error": "MeanAbsoluteError", "mean_squared_error": "MeanSquaredError",
        "root_mean_squared_error": "RootMeanSquaredError",
        "mean_absolute_percentage_error": "MeanAbsolutePercentageError",
        "mean_squared_logarithmic_error": "MeanSquaredLogarithmicError",
        "cosine_similarity": "CosineSimilarity", "log_cosh_error": "LogCoshError",
        "binary_crossentropy": "BinaryCrossentropy",
        "categorical_crossentropy": "CategoricalCrossentropy",
        "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
        "kl_divergence": "KLDivergence", "poisson": "Poisson", "hinge": "Hinge",
        "squared_hinge": "SquaredHinge", "categorical_hinge": "CategoricalHinge",
    }, _METRIC_ARGUMENTS),
}
METRIC = ObjectArgument("metric", _METRICS, _aliases(_METRICS, {
    **_SHORT_NAMES, "acc": "accuracy", "rmse": "root_mean_squared_error"}))
LOSS_WEIGHT = Number(0, 1e3)


def _is_per_output(value: Any) -> bool:
    return isinstance(value, dict) and "type" not in value


class _CompileChecker:
    """Checks one compile spec, collecting `{"path", "message"}` problems."""

    def __init__(self, output_names: list[str]):
        self.output_names = output_names
        self.errors: list[dict] = []

    def problem(self, path: str, message: str) -> None:
        end = "" if message.endswith("?") else "."
        self.errors.append({"path": path, "message": f"Compile spec: '{path}' {message}{end}"})

    def one(self, descriptor: Descriptor, value: Any, path: str) -> Any:
        try:
            return descriptor.check(value)
        except ArgumentError as error:
            self.problem(path + error.subpath, error.message)
            return None

    def per_output(self, value: dict, path: str, check_value) -> dict:
        checked = {}
        for output, item in value.items():
            if output not in self.output_names:
                self.problem(f"{path}.{output}", "names no model output; outputs are "
                             + ", ".join(self.output_names)
                             + did_you_mean(output, self.output_names))
                continue
            checked[output] = check_value(item, f"{path}.{output}")
        return checked

    def loss(self, value: Any, path: str = "loss") -> Any:
        if _is_per_output(value):
            # None leaves an output without a loss, as Keras allows.
            return self.per_output(value, path, lambda item, where: (
                None if item is None else self.one(LOSS, item, where)))
        return self.one(LOSS, value, path)

    def metric_list(self, value: Any, path: str) -> list:
        items = value if isinstance(value, list) else [value]
        if len(items) > MAX_METRICS:
            self.problem(path, f"expects at most {MAX_METRICS} metrics; received {len(items)}")
            return []
        return [self.one(METRIC, item, f"{path}[{i}]") for i, item in enumerate(items)]

    def metrics(self, value: Any) -> Any:
        if _is_per_output(value):
            return self.per_output(value, "metrics", self.metric_list)
        return self.metric_list(value, "metrics")

    def loss_weights(self, value: Any) -> Any:
        if isinstance(value, dict):
            return self.per_output(value, "loss_weights",
                                   lambda item, where: self.one(LOSS_WEIGHT, item, where))
        if not isinstance(value, list) or len(value) != len(self.output_names):
            self.problem("loss_weights", f"expects a list of {len(self.output_names)} weights "
                         f"(one per output) or {{output: weight}}; received {received(value)}")
            return None
        return [self.one(LOSS_WEIGHT, item, f"loss_weights[{i}]") for i, item in enumerate(value)]


def normalize_compile_spec(compile_spec: Any, output_names: list[str]) -> dict:
    """Check a compile spec against the allow-lists and the model's output names.

    Args:
        compile_spec: `{"loss", "optimizer"?, "metrics"?, "loss_weights"?}`.
        output_names: names of the model's output layers, for per-output forms.

    Returns:
        The normalized compile spec (canonical names; optimizer filled in).

    Raises:
        InvalidSpec: naming the path of each problem.
    """
    if not isinstance(compile_spec, dict):
        raise InvalidSpec(f"A compile spec is a JSON object; received {received(compile_spec)}.",
                          errors=[{"path": "", "message": "expects an object"}])
    checker = _CompileChecker(output_names)
    for key in compile_spec:
        if key not in COMPILE_KEYS:
            checker.problem(key, "is not a compile argument; accepted: "
                            + ", ".join(COMPILE_KEYS) + did_you_mean(key, list(COMPILE_KEYS)))
    if "loss" not in compile_spec:
        checker.problem("loss", "is required")
    normalized = {
        "loss": checker.loss(compile_spec.get("loss")) if "loss" in compile_spec else None,
        "optimizer": checker.one(OPTIMIZER, compile_spec.get("optimizer", DEFAULT_OPTIMIZER),
                                 "optimizer"),
    }
    if "metrics" in compile_spec:
        normalized["metrics"] = checker.metrics(compile_spec["metrics"])
    if "loss_weights" in compile_spec:
        normalized["loss_weights"] = checker.loss_weights(compile_spec["loss_weights"])
    if checker.errors:
        first, more = checker.errors[0]["message"], len(checker.errors) - 1
        raise InvalidSpec(first if not more else f"{first} (And {more} more problem(s).)",
                          errors=checker.errors)
    return normalized


def compile_arguments(normalized: Mapping) -> dict:
    """Keyword arguments for `model.compile` from a normalized compile spec."""

    def per_output_or_one(value, convert):
        if isinstance(value, dict) and "type" not in value:
            return {output: convert(item) for output, item in value.items()}
        return convert(value)

    arguments = {
        "loss": per_output_or_one(normalized["loss"],
                                  lambda v: None if v is None else LOSS.to_keras(v)),
        "optimizer": OPTIMIZER.to_keras(normalized["optimizer"]),
    }
    if "metrics" in normalized:
        arguments["metrics"] = per_output_or_one(
            normalized["metrics"], lambda items: [METRIC.to_keras(v) for v in items])
    if "loss_weights" in normalized:
        arguments["loss_weights"] = normalized["loss_weights"]
    return arguments


def compile_document() -> dict:
    """The catalogue's "losses", "optimizers" and "metrics" sections."""
    return {"losses": LOSS.document(), "optimizers": OPTIMIZER.document(),
            "metrics": METRIC.document()}
