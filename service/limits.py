"""Caps on one model, shared by the web process and the builder (no Keras import here)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class BuildLimits:
    """Caps on one model (KERAS_SERVICE_MAX_LAYERS, KERAS_SERVICE_MAX_PARAMS)."""

    max_layers: int = 200
    max_params: int = 50_000_000
