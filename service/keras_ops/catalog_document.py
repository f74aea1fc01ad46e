"""The GET /catalog document: everything a spec may name, with arguments and defaults."""

from __future__ import annotations

from service.keras_ops.catalog import layer_document
from service.keras_ops.compilation import compile_document
from service.keras_ops.objects import ACTIVATION, CONSTRAINT, INITIALIZER, REGULARIZER


def catalog_document() -> dict:
    """The allow-list as JSON-able data.

    Returns:
        `{"layers", "losses", "optimizers", "metrics", "activations", "initializers",
        "regularizers", "constraints"}`; each layer with its category, description,
        arguments (type, bounds, default, required), inputs kind and a working example.
    """
    return {
        "layers": layer_document(),
        **compile_document(),
        "activations": sorted(ACTIVATION.table),
        "initializers": INITIALIZER.document(),
        "regularizers": REGULARIZER.document(),
        "constraints": CONSTRAINT.document(),
    }
