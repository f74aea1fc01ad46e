"""How a loaded Keras model is called, alike on TensorFlow and on LiteRT.

Both runtimes trace the same call (inputs by position, several of them as a list), put the
outputs in the model's order, probe with the same zeros, and are trusted only where they
answer as the call they replace does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from service.tensors import numpy_dtype


def inference_call(model) -> Callable:
    """The model's inference call on its inputs given by position."""

    def call(*inputs):
        return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    return call


def in_model_order(outputs, output_names: list[str] | None) -> list:
    """The call's outputs as a list in the model's order (Keras may give a dict by name)."""
    if isinstance(outputs, dict):
        return [outputs[name] for name in output_names]
    if isinstance(outputs, list | tuple):
        return list(outputs)
    return [outputs]


def zeros_for(specs) -> list[np.ndarray]:
    """One row of zeros per input; a size left open is 1."""
    return [np.zeros((1, *(1 if dim is None else dim for dim in spec.shape[1:])),
                     dtype=numpy_dtype(spec.dtype)) for spec in specs]


def answer_alike(answers: list[np.ndarray], expected: list[np.ndarray], *, rtol: float,
                 atol: float) -> bool:
    """Whether two runtimes' outputs agree in number, shape, dtype and value."""
    return len(answers) == len(expected) and all(
        a.shape == b.shape and a.dtype == b.dtype
        and np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
        for a, b in zip(answers, expected, strict=True))
